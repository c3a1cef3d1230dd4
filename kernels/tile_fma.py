"""The blocked conv's register tile written as LLVM vector IR (kernels/conv_blocked.py).

A tile is npx output pixels x nb blocks of 16 output channels (nb <= NBMAX, npx <= NPX,
both literals): nb * npx <16 x float> accumulators, pixel-major in memory.

``fma_tap(acc, xf, offs, scale, wc, k, cb, cstride, wbstride, rows, rstride, ci, masked,
nb, npx, pf, pxstride)`` runs one tap loop on the tile held in ``acc``::

    for b in range(cb):            # blocks of input channels, cstride apart in xf
      for r in range(rows):        # rows of a block, rstride apart (1 row for NCHW16c)
        for i in range(ci):        # consecutive channels (or window columns) of the row
            w[j] = wc[k + b wbstride + (r ci + i) 16 nb + 16 j : +16]      for j < nb
            v[p] = xf[offs[p] + b cstride + r rstride + i]
            acc[p, 16j : +16] += v[p] * w[j]    for p, j (if masked: for p with scale[p] != 0)

The accumulators are read into registers before the loop and written back after it; the
inner loop is a plain counted loop (4 weight loads, npx broadcasts, nb * npx FMAs, a
counter), the block and row bases move in the outer one. ``pf`` > 0 also prefetches the
weights pf floats ahead (the next pass's, for the first tile of a band).
``tile_init`` / ``tile_store`` set a tile from the bias and store it (+ residual, clamped)
as runs of consecutive 16-float pixels; ``conv_tile`` does init, one tap loop and store
with the tile in registers throughout.

Written as IR because the same loops in Numba code are too big for LLVM's full unroller
at this tile size: it then leaves them scalar with the tile in memory (measured: 3 GF/s).
At 4 blocks x 6 pixels the tile takes 24 zmm, the weights 4 and a broadcast 1; 12 pixels
x 2 blocks (also 24) spilled, as its 12 broadcasts and pixel pointers did not fit beside
it. A flat loop whose block/row wrap was computed with selects every trip ran 20% slower
than the nested loops (the integer ops share ports with the FMAs).
"""
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .stack import _intrinsic_fn, transpose_vectors

NPX = 6             # pixels per tile (at most)
NBMAX = 4           # 16-channel blocks per tile (at most)
_V16 = ir.VectorType(ir.FloatType(), 16)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _fma_fn(module):
    name = "llvm.fma.v16f32"
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(_V16, [_V16, _V16, _V16]), name=name)
    return fn


def _splat(builder, s):
    v = builder.insert_element(ir.Constant(_V16, None), s, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 16), [0] * 16))


def _prefetch_fn(module):
    name = "llvm.prefetch.p0"
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(),
                                                                 _I32, _I32, _I32]), name=name)
    return fn


