"""gdexp's Hydra sweepers: which jobs a sweep runs.

- grid.py     hydra/sweeper=gdexp (the default): the cartesian product of value lists and grids
- search.py   what a sweeper that picks each job from the results so far needs (SearchSweeper)
- lr_find.py  hydra/sweeper=lr_find: bracket and bisect the largest stable learning rate
- optuna.py   hydra/sweeper=optuna: Optuna's TPE, asked and told in vectorized batches
- common.py   what they all do: validate every job first, the parent run, the summary rows
"""
