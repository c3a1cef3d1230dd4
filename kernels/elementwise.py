"""Elementwise fp32 kernels (relu, clip, add, mul, broadcast binary ops, per-channel affine).

NaN semantics follow numpy: relu/clip pass NaN through (comparisons with NaN are false).
"""

import numpy as np
from numba import njit, prange

OP_ADD = 0
OP_MUL = 1

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(**_OPTS)
def relu(x, out):
    """x, out: 1-D contiguous fp32, same length. out = max(x, 0)."""
    zero = np.float32(0.0)
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = zero if v < zero else v


@njit(**_OPTS)
def clip(x, out, lo, hi):
    """x, out: 1-D contiguous fp32, same length. out = min(max(x, lo), hi)."""
    flo = np.float32(lo)
    fhi = np.float32(hi)
    for i in range(x.shape[0]):
        v = x[i]
        if v < flo:
            v = flo
        if v > fhi:
            v = fhi
        out[i] = v


@njit(**_OPTS)
def add_same(a, b, out):
    """a, b, out: 1-D contiguous fp32, same length. out = a + b."""
    for i in range(out.shape[0]):
        out[i] = a[i] + b[i]


@njit(**_OPTS)
def mul_same(a, b, out):
    """a, b, out: 1-D contiguous fp32, same length. out = a * b."""
    for i in range(out.shape[0]):
        out[i] = a[i] * b[i]


@njit(parallel=True, **_OPTS)
def binary_broadcast(a, b, out, op):
    """a, b: 6-D fp32 views (any strides, zero strides allowed, may be read-only) of out's shape; out: 6-D C-contiguous. op 0 add, 1 mul."""
    d0, d1, d2, d3, d4, d5 = out.shape
    rows = d0 * d1 * d2 * d3 * d4
    for r in prange(rows):
        i4 = r % d4
        q3 = r // d4
        i3 = q3 % d3
        q2 = q3 // d3
        i2 = q2 % d2
        q1 = q2 // d2
        i1 = q1 % d1
        i0 = q1 // d1
        ar = a[i0, i1, i2, i3, i4]
        br = b[i0, i1, i2, i3, i4]
        orow = out[i0, i1, i2, i3, i4]
        if op == OP_ADD:
            for j in range(d5):
                orow[j] = ar[j] + br[j]
        else:
            for j in range(d5):
                orow[j] = ar[j] * br[j]


@njit(parallel=True, **_OPTS)
def channel_affine(x, scale, shift, out):
    """x, out: (N, C, S) fp32 C-contiguous; scale, shift: (C,). out[n,c,s] = x[n,c,s]*scale[c] + shift[c]."""
    N, C, S = x.shape
    for r in prange(N * C):
        n = r // C
        c = r % C
        sc = scale[c]
        sf = shift[c]
        xr = x[n, c]
        orow = out[n, c]
        for s in range(S):
            orow[s] = xr[s] * sc + sf
