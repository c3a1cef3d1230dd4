"""Register-tiled implicit-GEMM fp32 convolution, NCHW, with fused bias + residual + activation.

The conv is a GEMM out[m, p] = sum_k w[m, k] * x[k-th tap of pixel p], computed one tile of
MR=8 output channels x NR=32 pixels at a time. The 256 accumulators live in a stack array
(kernels/stack.py) that LLVM promotes to 16 zmm registers for the whole K loop; per k: MR
broadcast weights times 2 zmm of contiguous input, 16 FMAs. The loops are written pixels
outer / channels inner everywhere (see ``_tile``): the other order makes LLVM vectorize
across channels, with gathers.

No im2col buffer. The input is copied once per image into a zero-padded, *phase-split*
scratch: for strides (sh, sw) the padded image of each channel is split into sh*sw phase
planes, plane (a, b) holding padded pixels (i*sh + a, j*sw + b) at (i, j), each Hq x Wq.
Tap (c, kh, kw) then reads plane ((kh*dh) % sh, (kw*dw) % sw) shifted by
((kh*dh) // sh, (kw*dw) // sw), so every conv, strided or dilated, becomes a stride-1 walk
over a "padded-width grid" of OH x Wq pixels: pixel p of that grid is ``xf[koff[k] + p]``.
Grid columns ow >= OW are computed and thrown away (2 of 16 columns for 14x14 pad 1); a
tile that crosses a grid row or the valid width is stored piece by piece with masked
vector moves. The last tile reads up to NR + Wq values past the planes: the scratch has
that slack.

1x1 stride-1 unpadded convs skip the copy: the image itself is one grid row of H*W pixels,
and only the last partial pixel tile is copied (C x NR values) so no read runs past the input.

Weights are packed once (kernels/tiled_weights.py) as panels (ceil(M/MR), K, MR), K =
Cg*KH*KW in the (c, kh, kw) order of w, zero rows padding M up to a multiple of MR: float32,
or kept as fp16 bits / int8 / int4 (memory=low). When a thread starts a run of one panel's
pixel tiles it copies (fp32) or decodes (the others) the panel into its own (K, MR) float32
slot of the scratch; everything after that is the same code for every storage.

Packing does not know the group count: a tile whose MR channels straddle a group boundary
is computed once per group it touches and each pass keeps only its group's channels (only
costs time when M/groups is not a multiple of MR; depthwise convs belong to another kernel).

Epilogue (on the registers): accumulators start at the bias; + residual (``res``, out's
shape, read before out is written, so it may be out itself); relu / clip; store.

Order and threads: pixel blocks (input of a block ~384 KiB, kept in L2; one block when the
weights are the bigger operand, so each weight tile is read once), in a block the channel
tiles, in those the block's pixel tiles (the weight tile stays in L1). That tile sequence is
handed out in runs of a few tiles from a shared counter (kernels/atomics.py), one
``prange`` iteration per thread each taking runs until none are left.
"""

import numpy as np
import numba
from numba import njit, prange

from .atomics import fetch_add, grab_size
from .phase_planes import fill_phases, phase_grid, tap_offsets
from .stack import copy_masked16, stack_f32
from .tiled_weights import KIND_F32, MR, NO_Q, NO_SCALE, PackedWeights, decode_panel
from .tiled_weights import pack_weights  # noqa: F401  (re-exported: callers pack here)

from .epilogue import ACT_CLIP, ACT_NONE, ACT_RELU  # noqa: F401

NR = 32  # grid pixels per register tile (vectorized: NR/16 zmm per channel)
_ACC = MR * NR
_L2_BLOCK = 384 * 1024  # input bytes of one pixel block (L2 is 1 MiB a core here)
_F32 = 4

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


# ----------------------------------------------------------------------------- geometry

def _is_pointwise(x_shape, w_shape, out_shape, sh, sw, pt, pl):
    """True when the conv is a plain GEMM over (channels, H*W): 1x1, stride 1, no padding."""
    return (w_shape[2] == 1 and w_shape[3] == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
            and out_shape[2] == x_shape[2] and out_shape[3] == x_shape[3])


