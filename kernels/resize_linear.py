"""Linear / cubic resize from per-axis tables: output position o of an axis reads input
indices idx[o, :K] with weights w[o, :K] (edge clamping, exclude_outside and antialias
are already in the tables); mask[o] != 0 marks positions outside the crop box
(tf_crop_and_resize), which get the extrapolation value. Float64 accumulation."""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(parallel=True, **_OPTS)
def resize_hw(x, out, iy, wy, my, ix, wx, mx, extrap):
    """x: (P, H, W) fp32; out: (P, OH, OW). Separable over the last two axes: for each
    output row, the weighted input rows are summed first, then sampled along W."""
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    KY, KX = iy.shape[1], ix.shape[1]
    e32 = np.float32(extrap)
    for p in prange(P):
        row = np.empty(W, np.float64)
        for oy in range(OH):
            orow = out[p, oy]
            if my[oy]:
                for ox in range(OW):
                    orow[ox] = e32
                continue
            for j in range(W):
                row[j] = 0.0
            for k in range(KY):
                wk = wy[oy, k]
                src = x[p, iy[oy, k]]
                for j in range(W):
                    row[j] += wk * src[j]
            for ox in range(OW):
                if mx[ox]:
                    orow[ox] = e32
                    continue
                acc = 0.0
                for k in range(KX):
                    acc += wx[ox, k] * row[ix[ox, k]]
                orow[ox] = np.float32(acc)


@njit(parallel=True, **_OPTS)
def resize_axis(x, out, idx, w, mask, extrap):
    """x: (A, D, B) fp32; out: (A, O, B). One axis (the middle one) resized."""
    A, D, B = x.shape
    O = out.shape[1]
    K = idx.shape[1]
    e32 = np.float32(extrap)
    for t in prange(A * O):
        a = t // O
        o = t % O
        orow = out[a, o]
        if mask[o]:
            for b in range(B):
                orow[b] = e32
            continue
        for b in range(B):
            acc = 0.0
            for k in range(K):
                acc += w[o, k] * x[a, idx[o, k], b]
            orow[b] = np.float32(acc)