def _emit_loop(builder, init, x, xoffs, scales, w, k0, nblk, cstr, wbstr, nrows, rstr, nci,
               NB, NP, pf=None):
    """The tap loop of ``fma_tap`` on the accumulator values ``init`` (NB * NP vectors,
    pixel-major); returns the values after it (``init`` when it runs no trip). ``pf``
    (an i64, or None): when nonzero, each trip also prefetches the weights pf floats
    ahead of the ones it reads."""
    fma = _fma_fn(builder.module)
    zero, one = ir.Constant(_I64, 0), ir.Constant(_I64, 1)
    w16 = ir.Constant(_I64, 16 * NB)
    # pixels whose scale is 0 (a tap outside the image) keep their accumulators: a
    # per-pixel lane mask, set before the loop
    masks = None
    if scales is not None:
        masks = []
        for sc in scales:
            on = builder.fcmp_ordered("!=", sc, ir.Constant(ir.FloatType(), 0.0))
            v = builder.insert_element(ir.Constant(ir.VectorType(ir.IntType(1), 16), None), on,
                                       ir.Constant(_I32, 0))
            masks.append(builder.shuffle_vector(
                v, v, ir.Constant(ir.VectorType(_I32, 16), [0] * 16)))
    nouter = builder.mul(nblk, nrows)
    go = builder.and_(builder.icmp_signed(">", nouter, zero),
                      builder.icmp_signed(">", nci, zero))
    pre = builder.block
    outer = builder.append_basic_block("tap.row")
    inner = builder.append_basic_block("tap.ch")
    latch = builder.append_basic_block("tap.next")
    done = builder.append_basic_block("tap.done")
    builder.cbranch(go, outer, done)

    # outer loop: one (block, row) per trip; its x and weight bases
    builder.position_at_end(outer)
    t = builder.phi(_I64)
    r = builder.phi(_I64)
    xb, xr, wb, wr = (builder.phi(_I64) for _ in range(4))
    oacc = [builder.phi(_V16) for _ in init]
    for phi, v in zip((t, r, xb, xr, wb), (zero,) * 5):
        phi.add_incoming(v, pre)
    wr.add_incoming(k0, pre)
    for phi, v in zip(oacc, init):
        phi.add_incoming(v, pre)
    builder.branch(inner)

    # inner loop: the row's nci channels, x at xr + i, weights at wr + i * 16 NB
    builder.position_at_end(inner)
    i = builder.phi(_I64)
    i.add_incoming(zero, outer)
    accs = [builder.phi(_V16) for _ in init]
    for phi, v in zip(accs, oacc):
        phi.add_incoming(v, outer)
    wo = builder.add(wr, builder.mul(i, w16))
    wv = [builder.load(_ptr16(builder, w, builder.add(wo, ir.Constant(_I64, 16 * j))),
                       align=4) for j in range(NB)]
    if pf is not None:
        with builder.if_then(builder.icmp_signed("!=", pf, zero)):
            fetch = _prefetch_fn(builder.module)
            for j in range(NB):
                at = builder.gep(w, [builder.add(wo, builder.add(pf, ir.Constant(_I64, 16 * j)))])
                builder.call(fetch, [builder.bitcast(at, ir.IntType(8).as_pointer()),
                                     ir.Constant(_I32, 0), ir.Constant(_I32, 2),
                                     ir.Constant(_I32, 1)])
    xi = builder.add(xr, i)
    new = []
    for p in range(NP):
        xv = builder.load(builder.gep(x, [builder.add(xoffs[p], xi)]), align=4)
        bv = _splat(builder, xv)
        for j in range(NB):
            v = builder.call(fma, [bv, wv[j], accs[NB * p + j]])
            if masks is not None:       # a masked FMA (k register): no extra uop
                v = builder.select(masks[p], v, accs[NB * p + j])
            new.append(v)
    i1 = builder.add(i, one)
    body_end = builder.block
    i.add_incoming(i1, body_end)
    for phi, v in zip(accs, new):
        phi.add_incoming(v, body_end)
    builder.cbranch(builder.icmp_signed("<", i1, nci), inner, latch)

    # next (block, row): rows of a block, then the next block
    builder.position_at_end(latch)
    t1 = builder.add(t, one)
    r1 = builder.add(r, one)
    wrap = builder.icmp_signed("==", r1, nrows)
    xb1 = builder.select(wrap, builder.add(xb, cstr), xb)
    wb1 = builder.select(wrap, builder.add(wb, wbstr), wb)
    r2 = builder.select(wrap, zero, r1)
    xr1 = builder.select(wrap, xb1, builder.add(xr, rstr))
    wr1 = builder.select(wrap, builder.add(k0, wb1), builder.add(wr, builder.mul(nci, w16)))
    for phi, v in zip((t, r, xb, xr, wb, wr), (t1, r2, xb1, xr1, wb1, wr1)):
        phi.add_incoming(v, latch)
    for phi, v in zip(oacc, new):
        phi.add_incoming(v, latch)
    builder.cbranch(builder.icmp_signed("<", t1, nouter), outer, done)

    builder.position_at_end(done)
    outs = []
    for v0, v in zip(init, new):
        phi = builder.phi(_V16)
        phi.add_incoming(v0, pre)
        phi.add_incoming(v, latch)
        outs.append(phi)
    return outs