def tiled_scratch_bytes(x_shape, w_shape, out_shape, sh, sw, pt, pl, dh, dw, groups,
                        nthreads=None):
    """Bytes of uint8 scratch ``conv2d_tiled`` needs for these shapes, run on ``nthreads``
    threads (default: Numba's current count): one (K, MR) float32 weight panel per thread,
    then the padded input (none for 1x1 stride-1 convs whose pixels fill whole tiles)."""
    N, C = x_shape[0], x_shape[1]
    OH, OW = out_shape[2], out_shape[3]
    if N == 0 or OH <= 0 or OW <= 0 or out_shape[1] == 0:
        return 0
    nth = numba.get_num_threads() if nthreads is None else max(1, int(nthreads))
    panels = _panel_floats(w_shape) * nth * _F32
    if _is_pointwise(x_shape, w_shape, out_shape, sh, sw, pt, pl):
        return panels + (0 if (OH * OW) % NR == 0 else C * NR * _F32)
    Hq, Wq = phase_grid(out_shape[2], out_shape[3], w_shape[2], w_shape[3], sh, sw, dh, dw)
    n = C * sh * sw * Hq * Wq + Wq + NR
    return panels + n * _F32


def _panel_floats(w_shape):
    """Floats of one thread's weight panel: (K rounded up to even) x MR."""
    k = int(w_shape[1]) * int(w_shape[2]) * int(w_shape[3])
    return (k + k % 2) * MR


# ----------------------------------------------------------------------------- input copy

@njit(**_OPTS)
def _fill_tail(xg, p0, tb):
    """xg (C, P) -> tb flat (C, NR): columns p0.. of each channel, zero past P."""
    C, P = xg.shape
    nv = P - p0
    zero = np.float32(0.0)
    for c in range(C):
        d = tb[c * NR:]
        s = xg[c, p0:]
        for j in range(nv):
            d[j] = s[j]
        for j in range(nv, NR):
            d[j] = zero


# ----------------------------------------------------------------------------- micro-kernel

@njit(inline="always", **_OPTS)
def _act(v, act, lo, hi):
    """relu (act 1) or clip(lo, hi) (act 2) of one value."""
    if act == ACT_RELU:
        v = np.float32(0.0) if v < np.float32(0.0) else v
    elif act == ACT_CLIP:
        v = lo if v < lo else v
        v = hi if v > hi else v
    return v


@njit(inline="always", **_OPTS)
def _act_tile(acc, act, lo, hi):
    """In place on the whole register tile: relu (act 1) or clip(lo, hi) (act 2)."""
    # NOTE: pixels outer, channels inner, as in the FMA loop (see _tile)
    if act == ACT_RELU or act == ACT_CLIP:
        for j in range(NR):
            for i in range(MR):
                acc[i * NR + j] = _act(acc[i * NR + j], act, lo, hi)


@njit(inline="always", **_OPTS)
def _segments(acc, of, rf, m0, mlo, mhi, oh, ow, Wq, OH, OW, load_res):
    """The row pieces of a tile that crosses grid rows or the valid width OW.

    of / rf: one image's output / residual, flat (M*OH*OW). load_res: acc[m-m0, j] +=
    rf[m, row, col] for the valid pixels; else of[m, row, col] = acc[m-m0, j].
    Channels mlo <= m < mhi only. Pieces move with masked vector copies (copy_masked16).
    """
    plane = OH * OW
    rt = stack_f32(_ACC)
    j = 0
    while j < NR and oh < OH:
        seg = min(NR - j, Wq - ow)
        nv = min(seg, OW - ow)
        for m in range(mlo, mhi):
            a0 = (m - m0) * NR + j
            off = m * plane + oh * OW + ow
            for t in range(0, nv, 16):
                if load_res:
                    copy_masked16(rf, off + t, rt, a0 + t, nv - t)
                else:
                    copy_masked16(acc, a0 + t, of, off + t, nv - t)
            if load_res:
                for t in range(nv):
                    acc[a0 + t] += rt[a0 + t]
        j += seg
        ow = 0
        oh += 1


