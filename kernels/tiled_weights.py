"""Weight panels of the register-tiled conv (kernels/conv_tiled.py), in every storage.

The tiled conv reads its weights as panels: panel t holds output channels t*MR .. t*MR+MR-1
as a (K, MR) array, K = Cg*KH*KW in the (c, kh, kw) order of w. Channels past M are zero.

One structure, four loaders (``PackedWeights.kind``):

- KIND_F32: ``wp`` float32 (nt, K, MR): the panels themselves (memory normal / high, and
  fp32 weights in any mode).
- KIND_FP16: ``wq`` uint16 (nt, K, MR): the IEEE-half bits of the weights, in panel order.
- KIND_INT8: ``wq`` int8 (nt, K, MR); ``scale`` float32 (nt, nb, MR), ``zero`` the same
  shape or (0, 0, 0) when symmetric: weight = q * scale[block] + zero[block].
- KIND_INT4: ``wq`` uint8 (nt, K, MR // 2): byte (k, j) holds channel 2j in its low nibble
  and channel 2j+1 in its high one (4-bit two's complement); scale / zero as int8.

Block b covers k in [b*K/nb, (b+1)*K/nb) (runtime.ir.Constant's layout, so block-wise
quantization over input channels keeps whole blocks inside one panel row range).

In memory mode "low" a session keeps the fp16 / int8 / int4 panels only: the bytes are those
of the stored weights (plus zero channels up to a multiple of MR). The conv decodes one panel
into a per-thread (K, MR) float32 buffer when a thread starts on a run of pixel tiles of that
panel (``decode_panel``); a run is up to a pixel block (~20-100 tiles of 32 pixels), so the
decode costs a few percent of the run's FMAs and the micro-kernel is the fp32 one.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .half import half_to_float

MR = 8  # output channels per register tile (innermost, unrolled)

KIND_F32 = 0
KIND_FP16 = 1
KIND_INT8 = 2
KIND_INT4 = 3

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)

NO_F32 = np.zeros((0, 0, MR), np.float32)
NO_Q = np.zeros((0, 0, MR), np.uint16)
NO_SCALE = np.zeros((0, 0, MR), np.float32)


class PackedWeights(NamedTuple):
    """Panels of one conv's weights for conv2d_tiled (see the module docstring)."""
    kind: int
    wp: np.ndarray      # float32 panels (KIND_F32) or NO_F32
    wq: np.ndarray      # stored-storage panels, or NO_Q
    scale: np.ndarray   # (nt, nb, MR) float32, or NO_SCALE
    zero: np.ndarray    # (nt, nb, MR) float32, or NO_SCALE (symmetric / not quantized)

    @property
    def panels(self) -> int:
        return self.wp.shape[0] if self.kind == KIND_F32 else self.wq.shape[0]

    @property
    def k(self) -> int:
        return self.wp.shape[1] if self.kind == KIND_F32 else self.wq.shape[1]

    def arrays(self):
        """The arrays this packing keeps resident (the session's weight bytes)."""
        return tuple(a for a in (self.wp, self.wq, self.scale, self.zero) if a.size)


# ----------------------------------------------------------------------------- packing

def _panels(rows: np.ndarray, dtype) -> np.ndarray:
    """rows (M, K) -> (ceil(M/MR), K, MR) of dtype, zero channels past M."""
    M, K = rows.shape
    nt = (M + MR - 1) // MR
    out = np.zeros((nt, K, MR), dtype)
    for t in range(nt):  # one panel at a time: no whole-tensor temporary
        blk = rows[t * MR:(t + 1) * MR]
        out[t, :, :blk.shape[0]] = blk.T
    return out


def _per_block(a, nt: int) -> np.ndarray:
    """scale / zero (M, nb) -> (nt, nb, MR) float32, zero past M."""
    a = np.asarray(a, np.float32)
    M, nb = a.shape
    out = np.zeros((nt * MR, nb), np.float32)
    out[:M] = a
    return np.ascontiguousarray(out.reshape(nt, MR, nb).transpose(0, 2, 1))