def _emit_bias(builder, b, m, NB, NP):
    bv = [builder.load(_ptr16(builder, b, builder.add(m, ir.Constant(_I64, 16 * j))), align=4)
          for j in range(NB)]
    return [bv[j] for _ in range(NP) for j in range(NB)]


def _emit_store(builder, vals, o, r, base_, stride_, n_, lo_, hi_, hres, NB, NP):
    """out[base + j stride + 16p : +16] = clamp(vals[NB p + j] (+ res there)) for p < n."""
    for p in range(NP):
        with builder.if_then(builder.icmp_signed(">", n_, ir.Constant(_I64, p))):
            for j in range(NB):
                off = builder.add(base_, builder.add(
                    builder.mul(stride_, ir.Constant(_I64, j)), ir.Constant(_I64, 16 * p)))
                emit_epilogue(builder, vals[NB * p + j], o, r, off, lo_, hi_, hres)


def _clamp(builder, v, lo_, hi_):
    mx = builder.select(builder.fcmp_ordered("<", v, lo_), lo_, v)
    return builder.select(builder.fcmp_ordered(">", mx, hi_), hi_, mx)


def _emit_store_nchw(builder, vals, o, r, base_, plane_, mv_, n_, lo_, hi_, hres, NB, NP):
    """NCHW output: out[base + (16 j + c) plane + p] = clamp(vals[NB p + j][c] (+ res
    there)) for p < n, 16 j + c < mv. Each block's pixel vectors are transposed in
    registers (16 at a time) into channel rows of consecutive pixels, stored with a lane
    mask; rows past mv (the padding channels of the last block) are not stored."""
    lanes = ir.Constant(ir.VectorType(_I64, 16), list(range(16)))
    undef = ir.Constant(_V16, None)
    vptr = _V16.as_pointer()
    mty = ir.VectorType(ir.IntType(1), 16)
    load = _intrinsic_fn(builder.module, "llvm.masked.load.v16f32.p0",
                         ir.FunctionType(_V16, [vptr, _I32, mty, _V16]))
    store = _intrinsic_fn(builder.module, "llvm.masked.store.v16f32.p0",
                          ir.FunctionType(ir.VoidType(), [_V16, vptr, _I32, mty]))
    align = ir.Constant(_I32, 4)
    for p0 in range(0, NP, 16):
        left = builder.sub(n_, ir.Constant(_I64, p0))
        nv = builder.insert_element(ir.Constant(ir.VectorType(_I64, 16), None), left,
                                    ir.Constant(_I32, 0))
        nv = builder.shuffle_vector(nv, nv, ir.Constant(ir.VectorType(_I32, 16), [0] * 16))
        mask = builder.icmp_signed("<", lanes, nv)
        for j in range(NB):
            rows = [vals[NB * p + j] for p in range(p0, min(NP, p0 + 16))]
            cols = transpose_vectors(builder, rows + [undef] * (16 - len(rows)))
            for c in range(16):
                ch = 16 * j + c
                with builder.if_then(builder.icmp_signed(">", mv_, ir.Constant(_I64, ch))):
                    off = builder.add(base_, builder.add(
                        builder.mul(plane_, ir.Constant(_I64, ch)), ir.Constant(_I64, p0)))
                    vp = _plus_residual(builder, cols[c], hres, lambda: builder.call(
                        load, [_ptr16(builder, r, off), align, mask, undef]))
                    builder.call(store, [_clamp(builder, vp, lo_, hi_),
                                         _ptr16(builder, o, off), align, mask])


def _store_tile(context, builder, tys, args, vals, o, r, base_, stride_, n_, epi, mv, NB,
                NP):
    """Store a tile's values blocked (_emit_store), or NCHW (_emit_store_nchw) when ``mv``
    is the index of the channel-count argument; ``epi``: the indices of lo, hi, has_res."""
    lo, hi, hres = epi
    lo_ = _f32_splat(builder, args[lo], tys[lo])
    hi_ = _f32_splat(builder, args[hi], tys[hi])
    if mv is None:
        _emit_store(builder, vals, o, r, base_, stride_, n_, lo_, hi_, args[hres], NB, NP)
    else:
        mv_ = context.cast(builder, args[mv], tys[mv], types.int64)
        _emit_store_nchw(builder, vals, o, r, base_, stride_, mv_, n_, lo_, hi_, args[hres],
                         NB, NP)


