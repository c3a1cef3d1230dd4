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


# --------------------------------------------------------------------------- ops of ONNX CNNs
# (added with the ONNX importer; attribute conventions in docs/ops.md)


def _prelu(node, shapes):
    x, slope = tuple(shapes[0]), tuple(shapes[1])
    if broadcast_shape(node, x, slope) != x:
        _fail(node, f"slope of shape {slope} does not broadcast to the input shape {x}")
    return [x]


def _sum(node, shapes):
    out = tuple(shapes[0])
    for s in shapes[1:]:
        out = broadcast_shape(node, out, s)
    return [out]


def _pad(node, shapes):
    x = tuple(shapes[0])
    pads = [int(p) for p in node.attr("pads", [0] * (2 * len(x)))]
    if len(pads) != 2 * len(x):
        _fail(node, f"pads {pads} must have {2 * len(x)} values (begins, then ends) for "
                    f"input shape {x}")
    if node.attr("mode", "constant") not in ("constant", "reflect", "edge", "wrap"):
        _fail(node, f"mode={node.attr('mode')!r} not understood; use constant, reflect, "
                    f"edge or wrap")
    out = tuple(d + pads[i] + pads[i + len(x)] for i, d in enumerate(x))
    if any(d < 0 for d in out):
        _fail(node, f"pads {pads} crop more than the input shape {x} holds")
    if node.attr("mode", "constant") == "reflect" and any(
            d < 2 and (pads[i] > 0 or pads[i + len(x)] > 0) for i, d in enumerate(x)):
        _fail(node, f"reflect padding needs at least 2 values on each padded axis; input {x}")
    return [out]


def _lrn(node, shapes):
    x = tuple(shapes[0])
    if len(x) < 3:
        _fail(node, f"input X must be at least 3-D (N, C, ...), got shape {x}")
    if int(node.attr("size", 0)) < 1:
        _fail(node, f"size={node.attr('size')} must be a positive int")
    return [x]


def _axes_list(node, axes, rank):
    out = [_axis(node, int(a), rank, "axes entry") for a in axes]
    if len(set(out)) != len(out):
        _fail(node, f"axes {list(axes)} repeat an axis")
    return sorted(out)


def _unsqueeze(node, shapes):
    x = list(shapes[0])
    axes = list(node.attr("axes", []))
    if not axes:
        _fail(node, "attribute axes is required")
    for a in _axes_list(node, axes, len(x) + len(axes)):
        x.insert(a, 1)
    return [tuple(x)]


def _squeeze(node, shapes):
    x = tuple(shapes[0])
    axes = node.attr("axes")
    axes = [i for i, d in enumerate(x) if d == 1] if axes is None else \
        _axes_list(node, axes, len(x))
    if any(x[a] != 1 for a in axes):
        _fail(node, f"axes {list(node.attr('axes'))} are not all of size 1 in shape {x}")
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _gather(node, shapes):
    x = tuple(shapes[0])
    if not x:
        _fail(node, "input data must be at least 1-D")
    axis = _axis(node, int(node.attr("axis", 0)), len(x))
    if node.attr("indices") is None:
        _fail(node, "attribute indices (integers) is required")
    idx = np.asarray(node.attr("indices"))
    idx = idx.astype(np.int64) if idx.size == 0 else idx
    if idx.dtype.kind not in "iu":
        _fail(node, f"indices must be integers, got {idx.dtype}")
    if idx.size and (idx.min() < -x[axis] or idx.max() >= x[axis]):
        _fail(node, f"indices {idx.tolist()} out of range for axis {axis} of size {x[axis]}")
    return [x[:axis] + idx.shape + x[axis + 1:]]


def _reduce_mean(node, shapes):
    x = tuple(shapes[0])
    axes = node.attr("axes")
    axes = list(range(len(x))) if axes is None else _axes_list(node, axes, len(x))
    if int(node.attr("keepdims", 1)):
        return [tuple(1 if i in axes else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _resize(node, shapes):
    x = tuple(shapes[0])
    if node.attr("mode", "nearest") != "nearest":
        _fail(node, f"mode={node.attr('mode')!r}: only 'nearest' is supported")
    scales = node.attr("scales")
    sizes = node.attr("sizes")
    if scales is None or len(scales) != len(x) or any(float(s) <= 0 for s in scales):
        _fail(node, f"scales {scales} must give one positive value per axis of shape {x}")
    if sizes is not None:
        if len(sizes) != len(x) or any(int(s) < 0 for s in sizes):
            _fail(node, f"sizes {list(sizes)} must give one size per axis of shape {x}")
        return [tuple(int(s) for s in sizes)]
    return [resize_output_shape(x, scales)]


def resize_output_shape(x, scales):
    """floor(in * scale) per axis, the product taken in float32 as onnxruntime does."""
    return tuple(int(math.floor(np.float32(d) * np.float32(s))) for d, s in zip(x, scales))


def _split(node, shapes):
    x = tuple(shapes[0])
    axis = _axis(node, int(node.attr("axis", 0)), len(x))
    sizes = [int(s) for s in node.attr("split", [])]
    if len(sizes) != len(node.outputs) or sum(sizes) != x[axis] or any(s < 0 for s in sizes):
        _fail(node, f"split sizes {sizes} must be {len(node.outputs)} non-negative values "
                    f"adding up to {x[axis]} (axis {axis} of shape {x})")
    return [x[:axis] + (s,) + x[axis + 1:] for s in sizes]


def _slice(node, shapes):
    from .reference import slice_bounds
    x = list(shapes[0])
    starts, ends = list(node.attr("starts", [])), list(node.attr("ends", []))
    axes = list(node.attr("axes", range(len(starts))))
    steps = list(node.attr("steps", [1] * len(starts)))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        _fail(node, f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must have "
                    f"the same length")
    _axes_list(node, axes, len(x))
    out = list(x)
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = _axis(node, int(a), len(x), "axes entry")
        if int(st) == 0:
            _fail(node, "steps must not be 0")
        out[a] = len(range(x[a])[slice_bounds(x[a], int(s), int(e), int(st))])
    return [tuple(out)]


SHAPE_RULES.update({
    "Sub": (_binary, 2, 2), "Div": (_binary, 2, 2), "Sum": (_sum, 1, None),
    "Sigmoid": (_same, 1, 1), "HardSigmoid": (_same, 1, 1), "HardSwish": (_same, 1, 1),
    "LeakyRelu": (_same, 1, 1), "PRelu": (_prelu, 2, 2), "Identity": (_same, 1, 1),
    "Pad": (_pad, 1, 1), "LRN": (_lrn, 1, 1), "Unsqueeze": (_unsqueeze, 1, 1),
    "Squeeze": (_squeeze, 1, 1), "Gather": (_gather, 1, 1), "ReduceMean": (_reduce_mean, 1, 1),
    "Resize": (_resize, 1, 1), "Split": (_split, 1, 1), "Slice": (_slice, 1, 1),
})
