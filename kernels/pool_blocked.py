"""Max pooling on channel-blocked NCHW16c tensors (the layout: kernels/conv_blocked.py):
each output pixel of a block is the lane-wise max of its window's 16-channel vectors, taps
outside the image left out (so padding never wins); kernels/window_blocked.py's runs and
borders.
"""
import numpy as np
from numba import njit, prange

from .conv_blocked import BLK
from .window_blocked import MAX, window_rows

_OPTS = dict(cache=True, parallel=True, error_model="numpy", boundscheck=False)
_NONE = np.zeros(BLK, np.float32)


@njit(**_OPTS)
def _max_blocked(x, out, KH, KW, sh, sw, pt, pl, dh, dw):
    inf = np.float32(np.inf)
    window_rows(x, _NONE, _NONE, out, out, False, KH, KW, sh, sw, pt, pl, dh, dw, -inf, inf,
                MAX)


def max_pool_blocked(x, out, kh, kw, sh, sw, pt, pl, dh, dw):
    """out (N, CB, OH, OW, 16) <- max pooling of blocked x (N, CB, H, W, 16)."""
    if x.ndim != 5 or x.shape[4] != BLK or out.ndim != 5 or out.shape[:2] != x.shape[:2] \
            or out.shape[4] != BLK:
        raise ValueError(f"max_pool_blocked: x {x.shape} and out {out.shape} are not "
                         f"blocked alike")
    _max_blocked(x, out, int(kh), int(kw), int(sh), int(sw), int(pt), int(pl), int(dh),
                 int(dw))


@njit(**_OPTS)
def _gap_blocked(x, out):
    N, CB, H, W, _ = x.shape
    C = out.shape[1]
    S = H * W
    for r in prange(N * CB):
        n = r // CB
        cb = r - n * CB
        xr = x[n, cb].reshape(S, BLK)
        acc = np.zeros(BLK, np.float64)
        for i in range(S):
            for j in range(BLK):
                acc[j] += xr[i, j]
        for j in range(min(BLK, C - cb * BLK)):
            out[n, cb * BLK + j] = np.float32(acc[j] / S)


def global_avg_pool_blocked(x, out):
    """out (N, C) <- the mean over H, W of blocked x (N, ceil(C/16), H, W, 16), channel by
    channel (float64 sums, as kernels/pooling.global_avg_pool): a blocked conv chain's
    GlobalAveragePool reads the blocks and writes NCHW, no conversion between."""
    if x.ndim != 5 or x.shape[4] != BLK or out.ndim != 2 or out.shape[0] != x.shape[0] or \
            -(-out.shape[1] // BLK) != x.shape[1]:
        raise ValueError(f"global_avg_pool_blocked: x {x.shape} is not blocked for out "
                         f"{out.shape}")
    if x.shape[2] * x.shape[3] == 0:
        out[...] = np.nan      # the mean of nothing, as NumPy's
        return
    _gap_blocked(np.ascontiguousarray(x), out)
