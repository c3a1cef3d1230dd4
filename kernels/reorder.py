"""Layout conversions between NCHW and the channel-blocked NCHW16c (kernels/conv_blocked.py).

``to_blocked(x, y)``: x (N, C, H, W) -> y (N, ceil(C/16), H, W, 16), the channels past C
in the last block set to 0 (the blocked kernels read them against zero weights, so they
must be finite). ``from_blocked(y, x)``: back, dropping the padding channels.
Both go one (image, block, row) at a time over the threads: a row of 16 channels x W
pixels is a 16 x W transpose, done 16 x 16 at a time in registers (stack.transpose16);
the last W % 16 pixels and a partial last block of channels one by one.
"""
import numpy as np
from numba import njit, prange

from .stack import copy_masked16, stack_f32, transpose16

BLK = 16
_TILE = 256     # a 16 x 16 block, staged for transpose16
_OPTS = dict(cache=True, parallel=True, error_model="numpy", boundscheck=False)


@njit(inline="always", **_OPTS)
def _row(r, C, CB, H, W):
    """Row r of the (image, block, row) space: n, cb, h and where the row starts in the
    NCHW tensor (channel 16 cb) and in the blocked one."""
    n = r // (CB * H)
    cb = (r // H) % CB
    h = r % H
    return n, cb, h, ((n * C + cb * BLK) * H + h) * W, ((n * CB + cb) * H + h) * W * BLK


@njit(**_OPTS)
def _to_blocked(x, y):
    N, C, H, W = x.shape
    CB = y.shape[1]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    for r in prange(N * CB * H):
        n, cb, h, nchw, blocked = _row(r, C, CB, H, W)
        c0 = cb * BLK
        src, dst = nchw, blocked
        w0 = 0
        if c0 + BLK <= C:
            # 16 channels x 16 pixels: 16 rows read, turned around in registers
            while w0 + BLK <= W:
                transpose16(xf, src + w0, H * W, yf, dst + w0 * BLK)
                w0 += BLK
        for w in range(w0, W):
            for j in range(BLK):
                c = c0 + j
                y[n, cb, h, w, j] = x[n, c, h, w] if c < C else np.float32(0.0)


@njit(**_OPTS)
def _from_blocked(y, x):
    N, C, H, W = x.shape
    CB = y.shape[1]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    for r in prange(N * CB * H):
        n, cb, h, nchw, blocked = _row(r, C, CB, H, W)
        c0 = cb * BLK
        nc = min(BLK, C - c0)
        src, dst = blocked, nchw
        tb = stack_f32(_TILE)
        w0 = 0
        while w0 + BLK <= W:
            transpose16(yf, src + w0 * BLK, BLK, tb, 0)     # tb[channel * 16 + pixel]
            for j in range(nc):
                copy_masked16(tb, j * BLK, xf, dst + j * H * W + w0, BLK)
            w0 += BLK
        for j in range(nc):
            for w in range(w0, W):
                x[n, c0 + j, h, w] = y[n, cb, h, w, j]


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
