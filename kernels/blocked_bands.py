"""The per-band tile loops of conv2d_blocked (kernels/conv_blocked.py), one per path: how a
band of register tiles walks its taps and input channels, and where its pixels' inputs
are. The job functions there pick a path per conv and call these (all inlined into them).

- ``band_nchw`` / ``band_nchw_rows``: an NCHW input (a stem), flattened tiles or tiles
  within an output row; a tile with its window inside the image takes every tap in one
  register-resident call.
- ``band_onepass`` / ``band_contig``: a 1x1 conv over at most ONEPASS channels, in one
  pass with the tile in registers; contiguous when stride 1 and unpadded.
- ``band_passes`` / ``band_passes_contig``: passes of CBB input channels per tap over
  every tile of the band, accumulators kept in a stage buffer between passes.
- ``band_one_block``: a blocked input of one 16-channel block, whole windows in one call.
"""
import numpy as np
from numba import njit

from .blocked_weights import KIND_F32, decode_rows
from .tile_fma import (NPX, conv_tile, conv_tile_nchw, fma_tap, tile_init, tile_store,
                       tile_store_nchw)

BLK = 16            # channels per block of the layout
NCH = 64            # output channels per chunk of weights (NBMAX blocks: one tile's width)
ACC = NPX * NCH     # floats of one tile's accumulators
# input channels (of a tap) per pass over a band's tiles: 32 KiB of weights, which stay in
# L1 beside the tile's inputs (256, 64 KiB, did not): alone at 2 threads, 1x1 2048 -> 512
# at 7x7 0.334 -> 0.310 ms, 3x3 256 -> 256 at 14x14 0.61 -> 0.57, 512 -> 512 at 7x7
# 0.73 -> 0.68 (SCRIPT=bench/blocked_layers.py bench/ab_kernels.sh 2 FQTUCSGRB 3)
CBB = 128

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(inline="always", **_OPTS)
def tile_offsets(offs, mk, bh, bw, u, c0, kh, kw, H, W, CI, dh, dw, plane_in):
    """Tile u's input offsets for tap (kh, kw) from channel block c0 (clamped inside the
    image) and their 0/1 scales; True when every pixel's tap is inside."""
    inside = True
    for p in range(NPX):
        ih = bh[u * NPX + p] + kh * dh
        iw = bw[u * NPX + p] + kw * dw
        ok = ih >= 0 and ih < H and iw >= 0 and iw < W
        inside = inside and ok
        mk[p] = np.float32(1.0) if ok else np.float32(0.0)
        ih = min(max(ih, 0), H - 1)
        iw = min(max(iw, 0), W - 1)
        offs[p] = c0 * plane_in + (ih * W + iw) * CI
    return inside


@njit(inline="always", **_OPTS)
def tap(inside, acc, xf, offs, mk, wc, k, cb, cstride, wbstride, ci, nb, npx, pf):
    """One fma_tap of a single row (rows 1): every pixel when the tap lies inside the
    image for all of them, else scaled by the pixels' 0/1 mk (fma_tap's masked form: the
    flag is a literal, so the two forms are two calls)."""
    if inside:
        fma_tap(acc, xf, offs, mk, wc, k, cb, cstride, wbstride, 1, 0, ci, False, nb, npx, pf,
                0)
    else:
        fma_tap(acc, xf, offs, mk, wc, k, cb, cstride, wbstride, 1, 0, ci, True, nb, npx, pf,
                0)


@njit(inline="always", **_OPTS)
def chunk_rows(wp, coff, st, r0, nrows, w16, m0, wdec):
    """(array, offset) to read rows r0 .. r0 + nrows - 1 of the chunk from: wp itself for
    fp32 weights, else wdec with those rows decoded into it."""
    if st[0] == KIND_F32:
        return wp, coff + r0 * w16
    decode_rows(st[0], st[1], st[2], st[3], st[4], coff, r0, nrows, w16, m0, wdec)
    return wdec, 0


