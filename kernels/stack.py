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
def _stack_ptr_f32(typingctx, n):
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
    return carray(_stack_ptr_f32(n), (n,))


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
