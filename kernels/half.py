"""IEEE half (fp16) -> float32 inside CPU njit code.

Numba's CPU target has no float16 type, so fp16 weights are handed to kernels as a
``uint16`` view of their bits. ``half_to_float`` converts one such value with LLVM's
``fpext half -> float`` (bitcast i16 -> half first): exact for all 65,536 patterns
(NaN stays NaN) and vectorized by LLVM into ``vcvtph2ps`` where F16C exists.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def half_to_float(typingctx, bits):
    """float32 value of the IEEE half whose bits are ``bits`` (a 16-bit integer)."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 16:
        return None
    sig = types.float32(bits)

    def codegen(context, builder, signature, args):
        h = builder.bitcast(args[0], ir.HalfType())
        return builder.fpext(h, ir.FloatType())

    return sig, codegen


@njit(cache=True, boundscheck=False)
def fp16_bits_to_f32(src, dst):
    """dst[i] = float32 of the half with bits src[i]; src uint16 (n,), dst float32 (n,)."""
    for i in range(src.shape[0]):
        dst[i] = half_to_float(src[i])


def fp16_to_f32(a: np.ndarray) -> np.ndarray:
    """Convenience for Python callers: float16 (or its uint16 bits) array -> float32 array."""
    bits = np.ascontiguousarray(a).view(np.uint16)
    out = np.empty(bits.shape, np.float32)
    fp16_bits_to_f32(bits.reshape(-1), out.reshape(-1))
    return out
