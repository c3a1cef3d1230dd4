"""AVX-512 VNNI (``vpdpbusd``) from CPU njit code, and the CPU-feature check that guards it.

LLVM's auto-vectorizer never turns an int8 x int8 -> int32 loop into ``vpdpbusd``, so the
int8-dot conv (kernels/int8dot.py) calls the LLVM intrinsic ``llvm.x86.avx512.vpdpbusd.512``
through Numba ``@intrinsic`` s that work on 16-lane int32 slices of ordinary 1-D arrays:

- ``zero16(acc, i)``: acc[i:i+16] <- 0
- ``dpbusd16(acc, i, x, j, w)``: for each lane l < 16,
  acc[i+l] += sum_{b<4} u8(x[j+l] byte b) * s8(w byte b)
  where x is an int32 array whose words each hold 4 *unsigned* bytes and w an int32 scalar
  holding 4 *signed* bytes (broadcast to every lane: a ``vpbroadcastd`` from memory, or
  the instruction's ``{1to16}`` memory operand when the weight is used once). Exact:
  products and the 4-term sums cannot overflow int32 (vpdpbusd, not the saturating
  vpdpbusds); the accumulator wraps like any int32 add.

``acc`` is meant to be a stack array (``stack_i32``): once the constant loops around the
calls are unrolled, SROA turns each 16-lane slice into one zmm register for the whole K loop
(checked with ``inspect_asm``: no spill in the K loop of int8dot's 8 x 32 tile).

Portable helpers (plain LLVM i32 ops, any CPU; Numba itself would widen every int32 shift,
or, add and multiply to int64 and the vectorizer would then use 8 lanes, not 16):
``dot4_u8s8(a, x, w)`` (one lane of dpbusd16) and ``pack4_u8(b0, b1, b2, b3)``.

Compiling a function that calls ``dpbusd16`` for a target without avx512vnni does not raise:
LLVM aborts the whole process ("LLVM ERROR: Do not know how to split the result of this
operator!"). So the VNNI kernel lives in njit functions of its own that are only called (and
thus only compiled) when ``has_vnni()`` is True; int8dot.py keeps a portable int32 twin.
"""

import functools

from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_V16 = ir.VectorType(ir.IntType(32), 16)


_CPUINFO = {"avx512vnni": "avx512_vnni", "avx512f": "avx512f"}


def _host_has(*features) -> bool:
    """The CPU itself has all these (LLVM-named) features: llvmlite's host features,
    /proc/cpuinfo when llvmlite cannot say."""
    try:
        import llvmlite.binding as llb
        feats = llb.get_host_cpu_features()
        return all(bool(feats.get(f, False)) for f in features)
    except Exception:  # pragma: no cover - llvmlite without host-feature support
        pass
    try:  # pragma: no cover
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return all(_CPUINFO[f] in flags for f in features)
    except OSError:
        pass
    return False  # pragma: no cover


def _host_has_vnni() -> bool:
    return _host_has("avx512vnni", "avx512f")


def _target_allows(*features) -> bool:
    """Numba compiles for the host's features unless NUMBA_CPU_FEATURES (or
    NUMBA_CPU_NAME=generic, which implies no features) says otherwise."""
    from numba.core import config
    feats = config.CPU_FEATURES
    if feats is None:
        return True
    return all(f"+{f}" in feats.split(",") for f in features)


def _target_allows_vnni() -> bool:
    return _target_allows("avx512vnni", "avx512f")


@functools.lru_cache(maxsize=1)
def has_avx512() -> bool:
    """True if kernels written for 16-lane float vectors (the blocked conv's 24-register
    tile) get zmm registers here: the CPU and Numba's compile target have avx512f."""
    return _host_has("avx512f") and _target_allows("avx512f")


@functools.lru_cache(maxsize=1)
def has_vnni() -> bool:
    """True if the 512-bit ``vpdpbusd`` kernel may be compiled and run here.

    Both the CPU (llvmlite's host features, the view Numba compiles for; /proc/cpuinfo's
    ``avx512_vnni`` flag as a fallback) and Numba's compile target (NUMBA_CPU_FEATURES /
    NUMBA_CPU_NAME=generic, e.g. for portable caches) must have avx512f + avx512vnni.
    Cached: the answer cannot change within a process.
    """
    return _host_has_vnni() and _target_allows_vnni()


def _is_i32_array(t):
    return (isinstance(t, types.Array) and t.ndim == 1 and t.dtype == types.int32
            and t.layout in "CA")


def _ptr16(context, builder, aryty, ary, idx):
    """<16 x i32>* to element idx of the 1-D int32 array ``ary``."""
    a = context.make_array(aryty)(context, builder, ary)
    p = builder.gep(a.data, [idx])
    return builder.bitcast(p, _V16.as_pointer())


