"""Linear quantization kernels: QuantizeLinear, DequantizeLinear and the fused pair.

Integers are float32 values here (jitconv's run-time tensors are float32). Every kernel
takes its tensor as a contiguous (outer, channels, inner) view: per tensor, channels is 1
and the scale and zero point have one value; per axis, channels is the quantized axis and
they have one value per channel (``step`` 1; per tensor ``step`` 0).

The division x / scale is float32 and rounds half to even (np.rint), as ONNX defines it;
fastmath is limited to contraction, so nothing replaces the division by a reciprocal.
"""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(parallel=True, **_OPTS)
def quantize(x, scale, zero, step, out, qmin, qmax, dequant):
    """out = clip(rint(x / scale) + zero, qmin, qmax); with ``dequant`` that value's
    (q - zero) * scale. x, out: (outer, channels, inner) float32."""
    outer, chans, inner = x.shape
    lo = np.float32(qmin)
    hi = np.float32(qmax)
    for r in prange(outer * chans):
        o = r // chans
        c = r - o * chans
        s = scale[c * step]
        z = zero[c * step]
        for i in range(inner):
            q = np.rint(np.float32(x[o, c, i] / s)) + z
            if q < lo:
                q = lo
            elif q > hi:
                q = hi
            elif q != q:              # NaN input
                q = z
            out[o, c, i] = (q - z) * s if dequant else q


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
