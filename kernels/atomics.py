"""Atomic operations on int64 arrays for CPU njit code (work counters shared by threads).

The kernels hand out work from a counter in memory instead of a fixed share per thread: on
a machine where another process takes a core for a while, a thread that starts late then
simply takes fewer pieces.
"""
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def fetch_add(typingctx, arr, idx, val):
    """Atomically arr[idx] += val (int64 array); returns the old value."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        p = cgutils.gep(builder, a.data, args[1])
        v = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", p, v, "monotonic")

    return types.int64(arr, idx, val), codegen


@intrinsic
def fetch_add_release(typingctx, arr, idx, val):
    """As fetch_add, with release ordering: writes before it are seen by an acquire load."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        p = cgutils.gep(builder, a.data, args[1])
        v = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", p, v, "release")

    return types.int64(arr, idx, val), codegen


@intrinsic
def load_acquire(typingctx, arr, idx):
    """arr[idx] (int64 array), an atomic load with acquire ordering."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        p = cgutils.gep(builder, a.data, args[1])
        return builder.load_atomic(p, "acquire", 8)

    return types.int64(arr, idx), codegen
