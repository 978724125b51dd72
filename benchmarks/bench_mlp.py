"""Issue 11's MLP figure: 64 learning rates x 1,000 full-batch gd steps of a 64-64-10 MLP on digits.

    python benchmarks/bench_mlp.py [--quick] [--repeat 3] [--threads 1]

Side by side in one process, the same 64 runs (float64, the same start from
MLP.default_init, the same learning rates):

- gdexp: the batched loss through gdexp.core.descent.descend with the gd optimizer
  (the descent's bookkeeping included: losses, gradient norms, stopping checks);
- torch, loop: 64 ``nn.Sequential`` models trained one after the other with
  ``torch.optim.SGD``, as one would write it;
- torch, bmm: the 64 runs as one batch (``torch.matmul``/``bmm`` over stacked
  weights, autograd, an update per run's lr).

Each method runs once per repeat, interleaved, so a machine busy with other
work slows all of them alike; medians and ratios are printed. Then how time
per run and step grows with the batch (B = 1, 8, 64) and the hidden width
(16, 64, 256), gdexp against the torch loop. Both libraries get the same
number of threads (numpy's BLAS through threadpoolctl, torch.set_num_threads);
numpy's elementwise operations always run on one.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import median  # noqa: E402


def main() -> None:
    parser = common.parser(__doc__, "16 runs x 100 steps, a smaller scaling table", "numpy's and torch's BLAS")
    args = parser.parse_args()

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from gdexp.core.losses.mlp import mlp

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    blas = ", ".join(f"{i['internal_api']} {i.get('version') or ''} x{i['num_threads']}" for i in threadpool_info())
    print(f"threads: torch {torch.get_num_threads()}; numpy's BLAS and others: {blas}")

    runs, steps = (16, 100) if args.quick else (64, 1000)
    net = mlp("digits", hidden=[64], activation="tanh")
    lrs = np.logspace(-2, 0, runs)  # all stable for this net: every method does the same work
    print(f"{runs} runs x {steps} gd steps, {net!r}, n_train={net.n_data}")

    methods = {"gdexp": run_gdexp, "torch, loop": run_torch_loop, "torch, bmm": run_torch_bmm}
    times: dict[str, list[float]] = {name: [] for name in methods}
    finals: dict[str, np.ndarray] = {}
    for _ in range(args.repeat):
        for name, method in methods.items():
            t0 = time.perf_counter()
            finals[name] = method(net, lrs, steps)
            times[name].append(time.perf_counter() - t0)
    for name, values in times.items():
        per = median(values) / (runs * steps) * 1e3
        print(f"{name:12s} median {median(values):8.2f} s  ({per:.3f} ms per run and step, n={len(values)})")
    base = median(times["gdexp"])
    for name in ("torch, loop", "torch, bmm"):
        ratio = base / median(times[name])
        gap = np.max(np.abs(finals["gdexp"] - finals[name]) / np.abs(finals[name]))
        print(f"gdexp / {name:12s} {ratio:.2f}x  (target <= 1.2x; final losses agree to {gap:.1e} relative)")

    print("\ntime per run and step (ms), gdexp vs torch loop")
    scale_steps = 20 if args.quick else 100
    table = [(b, 64) for b in (1, 8, 64)] + [(8, h) for h in (16, 256)]
    for b, width in table:
        net = mlp("digits", hidden=[width], activation="tanh")
        lr = np.full(b, 0.1)
        t = {}
        for _ in range(args.repeat):
            for name in ("gdexp", "torch, loop"):
                t0 = time.perf_counter()
                methods[name](net, lr, scale_steps)
                t.setdefault(name, []).append((time.perf_counter() - t0) / (b * scale_steps) * 1e3)
        g, tl = median(t["gdexp"]), median(t["torch, loop"])
        print(f"B={b:3d} hidden={width:4d} dim={net.dim:6d}: gdexp {g:7.3f}  torch {tl:7.3f}  ratio {g / tl:.2f}x")


def run_gdexp(net, lrs, steps) -> np.ndarray:
    """Final training losses of gd from default_init at each lr, through descend."""
    from gdexp.core.descent import descend
    from gdexp.core.optimizers import make_optimizer
    from gdexp.core.stopping import StoppingRules

    rules = StoppingRules.of([{"maxiter": steps, "gtol": 0.0, "patience": 0, "min_delta": 0.0,
                               "divergence_factor": np.inf}] * len(lrs))
    x0 = np.tile(net.default_init(), (len(lrs), 1))
    results = descend(net, make_optimizer("gd", lr=lrs), x0, rules)
    return np.array([r.loss[-1] for r in results])


def _torch_data(net):
    import torch
    return torch.from_numpy(np.array(net.data.x_train)), torch.from_numpy(np.array(net.data.y_train))


def run_torch_loop(net, lrs, steps) -> np.ndarray:
    """The same runs as nn.Sequential models trained one after the other with torch.optim.SGD."""
    import torch
    from torch import nn

    X, Y = _torch_data(net)
    x0 = torch.from_numpy(net.default_init())
    finals = []
    for lr in lrs:
        model = nn.Sequential(nn.Linear(X.shape[1], net.hidden[0]), nn.Tanh(),
                              nn.Linear(net.hidden[0], net.data.n_classes)).double()
        # vector_to_parameters makes the parameters views of its input: a fresh copy per model.
        nn.utils.vector_to_parameters(x0.clone(), model.parameters())
        sgd = torch.optim.SGD(model.parameters(), lr=float(lr))
        curve = torch.empty(steps + 1, dtype=torch.float64)
        for t in range(steps):
            sgd.zero_grad()
            loss = nn.functional.cross_entropy(model(X), Y)
            loss.backward()
            sgd.step()
            curve[t] = loss.detach()
        with torch.no_grad():
            curve[steps] = nn.functional.cross_entropy(model(X), Y)
        finals.append(curve[steps].item())
    return np.array(finals)


def run_torch_bmm(net, lrs, steps) -> np.ndarray:
    """The same runs as one batch: stacked weights, batched matmuls, one backward for all."""
    import torch

    X, Y = _torch_data(net)
    B, h, k, n = len(lrs), net.hidden[0], net.data.n_classes, len(Y)
    x0 = torch.from_numpy(np.tile(net.default_init(), (B, 1)))
    sizes = [h * X.shape[1], h, k * h, k]
    params = [p.clone().requires_grad_() for p in torch.split(x0, sizes, dim=1)]
    shapes = [(B, h, X.shape[1]), (B, h), (B, k, h), (B, k)]
    lr = torch.from_numpy(lrs)
    labels = Y.repeat(B)

    def losses():
        w1, b1, w2, b2 = (p.view(s) for p, s in zip(params, shapes))
        hidden = torch.tanh(torch.matmul(X, w1.transpose(1, 2)) + b1[:, None, :])
        logits = torch.bmm(hidden, w2.transpose(1, 2)) + b2[:, None, :]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, k), labels, reduction="none").view(B, n).mean(1)

    curve = torch.empty(steps + 1, B, dtype=torch.float64)
    for t in range(steps):
        for p in params:
            p.grad = None
        loss = losses()
        loss.sum().backward()  # each run's loss depends on its own parameters only
        with torch.no_grad():
            for p in params:
                p -= lr[:, None] * p.grad
        curve[t] = loss.detach()
    with torch.no_grad():
        curve[steps] = losses()
    return curve[steps].numpy()


if __name__ == "__main__":
    main()