@intrinsic
def zero16(typingctx, acc, i):
    """acc[i:i+16] <- 0 (acc a 1-D int32 array, i an integer element offset)."""
    if not (_is_i32_array(acc) and isinstance(i, types.Integer)):
        return None
    sig = types.void(acc, i)

    def codegen(context, builder, signature, args):
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        p = _ptr16(context, builder, signature.args[0], args[0], idx)
        builder.store(ir.Constant(_V16, None), p, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def dpbusd16(typingctx, acc, i, x, j, w):
    """acc[i:i+16] += vpdpbusd(x[j:j+16] as unsigned bytes, broadcast w as signed bytes)."""
    if not (_is_i32_array(acc) and _is_i32_array(x) and isinstance(i, types.Integer)
            and isinstance(j, types.Integer) and isinstance(w, types.Integer)):
        return None
    sig = types.void(acc, i, x, j, w)

    def codegen(context, builder, signature, args):
        ta, ti, tx, tj, tw = signature.args
        ia = context.cast(builder, args[1], ti, types.intp)
        jx = context.cast(builder, args[3], tj, types.intp)
        wv = context.cast(builder, args[4], tw, types.int32)
        pa = _ptr16(context, builder, ta, args[0], ia)
        px = _ptr16(context, builder, tx, args[2], jx)
        a = builder.load(pa, align=4)
        xv = builder.load(px, align=1)
        wb = builder.insert_element(ir.Constant(_V16, None), wv, ir.Constant(ir.IntType(32), 0))
        wb = builder.shuffle_vector(wb, ir.Constant(_V16, None), ir.Constant(_V16, None))
        fnty = ir.FunctionType(_V16, [_V16, _V16, _V16])
        fn = cgutils.get_or_insert_function(builder.module, fnty,
                                            "llvm.x86.avx512.vpdpbusd.512")
        r = builder.call(fn, [a, xv, wb])
        builder.store(r, pa, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def pack4_u8(typingctx, b0, b1, b2, b3):
    """int32 whose bytes (low first) are the low bytes of b0..b3 (any integers).

    Numba types every int32 shift / or as int64; this keeps the packing in i32 (vectorizes
    16 lanes a zmm). Portable: plain LLVM integer ops, no CPU feature needed.
    """
    if not all(isinstance(t, types.Integer) for t in (b0, b1, b2, b3)):
        return None
    sig = types.int32(b0, b1, b2, b3)

    def codegen(context, builder, signature, args):
        i8, i32 = ir.IntType(8), ir.IntType(32)
        r = None
        for n, (v, t) in enumerate(zip(args, signature.args)):
            byte = builder.zext(builder.trunc(v, i8) if t.bitwidth > 8 else v, i32)
            if n:
                byte = builder.shl(byte, ir.Constant(i32, 8 * n))
            r = byte if r is None else builder.or_(r, byte)
        return r

    return sig, codegen


@intrinsic
def dot4_u8s8(typingctx, a, x, w):
    """int32: a + sum_{b<4} u8(byte b of x) * s8(byte b of w), all in i32 (wraps like vpdpbusd).

    The portable twin of one lane of ``dpbusd16``: plain LLVM integer ops, so any CPU runs it
    and the vectorizer can widen it (Numba itself would compute every step in int64).
    """
    if not all(isinstance(t, types.Integer) and t.bitwidth == 32 for t in (a, x, w)):
        return None
    sig = types.int32(a, x, w)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        acc, xv, wv = args
        for n in range(4):
            xb = builder.and_(builder.lshr(xv, ir.Constant(i32, 8 * n)), ir.Constant(i32, 255))
            wb = builder.ashr(builder.shl(wv, ir.Constant(i32, 24 - 8 * n)),
                              ir.Constant(i32, 24))
            acc = builder.add(acc, builder.mul(xb, wb))
        return acc

    return sig, codegen


@intrinsic
def _stack_ptr_i32(typingctx, n):
    """int32* to ``n`` (a literal int) uninitialized int32 in the entry block's frame (64-B aligned)."""
    if not isinstance(n, types.IntegerLiteral):
        return None
    count = int(n.literal_value)
    sig = types.CPointer(types.int32)(n)

    def codegen(context, builder, signature, args):
        ity = context.get_value_type(types.int32)
        p = cgutils.alloca_once(builder, ity, size=count)
        p.align = 64
        return p

    return sig, codegen


@njit(inline="always")
def stack_i32(n):
    """A (n,) int32 array on the stack (n a compile-time constant); uninitialized."""
    return carray(_stack_ptr_i32(n), (n,))
