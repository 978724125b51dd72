"""loss=torch against one process per trial: a sweep's learning rates as one vectorized program, and the
same trainings in a plain torch loop one after another, in the same run.

    python benchmarks/bench_torch.py [--lrs 32] [--steps 500] [--repeat 3] [--nets mlp,conv] [--device cpu] [--seeds 1]

Nets (examples/mynet/net.py): `model`, a 30-64-64-2 tanh MLP on breast_cancer, and `conv`, two 3x3
convolutions and a linear layer on digits' 8x8 images; mini-batches of 64, Adam, `--lrs` rates
log-spaced 1e-4..1e-1, `--steps` updates, float32. gdexp: gdexp.core.descent.descend over the
stacked copies (no MLflow: the descent alone, as the loop). The loop: for each rate,
torch.manual_seed(seed); m = model(); torch.optim.Adam; the same batches (gdexp.core.minibatch's
rule); loss.backward(); opt.step(). Printed: medians and the ratio loop / gdexp, and the largest
relative difference of the final losses (float32: rounding, not a bug).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NETS = {"mlp": ("mynet.net.model", "breast_cancer"), "conv": ("mynet.net.conv", "digits")}


def gdexp_sweep(model: str, dataset: str, lrs, steps: int, device: str, seeds=None):
    from gdexp.core.descent import Options, descend
    from gdexp.specs.torch_loss import torch_module
    from gdexp.core.optimizers import make_optimizer
    from gdexp.core.stopping import StoppingRules

    loss = torch_module(model=model, dataset=dataset, device=device, init_seed=0, search_dir=str(EXAMPLES))
    x0 = np.stack([loss.default_init()] * len(lrs))
    rules = StoppingRules.of([dict(maxiter=steps, gtol=0.0, patience=0, min_delta=0.0, divergence_factor=1e4)]
                             * len(lrs))
    sync(device)
    t0 = time.perf_counter()
    out = descend(loss, make_optimizer("adam", lr=np.asarray(lrs)), x0, rules,
                  Options(batch_size=64, seeds=np.zeros(len(lrs), dtype=np.int64) if seeds is None else seeds))
    sync(device)
    return time.perf_counter() - t0, np.array([r.loss[-1] for r in out])


def torch_loop(model: str, dataset: str, lrs, steps: int, device: str, seeds=None):
    import torch

    from gdexp.core.data import load_dataset
    from gdexp.core.minibatch import MinibatchSampler
    from gdexp.specs.targets import resolve

    build = resolve(model, "loss.model", str(EXAMPLES))
    data = load_dataset(dataset)
    X = torch.tensor(data.x_train, dtype=torch.float32, device=device)
    y = torch.tensor(data.y_train, device=device)
    seeds = np.zeros(len(lrs), dtype=np.int64) if seeds is None else seeds
    sampled = {}
    for s in sorted(set(seeds.tolist())):  # each seed's batches, drawn before the clock starts
        sampler = MinibatchSampler(len(y), 64, [s])
        sampled[s] = [torch.tensor(sampler.at(t)[0], device=device) for t in range(steps + 1)]
    finals = []
    sync(device)
    t0 = time.perf_counter()
    for lr, seed in zip(lrs, seeds.tolist()):
        batches = sampled[seed]
        torch.manual_seed(0)
        m = build().to(device)
        opt = torch.optim.Adam(m.parameters(), lr=float(lr))
        for t in range(steps):
            loss = torch.nn.functional.cross_entropy(m(X[batches[t]]), y[batches[t]])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            finals.append(torch.nn.functional.cross_entropy(m(X[batches[steps]]), y[batches[steps]]).item())
    sync(device)
    return time.perf_counter() - t0, np.array(finals)


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lrs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nets", default="mlp,conv")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads, for both (cpu)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="mini-batch seeds, cycled over the rates: 1 = one batch all rows share (a sweep of "
                             "one seed); more = rows drawing their own batches (seed=0,1,2 in one batch)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(EXAMPLES))
    lrs = np.geomspace(1e-4, 1e-1, args.lrs)
    seeds = np.arange(args.lrs, dtype=np.int64) % args.seeds
    card = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {args.threads} threads"
    print(f"{args.lrs} learning rates x {args.steps} steps, batch 64, Adam, float32, on {card}; "
          f"{args.seeds} mini-batch seed(s); medians of {args.repeat}, gdexp and the loop interleaved:", flush=True)
    for name in args.nets.split(","):
        model, dataset = NETS[name]
        ours, loop = [], []
        for _ in range(args.repeat):
            t, f_ours = gdexp_sweep(model, dataset, lrs, args.steps, args.device, seeds)
            ours.append(t)
            t, f_loop = torch_loop(model, dataset, lrs, args.steps, args.device, seeds)
            loop.append(t)
        a, b = statistics.median(ours), statistics.median(loop)
        finite = np.isfinite(f_loop) & np.isfinite(f_ours)
        diff = np.max(np.abs(f_ours[finite] - f_loop[finite]) / np.abs(f_loop[finite])) if finite.any() else np.nan
        print(f"  {name:5s} ({dataset}): gdexp {a:7.2f} s   torch loop {b:7.2f} s   loop / gdexp {b / a:5.1f}x   "
              f"final losses max rel. diff {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
