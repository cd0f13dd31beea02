"""How many threads numpy's BLAS may use while ppokit trains: by default one per process.

The networks of classic control are far too small to split: a second OpenBLAS thread only spins
(CartPole-v1: 1.9 CPU-seconds per wall-second, no faster than with one thread). Processes, not
threads, should use the cores. threadpoolctl sets the limit for the duration of a block and puts the
library's own setting back afterwards, so a user's process keeps its settings outside ppokit.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext


def blas_thread_limit(limit: int) -> AbstractContextManager:
    """A context in which numpy's BLAS uses at most ``limit`` threads; 0 leaves it alone."""
    if limit <= 0:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=limit, user_api="blas")
