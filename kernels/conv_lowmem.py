"""Direct convolution with weights kept as stored: fp16 bits, int8 or int4 (memory mode "low").

Same compute and same loop as the fp32 kernel (``prange`` over output-channel pairs, each
pair run by ``conv_direct.conv_pair``: the two channels share the input loads, fused bias +
activation); only the weights differ. The fp32 panel buffer (2, K), K = C/groups*KH*KW, is
allocated in the prange body, which Numba hoists to once per thread chunk ("allocation
hoisting": each thread's chunk of pairs reuses one buffer); for each pair the two weight rows
are decoded into it and the shared compute runs on it. The fp32 weight tensor is never built:
the extra memory is (threads) x 2 x K x 4 bytes.

Weight layouts follow ``runtime.ir.Constant`` (reference decoding: ``as_float32``):

- fp16: uint16 bits of IEEE halves, (M, C/groups, KH, KW) (``float16_array.view(np.uint16)``).
- int8: q int8 (M, K), row m is output channel m flattened in C order.
- int4: q uint8 (M, (K+1)//2), value k is nibble k % 2 (low first) of byte k // 2, a 4-bit
  two's complement integer.
- scale float32 (M, nb): block b of a row covers values [b*K/nb, (b+1)*K/nb);
  zero float32 (M, nb), or shape (0, 0) for symmetric; value = q * scale + zero.

The row decoders (``rows_fp16``, ``rows_int8``, ``rows_int4``) are shared with
kernels/gemm_lowmem.py.
"""

import numpy as np
from numba import njit, prange

from .conv_direct import _fill_padded, conv_pair
from .half import half_to_float

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)

KIND_FP16 = 0
KIND_INT8 = 1
KIND_INT4 = 2

NO_ZERO = np.zeros((0, 0), np.float32)  # the "symmetric" zero argument
_NO_SCALE = np.zeros((0, 0), np.float32)


# ----------------------------------------------------------------------------- row decoders

@njit(**_OPTS)
def rows_fp16(w16, r0, nrows, dst):
    """dst[i, :K] <- float32 of the halves w16[r0 + i, :K] (uint16 bits), i < nrows."""
    K = dst.shape[1]
    for i in range(nrows):
        s = w16[r0 + i]
        d = dst[i]
        for k in range(K):
            # (the cast is a no-op for the uint16 bits; it only lets load_rows' other
            # branches type-check when this function is compiled for int8 / uint8 sources)
            d[k] = half_to_float(np.uint16(s[k]))


@njit(**_OPTS)
def _scale_rows(scale, zero, r0, nrows, dst):
    """In place: dst[i, block b] = dst[i, block b] * scale[r0+i, b] (+ zero[r0+i, b])."""
    K = dst.shape[1]
    nb = scale.shape[1]
    if nb == 0:
        return
    bk = K // nb
    has_zero = zero.shape[0] > 0
    for i in range(nrows):
        r = r0 + i
        d = dst[i]
        for b in range(nb):
            s = scale[r, b]
            db = d[b * bk:]
            if has_zero:
                z = zero[r, b]
                for k in range(bk):
                    db[k] = db[k] * s + z
            else:
                for k in range(bk):
                    db[k] = db[k] * s


@njit(**_OPTS)
def rows_int8(q, scale, zero, r0, nrows, dst):
    """dst[i, :K] <- dequantized int8 row r0 + i (q int8 (R, K), scale/zero (R, nb))."""
    K = dst.shape[1]
    nb = scale.shape[1]
    if nb == 0:
        return
    bk = K // nb
    has_zero = zero.shape[0] > 0
    for i in range(nrows):
        r = r0 + i
        qr = q[r]
        d = dst[i]
        for b in range(nb):
            s = scale[r, b]
            qb = qr[b * bk:]
            db = d[b * bk:]
            if has_zero:
                z = zero[r, b]
                for k in range(bk):
                    db[k] = np.float32(qb[k]) * s + z
            else:
                for k in range(bk):
                    db[k] = np.float32(qb[k]) * s


