"""Direct fp32 convolution in the channel-blocked layout NCHW16c, with fused bias, residual
and activation.

Layout: a blocked tensor (N, ceil(C/16), H, W, 16) holds channel c of pixel (h, w) at
[n, c // 16, h, w, c % 16], so the 16 channels of one pixel are one 64-byte line and the
pixels of a block follow each other in row-major order; channels past C hold finite
values (they meet zero weights). The input may also be plain NCHW, read as blocks of 1
channel (C, H, W, 1): that is how a stem conv (3 input channels) takes the image.

Register tile (kernels/tile_fma.py): NPX = 6 consecutive output pixels (in flattened
oh * OW + ow order, so a tile may wrap from one row into the next) x up to NCH = 64 output
channels (nb <= 4 blocks), 24 zmm accumulators. Per input channel: nb weight vectors and
one broadcast per pixel. Weights are packed per chunk of 64 output channels in the order
the tile reads them (``pack_blocked``). Some paths use tiles of 24 / nb pixels instead, so a
narrow chunk keeps 24 accumulators too: 1x1 stride-1 unpadded convs (whose tile pixels are
consecutive lines, read from one base) and NCHW inputs (tiles within an output row). The
per-band loops of each path are kernels/blocked_bands.py.

Padding: per tap the tile computes each pixel's input offset (clamped inside the image);
a pixel whose tap lies outside keeps its accumulators through a lane-masked FMA. Only
taps at the image border pay.

Output: a tile's pixels of one 16-channel block are consecutive lines of the blocked
output, stored with bias, residual (blocked, out's shape; it may be out itself) and the
activation applied; pixels past the map's end (the last tile) are not stored.

Threads: jobs are (batch entry, band of up to BANDMAX tiles, chunk), band-major, so the
chunks that read the same input band run close together in time. Thread t first claims
the jobs of its own share of that order (atomics.claim), the same part of the image the
convs before it gave the same core, then takes the others' from their back ends: a late
or descheduled thread does less. Bands shrink on small maps until every thread has about
four jobs. A batch of convs of one geometry (the images of N > 1, or Winograd's products)
is one launch.

Weights kept as fp16 / int8 (memory=low) are decoded pass by pass into a per-thread
buffer (kernels/blocked_weights.py).
"""
import numpy as np
import numba
from numba import njit

from .atomics import claim, init_ranges
from .blocked_weights import FP32, KIND_F32, KIND_FP16, KIND_INT4
from .jobs import f32_2d_at, f32_at, i64_at, job_address, run_jobs, u8_at
from .epilogue import ACT_CLIP, ACT_NONE, ACT_RELU
from .stack import stack_f32
from .tile_fma import NBMAX, NPX
from .blocked_bands import (ACC, BLK, CBB, NCH, band_contig, band_nchw, band_nchw_rows,
                            band_one_block, band_onepass, band_passes,
                            band_passes_contig)

BANDMAX = 16        # tiles per job (at most)
# a 1x1 conv with at most this many input channels keeps each tile in registers from bias
# to store (one pass). 1024 was faster alone (ResNet-50's 512 -> 128 at 28x28: 0.28-0.31
# -> 0.25-0.27 ms with its weights in cache, SCRIPT=bench/blocked_layers.py
# bench/ab_kernels.sh 2 QT 3) but slower in the model, where a pass's weights come from
# memory and only the passes prefetch the next ones: ResNet-50 at 2 threads 26.06 ->
# 27.72 ms (bench/compare_engines.py, 9 rounds)
ONEPASS = 256
# band_nchw, band_onepass, band_passes, band_contig, band_passes_contig,
# band_nchw_rows, band_one_block
(PATH_NCHW, PATH_ONEPASS, PATH_PASSES, PATH_CONTIG, PATH_PASSES_CONTIG, PATH_NCHW_ROWS,
 PATH_ONE_BLOCK) = range(7)
TILE24 = 24       # accumulators of a contiguous tile: 24 / nb pixels x nb blocks

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


