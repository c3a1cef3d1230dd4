"""int8 x uint8 -> int32 convolution for int8 weights at precision=low (activations quantized per run).

What it computes, for groups=1 convs (any kernel size, stride, padding, dilation), NCHW fp32
in and out, weights symmetric per-output-channel int8 (``q`` (M, K), ``scale`` (M, 1), no zero):

1. **Activation quantization, per tensor, per run** (``activation_quant`` is the NumPy
   statement of the rule, used by the tests):

   - ``amax = max |x|`` over the whole input tensor (every image of the batch), float32;
   - ``scale_x = amax / 127`` and ``inv = 127 / amax`` (float32 divisions; amax == 0 gives
     scale_x = 1, inv = 0: every activation is 0);
   - ``qx = clip(rint(x * inv), -127, 127)`` (float32 product, round half to even), stored as
     ``u8 = qx + 128`` (1..255). Zero padding is stored as 128, i.e. exactly 0.

   So the conv sees x' = qx * scale_x, with |x - x'| <= scale_x / 2 per element. A NaN or
   inf anywhere in x makes scale_x NaN or inf, so every output is NaN or +-inf before the
   activation (relu / clip may then map -inf to a bound): never silently finite garbage.

2. **Exact integer GEMM**: ``acc[m, p] = sum_k u8[k, p] * q[m, k]`` in int32 through
   ``vpdpbusd`` (AVX-512 VNNI, kernels/vnni.py) when ``has_vnni()``, else a portable int32
   loop over the same packed data (the same int32 sums; the outputs are bit for bit
   the same for one compile target). Since u8 = qx + 128,
   ``sum_k qx * q = acc - 128 * wsum[m]`` with ``wsum[m] = sum_k q[m, k]`` precomputed at
   pack time. No overflow while K * 255 * 128 < 2^31, i.e. K < 65,793 (checked).

3. **Epilogue**: ``out = float32(acc - 128 * wsum[m]) * (scale_x * wscale[m]) + bias[m]``,
   then activation (0 none / 1 relu / 2 clip(lo, hi)).

Data layout (same geometry as the fp32 register-tiled conv, kernels/conv_tiled.py):

- The input image is quantized once per image into a padded, *phase-split* uint8 scratch,
  channels grouped by 4: word (int32) ``[c4, plane (a, b), i, j]`` holds the 4 bytes of
  channels 4*c4 .. 4*c4+3 of padded pixel (i*sh + a, j*sw + b); channels past C read 128.
  Tap (kh, kw) reads plane ((kh*dh) % sh, (kw*dw) % sw) shifted by ((kh*dh)//sh, (kw*dw)//sw),
  so every conv is a stride-1 walk over a grid of OH x Wq pixels (grid columns >= OW are
  computed and dropped). One 64-byte load = 16 grid pixels x 4 channels: vpdpbusd's unsigned
  operand.
- Weights (``pack_int8dot``): int32 words (ceil(M/MR), K4, MR), K4 = ceil(C/4) * KH * KW in
  (c4, kh, kw) order; word (t, k4, i) holds the 4 signed bytes of output channel t*MR + i for
  channels 4*c4 .. 4*c4+3 at tap (kh, kw) (0 past C or past M): the broadcast signed operand.
- Register tile: MR output channels x NR = 16*NV grid pixels, MR*NV zmm int32 accumulators
  on the stack (promoted to registers), K4 steps of NV loads + MR broadcasts + MR*NV
  vpdpbusd. Parallel: ``prange`` over (channel tile, pixel tile) of one image.

Memory: packed weights are the int8 bytes (plus padding of C to a multiple of 4 and of M to
a multiple of MR) and 4 bytes a channel of wsum; the scratch is about C*Hp*Wp bytes (a
quarter of the fp32 kernels' padded copy).
"""

import numpy as np
from numba import njit, prange

