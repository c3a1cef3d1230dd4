"""Depthwise fp32 convolution (groups = C = M) in the channel-blocked layout NCHW16c, with
fused bias, residual and activation (the layout: kernels/conv_blocked.py).

Each output pixel of a block is one 16-lane vector: bias, plus per tap the input pixel's
16 channels times the tap's 16 weights, then residual and the clamp (act_bounds), stored
as one line; the rows, runs and border handling are kernels/window_blocked.py's. Weights
are packed as (C/16 blocks, KH, KW, 16), zero past C.

Written as LLVM vector IR: the same loops in Numba code stayed scalar (7 GF/s on layer D),
with uint64 indices too.
"""
import numpy as np
from numba import njit

from .conv_blocked import BLK, act_bounds
from .window_blocked import DEPTHWISE, window_rows

_OPTS = dict(cache=True, parallel=True, fastmath={"contract"}, error_model="numpy",
             boundscheck=False)


def pack_depthwise_blocked(w):
    """(C, 1, KH, KW) float32 -> (ceil(C/16), KH, KW, 16), zero past C."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    C, _, KH, KW = w.shape
    wp = np.empty((-(-C // BLK), KH * KW, BLK), np.float32)
    rows_to_blocked(w.reshape(C, KH * KW), wp)
    return wp.reshape(wp.shape[0], KH, KW, BLK)


@njit(cache=True)
def rows_to_blocked(src, dst):
    """dst (ceil(C/16), T, 16) <- src (C, T), channel c at [c // 16, :, c % 16], zero past
    C: a depthwise weight in the kernel's order (also each call of the stored-weight
    variant, after decoding)."""
    C, T = src.shape
    for cb in range(dst.shape[0]):
        for t in range(T):
            for j in range(BLK):
                c = cb * BLK + j
                dst[cb, t, j] = src[c, t] if c < C else np.float32(0.0)


@njit(**_OPTS)
def _dw_blocked(x, wp, bias, out, res, has_res, sh, sw, pt, pl, dh, dw, lo, hi):
    window_rows(x, wp.reshape(-1), bias, out, res, has_res, wp.shape[1], wp.shape[2], sh, sw,
                pt, pl, dh, dw, lo, hi, DEPTHWISE)


def depthwise_blocked(x, wp, w_shape, bias, res, out, sh, sw, pt, pl, dh, dw, act, lo, hi):
    """out (N, ceil(C/16), OH, OW, 16) <- act(depthwise conv(x, w) + bias (+ res)); x
    blocked (N, ceil(C/16), H, W, 16), wp from ``pack_depthwise_blocked``, bias (C,), res
    out-shaped or None."""
    has_res = res is not None and res.size > 0
    check_depthwise_blocked(x.shape, wp.shape, w_shape, out.shape,
                            res.shape if has_res else None)
    lo, hi = act_bounds(act, lo, hi)
    run_depthwise_blocked(x, wp, pad_depthwise_bias(bias, w_shape), res, out,
                          (sh, sw, pt, pl, dh, dw), lo, hi)


def check_depthwise_blocked(x_shape, wp_shape, w_shape, out_shape, res_shape=None):
    """depthwise_blocked's shape checks (a session makes them once per plan)."""
    C = int(w_shape[0])
    CB = -(-C // BLK)
    if len(x_shape) != 5 or x_shape[1] != CB or x_shape[4] != BLK:
        raise ValueError(f"depthwise_blocked: x {x_shape} is not a blocked tensor of {C} "
                         f"channels")
    if tuple(wp_shape) != (CB, int(w_shape[2]), int(w_shape[3]), BLK):
        raise ValueError(f"depthwise_blocked: packed weights {wp_shape} do not match w "
                         f"{tuple(w_shape)}")
    if len(out_shape) != 5 or tuple(out_shape[:2]) != (x_shape[0], CB) or out_shape[4] != BLK:
        raise ValueError(f"depthwise_blocked: out {out_shape} is not blocked like x {x_shape}")
    if res_shape is not None and tuple(res_shape) != tuple(out_shape):
        raise ValueError(f"depthwise_blocked: residual {res_shape} is not out's shape "
                         f"{out_shape}")


def pad_depthwise_bias(bias, w_shape):
    """bias (C,) as float32 zero-padded to whole blocks."""
    C = int(w_shape[0])
    if bias.shape != (C,):
        raise ValueError(f"depthwise_blocked: bias {bias.shape} for {C} channels")
    b = np.zeros(-(-C // BLK) * BLK, np.float32)
    b[:C] = bias
    return b


def run_depthwise_blocked(x, wp, b, res, out, window, lo, hi):
    """depthwise_blocked on checked shapes: b from pad_depthwise_bias, window (sh, sw, pt,
    pl, dh, dw), (lo, hi) from act_bounds."""
    has_res = res is not None and res.size > 0
    sh, sw, pt, pl, dh, dw = window
    _dw_blocked(x, wp, b, out, res if has_res else out, has_res, int(sh), int(sw), int(pt),
                int(pl), int(dh), int(dw), lo, hi)