@njit(**_OPTS)
def rows_int4(q, scale, zero, r0, nrows, dst):
    """dst[i, :K] <- dequantized int4 row r0 + i (q uint8 (R, (K+1)//2) packed nibbles, low first)."""
    K = dst.shape[1]
    half = K // 2
    for i in range(nrows):
        qr = q[r0 + i]
        d = dst[i]
        for j in range(half):
            v = qr[j]
            # sign-extend each 4-bit two's complement nibble with int8 shifts (vectorizes
            # about 2x better than masking)
            d[2 * j] = np.float32(np.int8(v << np.uint8(4)) >> np.int8(4))
            d[2 * j + 1] = np.float32(np.int8(v) >> np.int8(4))
        if K & 1:
            d[K - 1] = np.float32(np.int8(qr[half] << np.uint8(4)) >> np.int8(4))
    _scale_rows(scale, zero, r0, nrows, dst)


@njit(**_OPTS)
def load_rows(kind, wsrc, scale, zero, r0, nrows, dst):
    """Decode rows r0 .. r0+nrows-1 of a weight source (layout by ``kind``) into dst (>=nrows, K)."""
    if kind == KIND_FP16:
        rows_fp16(wsrc, r0, nrows, dst)
    elif kind == KIND_INT8:
        rows_int8(wsrc, scale, zero, r0, nrows, dst)
    else:
        rows_int4(wsrc, scale, zero, r0, nrows, dst)


# ----------------------------------------------------------------------------- conv

@njit(parallel=True, **_OPTS)
def _conv_lowmem(kind, x, wsrc, scale, zero, KH, KW, bias, out, xpad, sh, sw, pt, pl, dh, dw,
                 groups, act, act_lo, act_hi):
    """The one driver for every storage: per output-channel pair, decode its 2 rows, run conv_pair."""
    N = x.shape[0]
    C = x.shape[1]
    M = wsrc.shape[0]
    OH = out.shape[2]
    OW = out.shape[3]
    if OH == 0 or OW == 0 or M == 0 or groups <= 0:
        return
    Cg = C // groups
    Mg = M // groups
    K = Cg * KH * KW
    lo = np.float32(act_lo)
    hi = np.float32(act_hi)
    npairs = (M + 1) // 2
    for n in range(N):
        _fill_padded(x[n], xpad, pt, pl)
        for mp in prange(npairs):
            pan = np.empty((2, K), np.float32)  # hoisted by Numba: one per thread chunk
            pan4 = pan.reshape((2, Cg, KH, KW))
            m0 = 2 * mp
            m1 = min(m0 + 1, M - 1)
            load_rows(kind, wsrc, scale, zero, m0, m1 - m0 + 1, pan)
            conv_pair(xpad, pan4[0], pan4[m1 - m0], m0 + 1 < M, (m0 // Mg) * Cg,
                      (m1 // Mg) * Cg, out[n, m0], out[n, m1], bias[m0], bias[m1],
                      sh, sw, dh, dw, act, lo, hi)


@njit(**_OPTS)
def conv2d_fp16w(x, w16, bias, out, xpad, sh, sw, pt, pl, dh, dw, groups, act, act_lo, act_hi):
    """As conv2d_direct, with w16 uint16 (M, C/groups, KH, KW): the bits of fp16 weights."""
    M, Cg, KH, KW = w16.shape
    _conv_lowmem(KIND_FP16, x, w16.reshape((M, Cg * KH * KW)), _NO_SCALE, NO_ZERO, KH, KW,
                 bias, out, xpad, sh, sw, pt, pl, dh, dw, groups, act, act_lo, act_hi)


@njit(**_OPTS)
def conv2d_int8w(x, q, scale, zero, KH, KW, bias, out, xpad, sh, sw, pt, pl, dh, dw, groups,
                 act, act_lo, act_hi):
    """As conv2d_direct, with int8 weights q (M, C/groups*KH*KW), scale (M, nb), zero (M, nb) or (0, 0)."""
    _conv_lowmem(KIND_INT8, x, q, scale, zero, KH, KW, bias, out, xpad, sh, sw, pt, pl, dh, dw,
                 groups, act, act_lo, act_hi)


@njit(**_OPTS)
def conv2d_int4w(x, q, scale, zero, KH, KW, bias, out, xpad, sh, sw, pt, pl, dh, dw, groups,
                 act, act_lo, act_hi):
    """As conv2d_int8w, with q uint8 (M, (K+1)//2): packed 4-bit values, low nibble first."""
    _conv_lowmem(KIND_INT4, x, q, scale, zero, KH, KW, bias, out, xpad, sh, sw, pt, pl, dh, dw,
                 groups, act, act_lo, act_hi)
