"""Run kernels with a chosen thread count, restoring the caller's Numba setting; fork guard.

GNU OpenMP (Numba's default threading layer on Linux) cannot run parallel regions in a
child forked after the parent started its thread pool (any parallel kernel, or even
``numba.get_num_threads()``, which a Session calls while preparing): Numba then kills the
child with SIGTERM. A session run in such a child raises a ``JitconvError`` saying so
instead (``check_fork``). A child forked before the parent prepared a session works, and so
do the tbb / workqueue layers and multiprocessing's "spawn" / "forkserver" start methods.
"""
import os
from contextlib import contextmanager

import numba

from jitconv.errors import JitconvError

_state = {"unsafe_child": False}


def _after_fork_in_child():
    if _gnu_openmp():
        _state["unsafe_child"] = True


def _gnu_openmp() -> bool:
    try:
        if numba.threading_layer() != "omp":
            return False
        from numba.np.ufunc import omppool
        return getattr(omppool, "openmp_vendor", "GNU") == "GNU"
    except (ValueError, ImportError):   # no pool started yet in the parent
        return False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_fork(what: str) -> None:
    """Raise instead of letting Numba SIGTERM this process (see the module docstring)."""
    if _state["unsafe_child"]:
        raise JitconvError(
            f"{what}: this process was forked from one that had already started Numba's GNU "
            f"OpenMP threads (by preparing or running a session), and they cannot run in a "
            f"forked child. Use multiprocessing.get_context('spawn') or 'forkserver', fork "
            f"before the first Session is made, or choose another Numba threading layer "
            f"(NUMBA_THREADING_LAYER=tbb or workqueue) before importing jitconv")


@contextmanager
def numba_threads(n: int):
    previous = numba.get_num_threads()
    if n != previous:
        numba.set_num_threads(n)
    try:
        yield
    finally:
        if n != previous:
            numba.set_num_threads(previous)
