"""conv2d_blocked's weights kept as stored (fp16, int8, int4): the low-memory loader.

``pack_blocked`` (kernels/conv_blocked.py) orders fp32 weights as rows of one chunk's
16 nb output channels: row r of a chunk is one (tap, input channel) pair. Here the same
permutation is applied to the stored values themselves (fp16 bits, int8 values, int4
values re-packed two to a byte in the new order, low nibble first), so a session in
memory=low holds the bytes of the stored weights (plus zero padding up to whole blocks of
16 channels), and the kernel decodes the rows it is about to use into a per-thread fp32
buffer: one pass of up to 256 rows (64 KiB) in a tap loop, or a whole chunk for the
one-call paths (a 1x1 conv's single pass, an NCHW stem). A pass is decoded once per band
of up to 16 tiles, so the decode is a few percent of the FMAs.

The kernel sees every kind as bytes (``wq`` uint8) and ``kind`` as a run-time value, so
one compiled kernel serves all of them.

int8 / int4: value = q * scale[block, m] (+ zero[block, m]), the block of row r being
that of its (c, kh, kw) position in the Constant's row order (computed per row from
``rows``); ``scale_t`` and ``zero_t`` are the Constant's (M, nblocks) arrays transposed to
(nblocks, Mp) and padded with zeros to whole blocks of 16 channels, so a row's scales are
contiguous and the padding channels decode to 0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .half import half_to_float

KIND_F32, KIND_FP16, KIND_INT8, KIND_INT4 = 0, 1, 2, 3
BLK = 16
_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


class StoredBlocked(NamedTuple):
    """One conv's weights for conv2d_blocked in their stored form."""
    kind: int
    wq: np.ndarray        # the stored values' bytes (uint8) in pack_blocked's order, flat
    scale_t: np.ndarray   # (nblocks, Mp) float32, zero past M; (0, 0) for fp16
    zero_t: np.ndarray    # the same, or (0, 0) when symmetric / fp16
    rows: tuple           # (C, Cp, KH, KW, block_k, blocked order): a row's block, computed

    def arrays(self):
        return tuple(a for a in (self.wq, self.scale_t, self.zero_t) if a.size)


NO_F32 = np.zeros(0, np.float32)
NO_Q = np.zeros(0, np.uint8)
NO_TABLE = np.zeros((0, 0), np.float32)
FP32 = StoredBlocked(KIND_F32, NO_Q, NO_TABLE, NO_TABLE, (0, 0, 0, 0, 0, 0))


def _int4_values(const):
    """The int4 Constant's values as int8 (M, C, KH, KW): its nibbles unpacked."""
    M = int(const.shape[0])
    K = int(np.prod(const.shape[1:]))
    packed = np.asarray(const.data).reshape(M, -1)
    q = np.empty((M, 2 * packed.shape[1]), np.int8)
    q[:, 0::2] = (packed << 4).view(np.int8) >> 4
    q[:, 1::2] = packed.view(np.int8) >> 4
    return q[:, :K].reshape(const.shape)