from .phase_planes import phase_grid, tap_offsets
from .vnni import dot4_u8s8, dpbusd16, has_vnni, pack4_u8, stack_i32, zero16

__all__ = ["has_vnni", "pack_int8dot", "int8dot_scratch_bytes", "conv2d_int8dot",
           "activation_quant", "MR", "NR", "K_MAX"]

from .epilogue import ACT_CLIP, ACT_NONE, ACT_RELU  # noqa: F401

MR = 8  # output channels per register tile (broadcast weights, unrolled)
NV = 2  # zmm vectors of 16 grid pixels per channel in a tile
NR = 16 * NV  # grid pixels per tile
_ACC = MR * NR
_NACC = MR * NV  # zmm accumulators
K_MAX = 65792  # largest K (= C*KH*KW, C rounded up to 4) with no possible int32 overflow
_PAD_WORD = np.int32(-2139062144)  # 0x80808080: four bytes of 128 (= activation 0)
_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


# ----------------------------------------------------------------------------- weights

def pack_int8dot(q, scale, w_shape=None):
    """Pack symmetric per-channel int8 weights for ``conv2d_int8dot``.

    q int8 (M, K) (row m = output channel m flattened in (c, kh, kw) C order, as
    ``runtime.ir.Constant`` keeps it), scale float32 (M, 1), w_shape (M, C, KH, KW) (default
    (M, K, 1, 1): a 1x1 conv). Returns ``(packed, wsum, wscale)``:
    packed int32 (ceil(M/MR), K4, MR) as the module docstring says, wsum int32 (M,) =
    sum_k q[m, k], wscale float32 (M,).
    """
    q = np.asarray(q)
    if q.dtype != np.int8 or q.ndim != 2:
        raise ValueError(f"pack_int8dot: q must be 2-D int8, got {q.dtype} {q.shape}")
    M, K = q.shape
    scale = np.asarray(scale, dtype=np.float32)
    if scale.shape != (M, 1):
        raise ValueError(f"pack_int8dot: only per-channel scales (M, 1) = ({M}, 1) are "
                         f"supported, got {scale.shape}")
    if w_shape is None:
        w_shape = (M, K, 1, 1)
    Mw, C, KH, KW = (int(v) for v in w_shape)
    if Mw != M or C * KH * KW != K:
        raise ValueError(f"pack_int8dot: w_shape {tuple(w_shape)} does not fit q {q.shape}")
    C4 = (C + 3) // 4
    T = KH * KW
    if C4 * 4 * T > K_MAX:
        raise ValueError(f"pack_int8dot: K = {C4 * 4 * T} > {K_MAX} could overflow int32")
    nt = (M + MR - 1) // MR
    w = np.zeros((nt * MR, C4 * 4, T), np.int8)
    w[:M, :C] = q.reshape(M, C, T)
    # (nt, MR, C4, 4, T) -> (nt, C4, T, MR, 4): k4 = c4 * T + t, 4 channel bytes per word
    w = w.reshape(nt, MR, C4, 4, T).transpose(0, 2, 4, 1, 3)
    packed = np.ascontiguousarray(w).view(np.int32).reshape(nt, C4 * T, MR)
    wsum = q.astype(np.int32).sum(axis=1, dtype=np.int64).astype(np.int32)
    wscale = np.ascontiguousarray(scale[:, 0])
    return packed, wsum, wscale


# ----------------------------------------------------------------------------- geometry

def int8dot_scratch_bytes(x_shape, w_shape, out_shape, sh, sw, pt, pl, dh, dw):
    """Bytes of uint8 scratch ``conv2d_int8dot`` needs (one image's quantized phase planes + slack)."""
    N, C = x_shape[0], x_shape[1]
    OH, OW = out_shape[2], out_shape[3]
    if N == 0 or OH <= 0 or OW <= 0 or out_shape[1] == 0:
        return 0
    Hq, Wq = phase_grid(OH, OW, w_shape[2], w_shape[3], sh, sw, dh, dw)
    C4 = (C + 3) // 4
    return 4 * (C4 * sh * sw * Hq * Wq + Wq + NR)