@njit(inline="always", **_OPTS)
def _tile(xf, base, koff, wt, of, rf, has_res, bias, m0, mlo, mhi, oh, ow, Wq, OH, OW, act, lo, hi):
    """One MR x NR register tile (read at xf[base + koff[k] + j]) and its epilogue.

    K = koff.size taps; wt has at least K rows.

    The tile's first grid pixel is (oh, ow) of a grid Wq wide.

    acc = wt (K, MR)^T x pixels; then + bias (+ residual rf), activation, stored to of
    (flat (M, OH, OW)) for channels mlo <= m < mhi and grid pixels with column < OW.
    """
    acc = stack_f32(_ACC)
    bt = stack_f32(MR)
    zero = np.float32(0.0)
    M = bias.shape[0]
    for i in range(MR):
        bt[i] = bias[m0 + i] if m0 + i < M else zero
    # the accumulators start at the bias
    for j in range(NR):
        for i in range(MR):
            acc[i * NR + j] = bt[i]
    K = koff.shape[0]
    for k in range(K):
        # NOTE: slice first; indexing xf[koff[k] + p] directly adds wraparound -> gathers
        xs = xf[base + koff[k]:]
        wk = wt[k]
        for j in range(NR):
            xv = xs[j]
            for i in range(MR):
                acc[i * NR + j] += wk[i] * xv
    # Epilogue. NOTE: every loop over the tile runs pixels outer (the vectorized loop),
    # channels inner (unrolled), like the FMA loop: with channels outer LLVM fully unrolls
    # the short pixel loop and the SLP vectorizer then packs *channels* into vectors
    # (gathers / scatters). Every read of rf comes before the write of the same element of
    # of, so the residual may be out itself.
    plane = OH * OW
    # whole tile valid and in one output row (the common case): plain vector loops;
    # else masked copies of the row pieces. uint64 indices: no wraparound code.
    full = mlo == m0 and mhi == m0 + MR and ow + NR <= OW and oh < OH
    off = m0 * plane + oh * OW + ow
    if has_res:
        if full:
            for j in range(NR):
                for i in range(MR):
                    acc[i * NR + j] += rf[np.uint64(off + i * plane + j)]
        else:
            _segments(acc, of, rf, m0, mlo, mhi, oh, ow, Wq, OH, OW, True)
    _act_tile(acc, act, lo, hi)
    if full:
        for j in range(NR):
            for i in range(MR):
                of[np.uint64(off + i * plane + j)] = acc[i * NR + j]
    else:
        _segments(acc, of, rf, m0, mlo, mhi, oh, ow, Wq, OH, OW, False)


# ----------------------------------------------------------------------------- drivers

