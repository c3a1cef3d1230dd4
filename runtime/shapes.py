"""Shape inference, and the geometry (pads, output size) of windowed ops.

Each op's rule is its OpDef's ``shape`` (runtime/ops/, one file per op family): it takes
the node and its input shapes (None for an absent optional input) and returns the
output shapes. Errors name the node, the input and its shape. The helpers here are
shared by those rules.
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


def broadcast_shape(node, a, b):
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        _fail(node, f"inputs of shapes {tuple(a)} and {tuple(b)} do not broadcast")


def _axis(node, axis, rank, what="axis"):
    if not -rank <= axis < rank:
        _fail(node, f"{what}={axis} is out of range for a {rank}-D input")
    return axis % rank


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


def _axes_list(node, axes, rank):
    out = [_axis(node, int(a), rank, "axes entry") for a in axes]
    if len(set(out)) != len(out):
        _fail(node, f"axes {list(axes)} repeat an axis")
    return sorted(out)


def resize_output_shape(x, scales):
    """floor(in * scale) per axis, the product taken in float32 as onnxruntime does."""
    return tuple(int(math.floor(np.float32(d) * np.float32(s))) for d, s in zip(x, scales))


def infer_node(node, in_shapes):
    """Output shapes of one node, given its input shapes (None for absent optional)."""
    from .opdef import get  # noqa: PLC0415
    opd = get(node.op_type, node)
    if opd.shape is None:
        _fail(node, f"op type {node.op_type!r} is not supported at run time: it exists only "
                    f"while an ONNX model loads ({opd.doc})")
    lo, hi = opd.inputs
    n = len(node.inputs)
    if n < lo or (hi is not None and n > hi):
        _fail(node, f"takes {lo}..{hi if hi is not None else 'n'} inputs, got {n}")
    for i, s in enumerate(in_shapes[:lo]):
        if s is None:
            _fail(node, f"required input {i} is missing")
    return [tuple(int(d) for d in s) for s in opd.shape(node, in_shapes)]


def infer_shapes(graph, input_shapes):
    """Every tensor's shape: dict name -> tuple, given the graph input shapes."""
    shapes = {name: tuple(c.shape) for name, c in graph.constants.items()}
    shapes.update({k: tuple(v) for k, v in input_shapes.items()})
    for node in graph.nodes:
        outs = infer_node(node, [shapes[t] if t else None for t in node.inputs])
        for name, s in zip(node.outputs, outs):
            shapes[name] = s
    return shapes
