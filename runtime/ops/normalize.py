"""Normalizing ops: Softmax, BatchNormalization (inference), LRN, ReduceMean, and
LayerNormalization, GroupNormalization, InstanceNormalization."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import REQUIRED, Attr, OnnxSpec, OpDef, register
from ..reference import _axes, _f64, _out
from ..shapes import _axis, _fail
from .reduce import reduce_shape


def _softmax_shape(node, shapes):
    _axis(node, int(node.attr("axis", -1)), len(shapes[0]))
    return [tuple(shapes[0])]


def _batchnorm_shape(node, shapes):
    x = shapes[0]
    if len(x) < 2:
        _fail(node, f"input X must be at least 2-D, got {tuple(x)}")
    for i, nm in enumerate(("scale", "B", "mean", "var"), start=1):
        if tuple(shapes[i]) != (x[1],):
            _fail(node, f"{nm} has shape {tuple(shapes[i])}, expected ({x[1]},)")
    return [tuple(x)]


def _lrn_shape(node, shapes):
    x = tuple(shapes[0])
    if len(x) < 3:
        _fail(node, f"input X must be at least 3-D (N, C, ...), got shape {x}")
    if int(node.attr("size", 0)) < 1:
        _fail(node, f"size={node.attr('size')} must be a positive int")
    return [x]


def softmax(inputs, attrs) -> np.ndarray:
    """Softmax: exp(x - max) / sum along the single axis ``axis`` (default -1)."""
    x = _f64(inputs[0])
    axis = int(attrs.get("axis", -1))
    if x.size == 0:
        return _out(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return _out(e / np.sum(e, axis=axis, keepdims=True))


def batch_normalization(inputs, attrs) -> np.ndarray:
    """BatchNormalization (inference): (x - mean) / sqrt(var + eps) * scale + B over axis 1."""
    x = _f64(inputs[0])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale, bias, mean, var = (_f64(a).reshape(shape) for a in inputs[1:5])
    eps = float(attrs.get("epsilon", 1e-5))
    return _out((x - mean) / np.sqrt(var + eps) * scale + bias)


def lrn(inputs, attrs) -> np.ndarray:
    """LRN across channels: x / (bias + alpha / size * sum of x^2 over a channel window)^beta."""
    x = _f64(inputs[0])
    size = int(attrs["size"])
    alpha = float(attrs.get("alpha", 1e-4))
    beta, bias = float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    c = x.shape[1]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    sq = x * x
    acc = np.zeros_like(x)
    for ch in range(c):
        acc[:, ch] = sq[:, max(0, ch - lo):min(c, ch + hi + 1)].sum(axis=1)
    return _out(x / (bias + alpha / size * acc) ** beta)


def reduce_mean(inputs, attrs) -> np.ndarray:
    """ReduceMean over ``axes`` (None or absent: all axes), keepdims 1."""
    x = _f64(inputs[0])
    axes = attrs.get("axes")
    axes = tuple(range(x.ndim)) if axes is None else tuple(_axes(axes, x.ndim))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _out(np.mean(x, axis=axes, keepdims=bool(int(attrs.get("keepdims", 1)))))


def _onnx_softmax(imp):
    x = imp.in_name(0)
    shape = imp.shape_of(x)
    rank = len(shape)
    default = -1 if imp.since >= 13 else 1
    axis = int(imp.attr("axis", default))
    if not -rank <= axis < max(rank, 1):
        imp.fail(f"axis={axis} is out of range for input shape {shape}")
    axis %= max(rank, 1)
    out = imp.cur.output[0]
    if imp.since >= 13 or axis == rank - 1:
        imp.emit("Softmax", [x], [out], {"axis": axis if imp.since >= 13 else -1})
        return
    # opset < 13: softmax over the input flattened to 2-D at axis
    flat, soft = imp.fresh(out + "_flat"), imp.fresh(out + "_2d")
    imp.emit("Flatten", [x], [flat], {"axis": axis}, "_flatten")
    imp.emit("Softmax", [flat], [soft], {"axis": 1})
    imp.emit("Reshape", [soft], [out], {"shape": list(shape)}, "_reshape")


def _onnx_batchnorm(imp):
    if int(imp.attr("training_mode", 0)):
        imp.fail("training_mode=1 is not supported (inference only)")
    if any(t for t in imp.cur.output[1:]):
        imp.fail("running mean/var outputs (training) are not supported")
    imp._simple("BatchNormalization", imp._attrs("epsilon"))


def _onnx_reduce_mean(imp):
    keepdims = int(imp.attr("keepdims", 1))
    if imp.since >= 18:
        axes = imp._axes_input(1)
        if not axes:
            if int(imp.attr("noop_with_empty_axes", 0)):
                imp.passthrough(imp.cur.output[0], imp.in_name(0))
                return
            axes = None
    else:
        axes = imp.attr("axes")
        axes = None if axes is None else [int(a) for a in axes]
    attrs = {"keepdims": keepdims}
    if axes is not None:
        attrs["axes"] = axes
    imp.emit("ReduceMean", [imp.in_name(0)], imp.cur.output[:1], attrs)


def _lrn_flops(node, ins, outs):
    # per element: size squares and adds for the window sum, then scale, add, power, divide
    return (2 * int(node.attr("size")) + 4) * math.prod(outs[0])


register(OpDef(
    "Softmax", attrs=(Attr("axis", "int", -1, "the axis normalized"),),
    shape=_softmax_shape, reference=softmax,
    flops=lambda node, ins, outs: 3 * math.prod(outs[0]),
    onnx=OnnxSpec((1, 11, 13), frozenset({"axis"}), convert=_onnx_softmax),
    builder="softmax", doc="exp(x - max) / sum along one axis"))
register(OpDef(
    "BatchNormalization", inputs=(5, 5),
    attrs=(Attr("epsilon", "float", 1e-5, "added to var"),),
    shape=_batchnorm_shape, reference=batch_normalization,
    flops=lambda node, ins, outs: 3 * math.prod(outs[0]),
    onnx=OnnxSpec((9, 14, 15), frozenset({"epsilon", "momentum", "training_mode"}),
                  convert=_onnx_batchnorm),
    builder="batch_norm", doc="inference form: (x - mean) / sqrt(var + eps) scale + B"))
register(OpDef(
    "LRN",
    attrs=(Attr("size", "int", REQUIRED, "channels in the window"),
           Attr("alpha", "float", 1e-4, "scale of the sum"),
           Attr("beta", "float", 0.75, "exponent"), Attr("bias", "float", 1.0, "offset")),
    shape=_lrn_shape, reference=lrn, flops=_lrn_flops,
    onnx=OnnxSpec((1, 13), frozenset({"alpha", "beta", "bias", "size"})),
    builder="lrn", doc="local response normalization across channels"))
register(OpDef(
    "ReduceMean",
    attrs=(Attr("axes", "ints", None, "axes averaged (default: all)"),
           Attr("keepdims", "int", 1, "1: keep them as size 1")),
    shape=reduce_shape, reference=reduce_mean,
    # one add per input element, one divide per output element
    flops=lambda node, ins, outs: math.prod(ins[0]) + math.prod(outs[0]),
    onnx=OnnxSpec((1, 11, 13, 18), frozenset({"axes", "keepdims", "noop_with_empty_axes"}),
                  (18, (1,)), _onnx_reduce_mean),
    builder="reduce_mean", doc="mean over axes, float64 accumulation"))


# ---------------------------------------------------------------- layer / group / instance norm

def _norm_params(node, shapes, names, want):
    """Check that each present parameter input broadcasts to ``want``."""
    for i, nm in enumerate(names, start=1):
        s = shapes[i] if i < len(shapes) else None
        if s is None:
            continue
        s = tuple(s)
        if len(s) > len(want) or any(a not in (1, b) for a, b in zip(s[::-1], want[::-1])):
            _fail(node, f"input {nm} has shape {s}, which does not broadcast to {want}")


def _layer_norm_shape(node, shapes):
    x = tuple(shapes[0])
    if int(node.attr("_channels", 0)):
        if len(x) < 2:
            _fail(node, f"input X must be at least 2-D (N, C, ...), got {x}")
        _norm_params(node, shapes, ("Scale", "B"), (x[1],))
        return [x]
    axis = _axis(node, int(node.attr("axis", -1)), len(x))
    _norm_params(node, shapes, ("Scale", "B"), x[axis:])
    return [x]


def _group_norm_shape(node, shapes, groups=None):
    x = tuple(shapes[0])
    if len(x) < 2:
        _fail(node, f"input X must be at least 2-D (N, C, ...), got {x}")
    g = x[1] if groups is None else int(node.attr("num_groups"))
    if g < 1 or x[1] % g:
        _fail(node, f"num_groups={g} must be positive and divide the {x[1]} channels of {x}")
    for i, nm in ((1, "scale"), (2, "bias")):
        if tuple(shapes[i]) not in ((x[1],), (g,)):
            _fail(node, f"input {nm} has shape {tuple(shapes[i])}; expected ({x[1]},) "
                        f"(per channel) or ({g},) (per group)")
    return [x]


def layer_normalization(inputs, attrs) -> np.ndarray:
    """LayerNormalization: (x - mean) / sqrt(var + eps) * Scale + B, statistics over the
    axes from ``axis`` to the last (with the private ``_channels=1``: over axis 1 only,
    Scale and B per channel)."""
    x = _f64(inputs[0])
    eps = float(attrs.get("epsilon", 1e-5))
    if int(attrs.get("_channels", 0)):
        axes = (1,)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        scale = _f64(inputs[1]).reshape(-1)
        scale = np.broadcast_to(scale, (x.shape[1],)).reshape(shape)
        b = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.zeros(1)
        b = np.broadcast_to(_f64(b).reshape(-1), (x.shape[1],)).reshape(shape)
    else:
        axis = int(attrs.get("axis", -1)) % x.ndim
        axes = tuple(range(axis, x.ndim))
        scale = _f64(inputs[1])
        b = _f64(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else 0.0
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return _out((x - mean) / np.sqrt(var + eps) * scale + b)


def group_normalization(inputs, attrs) -> np.ndarray:
    """GroupNormalization: statistics per (sample, group of C / num_groups channels);
    scale and bias per channel (opset 21) or per group (opset 18), told by their size."""
    x = _f64(inputs[0])
    n, c = x.shape[:2]
    g = int(attrs["num_groups"])
    eps = float(attrs.get("epsilon", 1e-5))
    xg = x.reshape(n, g, -1)
    mean = xg.mean(axis=2, keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    scale, bias = (np.repeat(_f64(a).reshape(-1), c // a.size if a.size != c else 1)
                   for a in (np.asarray(inputs[1]), np.asarray(inputs[2])))
    return _out(y * scale.reshape(shape) + bias.reshape(shape))


def instance_normalization(inputs, attrs) -> np.ndarray:
    """InstanceNormalization: group normalization with one group per channel."""
    x = np.asarray(inputs[0])
    return group_normalization(inputs, {**attrs, "num_groups": x.shape[1]})


def _onnx_layer_norm(imp):
    if any(t for t in imp.cur.output[1:]):
        imp.fail("outputs Mean and InvStdDev (training) are not supported; only Y")
    imp._simple("LayerNormalization", imp._attrs("axis", "epsilon"))


def _onnx_group_norm(imp):
    if any(t for t in imp.cur.output[1:]):
        imp.fail("has more than one output")
    imp._simple("GroupNormalization", imp._attrs("num_groups", "epsilon"))


def _norm_flops(node, ins, outs):
    # per element: add (mean), sub, square, add (var), then sub, mul, mul, add
    return 8 * math.prod(outs[0])


register(OpDef(
    "LayerNormalization", inputs=(2, 3),
    attrs=(Attr("axis", "int", -1, "first normalized axis; it and all after it"),
           Attr("epsilon", "float", 1e-5, "added to the variance"),
           Attr("_channels", "int", 0, "private: 1 normalizes over axis 1 of (N, C, ...) "
                "(runtime/passes.py fuses NHWC transposes into it)")),
    shape=_layer_norm_shape, reference=layer_normalization, flops=_norm_flops,
    onnx=OnnxSpec((17,), frozenset({"axis", "epsilon", "stash_type"}),
                  convert=_onnx_layer_norm),
    builder="layer_norm", doc="(x - mean) / sqrt(var + eps) Scale + B over trailing axes"))
register(OpDef(
    "GroupNormalization", inputs=(3, 3),
    attrs=(Attr("num_groups", "int", REQUIRED, "groups the channels split into"),
           Attr("epsilon", "float", 1e-5, "added to the variance")),
    shape=lambda node, shapes: _group_norm_shape(node, shapes, groups=True),
    reference=group_normalization, flops=_norm_flops,
    onnx=OnnxSpec((18, 21), frozenset({"num_groups", "epsilon", "stash_type"}),
                  convert=_onnx_group_norm),
    builder="group_norm", doc="normalized per (sample, channel group); scale, bias per "
                              "channel or per group"))
register(OpDef(
    "InstanceNormalization", inputs=(3, 3),
    attrs=(Attr("epsilon", "float", 1e-5, "added to the variance"),),
    shape=_group_norm_shape, reference=instance_normalization, flops=_norm_flops,
    onnx=OnnxSpec((6, 22), frozenset({"epsilon"})),
    builder="instance_norm", doc="normalized per (sample, channel); scale, bias per channel"))