@njit(parallel=True, **_OPTS)
def _conv_grid(xf, gstride, koff, xt, kofft, kind, wp, wq, scale, zero, wtmp, bias, of, rf,
               has_res, M, Mg, Cg, P, Wq, OH, OW, PB, nthreads, ctr, act, lo, hi):
    """All tiles of one image. Grid pixel p of group g, tap k: xf[g*gstride + koff[k] + p].

    Order: pixel blocks of PB pixel tiles; in a block, channel tiles; in those, the block's
    pixel tiles (the weight tile stays in L1, the block's input in L2). Threads take runs
    of ``grab`` tiles of that sequence from the counter ctr[0] (zero on entry) until none
    are left, so a thread that starts late or loses its core leaves its share to the others
    (a thread re-decodes its panel only when a tile's channel tile is not the one it holds).
    Pixel tiles that would read past P (only when xt.size > 0: the 1x1 path) read the
    copied tail xt (C, NR) with offsets kofft instead.
    """
    nmt = wp.shape[0] if kind == KIND_F32 else wq.shape[0]
    ntiles = nmt * ((P + NR - 1) // NR)
    nth = max(1, min(nthreads, ntiles))
    grab = grab_size(ntiles, nth, PB)
    # NOTE: the loop body is one call: Numba's parfor passes then work on a few lines, not
    # on the inlined tile code (cold compile of this function 11.8 -> see _grid_worker)
    for th in prange(nth):
        _grid_worker(xf, gstride, koff, xt, kofft, kind, wp, wq, scale, zero, wtmp[th], bias,
                     of, rf, has_res, M, Mg, Cg, P, Wq, OH, OW, PB, ctr, act, lo, hi, grab)


@njit(**_OPTS)
def _grid_worker(xf, gstride, koff, xt, kofft, kind, wp, wq, scale, zero, wbuf, bias, of, rf,
                 has_res, M, Mg, Cg, P, Wq, OH, OW, PB, ctr, act, lo, hi, grab):
    """One thread's share of _conv_grid: runs of ``grab`` tiles from ctr[0] until none are
    left; wbuf is this slot's weight panel, decoded to float32."""
    nmt = wp.shape[0] if kind == KIND_F32 else wq.shape[0]
    K = koff.shape[0]
    npt = (P + NR - 1) // NR
    ntiles = nmt * npt
    tail_copy = xt.shape[0] > 0
    # held: the channel tile wbuf holds
    held = -1
    while True:
        i = fetch_add(ctr, 0, grab)
        if i >= ntiles:
            break
        iend = min(ntiles, i + grab)
        # position of tile i: pixel block pb (pbs tiles), channel tile mt, tile jj of the block
        pb = i // (nmt * PB)
        r = i - pb * nmt * PB
        pbs = min(PB, npt - pb * PB)
        mt = r // pbs
        jj = r - mt * pbs
        while i < iend:
            m0 = mt * MR
            mend = min(m0 + MR, M)
            if mt != held:
                if kind == KIND_F32:
                    wbuf[:K] = wp[mt]
                else:
                    decode_panel(kind, wq, scale, zero, mt, wbuf)
                held = mt
            wt = wbuf
            g0 = m0 // Mg
            cnt = min(pbs - jj, iend - i)
            p0 = (pb * PB + jj) * NR
            oh = p0 // Wq
            ow = p0 - oh * Wq
            for u in range(cnt):
                g = g0
                while g * Mg < mend:
                    mlo = max(m0, g * Mg)
                    mhi = min(mend, (g + 1) * Mg)
                    if tail_copy and p0 + NR > P:
                        src = xt
                        base = g * Cg * NR
                        ko = kofft
                    else:
                        src = xf
                        base = g * gstride + p0
                        ko = koff
                    _tile(src, base, ko, wt, of, rf, has_res, bias, m0, mlo, mhi, oh, ow,
                          Wq, OH, OW, act, lo, hi)
                    g += 1
                p0 += NR
                ow += NR
                while ow >= Wq:
                    ow -= Wq
                    oh += 1
            i += cnt
            jj = 0
            mt += 1
            if mt == nmt:
                mt = 0
                pb += 1
                pbs = min(PB, npt - pb * PB)


@njit(**_OPTS)
def _block(npt, per_tile, halo, wbytes):
    """Pixel tiles per block: the block's input (halo + per_tile each) within _L2_BLOCK bytes.

    Each pixel block streams all the weights (wbytes) once more. When the weights are the
    bigger operand there is a single block: each weight tile is read once and the input is
    re-read from L2 / L3 instead (1x1 1024->1024 at 14x14, 2 threads: 2x faster than blocking).
    """
    if wbytes >= halo + per_tile * npt:
        return npt
    pb = max(1, (_L2_BLOCK - halo) // max(per_tile, 1))
    nb = -(-npt // pb)
    return max(1, -(-npt // nb))


@njit(**_OPTS)
def _conv_tiled(x, kind, wp, wq, scale, zero, KH, KW, bias, res, out, xbuf, sh, sw, pt, pl, dh, dw,
                groups, act, act_lo, act_hi, nthreads):
    """Driver: x (N,C,H,W); weights (kind, wp, wq, scale, zero) as in PackedWeights; out
    (N,M,OH,OW); res out-shaped or size 0; xbuf flat f32 scratch (thread panels, then input)."""
    N, C, H, W = x.shape
    M = out.shape[1]
    OH = out.shape[2]
    OW = out.shape[3]
    if N == 0 or M == 0 or OH <= 0 or OW <= 0:
        return
    Cg = C // groups
    Mg = M // groups
    K = Cg * KH * KW
    lo = np.float32(act_lo)
    hi = np.float32(act_hi)
    has_res = res.size > 0
    # one weight panel per thread at the head of the scratch, K rounded up to even (64-byte
    # aligned panels). NOTE: a reshape inside _conv_grid's prange body made the whole
    # micro-kernel ~3x slower: the per-thread panel is a plain index of this 3-D view
    kp = K + K % 2
    wtmp = xbuf[:nthreads * kp * MR].reshape((nthreads, kp, MR))
    xbuf = xbuf[nthreads * kp * MR:]
    ctr = np.zeros(1, np.int64)   # _conv_grid's work counter
    pointwise = (KH == 1 and KW == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
                 and OH == H and OW == W)
    if pointwise:
        P = H * W
        koff = np.empty(K, np.int64)
        kofft = np.empty(K, np.int64)
        for c in range(K):
            koff[c] = c * P
            kofft[c] = c * NR
        PB = _block((P + NR - 1) // NR, Cg * NR * _F32, 0, M * K * _F32)
        for n in range(N):
            xg = x[n].reshape((C, P))
            xt = xbuf[:0]
            if P % NR != 0:
                xt = xbuf[:C * NR]
                _fill_tail(xg, (P // NR) * NR, xt)
            of = out[n].reshape(M * P)
            rf = of
            if has_res:
                rf = res[n].reshape(M * P)
            # the image is one grid row of P pixels. NOTE: a literal 1 here would type the
            # argument as Literal[int](1) and compile _conv_grid a second time
            one = OH // OH
            ctr[0] = 0
            _conv_grid(x[n].reshape(C * P), Cg * P, koff, xt, kofft, kind, wp, wq, scale, zero,
                       wtmp, bias, of, rf, has_res, M, Mg, Cg, P, P, one, P, PB, nthreads, ctr,
                       act, lo, hi)
        return
    Hq, Wq = phase_grid(OH, OW, KH, KW, sh, sw, dh, dw)
    plane = Hq * Wq
    nph = sh * sw
    cplane = nph * plane
    koff, used = tap_offsets(Cg, KH, KW, sh, sw, dh, dw, Hq, Wq)
    nused = 0
    for q in range(nph):
        nused += used[q]
    PB = _block((OH * Wq + NR - 1) // NR, Cg * nused * NR * _F32,
                Cg * nused * ((KH - 1) * dh // sh + 1) * Wq * _F32, M * K * _F32)
    xf = xbuf[:C * cplane + Wq + NR]
    for n in range(N):
        fill_phases(x[n], xf, sh, sw, pt, pl, Hq, Wq, used)
        of = out[n].reshape(M * OH * OW)
        rf = of
        if has_res:
            rf = res[n].reshape(M * OH * OW)
        ctr[0] = 0
        _conv_grid(xf, Cg * cplane, koff, xf[:0], koff, kind, wp, wq, scale, zero, wtmp, bias, of,
                   rf, has_res, M, Mg, Cg, OH * Wq, Wq, OH, OW, PB, nthreads, ctr, act, lo, hi)


def conv2d_tiled(x, packed, w_shape, bias, res, out, scratch_u8, sh, sw, pt, pl, dh, dw, groups,
                 act, lo, hi):
    """out (N,M,OH,OW) <- act(conv(x, w) + bias (+ res)), w given as panels.

    packed: a float32 array from ``pack_weights`` or a ``PackedWeights`` (fp16 / int8 / int4
    panels from ``tiled_weights.pack_stored``).
    x (N,C,H,W) float32 C-contiguous; w_shape (M, Cg, KH, KW); bias (M,) float32; res float32
    of out's shape, or a 0-size array for none; scratch_u8 uint8, at least
    ``tiled_scratch_bytes(...)`` bytes, 64-byte aligned. act 0 none / 1 relu / 2 clip(lo, hi).
    """
    M, Cg, KH, KW = (int(v) for v in w_shape)
    N, C = x.shape[0], x.shape[1]
    if groups <= 0 or C != Cg * groups or M % groups != 0:
        raise ValueError(f"conv2d_tiled: x {x.shape} / w {tuple(w_shape)} / groups {groups} mismatch")
    if not isinstance(packed, PackedWeights):
        packed = PackedWeights(KIND_F32, packed, NO_Q, NO_SCALE, NO_SCALE)
    if (packed.panels, packed.k) != ((M + MR - 1) // MR, Cg * KH * KW):
        raise ValueError(f"conv2d_tiled: {packed.panels} weight panels of K={packed.k} do not "
                         f"match w {tuple(w_shape)}")
    res = check_epilogue("conv2d_tiled", out, N, M, bias, res)
    nthreads = numba.get_num_threads()
    nbytes = tiled_scratch_bytes(x.shape, w_shape, out.shape, sh, sw, pt, pl, dh, dw, groups,
                                 nthreads)
    xbuf = scratch_floats("conv2d_tiled", scratch_u8, nbytes)
    # (no copies when already C-contiguous float32, as the caller should pass them)
    x = np.ascontiguousarray(x, dtype=np.float32)
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    res = np.ascontiguousarray(res, dtype=np.float32)
    _conv_tiled(x, *packed, KH, KW, bias, res, out, xbuf, int(sh), int(sw), int(pt), int(pl),
                int(dh), int(dw), int(groups), int(act), float(lo), float(hi), nthreads)


def check_epilogue(name, out, N, M, bias, res):
    """The output, bias and residual checks of a conv wrapper with a fused epilogue (this
    one and conv_chanvec's); returns res, or a 0-size array for none."""
    if out.ndim != 4 or out.shape[:2] != (N, M) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"{name}: out must be C-contiguous float32 ({N}, {M}, OH, OW), "
                         f"got {out.dtype} {out.shape}")
    if bias.shape != (M,):
        raise ValueError(f"{name}: bias {bias.shape} for {M} output channels")
    if res is None or res.size == 0:
        return _NO_RES
    if res.shape != out.shape:
        raise ValueError(f"{name}: residual {res.shape} is not out's shape {out.shape}")
    return res


def scratch_floats(name, scratch_u8, nbytes):
    """The first nbytes of the uint8 scratch as float32, after checking it is that big."""
    if scratch_u8.size < nbytes:
        raise ValueError(f"{name}: scratch has {scratch_u8.size} bytes, needs {nbytes}")
    nf = nbytes // _F32
    return scratch_u8[:nf * _F32].view(np.float32) if nf else _NO_BUF


_NO_RES = np.zeros((0, 0, 0, 0), np.float32)
_NO_BUF = np.zeros(0, np.float32)
