"""Shape inference for every op, and the geometry (pads, output size) of windowed ops.

Each rule takes the node and its input shapes (None for an absent optional input)
and returns the output shapes. Errors name the node, the input and its shape.
"""
from __future__ import annotations

import math

import numpy as np

from jitconv.errors import GraphError


def _fail(node, msg):
    raise GraphError(f"{node.describe()}: {msg}")


def _need_rank(node, shape, rank, what="input X"):
    if len(shape) != rank:
        _fail(node, f"{what} must be {rank}-D, got shape {tuple(shape)}")


def _pair(node, key, default):
    v = list(node.attr(key, default))
    if len(v) != len(default):
        _fail(node, f"attribute {key}={v} must have {len(default)} values")
    return v


def window_geometry(node, in_hw, kernel_hw, *, ceil_mode=False):
    """Resolve (pads [t, l, b, r], strides, dilations, out_hw) of a Conv/pool node."""
    strides = _pair(node, "strides", [1, 1])
    dilations = _pair(node, "dilations", [1, 1])
    pads = _pair(node, "pads", [0, 0, 0, 0])
    auto_pad = node.attr("auto_pad", "NOTSET")
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations) or any(p < 0 for p in pads):
        _fail(node, f"strides {strides} and dilations {dilations} must be >= 1, pads {pads} >= 0")
    eff = [(k - 1) * d + 1 for k, d in zip(kernel_hw, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out_hw = [-(-n // s) for n, s in zip(in_hw, strides)]
        pads = [0, 0, 0, 0]
        for i in range(2):
            total = max(0, (out_hw[i] - 1) * strides[i] + eff[i] - in_hw[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + 2] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        return pads, strides, dilations, out_hw
    if auto_pad == "VALID":
        pads, ceil_mode = [0, 0, 0, 0], False     # ONNX: ceil_mode has no effect with auto_pad
    elif auto_pad != "NOTSET":
        _fail(node, f"auto_pad={auto_pad!r} not understood; use NOTSET, SAME_UPPER, "
                    f"SAME_LOWER or VALID")
    out_hw = []
    for i in range(2):
        span = in_hw[i] + pads[i] + pads[i + 2] - eff[i]
        if span < 0:
            _fail(node, f"window {kernel_hw} (dilated {eff}) is larger than the padded input "
                        f"{in_hw[0] + pads[0] + pads[2]}x{in_hw[1] + pads[1] + pads[3]}")
        o = (math.ceil(span / strides[i]) if ceil_mode else span // strides[i]) + 1
        # ONNX: a ceil-mode window must start inside the input or left padding
        if ceil_mode and (o - 1) * strides[i] >= in_hw[i] + pads[i]:
            o -= 1
        out_hw.append(o)
    return pads, strides, dilations, out_hw


def _conv(node, shapes):
    x, w = shapes[0], shapes[1]
    _need_rank(node, x, 4)
    _need_rank(node, w, 4, "weight W")
    group = int(node.attr("group", 1))
    if group < 1 or x[1] % group or w[0] % group:
        _fail(node, f"group={group} must divide input channels {x[1]} and output channels {w[0]}")
    if w[1] * group != x[1]:
        _fail(node, f"weight W shape {tuple(w)} expects {w[1] * group} input channels "
                    f"(group={group}), input X has shape {tuple(x)}")
    if len(shapes) > 2 and shapes[2] is not None and tuple(shapes[2]) != (w[0],):
        _fail(node, f"bias B shape {tuple(shapes[2])} must be ({w[0]},)")
    ks = node.attr("kernel_shape")
    if ks is not None and list(ks) != list(w[2:]):
        _fail(node, f"kernel_shape {list(ks)} disagrees with weight shape {tuple(w)}")
    _, _, _, out_hw = window_geometry(node, x[2:], w[2:])
    out = (x[0], w[0], *out_hw)
    # a 4th input is a residual fused in by runtime/passes.py: added before the activation
    if len(shapes) > 3 and shapes[3] is not None and tuple(shapes[3]) != out:
        _fail(node, f"residual input shape {tuple(shapes[3])} must equal the output {out}")
    return [out]


def _pool(node, shapes):
    x = shapes[0]
    _need_rank(node, x, 4)
    ks = node.attr("kernel_shape")
    if ks is None or len(ks) != 2:
        _fail(node, f"kernel_shape must be given as 2 values, got {ks}")
    _, _, _, out_hw = window_geometry(node, x[2:], ks, ceil_mode=bool(node.attr("ceil_mode", 0)))
    return [(x[0], x[1], *out_hw)]


def _global_pool(node, shapes):
    _need_rank(node, shapes[0], 4)
    return [(shapes[0][0], shapes[0][1], 1, 1)]


def broadcast_shape(node, a, b):
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        _fail(node, f"inputs of shapes {tuple(a)} and {tuple(b)} do not broadcast")


def _same(node, shapes):
    return [tuple(shapes[0])]


def _axis(node, axis, rank, what="axis"):
    if not -rank <= axis < rank:
        _fail(node, f"{what}={axis} is out of range for a {rank}-D input")
    return axis % rank


def _concat(node, shapes):
    rank = len(shapes[0])
    axis = _axis(node, int(node.attr("axis", 1)), rank)
    total = 0
    for i, s in enumerate(shapes):
        if len(s) != rank or any(s[d] != shapes[0][d] for d in range(rank) if d != axis):
            _fail(node, f"input {i} has shape {tuple(s)}, not concatenable with "
                        f"{tuple(shapes[0])} along axis {axis}")
        total += s[axis]
    out = list(shapes[0])
    out[axis] = total
    return [tuple(out)]


def _flatten(node, shapes):
    x = shapes[0]
    axis = int(node.attr("axis", 1))
    if not -len(x) <= axis <= len(x):
        _fail(node, f"axis={axis} is out of range for input shape {tuple(x)}")
    if axis < 0:
        axis += len(x)
    return [(math.prod(x[:axis]), math.prod(x[axis:]))]


def reshape_target(node, x, shape):
    """Resolve ONNX Reshape's 0 (copy) and -1 (infer) entries."""
    shape = [int(v) for v in shape]
    out = [x[i] if v == 0 and i < len(x) else v for i, v in enumerate(shape)]
    if out.count(-1) > 1 or any(v < -1 for v in out):
        _fail(node, f"shape {shape} may hold at most one -1 and no other negative value")
    total = math.prod(x)
    if -1 in out:
        # zero-sized dims count as 1 when inferring -1, so a batch-0 input reshapes
        known = math.prod(max(v, 1) for v in out if v != -1)
        size = math.prod(max(d, 1) for d in x) if total == 0 else total
        if size % known:
            _fail(node, f"cannot reshape input of shape {tuple(x)} to {shape}")
        out[out.index(-1)] = size // known
    if math.prod(out) != total:
        _fail(node, f"cannot reshape input of shape {tuple(x)} ({total} elements) to {shape}")
    return tuple(out)


def _reshape(node, shapes):
    return [reshape_target(node, shapes[0], node.attr("shape", []))]


def _transpose(node, shapes):
    x = shapes[0]
    perm = list(node.attr("perm", list(range(len(x)))[::-1]))
    if sorted(perm) != list(range(len(x))):
        _fail(node, f"perm={perm} is not a permutation of the {len(x)} axes of shape {tuple(x)}")
    return [tuple(x[p] for p in perm)]


def _gemm(node, shapes):
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


def _matmul(node, shapes):
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


def _softmax(node, shapes):
    _axis(node, int(node.attr("axis", -1)), len(shapes[0]))
    return [tuple(shapes[0])]


def _batchnorm(node, shapes):
    x = shapes[0]
    if len(x) < 2:
        _fail(node, f"input X must be at least 2-D, got {tuple(x)}")
    for i, nm in enumerate(("scale", "B", "mean", "var"), start=1):
        if tuple(shapes[i]) != (x[1],):
            _fail(node, f"{nm} has shape {tuple(shapes[i])}, expected ({x[1]},)")
    return [tuple(x)]


def _binary(node, shapes):
    return [broadcast_shape(node, shapes[0], shapes[1])]


SHAPE_RULES = {
    "Conv": (_conv, 2, 4), "Relu": (_same, 1, 1), "Clip": (_same, 1, 1),
    "Add": (_binary, 2, 2), "Mul": (_binary, 2, 2),
    "MaxPool": (_pool, 1, 1), "AveragePool": (_pool, 1, 1),
    "GlobalAveragePool": (_global_pool, 1, 1), "Concat": (_concat, 1, None),
    "Flatten": (_flatten, 1, 1), "Reshape": (_reshape, 1, 1), "Transpose": (_transpose, 1, 1),
    "Gemm": (_gemm, 2, 3), "MatMul": (_matmul, 2, 2), "Softmax": (_softmax, 1, 1),
    "BatchNormalization": (_batchnorm, 5, 5),
}


def infer_node(node, in_shapes):
    """Output shapes of one node, given its input shapes (None for absent optional)."""
    rule = SHAPE_RULES.get(node.op_type)
    if rule is None:
        _fail(node, f"op type {node.op_type!r} is not supported; supported: "
                    f"{', '.join(sorted(SHAPE_RULES))}")
    fn, lo, hi = rule
    n = len(node.inputs)
    if n < lo or (hi is not None and n > hi):
        _fail(node, f"takes {lo}..{hi if hi is not None else 'n'} inputs, got {n}")
    for i, s in enumerate(in_shapes[:lo]):
        if s is None:
            _fail(node, f"required input {i} is missing")
    return [tuple(int(d) for d in s) for s in fn(node, in_shapes)]


def infer_shapes(graph, input_shapes):
    """Every tensor's shape: dict name -> tuple, given the graph input shapes."""
    shapes = {name: tuple(c.shape) for name, c in graph.constants.items()}
    shapes.update({k: tuple(v) for k, v in input_shapes.items()})
    for node in graph.nodes:
        outs = infer_node(node, [shapes[t] if t else None for t in node.inputs])
        for name, s in zip(node.outputs, outs):
            shapes[name] = s
    return shapes