def activation_quant(x):
    """NumPy statement of the activation rule: (qx int32 array, scale_x float32).

    The kernel computes with x' = qx * scale_x; see the module docstring.
    """
    x = np.asarray(x, dtype=np.float32)
    amax = np.float32(np.max(np.abs(x))) if x.size else np.float32(0)
    if amax == 0:
        inv = np.float32(0)
        sx = np.float32(1)
    else:
        inv = np.float32(127) / amax
        sx = amax / np.float32(127)
    qx = np.clip(np.rint(x * inv), -127, 127).astype(np.int32)
    return qx, np.float32(sx)


# ----------------------------------------------------------------------------- quantize + copy

@njit(parallel=True, **_OPTS)
def _absmax(xflat):
    """max |x| over the float32 1-D array xflat (0 for an empty array; NaN if one is NaN).

    On the bits: |v| is the bits & 0x7FFFFFFF, whose integer order is the float order for
    non-negative floats, so the max is an integer reduction that vectorizes (a float max
    with NaN semantics does not).
    """
    bits = xflat.view(np.int32)
    n = bits.shape[0]
    nch = 64
    step = (n + nch - 1) // nch
    part = np.zeros(nch, np.int64)
    for c in prange(nch):
        s = bits[min(c * step, n):min((c + 1) * step, n)]
        m = 0
        for j in range(s.shape[0]):
            m = max(m, s[j] & 0x7FFFFFFF)
        part[c] = m
    m = 0
    for c in range(nch):
        m = max(m, part[c])
    res = np.empty(1, np.int32)
    res[0] = m
    return res.view(np.float32)[0]


@njit(inline="always", **_OPTS)
def _u8(v, inv):
    """Offset-quantized activation: clip(rint(v * inv), -127, 127) + 128 as an int32 in 1..255."""
    t = np.rint(v * inv)
    t = max(min(t, np.float32(127.0)), np.float32(-127.0))
    return np.int32(t) + np.int32(128)


@njit(**_OPTS)
def _quant_row(dm, s0, s1, s2, s3, nc, nj, inv):
    """dm[j] <- the 4 offset-quantized bytes of s0[j] .. s3[j], j < nj (bytes >= nc: 128)."""
    if nc == 4:
        for j in range(nj):
            dm[j] = pack4_u8(_u8(s0[j], inv), _u8(s1[j], inv), _u8(s2[j], inv),
                             _u8(s3[j], inv))
    else:
        k = np.int32(128)
        for j in range(nj):
            u1 = _u8(s1[j], inv) if nc > 1 else k
            u2 = _u8(s2[j], inv) if nc > 2 else k
            dm[j] = pack4_u8(_u8(s0[j], inv), u1, u2, k)