def _plus_residual(builder, v, hres, load_residual):
    """v + load_residual() when the run-time flag hres is set, else v (a branch, and a
    phi after it)."""
    with builder.if_else(hres) as (then, other):
        with then:
            v1 = builder.fadd(v, load_residual())
            blk_then = builder.block
        with other:
            blk_else = builder.block
    vp = builder.phi(_V16)
    vp.add_incoming(v1, blk_then)
    vp.add_incoming(v, blk_else)
    return vp


def emit_epilogue(builder, v, o, r, off, lo_, hi_, hres):
    """o[off : off + 16] = min(max(v (+ r[off : off + 16] when hres), lo), hi); NaN stays
    NaN. r may be o itself (read before the store)."""
    vp = _plus_residual(builder, v, hres,
                        lambda: builder.load(_ptr16(builder, r, off), align=4))
    builder.store(_clamp(builder, vp, lo_, hi_), _ptr16(builder, o, off), align=4)


def _f32_splat(builder, val, ty):
    return _splat(builder, builder.fptrunc(val, ir.FloatType()) if ty == types.float64
                  else val)


def _f32_arrays(*tys):
    return all(isinstance(t, types.Array) and t.dtype == types.float32 for t in tys)


def _tap_operands(context, builder, tys, args, NP, use_scale, pxstride=0):
    """x, pixel offsets, scales (or None), w and the seven loop ints of a tap's args
    (xf, offs, scale, wc, k, cb, cstride, wbstride, rows, rstride, ci). pxstride > 0: the
    pixels lie pxstride floats apart from offs[0] (one base register, constant
    displacements), and offs[1:] is not read."""
    x, o, s, w = (context.make_array(tys[j])(context, builder, args[j]).data
                  for j in range(4))
    ints = [context.cast(builder, args[j], tys[j], types.int64) for j in range(4, 11)]
    if pxstride:
        x0 = builder.load(o)
        xoffs = [builder.add(x0, ir.Constant(_I64, p * pxstride)) for p in range(NP)]
    else:
        xoffs = [builder.load(builder.gep(o, [ir.Constant(_I64, p)])) for p in range(NP)]
    scales = ([builder.load(builder.gep(s, [ir.Constant(_I64, p)])) for p in range(NP)]
              if use_scale else None)
    return x, xoffs, scales, w, ints


def _tap_types_ok(xf, offs, scale, wc, ints, masked, nb, npx):
    return (_f32_arrays(xf, scale, wc)
            and isinstance(offs, types.Array) and offs.dtype == types.int64
            and all(isinstance(t, types.Integer) for t in ints)
            and isinstance(masked, types.BooleanLiteral)
            and isinstance(nb, types.IntegerLiteral) and isinstance(npx, types.IntegerLiteral))


@intrinsic
def fma_tap(typingctx, acc, xf, offs, scale, wc, k, cb, cstride, wbstride, rows, rstride,
            ci, masked, nb, npx, pf, pxstride):
    ints = (k, cb, cstride, wbstride, rows, rstride, ci)
    if not (_f32_arrays(acc) and _tap_types_ok(xf, offs, scale, wc, ints, masked, nb, npx)
            and isinstance(pf, types.Integer) and isinstance(pxstride, types.IntegerLiteral)):
        return None
    NB, NP = int(nb.literal_value), int(npx.literal_value)
    PXS = int(pxstride.literal_value)
    use_scale = bool(masked.literal_value)
    sig = types.void(acc, xf, offs, scale, wc, k, cb, cstride, wbstride, rows, rstride, ci,
                     masked, nb, npx, pf, pxstride)

    def codegen(context, builder, signature, args):
        tys = signature.args
        pf_ = context.cast(builder, args[15], tys[15], types.int64)
        a = context.make_array(tys[0])(context, builder, args[0]).data
        x, xoffs, scales, w, ints = _tap_operands(context, builder, tys[1:12], args[1:12],
                                                  NP, use_scale, PXS)
        aptrs = [_ptr16(builder, a, ir.Constant(_I64, 16 * t)) for t in range(NB * NP)]
        init = [builder.load(p, align=4) for p in aptrs]
        outs = _emit_loop(builder, init, x, xoffs, scales, w, *ints, NB, NP, pf_)
        for p, v in zip(aptrs, outs):
            builder.store(v, p, align=4)
        return context.get_dummy_value()

    return sig, codegen


