"""The smooth activations a conv can fuse (SiLU, GELU, GELU-tanh), as 16-lane LLVM vector
code: without a vector math library LLVM calls expf once per element (~3 ns here); these
evaluate exp by range reduction and a polynomial on whole vectors.

``emit_act(builder, v, code)`` emits the activation of one <16 x float> (used by
``act16`` here; a conv tile may call it on its accumulators). ``apply_activation(flat,
code)`` runs it over an array in place on every thread: the conv op object calls it on
the conv's output right after the kernel, where the kernel does not fuse the activation
itself (backends/cpu_conv.py).

Accuracy (float32 inputs in [-30, 30], against float64): exp's relative error is about
2 ulp; sigmoid-based SiLU and GELU-tanh agree with the float64 formulas to ~1e-7 relative;
GELU uses erf's rational approximation 7.1.26 of Abramowitz and Stegun (absolute error
1.5e-7 on erf), with 1 + erf(x) computed without cancellation for x < 0.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .epilogue import ACT_GELU, ACT_GELU_TANH, ACT_SILU
from .stack import _intrinsic_fn

_V16 = ir.VectorType(ir.FloatType(), 16)
_VI32 = ir.VectorType(ir.IntType(32), 16)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
SMOOTH = (ACT_SILU, ACT_GELU, ACT_GELU_TANH)
CHUNK = 4096        # elements per parallel step of apply_activation


def _c(x):
    return ir.Constant(_V16, [float(np.float32(x))] * 16)


def _fmul(b, x, y):
    return b.fmul(x, y, flags=("contract",))


def _fadd(b, x, y):
    return b.fadd(x, y, flags=("contract",))


def _poly(b, x, coeffs):
    """coeffs[0] + x (coeffs[1] + x (...)), Horner's rule."""
    acc = _c(coeffs[-1])
    for a in reversed(coeffs[:-1]):
        acc = _fadd(b, _fmul(b, acc, x), _c(a))
    return acc


def _min(b, x, y):
    return b.select(b.fcmp_ordered("<", x, y), x, y)


def _max(b, x, y):
    return b.select(b.fcmp_ordered(">", x, y), x, y)


def emit_exp(b, x):
    """exp(x) for <16 x float> x: x clamped to [-87.3, 88.7] (the float32 range), x = n
    ln 2 + r with |r| <= ln2 / 2 (ln 2 split in two for the subtraction), exp(r) from a
    degree-6 polynomial, times 2^n built in the exponent bits. NaN stays NaN."""
    xc = _max(b, _min(b, x, _c(88.72)), _c(-87.33))
    rint = _intrinsic_fn(b.module, "llvm.rint.v16f32", ir.FunctionType(_V16, [_V16]))
    n = b.call(rint, [_fmul(b, xc, _c(1.0 / math.log(2.0)))])
    r = b.fsub(xc, b.fmul(n, _c(0.693359375)))
    r = b.fsub(r, b.fmul(n, _c(-2.12194440e-4)))
    # exp(r) = 1 + r + r^2 (1/2 + r/6 + ...): Taylor-like coefficients fitted on the range
    p = _poly(b, r, (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3,
                     1.3981999507e-3, 1.9875691500e-4))
    p = _fadd(b, _fadd(b, _fmul(b, p, b.fmul(r, r)), r), _c(1.0))
    ni = b.fptosi(n, _VI32)
    scale = b.bitcast(b.shl(b.add(ni, ir.Constant(_VI32, [127] * 16)),
                            ir.Constant(_VI32, [23] * 16)), _V16)
    out = b.fmul(p, scale)
    # NaN in, NaN out (the clamp turned it into a number)
    return b.select(b.fcmp_unordered("uno", x, x), x, out)


def _over_one_plus_exp(b, v, t):
    """v / (1 + exp(t))."""
    return b.fdiv(v, b.fadd(_c(1.0), emit_exp(b, t)))


