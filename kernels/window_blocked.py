"""Window kernels on channel-blocked NCHW16c tensors: a run of output pixels of one row
and block, as LLVM vector IR (``window_run``), and the row driver (``window_rows``) shared
by the depthwise conv (kernels/depthwise_blocked.py) and max pooling
(kernels/pool_blocked.py).

Each output pixel of a block is one 16-lane vector. Runs of NPD = 8 pixels whose window
rows lie inside the image keep 8 accumulators in zmm over all taps; a row's last few go in
runs of 4, 2, 1; the left and right border pixels one at a time with the window clipped to
the image, so no padded copy is made. Window rows outside the image are clipped per output
row. Threads take rows (image, block, output row) of the map.
"""
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .conv_blocked import BLK
from .tile_fma import _I64, _V16, _fma_fn, _ptr16, _splat, emit_epilogue

DEPTHWISE, MAX = 0, 1
_OPTS = dict(cache=True, parallel=True, fastmath={"contract"}, error_model="numpy",
             boundscheck=False)

NPD = 8      # output pixels per register tile (8 zmm accumulators)


def _nan_max(builder, acc, x):
    """The lane-wise max of acc and x where a NaN wins: x if x is NaN, else acc if acc is
    NaN or not below x, else x: two compares and two blends (the llvm.maximum intrinsic,
    which also orders -0 below +0, expanded to a much longer sequence here)."""
    keep = builder.fcmp_unordered(">=", acc, x)         # acc NaN, x NaN, or acc >= x
    m = builder.select(keep, acc, x)
    return builder.select(builder.fcmp_unordered("uno", x, x), x, m)


@intrinsic
def window_run(typingctx, xf, x0, xrow, xpix, xtap, wf, w0, kh0, kh1, kw0, kw1, KW, bias, b0,
               of, o0, rf, has_res, lo, hi, npd, op):
    """npd (a literal) consecutive output pixels of one row and block whose taps in
    kh [kh0, kh1) x kw [kw0, kw1) are inside the image (the others are not). op (a
    literal) DEPTHWISE: acc[p] = bias[b0:+16] + sum over those taps of
    xf[x0 + kh xrow + p xpix + kw xtap : +16] * wf[w0 + (kh KW + kw) 16 : +16];
    MAX: acc[p] = the lane-wise max of those taps' x (NaN wins; -inf for no tap; wf and
    bias unused). Then (+ rf[o0 + 16p : +16]) clamped to [lo, hi] into
    of[o0 + 16p : +16]."""
    ints = (x0, xrow, xpix, xtap, w0, kh0, kh1, kw0, kw1, KW, b0, o0)
    ok = (all(isinstance(t, types.Array) and t.dtype == types.float32
              for t in (xf, wf, bias, of, rf))
          and all(isinstance(t, types.Integer) for t in ints)
          and isinstance(has_res, types.Boolean)
          and all(isinstance(t, types.Float) for t in (lo, hi))
          and isinstance(npd, types.IntegerLiteral) and isinstance(op, types.IntegerLiteral))
    if not ok:
        return None
    NP = int(npd.literal_value)
    is_max = int(op.literal_value) == MAX
    sig = types.void(xf, x0, xrow, xpix, xtap, wf, w0, kh0, kh1, kw0, kw1, KW, bias, b0, of,
                     o0, rf, has_res, lo, hi, npd, op)

    def codegen(context, builder, signature, args):
        tys = signature.args
        ptr = {j: context.make_array(tys[j])(context, builder, args[j]).data
               for j in (0, 5, 12, 14, 16)}
        iv = {j: context.cast(builder, args[j], tys[j], types.int64)
              for j in (1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 15)}
        x, w, bp, o, r = ptr[0], ptr[5], ptr[12], ptr[14], ptr[16]
        x0_, xrow_, xpix_, xtap_, w0_, kh0_, kh1_, kwa_, kwb_, kw_, b0_, o0_ = (
            iv[j] for j in (1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 15))
        f32 = ir.FloatType()
        lo_ = _splat(builder, builder.fptrunc(args[18], f32) if tys[18] == types.float64
                     else args[18])
        hi_ = _splat(builder, builder.fptrunc(args[19], f32) if tys[19] == types.float64
                     else args[19])
        fma = _fma_fn(builder.module)
        one, sixteen = ir.Constant(_I64, 1), ir.Constant(_I64, 16)
        if is_max:
            bv = ir.Constant(_V16, [float("-inf")] * 16)
        else:
            bv = builder.load(_ptr16(builder, bp, b0_), align=4)
        pre = builder.block
        go = builder.and_(builder.icmp_signed("<", kh0_, kh1_),
                          builder.icmp_signed("<", kwa_, kwb_))
        rowb = builder.append_basic_block("dw.row")
        tapb = builder.append_basic_block("dw.tap")
        latch = builder.append_basic_block("dw.next")
        done = builder.append_basic_block("dw.done")
        builder.cbranch(go, rowb, done)
        builder.position_at_end(rowb)
        kh = builder.phi(_I64)
        kh.add_incoming(kh0_, pre)
        racc = [builder.phi(_V16) for _ in range(NP)]
        for phi in racc:
            phi.add_incoming(bv, pre)
        xr = builder.add(x0_, builder.mul(kh, xrow_))
        wr = builder.add(w0_, builder.mul(builder.mul(kh, kw_), sixteen))
        builder.branch(tapb)
        builder.position_at_end(tapb)
        kw = builder.phi(_I64)
        kw.add_incoming(kwa_, rowb)
        accs = [builder.phi(_V16) for _ in range(NP)]
        for phi, v in zip(accs, racc):
            phi.add_incoming(v, rowb)
        if not is_max:
            wv = builder.load(_ptr16(builder, w, builder.add(wr, builder.mul(kw, sixteen))),
                              align=4)
        xt = builder.add(xr, builder.mul(kw, xtap_))
        new = []
        for p in range(NP):
            xo = builder.add(xt, builder.mul(ir.Constant(_I64, p), xpix_))
            xv = builder.load(_ptr16(builder, x, xo), align=4)
            new.append(_nan_max(builder, accs[p], xv) if is_max else
                       builder.call(fma, [xv, wv, accs[p]]))
        kw1 = builder.add(kw, one)
        kw.add_incoming(kw1, tapb)
        for phi, v in zip(accs, new):
            phi.add_incoming(v, tapb)
        builder.cbranch(builder.icmp_signed("<", kw1, kwb_), tapb, latch)
        builder.position_at_end(latch)
        kh1n = builder.add(kh, one)
        kh.add_incoming(kh1n, latch)
        for phi, v in zip(racc, new):
            phi.add_incoming(v, latch)
        builder.cbranch(builder.icmp_signed("<", kh1n, kh1_), rowb, done)
        builder.position_at_end(done)
        final = []
        for p in range(NP):
            phi = builder.phi(_V16)
            phi.add_incoming(bv, pre)
            phi.add_incoming(new[p], latch)
            final.append(phi)
        for p, phi in enumerate(final):
            emit_epilogue(builder, phi, o, r, builder.add(o0_, ir.Constant(_I64, 16 * p)),
                          lo_, hi_, args[17])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", **_OPTS)