@njit(inline="always", **_OPTS)
def band_nchw(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, bh, bw, of, rf,
               has_res, base0, plane_out, npx_last, lo, hi, nb):
    """nt tiles of a band (tile u's pixels' top-left taps in bh/bw[u * NPX:], its
    accumulators in stage[u * ACC:]), nb blocks wide (a literal), reading an NCHW input
    (blocks of 1 channel): a tile whose whole window is inside the image takes all its
    taps in one conv_tile call (channel, row, then the row's KW consecutive pixels,
    dw = 1); the others go tap by tap, then the epilogue and store.

    The chunk's weights start at wp[coff]; stored ones (kind fp16 / int8) are decoded
    into wdec first (kernels/blocked_weights.py). st = (kind, wq, scale_t, zero_t, rows);
    geo = (CB, CI, H, W, KH, KW, dh, dw).
    (At most 30 arguments: CPython passes a call with more as *args, which Numba's
    inliner refuses.)"""
    CB, CI, H, W, KH, KW, dh, dw = geo
    plane_in = H * W
    w16 = nb * BLK
    taps = KH * KW
    wc, k0 = chunk_rows(wp, coff, st, 0, CB * taps, w16, m0, wdec)
    for u in range(nt):
        acc = stage[u * ACC:]
        npx = NPX if u < nt - 1 else npx_last
        obase = base0 + u * NPX * BLK
        whole = dw == 1 and tile_offsets(offs, mk, bh, bw, u, 0, KH - 1, KW - 1, H, W, 1, dh,
                                     dw, plane_in)
        if whole and tile_offsets(offs, mk, bh, bw, u, 0, 0, 0, H, W, 1, dh, dw, plane_in):
            conv_tile(xf, offs, mk, wc, k0, CB, plane_in, taps * w16, KH, dh * W, KW,
                      False, bias, m0, of, obase, plane_out, rf, has_res, npx, lo, hi,
                      nb, NPX, 0)
            continue
        tile_init(acc, bias, m0, nb, NPX)
        for kh in range(KH):
            for kw in range(KW):
                k = k0 + (kh * KW + kw) * w16
                inside = tile_offsets(offs, mk, bh, bw, u, 0, kh, kw, H, W, 1, dh, dw,
                                      plane_in)
                tap(inside, acc, xf, offs, mk, wc, k, CB, plane_in, taps * w16, 1, nb, NPX, 0)
        tile_store(acc, of, obase, plane_out, rf, has_res, npx, lo, hi, nb, NPX)


@njit(inline="always", **_OPTS)
def band_onepass(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, bh, bw, of, rf,
                  has_res, base0, plane_out, npx_last, lo, hi, nb):
    """As band_nchw for a 1x1 conv on a blocked input of at most ONEPASS channels (one
    pass): each tile stays in registers from bias to store (conv_tile)."""
    CB, CI, H, W, KH, KW, dh, dw = geo
    plane_in = H * W * CI
    w16 = nb * BLK
    wc, k0 = chunk_rows(wp, coff, st, 0, CB * CI, w16, m0, wdec)
    for u in range(nt):
        npx = NPX if u < nt - 1 else npx_last
        obase = base0 + u * NPX * BLK
        if tile_offsets(offs, mk, bh, bw, u, 0, 0, 0, H, W, CI, dh, dw, plane_in):
            conv_tile(xf, offs, mk, wc, k0, CB, plane_in, CI * w16, 1, 0, CI, False, bias,
                      m0, of, obase, plane_out, rf, has_res, npx, lo, hi, nb, NPX, 0)
        else:
            conv_tile(xf, offs, mk, wc, k0, CB, plane_in, CI * w16, 1, 0, CI, True, bias,
                      m0, of, obase, plane_out, rf, has_res, npx, lo, hi, nb, NPX, 0)


@njit(inline="always", **_OPTS)
def band_contig(nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, q0, P, of, rf, has_res,
                 base0, plane_out, lo, hi, nb, tp):
    """As band_onepass for a 1x1 stride-1 unpadded conv (one pass), whose tile's pixels
    are consecutive lines of the input and output: tiles of tp = 24 / nb pixels (a
    literal: every width keeps 24 accumulators), read from one base; the last, partial
    tile reads its pixels through clamped offsets."""
    CB, CI, H, W, KH, KW, dh, dw = geo
    plane_in = H * W * CI
    w16 = nb * BLK
    wc, k0 = chunk_rows(wp, coff, st, 0, CB * CI, w16, m0, wdec)
    for u in range(nt):
        qa = q0 + u * tp
        npx = min(tp, P - qa)
        obase = base0 + u * tp * BLK
        if npx == tp:
            offs[0] = qa * CI
            conv_tile(xf, offs, mk, wc, k0, CB, plane_in, CI * w16, 1, 0, CI, False, bias,
                      m0, of, obase, plane_out, rf, has_res, npx, lo, hi, nb, tp, BLK)
        else:
            for p in range(tp):
                offs[p] = min(qa + p, P - 1) * CI
            conv_tile(xf, offs, mk, wc, k0, CB, plane_in, CI * w16, 1, 0, CI, False, bias,
                      m0, of, obase, plane_out, rf, has_res, npx, lo, hi, nb, tp, 0)


