"""The slow way people sweep learning rates today, as a baseline for gdexp.

A Hydra app run with Hydra's basic launcher: one MLflow run per job, gradient
descent on Rosenbrock written as a Python loop, `mlflow.log_metric` at every
step. Used by bench_sweep.py on a slice small enough to finish.

    python benchmarks/tutorial_app.py -m lr=0.0001,0.001 steps=1000
"""
from dataclasses import dataclass

import hydra
import mlflow
import numpy as np
from hydra.core.config_store import ConfigStore


@dataclass
class Tutorial:
    lr: float = 1e-3
    steps: int = 1000


ConfigStore.instance().store(name="tutorial", node=Tutorial)


def rosenbrock(p):
    x, y = p
    value = (1 - x) ** 2 + 100 * (y - x * x) ** 2
    grad = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
    return value, grad


@hydra.main(config_path=None, config_name="tutorial", version_base=None)
def main(cfg: Tutorial) -> float:
    mlflow.set_experiment("tutorial")
    with mlflow.start_run(run_name=f"lr={cfg.lr}"):
        mlflow.log_params({"lr": cfg.lr, "steps": cfg.steps})
        p = np.array([-1.5, 2.0])
        for step in range(cfg.steps + 1):
            value, grad = rosenbrock(p)
            mlflow.log_metric("loss", float(value), step=step)
            if not np.isfinite(value):
                break
            p = p - cfg.lr * grad
    return float(value)


if __name__ == "__main__":
    main()
