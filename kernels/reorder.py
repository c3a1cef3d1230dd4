"""Layout conversions between NCHW and the channel-blocked NCHW16c (kernels/conv_blocked.py).

``to_blocked(x, y)``: x (N, C, H, W) -> y (N, ceil(C/16), H, W, 16), the channels past C
in the last block set to 0 (the blocked kernels read them against zero weights, so they
must be finite). ``from_blocked(y, x)``: back, dropping the padding channels.
Both go one (image, block, chunk of PCH pixels of the flattened H*W plane) at a time over
the threads: 16 channels x 16 pixels are transposed in registers (stack.transpose16);
a partial last block of channels goes through a staged tile with zero rows, and the
plane's last H*W % 16 pixels go one by one.
"""
import numpy as np
from numba import njit, prange

from .stack import copy_masked16, stack_f32, transpose16

BLK = 16
_TILE = 256     # a 16 x 16 block, staged for transpose16
_OPTS = dict(cache=True, parallel=True, error_model="numpy", boundscheck=False)


# pixels per work item: a channel plane is one contiguous run of H*W pixels in both
# layouts, so an item is 16 transposes of 16 pixels whatever the row width (rows of 7 or
# 14 pixels, the small maps of a network's end, no longer go one value at a time)
PCH = 256


@njit(inline="always", **_OPTS)
def _item(r, C, CB, P, nitem):
    """Work item r of the (image, block, pixel chunk) space: n, cb, its pixels [p0, p1)
    and where channel 16 cb of image n starts in the NCHW tensor and in the blocked one."""
    n = r // (CB * nitem)
    rem = r - n * CB * nitem
    cb = rem // nitem
    p0 = (rem - cb * nitem) * PCH
    return n, cb, p0, min(P, p0 + PCH), (n * C + cb * BLK) * P, (n * CB + cb) * P * BLK


@njit(**_OPTS)
def _to_blocked(x, y):
    N, C, H, W = x.shape
    CB = y.shape[1]
    P = H * W
    nitem = (P + PCH - 1) // PCH
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    for r in prange(N * CB * nitem):
        n, cb, p0, p1, nchw, blocked = _item(r, C, CB, P, nitem)
        c0 = cb * BLK
        p = p0
        if c0 + BLK <= C:
            # 16 channels x 16 pixels: 16 rows read, turned around in registers
            while p + BLK <= p1:
                transpose16(xf, nchw + p, P, yf, blocked + p * BLK)
                p += BLK
        else:
            # a partial last block: its rows staged with zero rows below them
            nc = C - c0
            tb = stack_f32(_TILE)
            for i in range(nc * BLK, _TILE):
                tb[i] = np.float32(0.0)
            while p + BLK <= p1:
                for j in range(nc):
                    copy_masked16(xf, nchw + j * P + p, tb, j * BLK, BLK)
                transpose16(tb, 0, BLK, yf, blocked + p * BLK)
                p += BLK
        for q in range(p, p1):
            for j in range(BLK):
                yf[blocked + q * BLK + j] = xf[nchw + j * P + q] if c0 + j < C \
                    else np.float32(0.0)


@njit(**_OPTS)
def _from_blocked(y, x):
    N, C, H, W = x.shape
    CB = y.shape[1]
    P = H * W
    nitem = (P + PCH - 1) // PCH
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    for r in prange(N * CB * nitem):
        n, cb, p0, p1, nchw, blocked = _item(r, C, CB, P, nitem)
        nc = min(BLK, C - cb * BLK)
        tb = stack_f32(_TILE)
        p = p0
        while p + BLK <= p1:
            transpose16(yf, blocked + p * BLK, BLK, tb, 0)     # tb[channel * 16 + pixel]
            for j in range(nc):
                copy_masked16(tb, j * BLK, xf, nchw + j * P + p, BLK)
            p += BLK
        for j in range(nc):
            for q in range(p, p1):
                xf[nchw + j * P + q] = yf[blocked + q * BLK + j]


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
