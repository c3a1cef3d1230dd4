"""Channel-vectorized implicit-GEMM fp32 convolution, NCHW, with fused bias + residual + activation.

The same GEMM as kernels/conv_tiled.py, out[m, p] = sum_k w[m, k] * x[k-th tap of pixel p], with
the roles of the two operands swapped in the register tile: NC=32 output channels are the vector
dimension (2 zmm) and NP=7 pixels are broadcast, so one tile is 7 x 2 = 14 zmm accumulators and
each k costs 2 vector loads of weights + 7 broadcasts of input for 14 FMAs.

Why a second kernel: conv_tiled's tiles are 32 pixels wide, so a 7x7 image (49 pixels) computes
64 and a 14x14 one 224 of 196; and each of its tiles reads K input rows of 32 pixels, one short
stream per row. Here the weights are the long contiguous stream: they are packed as chunks
(ceil(M/NC), K, NC), and a chunk is read front to back once per pixel tile; 7 divides every
ResNet / MobileNet spatial size (7 * 2^k squared). Measured on ResNet-50's 1x1 convs at 7x7 /
14x14, 2 threads, kernels called directly: 1.3-1.75x conv_tiled's speed.

Input: as conv_tiled, a stride-1 walk over a "padded-width grid" of OH x Wq pixels of the
phase-split scratch (kernels/phase_planes.py); grid columns ow >= OW are computed and not
stored. A 1x1 stride-1 unpadded conv whose pixel count is a multiple of NP reads the image
itself (grid = the H*W pixels, no copy).

Output: a tile is (pixels, channels) but out is NCHW. Each thread stages up to _SB tiles as
they are, then ``_flush`` turns 16 pixels x 16 channels at a time around in registers
(stack.transpose16) and stores channel rows with bias already in, residual added and the
activation applied. Channels past M (the last chunk's zero padding) and grid pixels outside
OH x OW are not stored. With a short K this store is a large share of the work, which is
why the chooser keeps K < 128 on conv_tiled.

Threads: pixel blocks (input of a block ~384 KiB, in L2: conv_tiled's ``_block``), in a
block the weight chunks, in a chunk the block's pixel tiles; threads take runs of that
sequence from a shared counter (as conv_tiled does), so a late thread does less of it.
A run (up to _SB tiles of one chunk) goes through K in blocks of KB rows, all its tiles per
block, so the block's weights are read from L1 by every tile of the run.
Groups: 1 only (the chooser sends grouped convs to conv_tiled).
"""

import numpy as np
import numba
from numba import njit, prange

from .atomics import fetch_add, grab_size
from .conv_tiled import _act, _block, check_epilogue, scratch_floats   # shared with conv_tiled
from .phase_planes import fill_phases, phase_grid, tap_offsets
from .stack import copy_masked16, stack_f32, transpose16

NP = 7    # pixels per register tile (broadcast)
NC = 32   # output channels per register tile (vectorized: 2 zmm)
_ACC = NP * NC
_SB = 16   # tiles staged per thread before they are stored
_STAGE = _SB * _ACC + 16 * NC   # + 16 pixel rows that transpose16 may read past the run
_F32 = 4
# K rows per block: a run's tiles reuse the block's weights (KB x NC floats, 8 KiB) from L1.
# Measured, 1 thread, Emerald Rapids: F 4.0-4.5 -> 3.7-3.8 ms, B 1.48-1.57 -> 1.29-1.32 ms
# (KB 128 alike on F, 256 slower; no blocking streamed a K x NC chunk from L2 per tile)
KB = 64

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


