"""Elementwise fp32 kernels (relu, clip, same-shape add and mul, per-channel affine).

Broadcasting binary ops are kernels/activations.py's binary_broadcast.

NaN semantics follow numpy: relu/clip pass NaN through (comparisons with NaN are false).
"""

import numpy as np
from numba import njit, prange

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
