"""Atomic operations on int64 arrays for CPU njit code (work counters shared by threads).

The kernels hand out work from a counter in memory instead of a fixed share per thread: on
a machine where another process takes a core for a while, a thread that starts late then
simply takes fewer pieces.
"""
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

GRABS = 6   # runs per thread when the work divides evenly: the tail a late thread leaves is small


def _is_int64_array(arr):
    return isinstance(arr, types.Array) and arr.dtype == types.int64


def _fetch_add_typer(ordering):
    """The typing function of an atomic arr[idx] += val with this memory ordering."""
    def typer(typingctx, arr, idx, val):
        if not _is_int64_array(arr):
            return None

        def codegen(context, builder, sig, args):
            a = context.make_array(sig.args[0])(context, builder, args[0])
            p = cgutils.gep(builder, a.data, args[1])
            v = context.cast(builder, args[2], sig.args[2], types.int64)
            return builder.atomic_rmw("add", p, v, ordering)

        return types.int64(arr, idx, val), codegen
    return typer


fetch_add = intrinsic(_fetch_add_typer("monotonic"))
fetch_add.__doc__ = "Atomically arr[idx] += val (int64 array); returns the old value."

fetch_add_release = intrinsic(_fetch_add_typer("release"))
fetch_add_release.__doc__ = ("As fetch_add, with release ordering: writes before it are seen "
                             "by an acquire load.")


@intrinsic
def load_acquire(typingctx, arr, idx):
    """arr[idx] (int64 array), an atomic load with acquire ordering."""
    if not _is_int64_array(arr):
        return None

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        p = cgutils.gep(builder, a.data, args[1])
        return builder.load_atomic(p, "acquire", 8)

    return types.int64(arr, idx), codegen


@njit(cache=True)
def grab_size(units, threads, most):
    """Units per fetch: about GRABS fetches a thread, at least 1, at most ``most``."""
    return max(1, min(most, units // (GRABS * threads)))


# Job ranges with stealing (``claim``): thread t first takes the jobs of its own share of
# [0, njobs) front to back, then takes the others' from their back ends. Each share is one
# int64 word, next job (low 32 bits) and end (high 32 bits), changed by atomic adds only,
# so a claim is one fetch_add on one's own word (or on a victim's) and two threads never
# get the same job. Consecutive ops thus give each thread the same part of the image
# (its input was written by the same core, in its own cache), while a thread that starts
# late or is descheduled still leaves nothing undone.
_LOW = (1 << 32) - 1


@njit(cache=True)
def init_ranges(words, njobs, nthreads):
    """words[t] = thread t's share [t njobs / T, (t + 1) njobs / T), T = nthreads."""
    for t in range(nthreads):
        words[t] = (t * njobs // nthreads) | (((t + 1) * njobs // nthreads) << 32)


@njit(inline="always")
def claim(words, t, nthreads):
    """The next job for thread t (words from init_ranges), or -1 when none is left."""
    old = fetch_add(words, t, 1)
    lo, hi = old & _LOW, old >> 32
    if lo < hi:
        return lo
    for k in range(1, nthreads):
        v = (t + k) % nthreads
        old = fetch_add(words, v, -(1 << 32))
        lo, hi = old & _LOW, old >> 32
        if lo < hi:
            return hi - 1
    return -1
