"""gdexp's Hydra launchers: where and how a sweep's jobs run.

- batched.py   hydra/launcher=gdexp (the default): jobs that descend together as one vectorized batch
- groups.py    what the cluster launchers share: consecutive jobs that descend together, as one task
- ray.py       hydra/launcher=ray, over hydra-ray-launcher (the `ray` extra)
- submitit.py  hydra/launcher=submitit_local|submitit_slurm, over hydra-submitit-launcher (the `slurm` extra)
- progress.py  the sweep's progress bar
- orphans.py   a worker the sweep's process started ends with it (joblib's after a kill -9)
"""
