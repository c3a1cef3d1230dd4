"""CPU kernel objects of the math ops of issue 20: Gelu, the broadcasting math and
comparison ops (Pow, Max, Min, Equal, Less, Greater, LessOrEqual, GreaterOrEqual, Where),
the reductions (ReduceSum, ReduceMax, ReduceL2, ReduceSumSquare, ArgMax), Einsum as a
batched matmul, and the copies (Cast to float16, Expand, Tile). The unary math ops with a
``scalar`` (Log, Erf, Softplus, Mish, Sqrt, Reciprocal, Neg, Abs) need nothing here:
cpu_ops.create_unary makes their kernels.

Compute runs in Numba kernels (kernels/binary_math.py, kernels/reduce.py,
kernels/gemm.py, kernels/unary.py); Expand, Tile and Cast are numpy copies.
"""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels import binary_math as bm
from jitconv.kernels.epilogue import ACT_GELU, ACT_GELU_TANH
from jitconv.kernels.gemm import matmul_batched
from jitconv.kernels.reduce import (RED_L2, RED_MAX, RED_SUM, RED_SUMSQ, argmax_middle,
                                    reduce_middle)
from jitconv.runtime.ops.linalg import einsum_matmul

from .cpu_ops import Planned, Simple, _flat, _pad6, folded_broadcast, reduction


def create_gelu(ctx):
    from jitconv.kernels.act_vec import apply_activation  # noqa: PLC0415
    mode = ctx.node.attr("approximate", "none")
    code = ACT_GELU_TANH if mode == "tanh" else ACT_GELU

    def run(i, o):
        x, y = _flat(i[0]), _flat(o[0])
        if x.ctypes.data != y.ctypes.data:
            y[:] = x
        apply_activation(y, code)
    return Simple(f"unary_gelu_{mode}", f"elementwise, approximate={mode!r}, 16-lane "
                                         f"vector exp (kernels/act_vec.py)", run)


# -- broadcasting math and comparisons ------------------------------------------------------

def _broadcast(name, op_code):
    def create(ctx):
        return folded_broadcast(ctx, f"{name}_broadcast", "6-D broadcast loop, planned per shape",
                                lambda a, b, y: bm.broadcast_math(a, b, y, op_code))
    return create


create_pow = _broadcast("pow", bm.OP_POW)
create_max = _broadcast("max", bm.OP_MAX)
create_min = _broadcast("min", bm.OP_MIN)
create_equal = _broadcast("equal", bm.OP_EQ)
create_less = _broadcast("less", bm.OP_LT)
create_greater = _broadcast("greater", bm.OP_GT)
create_less_or_equal = _broadcast("less_or_equal", bm.OP_LE)
create_greater_or_equal = _broadcast("greater_or_equal", bm.OP_GE)


def create_where(ctx):
    if len(ctx.out_shapes[0]) > 6:
        return None

    def plan(ins, outs):
        shape6 = (1,) * (6 - len(outs[0])) + outs[0]
        return lambda i, o: bm.where(*(_pad6(t, shape6) for t in i), o[0].reshape(shape6))
    return Planned("where_broadcast", "6-D broadcast select, condition != 0", plan)


# -- copies -------------------------------------------------------------------------------

def _to_half(i, o):
    with np.errstate(over="ignore"):      # beyond float16's range: inf, as ONNX says
        np.copyto(o[0], i[0].astype(np.float16))


def create_cast(ctx):
    if int(ctx.node.attr("to")) == 10:
        return Simple("cast_float16", "numpy: round to half precision and back", _to_half)
    return Simple("copy", "a cast to float32/float64 changes no float32 value",
                  lambda i, o: np.copyto(o[0], i[0]))


def create_expand(ctx):
    return Simple("expand_copy", "numpy broadcast copy",
                  lambda i, o: np.copyto(o[0], np.broadcast_to(i[0], o[0].shape)))


def create_tile(ctx):
    reps = [int(r) for r in ctx.node.attr("repeats")]
    return Simple("tile_copy", "numpy tile", lambda i, o: np.copyto(o[0], np.tile(i[0], reps)))


# -- reductions ----------------------------------------------------------------------------

def _reduce(name, op_code):
    def create(ctx):
        return reduction(ctx, f"reduce_{name}", name,
                         lambda x3, out2: reduce_middle(x3, out2, op_code))
    return create


create_reduce_sum = _reduce("sum", RED_SUM)
create_reduce_max = _reduce("max", RED_MAX)
create_reduce_l2 = _reduce("l2", RED_L2)
create_reduce_sum_square = _reduce("sum_square", RED_SUMSQ)


def create_argmax(ctx):
    last = bool(int(ctx.node.attr("select_last_index", 0)))

    def plan(ins, outs):
        x = ins[0]
        axis = int(ctx.node.attr("axis", 0)) % len(x)
        o3 = (math.prod(x[:axis]), x[axis], math.prod(x[axis + 1:]))
        return lambda i, o: argmax_middle(i[0].reshape(o3), o[0].reshape(o3[0], o3[2]), last)
    return Planned("argmax", "index along one axis, written as float32" +
                   (" (last of equals)" if last else ""), plan)


# -- Einsum as one batched matmul ------------------------------------------------------------

def create_einsum(ctx):
    eq = ctx.node.attr("equation")

    def plan(ins, outs):
        perm_a, perm_b, a3, b3, batch, res, out_perm, _ = einsum_matmul(eq, ins[0], ins[1])
        nb = math.prod(batch)
        m, k, n = a3[-2], a3[-1], b3[-1]

        def run(i, o):
            if not nb:
                return
            a = np.broadcast_to(i[0].transpose(perm_a).reshape(a3), batch + (m, k))
            b = np.broadcast_to(i[1].transpose(perm_b).reshape(b3), batch + (k, n))
            y = np.empty((nb, m, n), np.float32)
            matmul_batched(np.ascontiguousarray(a).reshape(nb, m, k),
                           np.ascontiguousarray(b).reshape(nb, k, n), y)
            np.copyto(o[0], y.reshape(res).transpose(out_perm))
        return run
    return Planned("einsum_matmul", f"{eq!r} as a batched matmul (operands transposed by "
                   f"numpy copies)", plan)