@njit(parallel=True, **_OPTS)
def _fill_q(xn, xw, inv, sh, sw, pt, pl, Hq, Wq, used):
    """xn (C,H,W) float32 -> xw int32 words (C4, sh, sw, Hq, Wq) + slack, quantized and padded.

    Word (c4, a, b, i, j): bytes = u8 of channels 4*c4 .. 4*c4+3 at padded pixel
    (i*sh + a, j*sw + b); 128 for padding and for channels >= C. Planes with used[a*sw+b] == 0
    are skipped; the slack words after the planes are set to 128s.
    """
    C, H, W = xn.shape
    C4 = (C + 3) // 4
    nph = sh * sw
    plane = Hq * Wq
    for q in prange(C4 * nph):
        c4 = q // nph
        ab = q - c4 * nph
        if used[ab] == 0:
            continue
        a = ab // sw
        b = ab - a * sw
        dst = xw[q * plane:]
        c0 = 4 * c4
        nc = min(4, C - c0)
        # columns j whose source column j*sw + b - pl lies in [0, W)
        jlo = 0
        if pl > b:
            jlo = (pl - b + sw - 1) // sw
        jhi = 0
        if W - 1 + pl - b >= 0:
            jhi = (W - 1 + pl - b) // sw + 1
        jlo = min(jlo, Wq)
        jhi = min(max(jhi, jlo), Wq)
        col0 = jlo * sw + b - pl
        nj = jhi - jlo
        for i in range(Hq):
            d = dst[i * Wq:]
            r = i * sh + a - pt
            if r >= 0 and r < H and nj > 0:
                for j in range(jlo):
                    d[j] = _PAD_WORD
                dm = d[jlo:]
                # contiguous or strided source rows (separate calls: one array type
                # each); channels past C read channel c0 and are masked to 128
                cc1 = c0 + 1 if nc > 1 else c0
                cc2 = c0 + 2 if nc > 2 else c0
                cc3 = c0 + 3 if nc > 3 else c0
                if sw == 1:
                    _quant_row(dm, xn[c0, r, col0:], xn[cc1, r, col0:], xn[cc2, r, col0:],
                               xn[cc3, r, col0:], nc, nj, inv)
                else:
                    _quant_row(dm, xn[c0, r, col0::sw], xn[cc1, r, col0::sw],
                               xn[cc2, r, col0::sw], xn[cc3, r, col0::sw], nc, nj, inv)
                dt = d[jhi:]
                for j in range(Wq - jhi):
                    dt[j] = _PAD_WORD
            else:
                for j in range(Wq):
                    d[j] = _PAD_WORD
    tail = xw[C4 * nph * plane:]
    for j in range(tail.shape[0]):
        tail[j] = _PAD_WORD


# ----------------------------------------------------------------------------- micro-kernels

@njit(**_OPTS)
def _store(acc, out3, corr, oscale, bias, m0, mhi, p0, Wq, OW, act, lo, hi):
    """Epilogue of one tile: out3[m, row, col] <- act(float(acc[m-m0, j] - corr[m]) * oscale[m] + bias[m]).

    acc (MR*NR,) int32 holds grid pixels p0 .. p0+NR-1 of a grid Wq wide; columns >= OW
    are dropped; channels m0 <= m < mhi are written.
    """
    OH = out3.shape[1]
    oh = p0 // Wq
    ow = p0 - oh * Wq
    j = 0
    zero = np.float32(0.0)
    while j < NR and oh < OH:
        seg = min(NR - j, Wq - ow)
        nv = min(seg, OW - ow)
        if nv > 0:
            for m in range(m0, mhi):
                a = acc[(m - m0) * NR + j:]
                o = out3[m, oh, ow:]
                c = corr[m]
                s = oscale[m]
                b = bias[m]
                if act == ACT_RELU:
                    for t in range(nv):
                        v = np.float32(a[t] - c) * s + b
                        o[t] = zero if v < zero else v
                elif act == ACT_CLIP:
                    for t in range(nv):
                        v = np.float32(a[t] - c) * s + b
                        v = lo if v < lo else v
                        o[t] = hi if v > hi else v
                else:
                    for t in range(nv):
                        o[t] = np.float32(a[t] - c) * s + b
        j += seg
        ow = 0
        oh += 1


@njit(**_OPTS)
def _tile_vnni(xw, base, koff, wt, out3, corr, oscale, bias, m0, mhi, p0, Wq, OW, act, lo, hi):
    """One MR x NR tile through vpdpbusd: acc[i, j] = sum_k4 dot4(xw[base + koff[k4] + j], wt[k4, i])."""
    acc = stack_i32(_ACC)
    for q in range(_NACC):
        zero16(acc, q * 16)
    K4 = wt.shape[0]
    for k in range(K4):
        b = base + koff[k]
        wk = wt[k]
        for v in range(NV):
            for i in range(MR):
                dpbusd16(acc, i * NR + v * 16, xw, b + v * 16, wk[i])
    _store(acc, out3, corr, oscale, bias, m0, mhi, p0, Wq, OW, act, lo, hi)


