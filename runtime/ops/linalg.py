"""Matrix products: Gemm (2-D, transposes, alpha/beta, bias C) and MatMul (numpy matmul)."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import REQUIRED, Attr, OnnxSpec, OpDef, register
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


# -- Einsum: only the equations that are one (batched) matrix product ----------------------

def _einsum_terms(equation, shapes):
    """(input terms, output term) with "..." replaced by one letter per broadcast axis."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"{len(terms)} operand terms for {len(shapes)} inputs")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in eq]
    n_ell = 0
    for t, s in zip(terms, shapes):
        if "..." in t:
            n_ell = max(n_ell, len(s) - (len(t) - 3))
    ell = "".join(spare[:n_ell])
    out_terms = []
    for t, s in zip(terms, shapes):
        if "..." in t:
            k = len(s) - (len(t) - 3)
            t = t.replace("...", ell[n_ell - k:] if k > 0 else "")
        if len(t) != len(s) or not t.isalpha():
            raise ValueError(f"term {t!r} does not fit an input of shape {tuple(s)}")
        out_terms.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        letters = "".join(out_terms)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                   and c not in ell))
    return out_terms, out


def einsum_matmul(equation, shape_a, shape_b):
    """The plan of an Einsum that is one batched matrix product, or a ValueError saying why
    it is not: (perm_a, perm_b, a3, b3, batch, res_shape, out_perm, out_shape), where A
    transposed by perm_a and reshaped to batch_a + (M, K) times B transposed by perm_b and
    reshaped to batch_b + (K, N) gives batch + (M, N), reshaped to res_shape and transposed
    by out_perm into the output."""
    (ta, tb), out = _einsum_terms(equation, [shape_a, shape_b])
    for t in (ta, tb, out):
        if len(set(t)) != len(t):
            raise ValueError(f"{t!r} repeats a letter (a diagonal or trace)")
    if set(out) - set(ta) - set(tb):
        raise ValueError(f"output letters {sorted(set(out) - set(ta) - set(tb))} are in no input")
    k = [c for c in ta if c in tb and c not in out]
    batch = [c for c in out if c in ta and c in tb]
    m = [c for c in ta if c in out and c not in tb]        # merged into the rows
    n = [c for c in tb if c in out and c not in ta]        # merged into the columns
    alone = [c for c in ta + tb if c not in out and c not in k]
    if len(k) != 1 or alone:
        raise ValueError("not one matrix product: it needs exactly one summed letter, "
                         "shared by both inputs, and no letter summed within one input")
    size = {}
    for t, s in ((ta, shape_a), (tb, shape_b)):
        for c, d in zip(t, s):
            if c in size and size[c] != d and 1 not in (size[c], d):
                raise ValueError(f"letter {c!r} has sizes {size[c]} and {d}")
            size[c] = max(size.get(c, d), d) if d != 1 else size.get(c, d)
    if shape_a[ta.index(k[0])] != shape_b[tb.index(k[0])]:
        raise ValueError(f"summed letter {k[0]!r} has sizes {shape_a[ta.index(k[0])]} and "
                         f"{shape_b[tb.index(k[0])]}")
    perm_a = [ta.index(c) for c in batch + m + k]
    perm_b = [tb.index(c) for c in batch + k + n]
    bsz = [size[c] for c in batch]
    a3 = tuple(shape_a[ta.index(c)] for c in batch) + (math.prod(size[c] for c in m),
                                                       size[k[0]])
    b3 = tuple(shape_b[tb.index(c)] for c in batch) + (size[k[0]],
                                                       math.prod(size[c] for c in n))
    res = batch + m + n
    out_perm = [res.index(c) for c in out]
    return (perm_a, perm_b, a3, b3, tuple(bsz), tuple(size[c] for c in res), out_perm,
            tuple(size[c] for c in out))


def _einsum_shape(node, shapes):
    eq = node.attr("equation")
    if len(shapes) != 2:
        _fail(node, f"equation {eq!r}: jitconv runs an Einsum of two inputs that is one "
                    f"(batched) matrix product; this one has {len(shapes)} inputs")
    try:
        return [einsum_matmul(eq, tuple(shapes[0]), tuple(shapes[1]))[-1]]
    except ValueError as exc:
        _fail(node, f"equation {eq!r} on inputs of shapes {tuple(shapes[0])} and "
                    f"{tuple(shapes[1])} is not supported: {exc}")


def einsum(inputs, attrs) -> np.ndarray:
    """Einsum: numpy's einsum of ``equation`` (the reference takes any equation; float64
    or float16 data, folded at load, keeps its dtype)."""
    out = np.einsum(attrs["equation"].replace(" ", ""), *[_f64(a) for a in inputs])
    dtype = np.result_type(*inputs)
    return np.asarray(out).astype(dtype if dtype.kind == "f" else np.float32)


def _einsum_flops(node, ins, outs):
    plan = einsum_matmul(node.attr("equation"), tuple(ins[0]), tuple(ins[1]))
    return 2 * math.prod(outs[0]) * plan[2][-1]


register(OpDef(
    "Einsum", inputs=(1, None),
    attrs=(Attr("equation", "str", REQUIRED, "the einsum equation"),),
    shape=_einsum_shape, reference=einsum, flops=_einsum_flops,
    onnx=OnnxSpec((12, 28), frozenset({"equation"})), builder="einsum",
    doc="an einsum that is one (batched) matrix product, operands in any axis order"))