@njit(inline="always", **_OPTS)
def store_band(stage, nt, of, base0, plane_out, rf, has_res, npx_last, lo, hi, nb, tp):
    """Store the band's nt tiles of tp pixels from stage (the last one npx_last pixels)."""
    for u in range(nt):
        npx = tp if u < nt - 1 else npx_last
        tile_store(stage[u * ACC:], of, base0 + u * tp * BLK, plane_out, rf, has_res, npx,
                   lo, hi, nb, tp)


@njit(inline="always", **_OPTS)
def band_passes(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, bh, bw, of, rf,
                 has_res, base0, plane_out, npx_last, lo, hi, nb):
    """As band_nchw for a blocked input in general: per tap and pass of up to CBB input
    channels, every tile of the band (so that pass's weights are read from cache by all of
    them), accumulators kept in stage between passes; stored weights are decoded pass by
    pass."""
    CB, CI, H, W, KH, KW, dh, dw = geo
    kind = st[0]
    plane_in = H * W * CI
    w16 = nb * BLK
    cstep = max(1, CBB // CI)
    for u in range(nt):
        tile_init(stage[u * ACC:], bias, m0, nb, NPX)
    k = 0
    for kh in range(KH):
        for kw in range(KW):
            for c0 in range(0, CB, cstep):
                cn = min(cstep, CB - c0)
                wc, kp = chunk_rows(wp, coff, st, k // w16, cn * CI, w16, m0, wdec)
                for u in range(nt):
                    acc = stage[u * ACC:]
                    # the band's first tile brings the next pass's weights (they follow
                    # this pass's) into cache while it computes
                    pf = cn * CI * w16 if u == 0 and kind == KIND_F32 else 0
                    inside = tile_offsets(offs, mk, bh, bw, u, c0, kh, kw, H, W, CI, dh, dw,
                                          plane_in)
                    tap(inside, acc, xf, offs, mk, wc, kp, cn, plane_in, CI * w16, CI, nb, NPX,
                        pf)
                k += cn * CI * w16
    store_band(stage, nt, of, base0, plane_out, rf, has_res, npx_last, lo, hi, nb, NPX)


@njit(inline="always", **_OPTS)
def band_one_block(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, bh, bw, of,
                    rf, has_res, base0, plane_out, npx_last, lo, hi, nb):
    """As band_nchw for a blocked input of a single 16-channel block (C <= 16, dw = 1): a
    tile whose window is inside the image takes every tap in one conv_tile call (rows of
    KW pixels x 16 channels, consecutive in the blocked layout), so the accumulators stay
    in registers instead of going through memory tap by tap; the others go tap by tap."""
    CB, CI, H, W, KH, KW, dh, dw = geo
    plane_in = H * W * CI
    w16 = nb * BLK
    taps = KH * KW
    wc, k0 = chunk_rows(wp, coff, st, 0, taps * CI, w16, m0, wdec)
    for u in range(nt):
        acc = stage[u * ACC:]
        npx = NPX if u < nt - 1 else npx_last
        obase = base0 + u * NPX * BLK
        if tile_offsets(offs, mk, bh, bw, u, 0, KH - 1, KW - 1, H, W, CI, dh, dw, plane_in) and \
                tile_offsets(offs, mk, bh, bw, u, 0, 0, 0, H, W, CI, dh, dw, plane_in):
            conv_tile(xf, offs, mk, wc, k0, 1, plane_in, taps * CI * w16, KH, dh * W * CI,
                      KW * CI, False, bias, m0, of, obase, plane_out, rf, has_res, npx, lo,
                      hi, nb, NPX, 0)
            continue
        tile_init(acc, bias, m0, nb, NPX)
        for kh in range(KH):
            for kw in range(KW):
                k = k0 + (kh * KW + kw) * CI * w16
                inside = tile_offsets(offs, mk, bh, bw, u, 0, kh, kw, H, W, CI, dh, dw,
                                      plane_in)
                tap(inside, acc, xf, offs, mk, wc, k, 1, plane_in, taps * CI * w16, CI, nb, NPX,
                    0)
        tile_store(acc, of, obase, plane_out, rf, has_res, npx, lo, hi, nb, NPX)


@njit(inline="always", **_OPTS)
def band_passes_contig(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, q0, P,
                        of, rf, has_res, base0, plane_out, lo, hi, nb, tp):
    """band_passes for a 1x1 stride-1 unpadded conv over more than ONEPASS channels, on
    band_contig's tiles (tp = 24 / nb consecutive pixels from one base; a partial last
    tile through clamped offsets)."""
    CB, CI, H, W, KH, KW, dh, dw = geo
    kind = st[0]
    plane_in = H * W * CI
    w16 = nb * BLK
    cstep = max(1, CBB // CI)
    for u in range(nt):
        tile_init(stage[u * ACC:], bias, m0, nb, tp)
    npx_last = min(tp, P - (q0 + (nt - 1) * tp))
    k = 0
    for c0 in range(0, CB, cstep):
        cn = min(cstep, CB - c0)
        wc, kp = chunk_rows(wp, coff, st, k // w16, cn * CI, w16, m0, wdec)
        for u in range(nt):
            acc = stage[u * ACC:]
            pf = cn * CI * w16 if u == 0 and kind == KIND_F32 else 0
            qa = q0 + u * tp
            if u < nt - 1 or npx_last == tp:
                offs[0] = c0 * plane_in + qa * CI
                fma_tap(acc, xf, offs, mk, wc, kp, cn, plane_in, CI * w16, 1, 0, CI, False,
                        nb, tp, pf, BLK)
            else:
                for p in range(tp):
                    offs[p] = c0 * plane_in + min(qa + p, P - 1) * CI
                fma_tap(acc, xf, offs, mk, wc, kp, cn, plane_in, CI * w16, 1, 0, CI, False,
                        nb, tp, pf, 0)
        k += cn * CI * w16
    store_band(stage, nt, of, base0, plane_out, rf, has_res, npx_last, lo, hi, nb, tp)


@njit(inline="always", **_OPTS)
def band_nchw_rows(stage, nt, xf, offs, mk, wp, coff, st, wdec, bias, m0, geo, t0, OW, sh,
                    pt, pl, of, rf, has_res, plane_out, lo, hi, nb, tp, swc, onchw, mv):
    """band_nchw on tiles that never leave an output row: tile t is row t // tpr, pixels
    tp (t % tpr) .. +tp (tpr = ceil(OW / tp), the row's last tile partial), tp = 24 / nb
    (24 accumulators at every width). A whole tile with its whole window inside the image
    reads all its taps in one conv_tile call from one base, its pixels swc (the stride, a
    literal) apart; the others go tap by tap through per-pixel offsets. onchw (a
    constant of the job): the output (and residual) are NCHW, plane_out is then the plane
    size and only mv channels from m0 on are stored."""
    CB, CI, H, W, KH, KW, dh, dw = geo
    plane_in = H * W
    w16 = nb * BLK
    taps = KH * KW
    tpr = (OW + tp - 1) // tp
    wc, k0 = chunk_rows(wp, coff, st, 0, CB * taps, w16, m0, wdec)
    for u in range(nt):
        t = t0 + u
        oh = t // tpr
        ow0 = (t - oh * tpr) * tp
        npx = min(tp, OW - ow0)
        if onchw:
            obase = m0 * plane_out + oh * OW + ow0
        else:
            obase = (m0 >> 4) * plane_out + (oh * OW + ow0) * BLK
        ih0 = oh * sh - pt
        iw0 = ow0 * swc - pl
        if npx == tp and dw == 1 and ih0 >= 0 and ih0 + (KH - 1) * dh < H and iw0 >= 0 and \
                iw0 + (tp - 1) * swc + KW - 1 < W:
            offs[0] = ih0 * W + iw0
            if onchw:
                conv_tile_nchw(xf, offs, mk, wc, k0, CB, plane_in, taps * w16, KH, dh * W, KW,
                               False, bias, m0, of, obase, plane_out, rf, has_res, npx, lo,
                               hi, nb, tp, swc, mv)
            else:
                conv_tile(xf, offs, mk, wc, k0, CB, plane_in, taps * w16, KH, dh * W, KW,
                          False, bias, m0, of, obase, plane_out, rf, has_res, npx, lo, hi,
                          nb, tp, swc)
            continue
        acc = stage[:tp * nb * BLK]
        tile_init(acc, bias, m0, nb, tp)
        for kh in range(KH):
            ih = ih0 + kh * dh
            rok = ih >= 0 and ih < H
            ihc = min(max(ih, 0), H - 1)
            for kw in range(KW):
                inside = rok
                for p in range(tp):
                    iw = (ow0 + min(p, npx - 1)) * swc - pl + kw * dw
                    ok = rok and iw >= 0 and iw < W
                    inside = inside and ok
                    mk[p] = np.float32(1.0) if ok else np.float32(0.0)
                    offs[p] = ihc * W + min(max(iw, 0), W - 1)
                k = k0 + (kh * KW + kw) * w16
                tap(inside, acc, xf, offs, mk, wc, k, CB, plane_in, taps * w16, 1, nb, tp, 0)
        if onchw:
            tile_store_nchw(acc, of, obase, plane_out, rf, has_res, npx, lo, hi, nb, tp, mv)
        else:
            tile_store(acc, of, obase, plane_out, rf, has_res, npx, lo, hi, nb, tp)