def _taps_inside(i0, d, K, size):
    """The taps [k0, k1) of a window starting at i0 (dilation d, K taps) inside [0, size)."""
    k0 = 0
    while k0 < K and i0 + k0 * d < 0:
        k0 += 1
    k1 = K
    while k1 > k0 and i0 + (k1 - 1) * d >= size:
        k1 -= 1
    return k0, k1


@njit(inline="always", **_OPTS)
def window_rows(x, wf, bias, out, res, has_res, KH, KW, sh, sw, pt, pl, dh, dw, lo, hi, op):
    """Every output row of blocked x (N, CB, H, W, 16) -> out (N, CB, OH, OW, 16) through
    window_run (op a literal; wf (CB, KH, KW, 16) flat and bias (CB * 16,) for DEPTHWISE),
    rows (image, block, output row) over the threads."""
    N, CB, H, W, _ = x.shape
    OH, OW = out.shape[2], out.shape[3]
    xf = x.reshape(-1)
    of = out.reshape(-1)
    rf = res.reshape(-1)
    # output columns whose whole window row is inside the image: [ow_lo, ow_hi)
    ow_lo = 0
    while ow_lo < OW and ow_lo * sw - pl < 0:
        ow_lo += 1
    ow_hi = OW
    while ow_hi > ow_lo and (ow_hi - 1) * sw - pl + (KW - 1) * dw >= W:
        ow_hi -= 1
    for r in prange(N * CB * OH):
        n = r // (CB * OH)
        cb = (r // OH) % CB
        oh = r % OH
        ih0 = oh * sh - pt
        kh0, kh1 = _taps_inside(ih0, dh, KH, H)
        xplane = (n * CB + cb) * H * W * BLK
        wbase = cb * KH * KW * BLK
        obase = ((n * CB + cb) * OH + oh) * OW * BLK
        x0 = xplane + ih0 * W * BLK
        xr, xp, xt = dh * W * BLK, sw * BLK, dw * BLK
        # columns with the whole window inside: runs of 8, then 4, 2, 1 pixels
        ow = ow_lo
        while ow < ow_hi:
            left = ow_hi - ow
            xo, oo = x0 + (ow * sw - pl) * BLK, obase + ow * BLK
            if left >= NPD:
                window_run(xf, xo, xr, xp, xt, wf, wbase, kh0, kh1, 0, KW, KW, bias,
                           cb * BLK, of, oo, rf, has_res, lo, hi, NPD, op)
                ow += NPD
            elif left >= 4:
                window_run(xf, xo, xr, xp, xt, wf, wbase, kh0, kh1, 0, KW, KW, bias,
                           cb * BLK, of, oo, rf, has_res, lo, hi, 4, op)
                ow += 4
            elif left >= 2:
                window_run(xf, xo, xr, xp, xt, wf, wbase, kh0, kh1, 0, KW, KW, bias,
                           cb * BLK, of, oo, rf, has_res, lo, hi, 2, op)
                ow += 2
            else:
                window_run(xf, xo, xr, xp, xt, wf, wbase, kh0, kh1, 0, KW, KW, bias,
                           cb * BLK, of, oo, rf, has_res, lo, hi, 1, op)
                ow += 1
        # the border columns, one pixel at a time, the window clipped to the image
        for ow in range(OW):
            if ow >= ow_lo and ow < ow_hi:
                continue
            iw0 = ow * sw - pl
            kw0, kw1 = _taps_inside(iw0, dw, KW, W)
            window_run(xf, x0 + iw0 * BLK, xr, xp, xt, wf, wbase, kh0, kh1, kw0, kw1, KW,
                       bias, cb * BLK, of, obase + ow * BLK, rf, has_res, lo, hi, 1, op)
