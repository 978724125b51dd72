"""How many threads numpy's BLAS (and OpenMP) may use while runs descend.

OpenBLAS starts one thread per core and its threads spin while they wait for
work. A descent makes many small matrix products (a sweep's runs are rows of
one batch; a sweep's parallelism is its batch and its launcher's processes), so
extra BLAS threads buy little on a quiet machine; on a busy one they compete
with each other and with every other process for the cores: one MLP run on a
2-core machine with two busy processes beside it was 10-20x slower than on a
quiet one, where losing two thirds of the CPU explains 3x
(benchmarks/bench_busy.py). So a descent runs with one BLAS thread, unless
asked otherwise.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

# Thread counts a user may have set for the libraries themselves: then they are left as set.
LIBRARY_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

THREADS_ENV = "GDEXP_BLAS_THREADS"  # BLAS (and OpenMP) threads per descending process


def descent_threads() -> int | None:
    """BLAS/OpenMP threads a descent uses: GDEXP_BLAS_THREADS where set (a positive integer);
    None (the libraries' own choice) where the user set one of LIBRARY_ENV; else 1.

    Raises:
        ValueError: GDEXP_BLAS_THREADS is not a positive integer (one line naming it).
    """
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{THREADS_ENV}={text!r}: not a positive number of threads")
        return int(text)
    if any(os.environ.get(name, "").strip() for name in LIBRARY_ENV):
        return None
    return 1


@contextmanager
def limited_threads(threads: int | None):
    """`with limited_threads(descent_threads()):` BLAS and OpenMP pools held at `threads`
    (threadpoolctl; None leaves them as they are), restored on exit."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield
