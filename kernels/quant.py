"""Linear quantization kernels: QuantizeLinear, DequantizeLinear and the fused pair.

Integers are float32 values here (jitconv's run-time tensors are float32). Every kernel
takes its tensor as a contiguous (outer, channels, inner) view: per tensor, channels is 1
and the scale and zero point have one value; per axis, channels is the quantized axis and
they have one value per channel (``step`` 1; per tensor ``step`` 0).

The division x / scale is float32 and rounds half to even, as ONNX defines it; fastmath
is limited to contraction, so nothing replaces the division by a reciprocal or folds the
rounding trick's add and subtract away.
"""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


# 1.5 * 2^23: for |v| <= 2^22, (v + ROUNDER) - ROUNDER is v rounded half to even in
# float32 arithmetic (the sum lies where float32's spacing is 1); a plain add and subtract
# that vectorize, where np.rint is a call per element
ROUNDER = np.float32(12582912.0)


@njit(parallel=True, **_OPTS)
def quantize(x, scale, zero, step, out, qmin, qmax, dequant):
    """out = clip(rint(x / scale) + zero, qmin, qmax); with ``dequant`` that value's
    (q - zero) * scale. x, out: (outer, channels, inner) float32. NaN gives the zero
    point. Before rounding, x / scale is clamped one past the range of q - zero, which
    changes no result and keeps it inside the rounding trick's range."""
    outer, chans, inner = x.shape
    lo = np.float32(qmin)
    hi = np.float32(qmax)
    big = ROUNDER
    for r in prange(outer * chans):
        o = r // chans
        c = r - o * chans
        s = scale[c * step]
        z = zero[c * step]
        vlo = lo - z - np.float32(1.0)
        vhi = hi - z + np.float32(1.0)
        if dequant:
            for i in range(inner):
                v = x[o, c, i] / s
                v = v if v == v else np.float32(0.0)
                v = min(max(v, vlo), vhi)
                q = ((v + big) - big) + z
                q = min(max(q, lo), hi)
                out[o, c, i] = (q - z) * s
        else:
            for i in range(inner):
                v = x[o, c, i] / s
                v = v if v == v else np.float32(0.0)
                v = min(max(v, vlo), vhi)
                q = ((v + big) - big) + z
                out[o, c, i] = min(max(q, lo), hi)


@njit(parallel=True, **_OPTS)
def dequantize(x, scale, zero, step, out):
    """out = (x - zero) * scale. x, out: (outer, channels, inner) float32."""
    outer, chans, inner = x.shape
    for r in prange(outer * chans):
        o = r // chans
        c = r - o * chans
        s = scale[c * step]
        z = zero[c * step]
        for i in range(inner):
            out[o, c, i] = (x[o, c, i] - z) * s
