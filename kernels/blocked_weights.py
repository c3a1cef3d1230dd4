"""conv2d_blocked's weights kept as stored (fp16, int8): the low-memory loader.

``pack_blocked`` (kernels/conv_blocked.py) orders fp32 weights as rows of one chunk's
16 nb output channels: row r of a chunk is one (tap, input channel) pair. Here the same
permutation is applied to the stored values themselves (fp16 bits as uint16, int8 as
int8), so a session in memory=low holds the bytes of the stored weights (plus zero
padding up to whole blocks of 16 channels), and the kernel decodes the rows it is about
to use into a per-thread fp32 buffer: one pass of up to 256 rows (64 KiB) in a tap loop,
or a whole chunk for the one-call paths (a 1x1 conv's single pass, an NCHW stem). A pass
is decoded once per band of up to 16 tiles, so the decode is a few percent of the FMAs.

int8: value = q * scale[block, m] (+ zero[block, m]), the block of row r being that of
its (c, kh, kw) position in the Constant's row order (computed per row from ``rows``);
``scale_t`` and ``zero_t`` are the Constant's (M, nblocks) arrays transposed to
(nblocks, M) (the same bytes), so a row's scales are contiguous. int4 stays with the NCHW
kernels (its nibbles would double here).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .half import half_to_float

KIND_F32, KIND_FP16, KIND_INT8 = 0, 1, 2
BLK = 16
_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


class StoredBlocked(NamedTuple):
    """One conv's weights for conv2d_blocked in their stored form."""
    kind: int
    wq: np.ndarray        # uint16 (fp16 bits) or int8, pack_blocked's order, flat
    scale_t: np.ndarray   # (nblocks, M) float32; (0, 0) for fp16
    zero_t: np.ndarray    # the same, or (0, 0) when symmetric / fp16
    rows: tuple           # (C, Cp, KH, KW, block_k, blocked order): a row's block, computed

    def arrays(self):
        return tuple(a for a in (self.wq, self.scale_t, self.zero_t) if a.size)


NO_F32 = np.zeros(0, np.float32)
NO_Q = np.zeros(0, np.int8)
NO_TABLE = np.zeros((0, 0), np.float32)
FP32 = StoredBlocked(KIND_F32, NO_Q, NO_TABLE, NO_TABLE, (0, 0, 0, 0, 0, 0))


def pack_stored_blocked(const, ci, pack):
    """StoredBlocked of a kept fp16 / int8 Constant (M, C, KH, KW), rows for an input in
    blocks of ``ci`` channels; ``pack`` is conv_blocked.pack_blocked (dtype-agnostic)."""
    M, C, KH, KW = (int(v) for v in const.shape)
    Cp = -(-C // ci) * ci
    if const.storage == "fp16":
        bits = np.asarray(const.data).view(np.uint16).reshape(M, C, KH, KW)
        return StoredBlocked(KIND_FP16, pack(bits, ci), NO_TABLE, NO_TABLE,
                             (C, Cp, KH, KW, 1, int(ci > 1)))
    if const.storage != "int8":
        raise ValueError(f"pack_stored_blocked: {const.name} is {const.storage}; the blocked "
                         f"loader reads fp16 and int8")
    q = np.asarray(const.data).reshape(M, C, KH, KW)
    scale_t = np.ascontiguousarray(const.scale.T)
    zero_t = np.ascontiguousarray(const.zero.T) if const.zero is not None else NO_TABLE
    bk = C * KH * KW // const.scale.shape[1]
    return StoredBlocked(KIND_INT8, pack(q, ci), scale_t, zero_t,
                         (C, Cp, KH, KW, bk, int(ci > 1)))


@njit(inline="always", **_OPTS)
def _block_of(r, rows):
    """The quantization block of chunk row r, or -1 for a padding input channel."""
    C, Cp, KH, KW, bk, blocked = rows
    if blocked:         # rows in (kh, kw, c) order
        c = r % Cp
        t = r // Cp
        if c >= C:
            return -1
        return ((c * KH + t // KW) * KW + t % KW) // bk
    return r // bk      # rows in (c, kh, kw) order: the Constant's own


@njit(**_OPTS)
def decode_rows(kind, wq, scale_t, zero_t, rows, off, r0, nrows, w16, m0, dst):
    """dst[: nrows * w16] <- rows r0 .. r0 + nrows - 1 of the chunk whose stored values
    start at wq[off] (w16 values a row), as float32; m0 the chunk's first channel."""
    has_zero = zero_t.shape[0] > 0
    nm = min(w16, scale_t.shape[1] - m0)       # int8: channels past M decode to 0
    for rr in range(nrows):
        src = np.uint64(off + (r0 + rr) * w16)
        d = np.uint64(rr * w16)
        if kind == KIND_FP16:
            for j in range(w16):
                dst[d + np.uint64(j)] = half_to_float(np.uint16(wq[src + np.uint64(j)]))
            continue
        b = _block_of(r0 + rr, rows)
        for j in range(w16):
            dst[d + np.uint64(j)] = np.float32(0.0)
        if b < 0:       # a padding input channel: its weights are 0 (even with zeros)
            continue
        # NOTE: uint64 indices, so that LLVM vectorizes the row (signed ones carry Numba's
        # negative-index wraparound)
        sc = np.uint64(b * scale_t.shape[1] + m0)
        sf = scale_t.reshape(-1)
        if has_zero:
            zf = zero_t.reshape(-1)
            for j in range(nm):
                u = np.uint64(j)
                dst[d + u] = np.float32(wq[src + u]) * sf[sc + u] + zf[sc + u]
        else:
            for j in range(nm):
                u = np.uint64(j)
                dst[d + u] = np.float32(wq[src + u]) * sf[sc + u]