@njit(**_OPTS)
def _tile_portable(xw, base, koff, wt, out3, corr, oscale, bias, m0, mhi, p0, Wq, OW, act, lo,
                   hi):
    """The same tile with plain int32 arithmetic (any CPU); identical results."""
    acc = stack_i32(_ACC)
    for q in range(_ACC):
        acc[q] = np.int32(0)
    K4 = wt.shape[0]
    for k in range(K4):
        # slice first: an index loaded from memory inside the vector loop becomes gathers
        xs = xw[base + koff[k]:]
        wk = wt[k]
        for i in range(MR):
            wv = wk[i]
            a = acc[i * NR:]
            for j in range(NR):
                a[j] = dot4_u8s8(a[j], xs[j], wv)
    _store(acc, out3, corr, oscale, bias, m0, mhi, p0, Wq, OW, act, lo, hi)


# ----------------------------------------------------------------------------- drivers

@njit(parallel=True, **_OPTS)
def _grid_vnni(xw, koff, wp, out3, corr, oscale, bias, M, P, Wq, OW, act, lo, hi):
    nmt = wp.shape[0]
    npt = (P + NR - 1) // NR
    for w in prange(nmt * npt):
        mt = w // npt
        pt = w - mt * npt
        m0 = mt * MR
        _tile_vnni(xw, pt * NR, koff, wp[mt], out3, corr, oscale, bias, m0, min(m0 + MR, M),
                   pt * NR, Wq, OW, act, lo, hi)


@njit(parallel=True, **_OPTS)
def _grid_portable(xw, koff, wp, out3, corr, oscale, bias, M, P, Wq, OW, act, lo, hi):
    nmt = wp.shape[0]
    npt = (P + NR - 1) // NR
    for w in prange(nmt * npt):
        mt = w // npt
        pt = w - mt * npt
        m0 = mt * MR
        _tile_portable(xw, pt * NR, koff, wp[mt], out3, corr, oscale, bias, m0,
                       min(m0 + MR, M), pt * NR, Wq, OW, act, lo, hi)


@njit(**_OPTS)
def _prepare(x, wsum, wscale, KH, KW, OH, OW, sh, sw, dh, dw):
    """(scale_x, inv, Hq, Wq, koff, used, corr, oscale) for one run."""
    N, C, H, W = x.shape
    M = wsum.shape[0]
    amax = _absmax(x.reshape(N * C * H * W))
    if amax == np.float32(0.0):
        inv = np.float32(0.0)
        sx = np.float32(1.0)
    else:  # a NaN / inf amax gives a NaN / inf scale_x: every output NaN / inf, never silent
        inv = np.float32(127.0) / amax
        sx = amax / np.float32(127.0)
    Hq, Wq = phase_grid(OH, OW, KH, KW, sh, sw, dh, dw)
    C4 = (C + 3) // 4
    koff, used = tap_offsets(C4, KH, KW, sh, sw, dh, dw, Hq, Wq)
    corr = np.empty(M, np.int32)
    oscale = np.empty(M, np.float32)
    for m in range(M):
        corr[m] = np.int32(128) * wsum[m]
        oscale[m] = sx * wscale[m]
    return sx, inv, Hq, Wq, koff, used, corr, oscale


@njit(**_OPTS)
def _conv_vnni(x, wp, wsum, wscale, KH, KW, bias, out, xw, sh, sw, pt, pl, dh, dw, act, act_lo,
               act_hi):
    N = x.shape[0]
    M = out.shape[1]
    OH = out.shape[2]
    OW = out.shape[3]
    sx, inv, Hq, Wq, koff, used, corr, oscale = _prepare(x, wsum, wscale, KH, KW, OH, OW,
                                                         sh, sw, dh, dw)
    lo = np.float32(act_lo)
    hi = np.float32(act_hi)
    for n in range(N):
        _fill_q(x[n], xw, inv, sh, sw, pt, pl, Hq, Wq, used)
        _grid_vnni(xw, koff, wp, out[n], corr, oscale, bias, M, OH * Wq, Wq, OW, act, lo, hi)
    return sx


