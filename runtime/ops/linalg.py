"""Matrix products: Gemm (2-D, transposes, alpha/beta, bias C) and MatMul (numpy matmul)."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import Attr, OnnxSpec, OpDef, register
from ..reference import _f64, _out
from ..shapes import _fail, _need_rank, broadcast_shape


def _gemm_shape(node, shapes):
    a, b = shapes[0], shapes[1]
    _need_rank(node, a, 2, "input A")
    _need_rank(node, b, 2, "input B")
    m, k = (a[1], a[0]) if node.attr("transA", 0) else (a[0], a[1])
    k2, n = (b[1], b[0]) if node.attr("transB", 0) else (b[0], b[1])
    if k != k2:
        _fail(node, f"inner dimensions differ: A {tuple(a)} and B {tuple(b)} "
                    f"(transA={node.attr('transA', 0)}, transB={node.attr('transB', 0)})")
    if len(shapes) > 2 and shapes[2] is not None:
        c = tuple(shapes[2])
        if broadcast_shape(node, c, (m, n)) != (m, n):
            _fail(node, f"input C of shape {c} does not broadcast to ({m}, {n})")
    return [(m, n)]


def _matmul_shape(node, shapes):
    a, b = list(shapes[0]), list(shapes[1])
    if not a or not b:
        _fail(node, "MatMul inputs must be at least 1-D")
    a1, b1 = len(a) == 1, len(b) == 1
    a = [1] + a if a1 else a
    b = b + [1] if b1 else b
    if a[-1] != b[-2]:
        _fail(node, f"inner dimensions differ: {tuple(shapes[0])} @ {tuple(shapes[1])}")
    batch = broadcast_shape(node, a[:-2], b[:-2])
    out = list(batch) + ([] if a1 else [a[-2]]) + ([] if b1 else [b[-1]])
    return [tuple(out)]


def gemm(inputs, attrs) -> np.ndarray:
    """Gemm: alpha * A' @ B' + beta * C, C broadcast to (M, N)."""
    a, b = _f64(inputs[0]), _f64(inputs[1])
    if int(attrs.get("transA", 0)):
        a = a.T
    if int(attrs.get("transB", 0)):
        b = b.T
    y = float(attrs.get("alpha", 1.0)) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + float(attrs.get("beta", 1.0)) * _f64(inputs[2])
    return _out(np.broadcast_to(y, (a.shape[0], b.shape[1])))


def matmul(inputs, attrs) -> np.ndarray:
    """MatMul: numpy matmul semantics (batched, broadcast)."""
    return _out(np.matmul(_f64(inputs[0]), _f64(inputs[1])))


def _gemm_flops(node, ins, outs):
    a = ins[0]
    k = a[0] if node.attr("transA", 0) else a[1]
    return 2 * math.prod(outs[0]) * k


register(OpDef(
    "Gemm", inputs=(2, 3),
    attrs=(Attr("alpha", "float", 1.0, "scale of A' B'"), Attr("beta", "float", 1.0, "scale of C"),
           Attr("transA", "int", 0, "1: use A transposed"),
           Attr("transB", "int", 0, "1: use B transposed")),
    shape=_gemm_shape, reference=gemm, flops=_gemm_flops,
    onnx=OnnxSpec((9, 11, 13), frozenset({"alpha", "beta", "transA", "transB"})),
    builder="gemm", doc="alpha A' B' + beta C, C broadcast to (M, N)"))
register(OpDef(
    "MatMul", inputs=(2, 2), shape=_matmul_shape, reference=matmul,
    flops=lambda node, ins, outs: 2 * math.prod(outs[0]) * ins[0][-1],
    onnx=OnnxSpec((9, 13)), builder="matmul", doc="numpy matmul (batched, broadcast)"))