def pack_chanvec(w):
    """(M, C, KH, KW) float32 -> chunks (ceil(M/NC), K, NC), K = C*KH*KW in w's (c, kh, kw)
    order; channels past M are zero."""
    w = np.asarray(w, dtype=np.float32)
    M = w.shape[0]
    K = int(np.prod(w.shape[1:]))
    nch = -(-M // NC)
    wp = np.zeros((nch * NC, K), np.float32)
    wp[:M] = w.reshape(M, K)
    return np.ascontiguousarray(wp.reshape(nch, NC, K).transpose(0, 2, 1))


def _direct_input(x_shape, w_shape, out_shape, sh, sw, pt, pl):
    """True when the kernel reads the image itself: 1x1, stride 1, no padding, H*W % NP == 0."""
    return (w_shape[2] == 1 and w_shape[3] == 1 and sh == 1 and sw == 1 and pt == 0
            and pl == 0 and tuple(out_shape[2:]) == tuple(x_shape[2:])
            and (x_shape[2] * x_shape[3]) % NP == 0)


def chanvec_scratch_bytes(x_shape, w_shape, out_shape, sh, sw, pt, pl, dh, dw):
    """Bytes of uint8 scratch ``conv2d_chanvec`` needs: the phase-split padded input with
    slack, or none when the image is read in place."""
    if x_shape[0] == 0 or out_shape[1] == 0 or out_shape[2] <= 0 or out_shape[3] <= 0:
        return 0
    if _direct_input(x_shape, w_shape, out_shape, sh, sw, pt, pl):
        return 0
    Hq, Wq = phase_grid(out_shape[2], out_shape[3], w_shape[2], w_shape[3], sh, sw, dh, dw)
    return (x_shape[1] * sh * sw * Hq * Wq + Wq + NC) * _F32


# ----------------------------------------------------------------------------- micro-kernel

@njit(inline="always", **_OPTS)
def _tile(xf, koff, g, wc, k0, kn, bias, m0, first, st):
    """K rows k0..k0+kn-1 of one NP-pixel x NC-channel tile: grid pixels g..g+NP-1 (read at
    xf[koff[k] + g]), channels m0..m0+NC-1 of the chunk wc (K, NC). The tile starts from
    bias (padded to whole chunks) when ``first``, else from st (NP, NC), and is left in st."""
    acc = stack_f32(_ACC)
    if first:
        bt = stack_f32(NC)
        for j in range(NC):
            bt[j] = bias[m0 + j]
        # NOTE: every loop over the tile runs channels (the vector dimension) inner-most
        for i in range(NP):
            for j in range(NC):
                acc[i * NC + j] = bt[j]
    else:
        for t in range(_ACC):
            acc[t] = st[t]
    for kk in range(kn):
        xs = xf[koff[k0 + kk] + g:]
        wk = wc[k0 + kk]
        for j in range(NC):
            wv = wk[j]
            for i in range(NP):
                acc[i * NC + j] += xs[i] * wv
    # NOTE: one flat loop; as two nested loops LLVM vectorized over the 7 pixels (masked
    # gathers / scatters) instead of the 32 channels
    for t in range(_ACC):
        st[t] = acc[t]


@njit(inline="always", **_OPTS)
def _flush(st, npx, g0, of, rf, has_res, m0, nm, Wq, OH, OW, act, lo, hi):
    """Staged tiles (npx grid pixels from g0, NC channels each) -> of, 16 pixels x 16
    channels at a time: transposed in registers (transpose16), + residual (rf, read before
    of is written, so it may be of), activation, stored with masked vector moves; only grid
    pixels inside OH x OW and channels below m0 + nm.
    """
    plane = OH * OW
    tb = stack_f32(256)
    rt = stack_f32(16)
    s = 0
    g = g0
    gend = g0 + npx
    while g < gend:
        oh = g // Wq
        ow = g - oh * Wq
        if oh >= OH:
            break
        n = min(gend - g, Wq - ow)
        nv = min(n, OW - ow)      # the segment's pixels left of the grid's padding columns
        base = m0 * plane + oh * OW + ow
        for p0 in range(0, nv, 16):
            cnt = min(16, nv - p0)
            for h in range(0, nm, 16):
                # tb row c: channel m0 + h + c at pixels p0.. of the segment (16 lanes, cnt real)
                transpose16(st, (s + p0) * NC + h, NC, tb, 0)
                for c in range(min(16, nm - h)):
                    off = base + (h + c) * plane + p0
                    # NOTE: whole rows move with plain vector loads / stores: a masked load of
                    # the residual (copy_masked16) made a 56x56 conv 2.7x slower (cache misses
                    # under a mask are slow here); masks only for a segment's last pixels
                    if cnt == 16:
                        if has_res:
                            for t in range(16):
                                tb[c * 16 + t] += rf[np.uint64(off + t)]
                        for t in range(16):
                            of[np.uint64(off + t)] = _act(tb[c * 16 + t], act, lo, hi)
                    else:
                        if has_res:
                            copy_masked16(rf, off, rt, 0, cnt)
                            for t in range(16):
                                tb[c * 16 + t] += rt[t]
                        for t in range(16):
                            tb[c * 16 + t] = _act(tb[c * 16 + t], act, lo, hi)
                        copy_masked16(tb, c * 16, of, off, cnt)
        s += n
        g += n


@njit(parallel=True, **_OPTS)
def _conv_grid(xf, koff, wp, bias, of, rf, has_res, M, G, Wq, OH, OW, PB, nthreads, ctr, act,
               lo, hi):
    """All tiles of one image over a grid of G pixels (G = OH * Wq); ctr[0] is 0 on entry."""
    ntiles = wp.shape[0] * ((G + NP - 1) // NP)
    nth = max(1, min(nthreads, ntiles))
    grab = grab_size(ntiles, nth, PB)
    # NOTE: the loop body is one call, so Numba's parfor passes see a few lines instead of
    # the inlined tiles (see conv_tiled._conv_grid)
    for th in prange(nth):
        _grid_worker(xf, koff, wp, bias, of, rf, has_res, M, G, Wq, OH, OW, PB, ctr, act, lo,
                     hi, grab)


@njit(**_OPTS)
def _grid_worker(xf, koff, wp, bias, of, rf, has_res, M, G, Wq, OH, OW, PB, ctr, act, lo, hi,
                 grab):
    """One thread's share of _conv_grid: runs of ``grab`` tiles from ctr[0] until none are
    left."""
    nch = wp.shape[0]
    K = koff.shape[0]
    npt = (G + NP - 1) // NP
    ntiles = nch * npt
    # this thread's staged tiles: runs of up to _SB tiles, stored transposed by _flush
    st = stack_f32(_STAGE)
    while True:
        # runs of grab tiles from the shared counter (see conv_tiled._conv_grid)
        i = fetch_add(ctr, 0, grab)
        if i >= ntiles:
            break
        iend = min(ntiles, i + grab)
        while i < iend:
            # tile i: pixel block pb (pbs tiles), chunk c, tile jj of the block
            pb = i // (nch * PB)
            r = i - pb * nch * PB
            pbs = min(PB, npt - pb * PB)
            c = r // pbs
            jj = r - c * pbs
            cnt = min(pbs - jj, iend - i, _SB)
            wc = wp[c]
            m0 = c * NC
            nm = min(NC, M - m0)
            g0 = (pb * PB + jj) * NP
            # K in blocks of KB rows: a block's weights (KB x NC floats) stay in L1 while
            # the run's cnt tiles use them
            for k0 in range(0, K, KB):
                kn = min(KB, K - k0)
                for u in range(cnt):
                    _tile(xf, koff, g0 + u * NP, wc, k0, kn, bias, m0, k0 == 0,
                          st[u * _ACC:])
            _flush(st, min(cnt * NP, G - g0), g0, of, rf, has_res, m0, nm, Wq, OH, OW,
                   act, lo, hi)
            i += cnt


@njit(**_OPTS)
def _conv_chanvec(x, wp, KH, KW, bias, res, out, xbuf, sh, sw, pt, pl, dh, dw, act, act_lo,
                  act_hi, nthreads):
    N, C, H, W = x.shape
    M = out.shape[1]
    OH = out.shape[2]
    OW = out.shape[3]
    if N == 0 or M == 0 or OH <= 0 or OW <= 0:
        return
    lo = np.float32(act_lo)
    hi = np.float32(act_hi)
    has_res = res.size > 0
    K = C * KH * KW
    ctr = np.zeros(1, np.int64)   # _conv_grid's work counter
    direct = (KH == 1 and KW == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
              and OH == H and OW == W and (H * W) % NP == 0)
    if direct:
        P = H * W
        koff = np.empty(K, np.int64)
        for c in range(K):
            koff[c] = c * P
        # (weights 0 bytes: always blocked by input; a chunk is streamed once per tile anyway)
        PB = _block(P // NP, C * NP * _F32, 0, 0)
        for n in range(N):
            of = out[n].reshape(M * P)
            rf = of
            if has_res:
                rf = res[n].reshape(M * P)
            # the image is one grid row of P pixels. NOTE: a literal 1 here would type the
            # argument as Literal[int](1) and compile _conv_grid a second time
            one = OH // OH
            ctr[0] = 0
            _conv_grid(x[n].reshape(C * P), koff, wp, bias, of, rf, has_res, M, P, P, one, P,
                       PB, nthreads, ctr, act, lo, hi)
        return
    Hq, Wq = phase_grid(OH, OW, KH, KW, sh, sw, dh, dw)
    cplane = sh * sw * Hq * Wq
    koff, used = tap_offsets(C, KH, KW, sh, sw, dh, dw, Hq, Wq)
    nused = 0
    for q in range(sh * sw):
        nused += used[q]
    G = OH * Wq
    PB = _block((G + NP - 1) // NP, C * nused * NP * _F32,
                C * nused * ((KH - 1) * dh // sh + 1) * Wq * _F32, 0)
    xf = xbuf[:C * cplane + Wq + NC]
    for n in range(N):
        fill_phases(x[n], xf, sh, sw, pt, pl, Hq, Wq, used)
        of = out[n].reshape(M * OH * OW)
        rf = of
        if has_res:
            rf = res[n].reshape(M * OH * OW)
        ctr[0] = 0
        _conv_grid(xf, koff, wp, bias, of, rf, has_res, M, G, Wq, OH, OW, PB, nthreads, ctr,
                   act, lo, hi)


def conv2d_chanvec(x, wp, w_shape, bias, res, out, scratch_u8, sh, sw, pt, pl, dh, dw, act,
                   lo, hi):
    """out (N,M,OH,OW) <- act(conv(x, w) + bias (+ res)), groups 1, w given as chunks from
    ``pack_chanvec``. x (N,C,H,W) float32 C-contiguous; bias (M,) (zero-padded here to
    whole chunks when M is not a multiple of NC); res out-shaped or None /
    0-size; scratch_u8 uint8 of at least ``chanvec_scratch_bytes(...)`` bytes. act 0 none /
    1 relu / 2 clip(lo, hi)."""
    M, C, KH, KW = (int(v) for v in w_shape)
    N = x.shape[0]
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d_chanvec: x {x.shape} does not match w {tuple(w_shape)} "
                         f"(groups 1)")
    if wp.shape != (-(-M // NC), C * KH * KW, NC):
        raise ValueError(f"conv2d_chanvec: weight chunks {wp.shape} do not match w {tuple(w_shape)}")
    res = check_epilogue("conv2d_chanvec", out, N, M, bias, res)
    nbytes = chanvec_scratch_bytes(x.shape, w_shape, out.shape, sh, sw, pt, pl, dh, dw)
    xbuf = scratch_floats("conv2d_chanvec", scratch_u8, nbytes)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if M % NC:
        bias = np.concatenate([bias, np.zeros(NC - M % NC, np.float32)])
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    res = np.ascontiguousarray(res, dtype=np.float32)
    _conv_chanvec(x, wp, KH, KW, bias, res, out, xbuf, int(sh), int(sw), int(pt), int(pl),
                  int(dh), int(dw), int(act), float(lo), float(hi), numba.get_num_threads())
