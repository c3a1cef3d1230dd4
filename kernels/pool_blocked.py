"""Max pooling on channel-blocked NCHW16c tensors (the layout: kernels/conv_blocked.py):
each output pixel of a block is the lane-wise max of its window's 16-channel vectors, taps
outside the image left out (so padding never wins); kernels/window_blocked.py's runs and
borders.
"""
import numpy as np
from numba import njit

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
