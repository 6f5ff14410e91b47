"""How many CPU threads torch and the BLAS behind numpy/scipy use.

The models here are small: a step is many short operations, and threads that wait for
each other spin while the operating system runs another process. On a busy machine that
turns milliseconds into seconds (measured: 5.5 s per step with 2 threads on 2 shared
cores against 0.19 s with one), so the default leaves headroom, and the command line
makes waiting threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``, unless set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

MAX_DEFAULT_THREADS = 4


def available_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> int:
    """Half the CPUs this process may use (about its physical cores where each has two
    hardware threads), at least 1 and at most 4: small models gain little from more, and
    a machine shared with other jobs keeps a core for them."""
    return max(1, min(MAX_DEFAULT_THREADS, available_cpus() // 2))


def passive_waiting() -> None:
    """Let OpenMP threads sleep while they wait (unless the user chose otherwise); takes
    effect only before torch is first imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads(n: int | None = None) -> int:
    """Use ``n`` threads (default: :func:`default_threads`) in torch and, when threadpoolctl
    is installed, in numpy/scipy's BLAS; returns the number set."""
    import torch

    n = default_threads() if n is None else int(n)
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return n
    threadpool_limits(n)
    return n


@contextmanager
def limited_threads(n: int | None = None) -> Iterator[int]:
    """``n`` torch (and BLAS) threads inside the block (default: :func:`default_threads`),
    the previous settings restored after it; yields the number used."""
    import torch

    n = default_threads() if n is None else int(n)
    before = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = None
    else:  # first: it also limits torch's OpenMP pool and restores what it found
        limits = threadpool_limits(n)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        if limits is not None:
            limits.restore_original_limits()
        torch.set_num_threads(before)


@contextmanager
def one_thread() -> Iterator[None]:
    """One torch (and BLAS) thread inside the block, as every benchmark run uses, restored
    after it."""
    with limited_threads(1):
        yield
