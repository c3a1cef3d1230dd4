"""Layout conversions between NCHW and the channel-blocked NCHW16c (kernels/conv_blocked.py).

``to_blocked(x, y)``: x (N, C, H, W) -> y (N, ceil(C/16), H, W, 16), the channels past C
in the last block set to 0 (the blocked kernels read them against zero weights, so they
must be finite). ``from_blocked(y, x)``: back, dropping the padding channels.
Both go one (image, block, row) at a time over the threads: a row of 16 channels x W
pixels is a 16 x W transpose.
"""
import numpy as np
from numba import njit, prange

BLK = 16
_OPTS = dict(cache=True, parallel=True, error_model="numpy", boundscheck=False)


@njit(**_OPTS)
def _to_blocked(x, y):
    N, C, H, W = x.shape
    CB = y.shape[1]
    for r in prange(N * CB * H):
        n = r // (CB * H)
        cb = (r // H) % CB
        h = r % H
        for w in range(W):
            for j in range(BLK):
                c = cb * BLK + j
                y[n, cb, h, w, j] = x[n, c, h, w] if c < C else np.float32(0.0)


@njit(**_OPTS)
def _from_blocked(y, x):
    N, C, H, W = x.shape
    CB = y.shape[1]
    for r in prange(N * CB * H):
        n = r // (CB * H)
        cb = (r // H) % CB
        h = r % H
        for j in range(min(BLK, C - cb * BLK)):
            for w in range(W):
                x[n, cb * BLK + j, h, w] = y[n, cb, h, w, j]


def blocked_shape(shape, block=BLK):
    """(N, C, H, W) -> (N, ceil(C / block), H, W, block)."""
    n, c, h, w = shape
    return (n, -(-c // block), h, w, block)


def to_blocked(x, y):
    if y.shape != blocked_shape(x.shape):
        raise ValueError(f"to_blocked: {x.shape} goes to {blocked_shape(x.shape)}, got {y.shape}")
    _to_blocked(x, y)


def from_blocked(y, x):
    if y.shape != blocked_shape(x.shape):
        raise ValueError(f"from_blocked: {x.shape} comes from {blocked_shape(x.shape)}, "
                         f"got {y.shape}")
    _from_blocked(y, x)