def _conv_tile_typer(nchw):
    def typer(xf, offs, scale, wc, k, cb, cstride, wbstride, rows, rstride, ci,
              masked, bias, m0, out, base, stride, res, has_res, n, lo, hi, nb, npx,
              pxstride, *mv):
        ints = (k, cb, cstride, wbstride, rows, rstride, ci)
        ok = (_tap_types_ok(xf, offs, scale, wc, ints, masked, nb, npx)
              and _f32_arrays(bias, out, res) and isinstance(has_res, types.Boolean)
              and all(isinstance(t, types.Integer) for t in (m0, base, stride, n, *mv))
              and all(isinstance(t, types.Float) for t in (lo, hi))
              and isinstance(pxstride, types.IntegerLiteral) and len(mv) == int(nchw))
        if not ok:
            return None
        NB, NP = int(nb.literal_value), int(npx.literal_value)
        PXS = int(pxstride.literal_value)
        use_scale = bool(masked.literal_value)
        sig = types.void(xf, offs, scale, wc, k, cb, cstride, wbstride, rows, rstride, ci,
                         masked, bias, m0, out, base, stride, res, has_res, n, lo, hi, nb,
                         npx, pxstride, *mv)

        def codegen(context, builder, signature, args):
            tys = signature.args
            x, xoffs, scales, w, ints = _tap_operands(context, builder, tys[:11], args[:11],
                                                      NP, use_scale, PXS)
            b, o, r = (context.make_array(tys[j])(context, builder, args[j]).data
                       for j in (12, 14, 17))
            m, base_, stride_, n_ = (context.cast(builder, args[j], tys[j], types.int64)
                                     for j in (13, 15, 16, 19))
            init = _emit_bias(builder, b, m, NB, NP)
            outs = _emit_loop(builder, init, x, xoffs, scales, w, *ints, NB, NP)
            _store_tile(context, builder, tys, args, outs, o, r, base_, stride_, n_,
                        (20, 21, 18), 25 if nchw else None, NB, NP)
            return context.get_dummy_value()

        return sig, codegen
    return typer


@intrinsic
def conv_tile(typingctx, xf, offs, scale, wc, k, cb, cstride, wbstride, rows, rstride, ci,
              masked, bias, m0, out, base, stride, res, has_res, n, lo, hi, nb, npx, pxstride):
    """A whole tile in registers. The accumulators start from bias[m0:] (tile_init), take
    one tap loop (fma_tap's arguments) and are stored as tile_store does. For a conv whose every tap
    fits one call (1x1 with few channels, a window inside the image of an NCHW input): no
    accumulator round trip through memory. pxstride (a literal): 0, or the distance in
    floats of consecutive pixels from offs[0] (``_tap_operands``)."""
    return _conv_tile_typer(False)(xf, offs, scale, wc, k, cb, cstride, wbstride, rows,
                                   rstride, ci, masked, bias, m0, out, base, stride, res,
                                   has_res, n, lo, hi, nb, npx, pxstride)