def pack_weights(w_f32) -> np.ndarray:
    """fp32 w (M, Cg, KH, KW) -> float32 panels (ceil(M/MR), K, MR)."""
    w = np.asarray(w_f32, dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"pack_weights: w must be (M, Cg, KH, KW), got shape {w.shape}")
    return _panels(w.reshape(w.shape[0], -1), np.float32)


@njit(**_OPTS)
def _int4_panels(q, M, K, out):
    """q uint8 (M, ceil(K/2)) row nibbles -> out uint8 (nt, K, MR//2) channel-pair nibbles."""
    for m in range(M):
        t = m // MR
        i = m - t * MR
        j = i // 2
        shift = np.uint8(4 * (i % 2))
        row = q[m]
        dst = out[t]
        for k in range(K):
            v = row[k // 2]
            nib = (v >> np.uint8(4)) if k % 2 else (v & np.uint8(15))
            dst[k, j] |= np.uint8(nib << shift)


def pack_stored(const) -> PackedWeights:
    """Panels of a Constant kept as stored (fp16 / int8 / int4): no fp32 copy is made."""
    shape = tuple(int(v) for v in const.shape)
    if len(shape) != 4:
        raise ValueError(f"pack_stored: {const.name} must be (M, Cg, KH, KW), got {shape}")
    M = shape[0]
    K = int(np.prod(shape[1:]))
    nt = (M + MR - 1) // MR
    if const.storage == "fp32":
        return PackedWeights(KIND_F32, pack_weights(const.data), NO_Q, NO_SCALE, NO_SCALE)
    if const.storage == "fp16":
        bits = np.asarray(const.data).view(np.uint16).reshape(M, K)
        return PackedWeights(KIND_FP16, NO_F32, _panels(bits, np.uint16), NO_SCALE, NO_SCALE)
    scale = _per_block(const.scale, nt)
    zero = _per_block(const.zero, nt) if const.zero is not None else NO_SCALE
    if const.storage == "int8":
        q = _panels(np.asarray(const.data).reshape(M, K), np.int8)
        return PackedWeights(KIND_INT8, NO_F32, q, scale, zero)
    if const.storage == "int4":
        q = np.zeros((nt, K, MR // 2), np.uint8)
        _int4_panels(np.asarray(const.data), M, K, q)
        return PackedWeights(KIND_INT4, NO_F32, q, scale, zero)
    raise ValueError(f"pack_stored: {const.name} has unknown storage {const.storage!r}")


# ----------------------------------------------------------------------------- decoding

@njit(inline="always", **_OPTS)
def _dequant(wq, scale, zero, t, dst, kind):
    """dst[:K] (K, MR) <- panel t of int8 / int4 wq, times its block scales (+ zeros)."""
    K = wq.shape[1]
    nb = scale.shape[1]
    bk = K // nb
    has_zero = zero.shape[0] > 0
    sc = scale[t]
    for b in range(nb):
        s = sc[b]
        z = zero[t, b] if has_zero else sc[b]
        for k in range(b * bk, (b + 1) * bk):
            d = dst[k]
            src = wq[t, k]
            for i in range(MR):
                if kind == KIND_INT8:
                    v = np.float32(np.int8(src[i]))
                else:
                    # (uint8 casts: this branch must also type-check for int8 sources)
                    byte = np.uint8(src[i // 2])
                    if i % 2 == 0:
                        v = np.float32(np.int8(byte << np.uint8(4)) >> np.int8(4))
                    else:
                        v = np.float32(np.int8(byte) >> np.int8(4))
                if has_zero:
                    d[i] = v * s[i] + z[i]
                else:
                    d[i] = v * s[i]


@njit(**_OPTS)
def decode_panel(kind, wq, scale, zero, t, dst):
    """dst[:K] (K, MR) float32 <- panel t of wq decoded (fp16 bits, or int8 / int4 dequantized).

    K = wq.shape[1]; dst may have more rows (they are left alone)."""
    if kind == KIND_FP16:
        K = wq.shape[1]
        src = wq[t]
        for k in range(K):
            d = dst[k]
            s = src[k]
            for i in range(MR):
                d[i] = half_to_float(np.uint16(s[i]))
    else:
        _dequant(wq, scale, zero, t, dst, kind)