def pack_blocked(w, ci):
    """(M, C, KH, KW) float32 -> a flat float32 array of chunks of up to NCH output
    channels, for an input in blocks of ``ci`` channels (16, or 1 for NCHW). M and C are
    first padded with zero weights to Mp = 16 ceil(M/16) and Cp = ci ceil(C/ci); chunk c
    (nb = min(NBMAX, Mp/16 - NBMAX c) blocks wide) starts at c * NCH * K, K = KH KW Cp,
    as (KH, KW, Cp/16, 16, 16 nb) for a blocked input and (C, KH, KW, 16 nb) for an NCHW
    one: the orders the tile reads them in."""
    w = np.asarray(w)
    if w.dtype.kind == "f":
        w = w.astype(np.float32, copy=False)     # stored fp16 bits / int8 keep their dtype
    M, C, KH, KW = w.shape
    Mp, Cp = -(-M // BLK) * BLK, -(-C // ci) * ci
    if (Mp, Cp) != (M, C):
        w = np.pad(w, ((0, Mp - M), (0, Cp - C), (0, 0), (0, 0)))
    # filled chunk by chunk: a load in memory=low holds one chunk's copy at a time
    out = np.empty(Mp * Cp * KH * KW, w.dtype)
    for m0 in range(0, Mp, NCH):
        wc = w[m0:m0 + NCH]
        width = wc.shape[0]
        if ci == 1:     # (C, KH, KW, 16 nb): a tap row's weights follow each other
            wc = wc.transpose(1, 2, 3, 0)
        else:
            wc = wc.reshape(width, Cp // ci, ci, KH, KW).transpose(3, 4, 1, 2, 0)
        start = m0 * Cp * KH * KW
        out[start:start + wc.size].reshape(wc.shape)[...] = wc
    return out


def unpack_blocked(wp, w_shape, ci):
    """The (M, C, KH, KW) float32 weights ``pack_blocked(w, ci)`` made ``wp`` from."""
    M, C, KH, KW = (int(v) for v in w_shape)
    Mp, Cp = -(-M // BLK) * BLK, -(-C // ci) * ci
    w = np.empty((Mp, Cp, KH, KW), np.float32)
    for m0 in range(0, Mp, NCH):
        width = min(NCH, Mp - m0)
        part = wp[m0 * Cp * KH * KW:(m0 + width) * Cp * KH * KW]
        if ci == 1:
            w[m0:m0 + width] = part.reshape(Cp, KH, KW, width).transpose(3, 0, 1, 2)
        else:
            w[m0:m0 + width] = part.reshape(KH, KW, Cp // ci, ci, width).transpose(
                4, 2, 3, 0, 1).reshape(width, Cp, KH, KW)
    return np.ascontiguousarray(w[:M, :C])


def packed_size(w_shape, ci):
    """Length of ``pack_blocked``'s result for a weight of this shape."""
    M, C, KH, KW = w_shape
    return -(-M // BLK) * BLK * -(-C // ci) * ci * KH * KW


# The parameter block of one job function (kernels/jobs.py): int64 slots, written by
# _launch, read by the job. Arrays are an address and a size; lo and hi are float32 bits.
(S_X, S_XN, S_W, S_WN, S_Q, S_QN, S_S, S_S0, S_S1, S_Z, S_Z0, S_Z1, S_B, S_BN, S_O, S_ON,
 S_R, S_HASRES, S_OH, S_OW, S_H, S_W_, S_CB, S_CI, S_KH, S_KW, S_SH, S_SW, S_PT, S_PL,
 S_DH, S_DW, S_BAND, S_CTR, S_GRAB, S_LO, S_HI, S_C0, S_C1, S_KIND, S_ROWS) = range(41)
# a batch of NBAT convs of one geometry: input, weights and output of batch b start
# b * stride floats further (the weights' stride 0 for images sharing them)
S_NBAT, S_XBS, S_WBS, S_OBS = S_ROWS + 6, S_ROWS + 7, S_ROWS + 8, S_ROWS + 9
# the output's real channel count (an NCHW output stores no padding channels)
S_MOUT = S_ROWS + 10
# the threads' job ranges (atomics.claim): one word per thread, up to MAXT threads
S_NTH, S_RANGES = S_ROWS + 11, S_ROWS + 12
MAXT = 64
NSLOT = S_RANGES + MAXT


def _make_job(PATH, NB, SWC=0, ONCHW=False):
    """The job function of one (path, chunk width NB blocks): jobs (batch entry, band of
    tiles, chunk of the slot range [c0, c1)) claimed one by one from the threads' ranges
    (atomics.claim) until none are left. Only this path and width are compiled into it;
    the weight kind is read at run time (one decode call per pass), so fp32 and every
    stored kind share it. ONCHW (the row path only): the output is NCHW."""

    # pixels per tile: NPX, or on the contiguous and row paths as many as keep 24
    # accumulators
    TP = _tile_px(PATH, NB)

    @njit(**_OPTS)
    def job(aaddr, t):
        a = i64_at(aaddr, NSLOT)
        lo = f32_at(aaddr + S_LO * 8, 1)[0]
        hi = f32_at(aaddr + S_HI * 8, 1)[0]
        nth = a[S_NTH]
        ranges = i64_at(aaddr + S_RANGES * 8, nth)
        kind = a[S_KIND]
        nbat, xbs, wbs, obs = a[S_NBAT], a[S_XBS], a[S_WBS], a[S_OBS]
        st = (kind, u8_at(a[S_Q], a[S_QN]), f32_2d_at(a[S_S], a[S_S0], a[S_S1]),
              f32_2d_at(a[S_Z], a[S_Z0], a[S_Z1]),
              (a[S_ROWS], a[S_ROWS + 1], a[S_ROWS + 2], a[S_ROWS + 3], a[S_ROWS + 4],
               a[S_ROWS + 5]))
        bias = f32_at(a[S_B], a[S_BN])
        has_res = a[S_HASRES] != 0
        OH, OW, H, W = a[S_OH], a[S_OW], a[S_H], a[S_W_]
        CB, CI, KH, KW = a[S_CB], a[S_CI], a[S_KH], a[S_KW]
        sh, sw, pt, pl, dh, dw = a[S_SH], a[S_SW], a[S_PT], a[S_PL], a[S_DH], a[S_DW]
        c0, c1 = a[S_C0], a[S_C1]
        geo = (CB, CI, H, W, KH, KW, dh, dw)
        nchk = c1 - c0
        P = OH * OW
        ntile, band, _ = _jobs(OH, OW, TP, PATH == PATH_NCHW_ROWS, a[S_BAND], nchk, nbat)
        nper = ((ntile + band - 1) // band) * nchk
        plane_out = P if ONCHW else P * BLK
        mout = a[S_MOUT]
        K = KH * KW * CB * CI
        stage = np.empty(BANDMAX * ACC, np.float32)
        mk = stack_f32(TILE24)       # per-pixel 0/1 tap scales (up to 24 pixels a tile)
        offs = np.empty(max(NPX, TP), np.int64)
        bh = np.empty(BANDMAX * NPX, np.int64)
        bw = np.empty(BANDMAX * NPX, np.int64)
        # decoded rows of stored weights: a pass, or a whole chunk on the one-call paths
        wdec = np.empty(0 if kind == KIND_F32 else max(CBB, K) * NCH, np.float32)
        while True:
            jg = claim(ranges, t, nth)
            if jg < 0:
                break
            b = jg // nper
            jb = jg - b * nper
            xf = f32_at(a[S_X] + 4 * b * xbs, a[S_XN])
            wp = f32_at(a[S_W] + 4 * b * wbs, a[S_WN])
            of = f32_at(a[S_O] + 4 * b * obs, a[S_ON])
            rf = f32_at(a[S_R] + 4 * b * obs, a[S_ON])
            bi = jb // nchk
            c = c0 + jb - bi * nchk
            coff = c * NCH * K
            m0 = c * NCH
            t0 = bi * band
            nt = min(band, ntile - t0)
            base0 = (m0 >> 4) * plane_out + t0 * TP * BLK
            if PATH == PATH_CONTIG:
                band_contig(nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, t0 * TP,
                             P, of, rf, has_res, base0, plane_out, lo, hi, NB, TP)
                continue
            if PATH == PATH_NCHW_ROWS:
                band_nchw_rows(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo,
                                t0, OW, sh, pt, pl, of, rf, has_res, plane_out, lo, hi, NB,
                                TP, SWC, ONCHW, mout - m0)
                continue
            if PATH == PATH_PASSES_CONTIG:
                band_passes_contig(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0,
                                    geo, t0 * TP, P, of, rf, has_res, base0, plane_out,
                                    lo, hi, NB, TP)
                continue
            for u in range(nt):
                for p in range(NPX):
                    q = min((t0 + u) * NPX + p, P - 1)
                    oh = q // OW
                    bh[u * NPX + p] = oh * sh - pt
                    bw[u * NPX + p] = (q - oh * OW) * sw - pl
            npx_last = min(NPX, P - (t0 + nt - 1) * NPX)
            if PATH == PATH_NCHW:
                band_nchw(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, bh,
                           bw, of, rf, has_res, base0, plane_out, npx_last, lo, hi, NB)
            elif PATH == PATH_ONE_BLOCK:
                band_one_block(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo,
                                bh, bw, of, rf, has_res, base0, plane_out, npx_last, lo, hi,
                                NB)
            elif PATH == PATH_ONEPASS:
                band_onepass(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo,
                              bh, bw, of, rf, has_res, base0, plane_out, npx_last, lo, hi,
                              NB)
            else:
                band_passes(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo,
                             bh, bw, of, rf, has_res, base0, plane_out, npx_last, lo, hi,
                             NB)

    return job


_JOBS = {}      # (path, nb, swc, onchw) -> (job function, its address): it keeps its code


def _job(path, nb, swc=0, onchw=False):
    """Address of the job function for (path, nb, stride swc of the rows path, NCHW
    output), compiled on first use."""
    key = (path, nb, swc, onchw)
    got = _JOBS.get(key)
    if got is None:
        job = _make_job(*key)
        got = _JOBS[key] = (job, job_address(job))
    return got[1]


def _path(CB, CI, KH, KW, contiguous=False, sw=0, dw=1):
    """The job path; ``contiguous``: a 1x1 conv with stride 1 and no padding (output pixel
    q reads input pixel q); sw: the column stride of an NCHW input, which takes row tiles
    when it is one of ROW_STRIDES; dw: the column dilation."""
    if CI == 1:
        return PATH_NCHW_ROWS if sw in ROW_STRIDES else PATH_NCHW
    if CB == 1 and KH * KW > 1 and dw == 1:
        return PATH_ONE_BLOCK
    if KH * KW == 1 and CB * CI <= ONEPASS:
        return PATH_CONTIG if contiguous else PATH_ONEPASS
    return PATH_PASSES_CONTIG if contiguous else PATH_PASSES


_PLANS = {}


# column strides the NCHW row tiles are compiled for (the stems: 2; 1 for the rest)
ROW_STRIDES = (1, 2)


def nchw_out_ok(ci, sw):
    """True when conv2d_blocked can write an NCHW output itself: an NCHW input (ci 1)
    taking row tiles (column stride in ROW_STRIDES)."""
    return ci == 1 and sw in ROW_STRIDES


def _tile_px(path, nb):
    """Pixels per tile of the job function for (path, nb)."""
    return TILE24 // nb if path in (PATH_CONTIG, PATH_PASSES_CONTIG, PATH_NCHW_ROWS) else NPX


def _plan(path, MB, swc=0, onchw=False):
    """(job function addresses, rows (chunk range start, end, pixels per tile, 1 for row
    tiles)): full chunks of NBMAX blocks, then the narrower last one."""
    key = (path, MB, swc, onchw)
    plan = _PLANS.get(key)
    if plan is None:
        full, tail = divmod(MB, NBMAX)
        fns, chunks = [], []
        rows = int(path == PATH_NCHW_ROWS)
        if full:
            fns.append(_job(path, NBMAX, swc, onchw))
            chunks.append((0, full, _tile_px(path, NBMAX), rows))
        if tail:
            fns.append(_job(path, tail, swc, onchw))
            chunks.append((full, full + 1, _tile_px(path, tail), rows))
        plan = _PLANS[key] = (np.array(fns, np.int64), np.array(chunks, np.int64))
    return plan


@njit(inline="always", **_OPTS)
def _jobs(OH, OW, tp, rows, band, nchk, nbat):
    """(tiles, tiles per band, jobs) of one job function: tiles of tp pixels (within
    rows when ``rows``), bands of about ``band`` NPX-pixel tiles' worth of pixels, jobs =
    batch entries x bands x chunks."""
    ntile = OH * ((OW + tp - 1) // tp) if rows else (OH * OW + tp - 1) // tp
    b = max(1, band * NPX // tp)
    return ntile, b, nbat * ((ntile + b - 1) // b) * nchk


@njit(inline="always", **_OPTS)
def _addr(a):
    return np.int64(a.ctypes.data)


@njit(**_OPTS)
def _params(fns, chunks, xf, wp, kind, wq, scale_t, zero_t, rows, bias, of, rf, has_res, geo,
            lo, hi, nthreads, batch):
    """(one parameter block per job function, the threads to run them on): xf, wp, of and
    rf are those of batch entry 0; batch = (count, input, weight and output strides in
    floats). The blocks' counters start at 0."""
    M, OH, OW, H, W, CB, CI, KH, KW, sh, sw, pt, pl, dh, dw = geo
    nbat = batch[0]
    nch = (M // BLK + NBMAX - 1) // NBMAX
    ntile = (OH * OW + NPX - 1) // NPX
    # bands as long as BANDMAX tiles, shorter when that leaves fewer than 4 jobs a thread
    band = BANDMAX
    while band > 1 and ((ntile + band - 1) // band) * nch * nbat < 4 * nthreads:
        band //= 2
    nband = (ntile + band - 1) // band
    nth = max(1, min(nthreads, nband * nch * nbat, MAXT))
    nf = fns.shape[0]
    args = np.zeros((nf, NSLOT), np.int64)
    for k in range(nf):
        a = args[k]
        a[S_X], a[S_XN], a[S_W], a[S_WN] = _addr(xf), xf.size, _addr(wp), wp.size
        a[S_KIND], a[S_Q], a[S_QN] = kind, _addr(wq), wq.size
        a[S_S], a[S_S0], a[S_S1] = _addr(scale_t), scale_t.shape[0], scale_t.shape[1]
        a[S_Z], a[S_Z0], a[S_Z1] = _addr(zero_t), zero_t.shape[0], zero_t.shape[1]
        for j in range(6):
            a[S_ROWS + j] = rows[j]
        a[S_B], a[S_BN], a[S_O], a[S_ON], a[S_R] = _addr(bias), bias.size, _addr(of), of.size, \
            _addr(rf)
        a[S_HASRES] = 1 if has_res else 0
        a[S_OH], a[S_OW], a[S_H], a[S_W_] = OH, OW, H, W
        a[S_MOUT] = M
        a[S_CB], a[S_CI], a[S_KH], a[S_KW] = CB, CI, KH, KW
        a[S_SH], a[S_SW], a[S_PT], a[S_PL], a[S_DH], a[S_DW] = sh, sw, pt, pl, dh, dw
        a[S_BAND] = band
        a[S_NBAT], a[S_XBS], a[S_WBS], a[S_OBS] = batch
        a[S_C0], a[S_C1] = chunks[k, 0], chunks[k, 1]
        njobs = _jobs(OH, OW, chunks[k, 2], chunks[k, 3] != 0, band,
                      chunks[k, 1] - chunks[k, 0], nbat)[2]
        a[S_NTH] = nth
        init_ranges(a[S_RANGES:S_RANGES + nth], njobs, nth)
        fv = a.view(np.float32)
        fv[2 * S_LO] = lo
        fv[2 * S_HI] = hi
    return args, nth


@njit(**_OPTS)
def _launch(fns, chunks, xf, wp, kind, wq, scale_t, zero_t, rows, bias, of, rf, has_res, geo,
            lo, hi, nthreads, batch):
    """Fill one parameter block per job function and run them (kernels/jobs.py)."""
    args, nth = _params(fns, chunks, xf, wp, kind, wq, scale_t, zero_t, rows, bias, of, rf,
                        has_res, geo, lo, hi, nthreads, batch)
    run_jobs(fns, args, nth)


@njit(**_OPTS)
def _rerun(fns, params, nth, xf, bias, of, rf):
    """Run prepared parameter blocks (a copy: concurrent runs each count on their own) on
    new input, bias, output and residual arrays of the planned sizes."""
    args = params.copy()
    for k in range(args.shape[0]):
        args[k, S_X], args[k, S_B], args[k, S_O], args[k, S_R] = _addr(xf), _addr(bias), \
            _addr(of), _addr(rf)
    run_jobs(fns, args, nth)


def act_bounds(act, lo, hi):
    """The activation as float32 bounds (lo, hi) of a clamp: none is (-inf, inf), relu
    (0, inf), clip (lo, hi)."""
    inf = np.float32(np.inf)
    if act == ACT_NONE:
        return -inf, inf
    if act == ACT_RELU:
        return np.float32(0.0), inf
    if act == ACT_CLIP:
        return np.float32(lo), np.float32(hi)
    raise ValueError(f"unknown activation code {act}")


def _values(wp, stored):
    """How many weights the kernel will read: wp's, or the stored bytes' values."""
    n = stored.wq.size
    return wp.size if stored.kind == KIND_F32 else \
        n // 2 if stored.kind == KIND_FP16 else 2 * n if stored.kind == KIND_INT4 else n


def conv2d_blocked(x, wp, w_shape, bias, res, out, sh, sw, pt, pl, dh, dw, act, lo, hi,
                   stored=FP32):
    """out (N, ceil(M/16), OH, OW, 16) <- act(conv(x, w) + bias (+ res)), groups 1. x blocked
    (N, ceil(C/16), H, W, 16) (channels past C must be finite: they meet zero weights) or
    NCHW (N, C, H, W); wp from ``pack_blocked(w, 16 or 1)`` accordingly; bias (M,); res
    out-shaped or None. Output channels past M are written as act(0 + res). act 0 none /
    1 relu / 2 clip(lo, hi). ``stored``: the weights as kept in fp16 / int8 / int4
    (``blocked_weights.pack_stored_blocked``), wp then unused (empty).
    out may also be NCHW (N, M, OH, OW) where ``nchw_out_ok`` says so (an NCHW input with
    row tiles): the tiles are transposed as they are stored, no conversion after."""
    if not isinstance(x, np.ndarray) or not isinstance(out, np.ndarray):
        raise ValueError("conv2d_blocked: x and out must be arrays")
    has_res = res is not None and res.size > 0
    if has_res and (res.shape != out.shape or not res.flags.c_contiguous):
        raise ValueError(f"conv2d_blocked: residual {res.shape} is not out's shape {out.shape}")
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"conv2d_blocked: out {out.dtype} {out.shape} is not a C-contiguous "
                         f"float32 array")
    call = BlockedCall(x.shape, wp, w_shape, out.shape, (sh, sw, pt, pl, dh, dw), act, lo, hi,
                       has_res, stored)
    call(np.ascontiguousarray(x, dtype=np.float32), call.pad_bias(bias), res, out)


class BlockedCall:
    """One conv2d_blocked geometry prepared once (shapes checked, job functions and their
    parameter blocks made): a session's plan keeps one per conv and each run only gives the
    arrays, at a few microseconds less per call than conv2d_blocked. ``window`` is (sh, sw,
    pt, pl, dh, dw); the activation and whether a residual is added are fixed here."""

    def __init__(self, x_shape, wp, w_shape, out_shape, window, act, lo, hi, has_res,
                 stored=FP32):
        M, C, KH, KW = (int(v) for v in w_shape)
        MB = -(-M // BLK)
        x_shape, out_shape = tuple(int(v) for v in x_shape), tuple(int(v) for v in out_shape)
        if len(x_shape) == 5:
            N, CB, H, W, CI = x_shape
            if CI != BLK or CB != -(-C // BLK):
                raise ValueError(f"conv2d_blocked: blocked x {x_shape} does not match w "
                                 f"{tuple(w_shape)}")
        elif len(x_shape) == 4 and x_shape[1] == C:
            N, CB, H, W = x_shape
            CI = 1
        else:
            raise ValueError(f"conv2d_blocked: x {x_shape} does not match w {tuple(w_shape)}")
        if _values(wp, stored) != packed_size(w_shape, CI):
            raise ValueError(f"conv2d_blocked: {_values(wp, stored)} packed weights do not "
                             f"match w {tuple(w_shape)} with input blocks of {CI}")
        sh, sw, pt, pl, dh, dw = (int(v) for v in window)
        onchw = len(out_shape) == 4
        if onchw and (out_shape[:2] != (N, M) or not nchw_out_ok(CI, sw)):
            raise ValueError(f"conv2d_blocked: an NCHW out {out_shape} needs an NCHW input "
                             f"(x {x_shape}), column stride in {ROW_STRIDES} (not {sw}) "
                             f"and shape ({N}, {M}, OH, OW)")
        if not onchw and (len(out_shape) != 5 or out_shape[:2] != (N, MB) or
                          out_shape[4] != BLK):
            raise ValueError(f"conv2d_blocked: out {out_shape} is not blocked "
                             f"({N}, {MB}, OH, OW, {BLK}) float32")
        OH, OW = out_shape[2], out_shape[3]
        self.M, self.MB, self.out_shape, self.has_res = M, MB, out_shape, bool(has_res)
        self.empty = N == 0 or OH <= 0 or OW <= 0
        self.lo, self.hi = act_bounds(act, lo, hi)
        contiguous = KH == KW == 1 and sh == sw == 1 and pt == pl == 0 and (OH, OW) == (H, W)
        path = _path(CB, CI, KH, KW, contiguous, sw, dw)
        self.fns, self.chunks = _plan(path, MB, sw if path == PATH_NCHW_ROWS else 0, onchw)
        self.geo = (MB * BLK, OH, OW, H, W, CB, CI, KH, KW, sh, sw, pt, pl, dh, dw)
        # the whole batch in one launch: images n of x, out and res are one stride apart
        self.batch = (N, CB * H * W * CI, 0, (M if onchw else MB * BLK) * OH * OW)
        self.wp, self.stored = wp, stored
        self._params = {}        # thread count -> (parameter blocks, threads to use)

    def pad_bias(self, bias):
        """bias (M,) as the kernel reads it: float32, zero up to a whole block."""
        if bias.shape != (self.M,):
            raise ValueError(f"conv2d_blocked: bias {bias.shape} for {self.M} output channels")
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        if self.M % BLK:
            bias = np.concatenate([bias, np.zeros(self.MB * BLK - self.M, np.float32)])
        return bias

    def __call__(self, x, bias, res, out):
        """out <- the conv of x (C-contiguous, the planned shapes; bias from pad_bias; res
        out-shaped, or ignored when no residual was planned)."""
        if self.empty:
            return
        xf, of = x.reshape(-1), out.reshape(-1)
        rf = res.reshape(-1) if self.has_res else of
        nt = numba.get_num_threads()
        got = self._params.get(nt)
        if got is None:
            st = self.stored
            got = self._params[nt] = _params(
                self.fns, self.chunks, xf, self.wp, st.kind, st.wq, st.scale_t, st.zero_t,
                st.rows, bias, of, rf, self.has_res, self.geo, self.lo, self.hi, nt,
                self.batch)
            got[0][:, S_MOUT] = self.M
        _rerun(self.fns, got[0], got[1], xf, bias, of, rf)
