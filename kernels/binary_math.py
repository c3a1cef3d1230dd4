"""Broadcasting fp32 kernels of the math and comparison ops: Pow, Max, Min, Equal, Less,
Greater, LessOrEqual, GreaterOrEqual (comparisons write 1.0 / 0.0), and Where (a float32
condition: nonzero is true).

Every kernel takes 6-D views of the output's shape (leading 1s added, zero strides on the
broadcast axes) and writes a C-contiguous 6-D output, like kernels/activations.py's
``binary_broadcast``; an input may be the output array itself (variadic Max/Min run in
turn). NaN: Max/Min return NaN when either side is NaN (as numpy's maximum/minimum); every
comparison with NaN is false.
"""

import numpy as np
from numba import njit, prange

from .rows import unravel5

OP_POW = 0
OP_MAX = 1
OP_MIN = 2
OP_EQ = 3
OP_LT = 4
OP_GT = 5
OP_LE = 6
OP_GE = 7

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(**_OPTS)
def _apply(x, y, op):
    if op == OP_POW:
        # float64 power, rounded once: the float32 result is the correctly rounded one
        # nearly always (a float32 powf may be off by an ulp more)
        return np.float32(np.float64(x) ** np.float64(y))
    if op == OP_MAX:
        if x != x or y != y:
            return np.float32(np.nan)
        return x if x >= y else y
    if op == OP_MIN:
        if x != x or y != y:
            return np.float32(np.nan)
        return x if x <= y else y
    if op == OP_EQ:
        return np.float32(1.0) if x == y else np.float32(0.0)
    if op == OP_LT:
        return np.float32(1.0) if x < y else np.float32(0.0)
    if op == OP_LE:
        return np.float32(1.0) if x <= y else np.float32(0.0)
    if op == OP_GE:
        return np.float32(1.0) if x >= y else np.float32(0.0)
    return np.float32(1.0) if x > y else np.float32(0.0)


@njit(parallel=True, **_OPTS)
def broadcast_math(a, b, out, op):
    """out = a <op> b elementwise; op one of OP_POW, OP_MAX, OP_MIN, OP_EQ, OP_LT, OP_GT,
    OP_LE, OP_GE."""
    d0, d1, d2, d3, d4, d5 = out.shape
    rows = d0 * d1 * d2 * d3 * d4
    for r in prange(rows):
        i0, i1, i2, i3, i4 = unravel5(r, d1, d2, d3, d4)
        ar = a[i0, i1, i2, i3, i4]
        br = b[i0, i1, i2, i3, i4]
        orow = out[i0, i1, i2, i3, i4]
        for j in range(d5):
            orow[j] = _apply(ar[j], br[j], op)


@njit(parallel=True, **_OPTS)
def where(c, x, y, out):
    """out = x where c != 0 else y (c: float32 0/1, NaN counts as true like any nonzero)."""
    d0, d1, d2, d3, d4, d5 = out.shape
    rows = d0 * d1 * d2 * d3 * d4
    zero = np.float32(0.0)
    for r in prange(rows):
        i0, i1, i2, i3, i4 = unravel5(r, d1, d2, d3, d4)
        cr = c[i0, i1, i2, i3, i4]
        xr = x[i0, i1, i2, i3, i4]
        yr = y[i0, i1, i2, i3, i4]
        orow = out[i0, i1, i2, i3, i4]
        for j in range(d5):
            orow[j] = xr[j] if cr[j] != zero else yr[j]