@njit(**_OPTS)
def _conv_portable(x, wp, wsum, wscale, KH, KW, bias, out, xw, sh, sw, pt, pl, dh, dw, act,
                   act_lo, act_hi):
    N = x.shape[0]
    M = out.shape[1]
    OH = out.shape[2]
    OW = out.shape[3]
    sx, inv, Hq, Wq, koff, used, corr, oscale = _prepare(x, wsum, wscale, KH, KW, OH, OW,
                                                         sh, sw, dh, dw)
    lo = np.float32(act_lo)
    hi = np.float32(act_hi)
    for n in range(N):
        _fill_q(x[n], xw, inv, sh, sw, pt, pl, Hq, Wq, used)
        _grid_portable(xw, koff, wp, out[n], corr, oscale, bias, M, OH * Wq, Wq, OW, act, lo,
                       hi)
    return sx


def conv2d_int8dot(x, packed, wsum, wscale, w_shape, bias, out, scratch_u8, sh, sw, pt, pl, dh,
                   dw, act, lo, hi, vnni=None):
    """out (N,M,OH,OW) <- act(conv(x', w) + bias), x' = x quantized per tensor (module docstring).

    x (N,C,H,W) float32 C-contiguous; ``packed, wsum, wscale`` from ``pack_int8dot``;
    w_shape (M, C, KH, KW) (groups = 1 only); bias (M,) float32; out float32 C-contiguous;
    scratch_u8 uint8 with at least ``int8dot_scratch_bytes(...)`` bytes. act 0 none /
    1 relu / 2 clip(lo, hi). ``vnni``: None = ``has_vnni()``; False forces the portable int32
    loop; True on a CPU without VNNI raises. Returns scale_x (float; 1.0 when nothing ran).
    """
    M, C, KH, KW = (int(v) for v in w_shape)
    N = x.shape[0]
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d_int8dot: x {x.shape} does not fit w {tuple(w_shape)} "
                         f"(groups = 1 only)")
    if out.shape[:2] != (N, M):
        raise ValueError(f"conv2d_int8dot: out {out.shape} does not fit x {x.shape} and M {M}")
    nt = (M + MR - 1) // MR
    K4 = ((C + 3) // 4) * KH * KW
    if packed.dtype != np.int32 or packed.shape != (nt, K4, MR):
        raise ValueError(f"conv2d_int8dot: packed {packed.dtype} {packed.shape} is not "
                         f"pack_int8dot's layout {(nt, K4, MR)} for w {tuple(w_shape)}")
    if wsum.shape != (M,) or wscale.shape != (M,) or bias.shape != (M,):
        raise ValueError("conv2d_int8dot: wsum / wscale / bias must be (M,)")
    nbytes = int8dot_scratch_bytes(x.shape, w_shape, out.shape, sh, sw, pt, pl, dh, dw)
    if nbytes == 0:
        return 1.0
    if scratch_u8.size < nbytes:
        raise ValueError(f"conv2d_int8dot: scratch has {scratch_u8.size} bytes, needs {nbytes}")
    if vnni is None:
        vnni = has_vnni()
    elif vnni and not has_vnni():
        raise RuntimeError("conv2d_int8dot: vnni=True but this CPU has no AVX-512 VNNI")
    xw = scratch_u8[:nbytes].view(np.int32)
    fn = _conv_vnni if vnni else _conv_portable
    return float(fn(x, packed, wsum, wscale, KH, KW, bias, out, xw, int(sh), int(sw), int(pt),
                    int(pl), int(dh), int(dw), int(act), float(lo), float(hi)))
