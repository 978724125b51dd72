#!/usr/bin/env bash
# The GPU check of loss=torch (README, Your own network), for a machine with one CUDA GPU and
# gdexp installed with the torch extra (a CUDA build of torch). Nothing else depends on it.
#   bash benchmarks/gpu_check.sh          # ~5 minutes on an H100
# 1. speed: 256 learning rates x 1,000 steps of the conv net on digits, gdexp against the same 256
#    trainings in a torch loop, in the same run (the README's table; the target is >= 20x);
# 2. equality: each run of a vectorized sweep against torch's own loop, every optimizer and
#    schedule, on cuda (float64 to 1e-10, float32 to 1e-4), plus the CLI test with loss.device=auto.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python benchmarks/bench_torch.py --device cuda --nets conv --lrs 256 --steps 1000 --repeat 1 --threads 16
python benchmarks/bench_torch.py --device cuda --nets mlp,conv --lrs 32 --steps 500 --repeat 1 --threads 16
GDEXP_TORCH_DEVICE=cuda python -m pytest -q -x tests/specs/test_torch_module.py -k "every_run or float32" -p no:cacheprovider