@intrinsic
def conv_tile_nchw(typingctx, xf, offs, scale, wc, k, cb, cstride, wbstride, rows, rstride,
                   ci, masked, bias, m0, out, base, stride, res, has_res, n, lo, hi, nb, npx,
                   pxstride, mv):
    """conv_tile storing to an NCHW output as tile_store_nchw does (base, stride: the
    tile's first pixel of channel m0 and the plane size; mv: channels m0 + mv on are not
    stored)."""
    return _conv_tile_typer(True)(xf, offs, scale, wc, k, cb, cstride, wbstride, rows,
                                  rstride, ci, masked, bias, m0, out, base, stride, res,
                                  has_res, n, lo, hi, nb, npx, pxstride, mv)


def _ptr16(builder, base, off):
    return builder.bitcast(builder.gep(base, [off]), _V16.as_pointer())


@intrinsic
def tile_init(typingctx, acc, bias, m0, nb, npx):
    """acc[p, 16j : 16j + 16] = bias[m0 + 16j : +16] for p < npx, j < nb (literals)."""
    ok = (_f32_arrays(acc, bias) and isinstance(m0, types.Integer)
          and isinstance(nb, types.IntegerLiteral) and isinstance(npx, types.IntegerLiteral))
    if not ok:
        return None
    NB, NP = int(nb.literal_value), int(npx.literal_value)
    sig = types.void(acc, bias, m0, nb, npx)

    def codegen(context, builder, signature, args):
        tys = signature.args
        a, b = (context.make_array(tys[j])(context, builder, args[j]).data for j in (0, 1))
        m = context.cast(builder, args[2], tys[2], types.int64)
        for t, v in enumerate(_emit_bias(builder, b, m, NB, NP)):
            builder.store(v, _ptr16(builder, a, ir.Constant(_I64, 16 * t)), align=4)
        return context.get_dummy_value()

    return sig, codegen


def _tile_store_typer(nchw):
    def typer(acc, out, base, stride, res, has_res, n, lo, hi, nb, npx, *mv):
        ok = (_f32_arrays(acc, out, res)
              and all(isinstance(t, types.Integer) for t in (base, stride, n, *mv))
              and isinstance(has_res, types.Boolean)
              and all(isinstance(t, types.Float) for t in (lo, hi))
              and isinstance(nb, types.IntegerLiteral) and isinstance(npx, types.IntegerLiteral)
              and len(mv) == int(nchw))
        if not ok:
            return None
        NB, NP = int(nb.literal_value), int(npx.literal_value)
        sig = types.void(acc, out, base, stride, res, has_res, n, lo, hi, nb, npx, *mv)

        def codegen(context, builder, signature, args):
            tys = signature.args
            a, o, r = (context.make_array(tys[j])(context, builder, args[j]).data
                       for j in (0, 1, 4))
            base_, stride_, n_ = (context.cast(builder, args[j], tys[j], types.int64)
                                  for j in (2, 3, 6))
            vals = [builder.load(_ptr16(builder, a, ir.Constant(_I64, 16 * t)), align=4)
                    for t in range(NB * NP)]
            _store_tile(context, builder, tys, args, vals, o, r, base_, stride_, n_,
                        (7, 8, 5), 11 if nchw else None, NB, NP)
            return context.get_dummy_value()

        return sig, codegen
    return typer


@intrinsic
def tile_store(typingctx, acc, out, base, stride, res, has_res, n, lo, hi, nb, npx):
    """out[base + j stride + 16p : +16] = min(max(acc[p, 16j : +16] (+ the same of res), lo),
    hi) for p < n (n <= npx), j < nb (literals): one tile's blocks, each a run of
    consecutive 16-float pixels. res may be out itself (each line is read before it is
    written)."""
    return _tile_store_typer(False)(acc, out, base, stride, res, has_res, n, lo, hi, nb, npx)


@intrinsic
def tile_store_nchw(typingctx, acc, out, base, stride, res, has_res, n, lo, hi, nb, npx, mv):
    """tile_store to an NCHW output: channel m0 + 16 j + c of pixel p (p < n) at
    out[base + (16 j + c) stride + p] (base: the tile's first pixel of channel m0, stride:
    the plane size), for 16 j + c < mv; res likewise NCHW."""
    return _tile_store_typer(True)(acc, out, base, stride, res, has_res, n, lo, hi, nb, npx,
                                   mv)