def pack_stored_blocked(const, ci, pack):
    """StoredBlocked of a kept fp16 / int8 / int4 Constant (M, C, KH, KW), rows for an
    input in blocks of ``ci`` channels; ``pack`` is conv_blocked.pack_blocked
    (dtype-agnostic)."""
    M, C, KH, KW = (int(v) for v in const.shape)
    Cp = -(-C // ci) * ci
    if const.storage == "fp16":
        bits = np.asarray(const.data).view(np.uint16).reshape(M, C, KH, KW)
        return StoredBlocked(KIND_FP16, pack(bits, ci).view(np.uint8), NO_TABLE, NO_TABLE,
                             (C, Cp, KH, KW, 1, int(ci > 1)))
    if const.storage not in ("int8", "int4"):
        raise ValueError(f"pack_stored_blocked: {const.name} is {const.storage}; the blocked "
                         f"loader reads fp16, int8 and int4")
    # (nblocks, Mp): zero scales and zeros past M, so those channels decode to 0
    Mp = -(-M // BLK) * BLK
    scale_t = np.zeros((const.scale.shape[1], Mp), np.float32)
    scale_t[:, :M] = const.scale.T
    zero_t = NO_TABLE
    if const.zero is not None:
        zero_t = np.zeros_like(scale_t)
        zero_t[:, :M] = const.zero.T
    bk = C * KH * KW // const.scale.shape[1]
    rows = (C, Cp, KH, KW, bk, int(ci > 1))
    if const.storage == "int8":
        q = np.asarray(const.data).reshape(M, C, KH, KW)
        return StoredBlocked(KIND_INT8, pack(q, ci).view(np.uint8), scale_t, zero_t, rows)
    # int4: values in the blocked order (rows of 16 nb values: an even count), two a byte
    v = pack(_int4_values(const), ci).view(np.uint8)
    return StoredBlocked(KIND_INT4, (v[0::2] & 0x0F) | (v[1::2] << 4), scale_t, zero_t, rows)


@njit(**_OPTS)
def decode_rows(kind, wq, scale_t, zero_t, rows, off, r0, nrows, w16, m0, dst):
    """dst[: nrows * w16] <- rows r0 .. r0 + nrows - 1 of the chunk whose stored values
    start at value ``off`` of wq (the bytes of kind's values; w16 values a row), as
    float32; m0 the chunk's first channel."""
    # NOTE: flat arrays indexed with uint64 offsets, typed views taken once: LLVM
    # vectorizes each row's loop, and no array is made per row (a slice per row costs two
    # atomic reference counts that Numba cannot drop in a loop with this many branches:
    # 5x the decode itself)
    if kind == KIND_FP16:
        wh = wq.view(np.uint16)
        for rr in range(nrows):
            src = np.uint64(off + (r0 + rr) * w16)
            d = np.uint64(rr * w16)
            for j in range(w16):
                u = np.uint64(j)
                dst[d + u] = half_to_float(wh[src + u])
        return
    has_zero = zero_t.shape[0] > 0
    wi = wq.view(np.int8)
    sf = scale_t.reshape(-1)
    zf = zero_t.reshape(-1)
    # row r's quantization block is that of its (c, kh, kw) position in the Constant's
    # row order, flat = c KH KW + tap; blocked rows run (tap, c) with c up to Cp (the
    # padding channels' weights are 0), NCHW rows are already in the Constant's order.
    # c and tap advance row by row: no divisions in the loop
    C, Cp, KH, KW, bk, blocked = rows
    taps = KH * KW
    one_block = scale_t.shape[0] == 1
    c, tap = (r0 % Cp, r0 // Cp) if blocked else (0, 0)
    for rr in range(nrows):
        d = np.uint64(rr * w16)
        flat = r0 + rr
        if blocked:
            pad = c >= C
            flat = c * taps + tap
            c += 1
            if c == Cp:
                c = 0
                tap += 1
            if pad:     # a padding input channel: its weights are 0 (even with zeros)
                for j in range(w16):
                    dst[d + np.uint64(j)] = np.float32(0.0)
                continue
        b = 0 if one_block else flat // bk
        v = np.uint64(off + (r0 + rr) * w16)
        sc = np.uint64(b * scale_t.shape[1] + m0)
        if kind == KIND_INT8:
            for j in range(w16):
                u = np.uint64(j)
                dst[d + u] = np.float32(wi[v + u])
        else:           # int4: value v is the low (even v) or high nibble of byte v // 2
            h = v >> np.uint64(1)
            for j in range(w16 >> 1):
                u = np.uint64(j)
                byte = wq[h + u]
                dst[d + u + u] = np.float32(np.int8(byte << np.uint8(4)) >> np.int8(4))
                dst[d + u + u + np.uint64(1)] = np.float32(np.int8(byte) >> np.int8(4))
        if has_zero:
            for j in range(w16):
                u = np.uint64(j)
                dst[d + u] = dst[d + u] * sf[sc + u] + zf[sc + u]
        else:
            for j in range(w16):
                u = np.uint64(j)
                dst[d + u] = dst[d + u] * sf[sc + u]
