"""Micro-kernel helpers for CPU njit code: stack arrays and masked vector copies.

``np.zeros`` / ``np.empty`` inside a kernel allocate on the heap (NRT), and LLVM cannot keep
such an array in registers. ``stack_f32(n)`` returns a 1-D float32 array of ``n`` elements
backed by an ``alloca`` in the function's entry block: after the small constant loops that
index it are unrolled, LLVM promotes the elements to (vector) registers. That is how the
register-tiled conv keeps its accumulator tile in zmm registers.

``n`` must be a compile-time constant (a module-level int or a literal); the contents are
uninitialized.

``copy_masked16`` copies up to 16 floats with one masked vector load and store (AVX-512
``vmovups {k}``; LLVM scalarizes it on CPUs without masked moves), for the ragged edges of a
register tile: a plain loop over fewer than 16 elements runs scalar.
"""

from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def stack_ptr_f32(typingctx, n):
    """float32* to ``n`` (a literal int) uninitialized floats in the entry block's frame."""
    if not isinstance(n, types.IntegerLiteral):
        return None
    count = int(n.literal_value)
    sig = types.CPointer(types.float32)(n)

    def codegen(context, builder, signature, args):
        fty = context.get_value_type(types.float32)
        return cgutils.alloca_once(builder, fty, size=count)

    return sig, codegen


@njit(inline="always")
def stack_f32(n):
    """A (n,) float32 array on the stack (n a compile-time constant); uninitialized."""
    return carray(stack_ptr_f32(n), (n,))


_V16 = ir.VectorType(ir.FloatType(), 16)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _intrinsic_fn(module, name, fnty):
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, fnty, name=name)
    return fn


@intrinsic
def copy_masked16(typingctx, src, soff, dst, doff, n):
    """dst[doff + t] = src[soff + t] for t < min(n, 16); nothing else is read or written.

    src, dst: float32 C-contiguous 1-D arrays; soff, doff, n: integers (n <= 0 copies nothing).
    No bounds checks: the caller guarantees the n elements exist.
    """
    ok = (isinstance(src, types.Array) and isinstance(dst, types.Array)
          and src.dtype == types.float32 and dst.dtype == types.float32
          and all(isinstance(t, types.Integer) for t in (soff, doff, n)))
    if not ok:
        return None
    sig = types.void(src, soff, dst, doff, n)

    def codegen(context, builder, signature, args):
        sty, soty, dty, doty, nty = signature.args
        s = context.make_array(sty)(context, builder, args[0])
        d = context.make_array(dty)(context, builder, args[2])
        so = context.cast(builder, args[1], soty, types.int64)
        do = context.cast(builder, args[3], doty, types.int64)
        nn = context.cast(builder, args[4], nty, types.int64)
        lanes = ir.Constant(ir.VectorType(_I64, 16), list(range(16)))
        nv = builder.insert_element(ir.Constant(ir.VectorType(_I64, 16), None), nn,
                                    ir.Constant(_I32, 0))
        nv = builder.shuffle_vector(nv, nv, ir.Constant(ir.VectorType(_I32, 16), [0] * 16))
        mask = builder.icmp_signed("<", lanes, nv)
        sp = builder.gep(s.data, [so])
        dp = builder.gep(d.data, [do])
        load = _intrinsic_fn(builder.module, "llvm.masked.load.v16f32.p0",
                             ir.FunctionType(_V16, [sp.type, _I32, mask.type, _V16]))
        store = _intrinsic_fn(builder.module, "llvm.masked.store.v16f32.p0",
                              ir.FunctionType(ir.VoidType(), [_V16, dp.type, _I32, mask.type]))
        v = builder.call(load, [sp, ir.Constant(_I32, 4), mask, ir.Constant(_V16, None)])
        builder.call(store, [v, dp, ir.Constant(_I32, 4), mask])
        return context.get_dummy_value()

    return sig, codegen


def transpose_vectors(builder, rows):
    """The 16 <16 x float> values ``rows`` (row r, lane c) transposed: 16 values, value c
    holding lane c of every row (64 two-source shuffles). Used by transpose16 and by the
    blocked tile's NCHW store (kernels/tile_fma.py)."""
    rows = list(rows)
    # each round swaps bit b of the row index with bit b of the lane index
    for b in (8, 4, 2, 1):
        lo_mask = ir.Constant(ir.VectorType(_I32, 16),
                              [lane if not lane & b else 16 + lane - b for lane in range(16)])
        hi_mask = ir.Constant(ir.VectorType(_I32, 16),
                              [lane + b if not lane & b else 16 + lane for lane in range(16)])
        for i in range(16):
            if i & b:
                continue
            a, c = rows[i], rows[i + b]
            rows[i] = builder.shuffle_vector(a, c, lo_mask)
            rows[i + b] = builder.shuffle_vector(a, c, hi_mask)
    return rows


@intrinsic
def transpose16(typingctx, src, soff, sstride, dst, doff):
    """dst[doff + c*16 + r] = src[soff + r*sstride + c] for r, c < 16: a 16x16 block
    transposed in registers (16 vector loads, 64 two-source shuffles, 16 vector stores).

    src, dst: float32 C-contiguous 1-D arrays; the offsets and stride are integers. No
    bounds checks: the caller guarantees all 16 rows of 16 elements exist. LLVM does not
    find this from a scalar loop: it gathers (or moves elements one by one) instead.
    """
    ok = (isinstance(src, types.Array) and isinstance(dst, types.Array)
          and src.dtype == types.float32 and dst.dtype == types.float32
          and all(isinstance(t, types.Integer) for t in (soff, sstride, doff)))
    if not ok:
        return None
    sig = types.void(src, soff, sstride, dst, doff)

    def codegen(context, builder, signature, args):
        sty, soty, ssty, dty, doty = signature.args
        s = context.make_array(sty)(context, builder, args[0])
        d = context.make_array(dty)(context, builder, args[3])
        so = context.cast(builder, args[1], soty, types.int64)
        ss = context.cast(builder, args[2], ssty, types.int64)
        do = context.cast(builder, args[4], doty, types.int64)
        vptr = _V16.as_pointer()
        rows = []
        for r in range(16):
            off = builder.add(so, builder.mul(ss, ir.Constant(_I64, r)))
            p = builder.bitcast(builder.gep(s.data, [off]), vptr)
            rows.append(builder.load(p, align=4))
        rows = transpose_vectors(builder, rows)
        for r in range(16):
            off = builder.add(do, ir.Constant(_I64, 16 * r))
            p = builder.bitcast(builder.gep(d.data, [off]), vptr)
            builder.store(rows[r], p, align=4)
        return context.get_dummy_value()

    return sig, codegen
