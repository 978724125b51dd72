"""A descent's BLAS threads (gdexp/core/threads.py): one by default, as asked otherwise, restored after."""
from __future__ import annotations

import pytest

from gdexp.specs import batch
from gdexp.core.threads import LIBRARY_ENV, THREADS_ENV, descent_threads


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    (blas,) = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} or {None}
    return blas


@pytest.fixture
def spied(compose, monkeypatch):
    """descend(overrides) descends one run; returns numpy's BLAS threads seen during its descent."""
    from gdexp.specs.run_spec import build_spec

    for name in (*LIBRARY_ENV, THREADS_ENV):
        monkeypatch.delenv(name, raising=False)
    seen, real = [], batch.descend_batch

    def spy(runs, **kwargs):
        seen.append(_blas_threads())
        return real(runs, **kwargs)

    monkeypatch.setattr(batch, "descend_batch", spy)

    def descend(*overrides):
        (result,) = batch.execute([build_spec(compose("stopping.maxiter=5", *overrides))])
        assert result.iterations == 5
        return seen[-1]

    return descend


def test_a_descent_runs_with_one_blas_thread_and_restores_the_pool(spied):
    before = _blas_threads()
    assert spied() == 1
    assert _blas_threads() == before


def test_the_thread_count_can_be_asked_for_or_left_to_the_library(spied, monkeypatch):
    before = _blas_threads()
    monkeypatch.setenv(THREADS_ENV, "2")
    assert spied() == 2
    monkeypatch.delenv(THREADS_ENV)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # the user's own setting for the library: left alone
    assert descent_threads() is None and spied() == before


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_is_refused_in_one_line(value, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(ValueError, match=f"^{THREADS_ENV}='{value}': not a positive number of threads$"):
        descent_threads()
