"""Run kernels with a chosen thread count, restoring the caller's Numba setting."""
from contextlib import contextmanager

import numba


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
