"""Mini-batch indices: the documented reference, no replacement within an epoch, seeds and rows."""
import numpy as np
import pytest

from gdexp.core.errors import ConfigError
from gdexp.core.minibatch import MINIBATCH_STREAM, MinibatchSampler, epoch_order


def _epochs(sampler, epochs):
    """(epochs, steps_per_epoch) lists of (B, m) batches."""
    spe = sampler.steps_per_epoch
    return [[sampler.at(e * spe + i) for i in range(spe)] for e in range(epochs)]


def test_reference_sequence_literally():
    # Recorded once with numpy 2.4.6 (PCG64 via default_rng): the rule of the
    # module docstring, which a change of numpy's streams would break.
    sampler = MinibatchSampler(n=10, batch_size=4, seeds=[42])
    got = [sampler.at(t)[0].tolist() for t in range(6)]
    assert got == [[0, 8, 7, 4], [3, 1, 2, 9], [6, 5],
                   [5, 6, 7, 0], [8, 1, 3, 2], [4, 9]]
    assert epoch_order(42, 1, 10).tolist() == [5, 6, 7, 0, 8, 1, 3, 2, 4, 9]


def test_reference_is_default_rng_of_seed_stream_epoch():
    sampler = MinibatchSampler(n=23, batch_size=5, seeds=[7, 1234567])
    for e, batches in enumerate(_epochs(sampler, 3)):
        for r, seed in enumerate([7, 1234567]):
            expected = np.random.default_rng([seed, MINIBATCH_STREAM, e]).permutation(23)
            assert np.array_equal(np.concatenate([b[r] for b in batches]), expected)


def test_stream_is_apart_from_default_rng_of_the_seed():
    # SeedSequence pads with zeros: default_rng([s, 0]) is default_rng(s).
    assert not np.array_equal(epoch_order(5, 0, 50), np.random.default_rng(5).permutation(50))


@pytest.mark.parametrize("n, m", [(10, 4), (12, 4), (7, 1), (100, 99), (1000, 64)])
def test_each_point_once_per_epoch(n, m):
    sampler = MinibatchSampler(n=n, batch_size=m, seeds=[0, 1, 2])
    assert sampler.steps_per_epoch == -(-n // m)
    epochs = _epochs(sampler, 3)
    for batches in epochs:
        # Full batches, then the remainder (DataLoader's drop_last=False).
        assert [b.shape for b in batches] == [(3, m)] * (n // m) + ([(3, n % m)] if n % m else [])
        for r in range(3):
            assert np.array_equal(np.sort(np.concatenate([b[r] for b in batches])), np.arange(n))
    # A new order every epoch (for n > 3 the chance of a repeat is nil).
    firsts = [np.concatenate([b[0] for b in batches]) for batches in epochs]
    assert n <= 3 or not np.array_equal(firsts[0], firsts[1])


def test_equal_seeds_draw_equal_batches_in_any_composition():
    alone = MinibatchSampler(20, 6, [3])
    batches = [MinibatchSampler(20, 6, seeds) for seeds in ([3, 9, 3], [9, 3], [11, 12, 13, 3])]
    for t in range(12):
        ref = alone.at(t)[0]
        assert np.array_equal(batches[0].at(t)[0], ref) and np.array_equal(batches[0].at(t)[2], ref)
        assert np.array_equal(batches[1].at(t)[1], ref) and np.array_equal(batches[2].at(t)[3], ref)


def test_different_seeds_draw_different_batches():
    sampler = MinibatchSampler(100, 10, np.arange(20))
    first = sampler.at(0)
    assert len({tuple(row) for row in first.tolist()}) == 20


def test_at_depends_on_the_count_alone():
    # Going back an epoch, or starting at any update, gives the same indices.
    forward = MinibatchSampler(10, 3, [1, 2])
    seq = [forward.at(t).copy() for t in range(9)]
    back = [forward.at(t) for t in (2, 8, 0, 5)]
    assert all(np.array_equal(b, seq[t]) for b, t in zip(back, (2, 8, 0, 5)))
    assert np.array_equal(MinibatchSampler(10, 3, [1, 2]).at(6), seq[6])


def test_take_keeps_each_rows_sequence():
    sampler = MinibatchSampler(10, 4, [5, 6, 7, 8])
    sampler.at(4)  # mid-epoch 1
    kept = sampler.take(np.array([True, False, True, False]))
    assert np.array_equal(kept.seeds, [5, 7])
    for t in range(4, 12):
        assert np.array_equal(kept.at(t), MinibatchSampler(10, 4, [5, 7]).at(t))
    assert kept.take(np.array([False, False])).at(13).shape == (0, 4)


def test_indices_are_a_read_only_int64_view():
    batch = MinibatchSampler(10, 4, [0]).at(0)
    assert batch.dtype == np.int64 and not batch.flags.writeable


@pytest.mark.parametrize("batch_size", [None, 10, 11, 10**9])
def test_full_batch_is_none(batch_size):
    sampler = MinibatchSampler(10, batch_size, [0, 1])
    assert sampler.full_batch and sampler.steps_per_epoch == 1
    assert all(sampler.at(t) is None for t in range(5))


def test_a_batch_of_one_point_less_is_a_mini_batch():
    sampler = MinibatchSampler(10, 9, [0])
    assert not sampler.full_batch and [sampler.at(t).shape for t in range(2)] == [(1, 9), (1, 1)]


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, "64", True])
def test_bad_batch_size(batch_size):
    with pytest.raises(ConfigError) as err:
        MinibatchSampler(10, batch_size, [0])
    assert str(err.value) == f"loss.batch_size={batch_size!r}: must be null (full batch) or an integer >= 1"


@pytest.mark.parametrize("seeds, shown", [([0, -1], -1), ([0.5], [0.5]), (3, 3), (["a"], ["a"])])
def test_bad_seeds(seeds, shown):
    with pytest.raises(ConfigError) as err:
        MinibatchSampler(10, 4, seeds)
    assert err.value.key == "seed" and str(err.value).startswith(f"seed={shown!r}: ")


def test_bad_n():
    with pytest.raises(ValueError, match="n_data"):
        MinibatchSampler(0, 4, [0])