def emit_act(b, v, code):
    """The activation ``code`` (ACT_SILU, ACT_GELU or ACT_GELU_TANH) of <16 x float> v."""
    if code == ACT_SILU:                     # v sigmoid(v)
        return _over_one_plus_exp(b, v, b.fneg(v))
    if code == ACT_GELU_TANH:                # 0.5 v (1 + tanh(u)) = v sigmoid(2u)
        u = _fmul(b, v, _fadd(b, _c(1.0), _fmul(b, _c(0.044715), b.fmul(v, v))))
        return _over_one_plus_exp(b, v, b.fmul(u, _c(-2.0 * math.sqrt(2.0 / math.pi))))
    if code == ACT_GELU:                     # 0.5 v (1 + erf(v / sqrt 2))
        z = b.fmul(v, _c(1.0 / math.sqrt(2.0)))
        neg = b.fcmp_ordered("<", z, _c(0.0))
        az = b.select(neg, b.fneg(z), z)
        t = b.fdiv(_c(1.0), _fadd(b, _c(1.0), _fmul(b, _c(0.3275911), az)))
        q = _fmul(b, _poly(b, t, (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                  1.061405429)), t)
        q = b.fmul(q, emit_exp(b, b.fneg(b.fmul(az, az))))    # q = 1 - erf(|z|)
        one_plus = b.select(neg, q, b.fsub(_c(2.0), q))
        return b.fmul(b.fmul(_c(0.5), v), one_plus)
    raise ValueError(f"act_vec: no vector form for activation code {code}")


@intrinsic
def act16(typingctx, x, off, n, code):
    """x[off + t] = act(x[off + t]) for t < min(n, 16) (a masked load and store when
    n < 16); code: a literal activation code of SMOOTH."""
    ok = (isinstance(x, types.Array) and x.dtype == types.float32
          and isinstance(off, types.Integer) and isinstance(n, types.Integer)
          and isinstance(code, types.IntegerLiteral) and code.literal_value in SMOOTH)
    if not ok:
        return None
    CODE = int(code.literal_value)
    sig = types.void(x, off, n, code)

    def codegen(context, builder, signature, args):
        xty, oty, nty, _ = signature.args
        a = context.make_array(xty)(context, builder, args[0])
        o = context.cast(builder, args[1], oty, types.int64)
        nn = context.cast(builder, args[2], nty, types.int64)
        p = builder.bitcast(builder.gep(a.data, [o]), _V16.as_pointer())
        full = builder.icmp_signed(">=", nn, ir.Constant(_I64, 16))
        with builder.if_else(full) as (then, other):
            with then:
                builder.store(emit_act(builder, builder.load(p, align=4), CODE), p, align=4)
            with other:
                lanes = ir.Constant(ir.VectorType(_I64, 16), list(range(16)))
                nv = builder.insert_element(ir.Constant(ir.VectorType(_I64, 16), None), nn,
                                            ir.Constant(_I32, 0))
                nv = builder.shuffle_vector(nv, nv, ir.Constant(_VI32, [0] * 16))
                mask = builder.icmp_signed("<", lanes, nv)
                load = _intrinsic_fn(builder.module, "llvm.masked.load.v16f32.p0",
                                     ir.FunctionType(_V16, [p.type, _I32, mask.type, _V16]))
                store = _intrinsic_fn(builder.module, "llvm.masked.store.v16f32.p0",
                                      ir.FunctionType(ir.VoidType(),
                                                      [_V16, p.type, _I32, mask.type]))
                v = builder.call(load, [p, ir.Constant(_I32, 4), mask, _c(0.0)])
                builder.call(store, [emit_act(builder, v, CODE), p, ir.Constant(_I32, 4),
                                     mask])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", cache=True)
def _run(flat, lo, hi, code):
    for i in range(lo, hi, 16):
        if code == ACT_SILU:
            act16(flat, i, hi - i, ACT_SILU)
        elif code == ACT_GELU:
            act16(flat, i, hi - i, ACT_GELU)
        else:
            act16(flat, i, hi - i, ACT_GELU_TANH)


@njit(parallel=True, cache=True)
def _apply_parallel(flat, code):
    n = flat.shape[0]
    nchunk = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunk):
        _run(flat, c * CHUNK, min(n, (c + 1) * CHUNK), code)


@njit(cache=True)
def _apply_serial(flat, code):
    _run(flat, 0, flat.shape[0], code)


def apply_activation(flat, code):
    """flat (1-D C-contiguous float32) = act(flat) in place, code one of SMOOTH; small
    arrays on this thread only (a parallel region costs more than they take)."""
    if code not in SMOOTH:
        raise ValueError(f"apply_activation: activation code {code} is not one of {SMOOTH}")
    if flat.shape[0] <= CHUNK:
        _apply_serial(flat, code)
    else:
        _apply_parallel(flat, code)
