"""AveragePool with dilations (ONNX opset 19): a direct tap loop, fp32 in/out."""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(parallel=True, **_OPTS)
def avg_pool2d_dilated(x, out, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, count_include_pad):
    """x (N,C,H,W), out (N,C,OH,OW) fp32 C-contiguous. Taps at (oh*sh - pt + i*dh,
    ow*sw - pl + j*dw); the divisor counts taps on input cells, or with count_include_pad
    taps inside [-pt, H+pb) x [-pl, W+pr) (never cells past the end padding)."""
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    if count_include_pad != 0:
        hlo, hhi, wlo, whi = -pt, H + pb, -pl, W + pr
    else:
        hlo, hhi, wlo, whi = 0, H, 0, W
    for p in prange(N * C):
        n = p // C
        c = p % C
        xp = x[n, c]
        for oh in range(OH):
            for ow in range(OW):
                s = np.float32(0.0)
                cnt = 0
                for i in range(kh):
                    ih = oh * sh - pt + i * dh
                    if ih < hlo or ih >= hhi:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pl + j * dw
                        if iw < wlo or iw >= whi:
                            continue
                        cnt += 1
                        if 0 <= ih < H and 0 <= iw < W:
                            s += xp[ih, iw]
                out[n, c, oh, ow] = s / np.float32(cnt)
