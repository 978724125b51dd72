"""Mini-batch indices per run: each run of a batch draws its own batches from its own seed.

The rule (the reference the tests hold literally): a run with seed `s` visits
its n data points in epoch e = 0, 1, ... in the order

    np.random.default_rng([s, MINIBATCH_STREAM, e]).permutation(n)

and update number count = 0, 1, ... (the updates already made) uses the
`batch_size` points at position count % steps_per_epoch of epoch
count // steps_per_epoch, steps_per_epoch = ceil(n / batch_size). Without
replacement within an epoch, each point once per epoch; the last batch of an
epoch holds the remainder, as torch's DataLoader(shuffle=True,
drop_last=False). Every row shares n and batch_size, so every row's batch has
the same size at the same update and the indices stack into (B, m).

Why this rule: a row's batches depend on its seed and the update count alone,
never on the other rows of its batch, its position in it or earlier calls, so
equal seeds draw equal batches in any batch composition, and a resumed run
can start at any update. MINIBATCH_STREAM keeps the stream apart from
`np.random.default_rng(s)`, which a run's other random draws may use:
SeedSequence pads its entropy with zeros, so [s, 0, 0] would be that very
stream. numpy keeps Generator streams stable except for bug fixes (NEP 19);
tests/core/test_minibatch.py holds literal indices, so a change would show.
"""
from __future__ import annotations

import numbers

import numpy as np

from gdexp.core.errors import ConfigError

__all__ = ["MINIBATCH_STREAM", "MinibatchSampler", "epoch_order"]

#: The second word of the mini-batch generators' entropy (see the module docstring).
MINIBATCH_STREAM = 1


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order (n,) int64 in which a run with `seed` visits n data points in `epoch`.

    >>> epoch_order(0, 0, 10).tolist()
    [9, 1, 3, 8, 7, 6, 0, 4, 2, 5]
    """
    return np.random.default_rng([seed, MINIBATCH_STREAM, epoch]).permutation(n)


class MinibatchSampler:
    """Each row's mini-batch indices at each update, by the module's rule.

    Args:
        n: Data points of the loss (its `n_data`), >= 1.
        batch_size: Points per update (`loss.batch_size`); None, or >= n, is
            the full batch, and `at` returns None so the loss sums over all
            points in its own order: a permuted full batch would sum in
            another order, and differ from full-batch descent in the last bits.
        seeds: (B,) the runs' seeds, integers >= 0.

    Raises:
        ConfigError: batch_size not null nor an integer >= 1 (key "loss.batch_size"),
            or a seed not an integer >= 0 (key "seed").

    >>> sampler = MinibatchSampler(n=10, batch_size=4, seeds=[0, 0, 1])
    >>> [sampler.at(t)[0].tolist() for t in range(3)]  # epoch 0 of seed 0: 4, 4, then the 2 left
    [[9, 1, 3, 8], [7, 6, 0, 4], [2, 5]]
    >>> sampler.at(0).shape, bool((sampler.at(0)[0] == sampler.at(0)[1]).all())
    ((3, 4), True)
    >>> MinibatchSampler(n=10, batch_size=10, seeds=[0]).at(0) is None
    True
    """

    def __init__(self, n: int, batch_size: int | None, seeds):
        if not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n (the loss's n_data) must be an integer >= 1, got {n!r}")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                       or batch_size < 1):
            raise ConfigError("loss.batch_size", batch_size, "must be null (full batch) or an integer >= 1")
        self.n = int(n)
        self.batch_size = None if batch_size is None or batch_size >= n else int(batch_size)
        self.seeds = _seeds(seeds)
        self._epoch, self._orders = -1, None

    @property
    def full_batch(self) -> bool:
        """True when every update uses all n points (`at` returns None)."""
        return self.batch_size is None

    @property
    def steps_per_epoch(self) -> int:
        """Updates per pass over the data, ceil(n / batch_size); 1 for the full batch."""
        return 1 if self.batch_size is None else -(-self.n // self.batch_size)

    def at(self, count: int) -> np.ndarray | None:
        """(B, m) int64 indices of each row's mini-batch for the update after `count` updates.

        m is batch_size, or less in an epoch's last batch. A read-only view:
        the loss indexes its data with it. None for the full batch.
        """
        if self.batch_size is None:
            return None
        epoch, position = divmod(count, self.steps_per_epoch)
        if epoch != self._epoch:
            orders = np.array([epoch_order(int(s), epoch, self.n) for s in self.seeds], dtype=np.int64)
            orders = orders.reshape(len(self.seeds), self.n)  # (0, n) when no row is left
            orders.flags.writeable = False
            self._epoch, self._orders = epoch, orders
        start = position * self.batch_size
        return self._orders[:, start:start + self.batch_size]

    def take(self, keep) -> MinibatchSampler:
        """The sampler of the rows selected by `keep` (a mask or indices), as StoppingRules.take."""
        kept = MinibatchSampler(self.n, self.batch_size, self.seeds[keep])
        if self._orders is not None:  # the current epoch's orders, not drawn again
            kept._epoch, kept._orders = self._epoch, self._orders[keep]
            kept._orders.flags.writeable = False
        return kept


def _seeds(seeds) -> np.ndarray:
    """(B,) int64 seeds, or ConfigError("seed", ...): SeedSequence takes integers >= 0 only."""
    arr = np.asarray(seeds)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ConfigError("seed", seeds, "must be an integer >= 0 per run, as a (B,) array")
    if (arr < 0).any():
        raise ConfigError("seed", arr[arr < 0][0].item(), "must be an integer >= 0")
    return arr.astype(np.int64)
