"""Resize (nearest, linear, cubic), and ONNX Upsample, which the importer turns into a Resize."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import REQUIRED, Attr, OnnxSpec, OpDef, register
from ..reference import _keep, resize_axis_table, resize_source_index
from ..shapes import _fail, resize_output_shape


MODES = ("nearest", "linear", "cubic")


def _shape(node, shapes):
    x = tuple(shapes[0])
    mode = node.attr("mode", "nearest")
    if mode not in MODES:
        _fail(node, f"mode={mode!r} is not one of {', '.join(MODES)}")
    coord = node.attr("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest" and (coord == "tf_crop_and_resize" or int(node.attr("antialias", 0))):
        _fail(node, "mode 'nearest' runs without tf_crop_and_resize and antialias")
    roi = node.attr("roi")
    if roi is not None and len(roi) != 2 * len(x):
        _fail(node, f"roi {list(roi)} must give a start and an end per axis of shape {x}")
    scales = node.attr("scales")
    sizes = node.attr("sizes")
    if scales is None or len(scales) != len(x) or any(float(s) <= 0 for s in scales):
        _fail(node, f"scales {scales} must give one positive value per axis of shape {x}")
    if sizes is not None:
        if len(sizes) != len(x) or any(int(s) < 0 for s in sizes):
            _fail(node, f"sizes {list(sizes)} must give one size per axis of shape {x}")
        return [tuple(int(s) for s in sizes)]
    return [resize_output_shape(x, scales)]


def output_sizes(shape, attrs):
    """The output shape of a Resize: ``sizes``, else floor(in * scale) per axis (the
    product in float32, as onnxruntime computes it)."""
    sizes = attrs.get("sizes")
    if sizes is not None:
        return [int(s) for s in sizes]
    return [int(math.floor(np.float32(d) * np.float32(s)))
            for d, s in zip(shape, attrs["scales"])]


def axis_tables(shape, attrs):
    """Per axis of a linear / cubic Resize: None where the axis is left as it is (scale 1,
    same size, whole roi: ONNX skips it), else ``resize_axis_table``'s (idx, w, outside)."""
    sizes = output_sizes(shape, attrs)
    r = len(shape)
    roi = attrs.get("roi") or [0.0] * r + [1.0] * r
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    out = []
    for a, (d, o, s) in enumerate(zip(shape, sizes, attrs["scales"])):
        box = (float(roi[a]), float(roi[a + r]))
        if math.isclose(float(s), 1.0) and o == d and (
                coord != "tf_crop_and_resize" or
                (math.isclose(box[0], 0.0) and math.isclose(box[1], 1.0))):
            out.append(None)
            continue
        out.append(resize_axis_table(
            d, o, float(s), coord, attrs.get("mode", "nearest"),
            float(attrs.get("cubic_coeff_a", -0.75)), bool(int(attrs.get("exclude_outside", 0))),
            bool(int(attrs.get("antialias", 0))), box))
    return out


def _interpolate(x, attrs):
    """Linear / cubic: one axis at a time (the ONNX definition is separable), float64."""
    y = np.asarray(x, np.float64)
    extrap = float(attrs.get("extrapolation_value", 0.0))
    for axis, table in enumerate(axis_tables(x.shape, attrs)):
        if table is None:
            continue
        idx, w, outside = table
        wshape = (1,) * axis + w.shape + (1,) * (y.ndim - axis - 1)
        y = (np.take(y, idx, axis=axis) * w.reshape(wshape)).sum(axis=axis + 1)
        mask = outside.astype(bool).reshape((1,) * axis + (-1,) + (1,) * (y.ndim - axis - 1))
        y = np.where(mask, extrap, y)
    return y.astype(np.float32)


def resize(inputs, attrs) -> np.ndarray:
    """Resize: ``scales`` per axis, output ``sizes`` (default floor(in * scale)); nearest,
    or linear / cubic interpolation as the ONNX definition gives it."""
    x = np.asarray(inputs[0])
    mode = attrs.get("mode", "nearest")
    if mode in ("linear", "cubic"):
        return _interpolate(x, attrs)
    if mode != "nearest":
        raise ValueError(f"Resize mode {mode!r} is not one of {', '.join(MODES)}")
    scales = [float(s) for s in attrs["scales"]]
    sizes = output_sizes(x.shape, attrs)
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = attrs.get("nearest_mode", "round_prefer_floor")
    y = x
    for axis, (d, o, s) in enumerate(zip(x.shape, sizes, scales)):
        if o != d or s != 1.0:
            y = np.take(y, resize_source_index(d, int(o), s, coord, nearest), axis=axis)
    return _keep(y)


def _emit_resize(imp, x, scales, sizes, coord, nearest, axes=None, policy="stretch",
                 mode="nearest", extra=None, roi=None):
    """Emit a Resize of ``x`` from ONNX scales or sizes (over ``axes``); ``extra``: the
    linear / cubic attributes, ``roi``: the ONNX roi input (tf_crop_and_resize)."""
    shape = imp.shape_of(x)
    rank = len(shape)
    out = imp.cur.output[0]
    if axes is None:
        axes = list(range(rank))
    axes = [int(a) % rank for a in axes]
    if scales is not None and scales.size:
        if scales.size != len(axes):
            imp.fail(f"scales {scales.tolist()} must have one value per axis {axes}")
        full = [1.0] * rank
        for a, s in zip(axes, scales.reshape(-1).tolist()):
            full[a] = float(s)
        if any(s <= 0 for s in full):
            imp.fail(f"scales {full} must be positive")
        attrs = {"scales": full}
    elif sizes is not None and sizes.size:
        if sizes.size != len(axes):
            imp.fail(f"sizes {sizes.tolist()} must have one value per axis {axes}")
        want = list(shape)
        for a, s in zip(axes, sizes.reshape(-1).tolist()):
            want[a] = int(s)
        ratio = [want[a] / shape[a] for a in range(rank)]
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            s = pick(ratio[a] for a in axes)
            ratio = [s if a in axes else 1.0 for a in range(rank)]
            want = [int(s * shape[a] + 0.5) if a in axes else shape[a] for a in range(rank)]
        attrs = {"scales": ratio, "sizes": want}
    else:
        imp.fail("needs scales or sizes")
    attrs.update(mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest)
    attrs.update(extra or {})
    if coord == "tf_crop_and_resize":
        if roi is None or roi.size != 2 * len(axes):
            imp.fail(f"tf_crop_and_resize needs a roi input of {2 * len(axes)} values "
                     f"(a start and an end per resized axis), got "
                     f"{None if roi is None else roi.reshape(-1).tolist()}")
        full = [0.0] * rank + [1.0] * rank
        flat = [float(v) for v in roi.reshape(-1)]
        for i, a in enumerate(axes):
            full[a], full[a + rank] = flat[i], flat[i + len(axes)]
        attrs["roi"] = full
    imp.emit("Resize", [x], [out], attrs)


def _mode(imp, allowed):
    mode = imp.attr_str("mode", "nearest")
    mode = "linear" if mode in ("bilinear", "trilinear") else mode
    if mode not in allowed:
        imp.fail(f"mode={mode!r} is not supported (only {', '.join(allowed)})")
    return mode


def _onnx_upsample(imp):
    mode = _mode(imp, ("nearest", "linear"))
    _emit_resize(imp, imp.in_name(0), imp.const(1, "scales"), None, "asymmetric", "simple",
                 mode=mode)


def _onnx_resize(imp):
    x = imp.in_name(0)
    if imp.since < 11:
        mode = _mode(imp, ("nearest", "linear"))
        _emit_resize(imp, x, imp.const(1, "scales"), None, "asymmetric", "simple", mode=mode)
        return
    mode = _mode(imp, MODES)
    coord = imp.attr_str("coordinate_transformation_mode", "half_pixel")
    antialias = int(imp.attr("antialias", 0)) if imp.since >= 18 else 0
    if mode == "nearest" and coord == "tf_crop_and_resize":
        imp.fail("coordinate_transformation_mode='tf_crop_and_resize' is supported for "
                 "modes linear and cubic only")
    if mode == "nearest" and antialias:
        imp.fail("antialias=1 has no meaning for mode 'nearest'")
    extra = {}
    if mode != "nearest":
        extra = {"cubic_coeff_a": float(imp.attr("cubic_coeff_a", -0.75)),
                 "exclude_outside": int(imp.attr("exclude_outside", 0)),
                 "extrapolation_value": float(imp.attr("extrapolation_value", 0.0)),
                 "antialias": antialias}
    roi = imp.const(1, "roi", optional=True) if coord == "tf_crop_and_resize" else None
    nearest = imp.attr_str("nearest_mode", "round_prefer_floor")
    scales = imp.const(2, "scales", optional=True)
    sizes = imp.const(3, "sizes", optional=True)
    if scales is not None and scales.size and sizes is not None and sizes.size:
        imp.fail("give scales or sizes, not both")
    axes = imp.attr("axes") if imp.since >= 18 else None
    policy = imp.attr_str("keep_aspect_ratio_policy", "stretch") \
        if imp.since >= 18 else "stretch"
    if policy not in ("stretch", "not_larger", "not_smaller"):
        imp.fail(f"keep_aspect_ratio_policy={policy!r} not understood")
    _emit_resize(imp, x, scales, sizes, coord, nearest, axes, policy, mode, extra, roi)


def _flops(node, ins, outs):
    """nearest: one per output element (an index and a copy); linear / cubic: a multiply
    and an add per tap of each resized axis (2 taps linear, 4 cubic), summed over the
    separable passes, each counted on the full output (an upper bound)."""
    mode = node.attr("mode", "nearest")
    n = math.prod(outs[0])
    if mode == "nearest":
        return n
    taps = 2 if mode == "linear" else 4
    axes = sum(1 for d, o, s in zip(ins[0], outs[0], node.attr("scales"))
               if o != d or not math.isclose(float(s), 1.0))
    return 2 * taps * max(axes, 1) * n


register(OpDef(
    "Resize",
    attrs=(Attr("scales", "floats", REQUIRED, "one per axis"),
           Attr("sizes", "ints", None, "output shape (default floor(in x scale))"),
           Attr("mode", "str", "nearest", "nearest, linear or cubic"),
           Attr("coordinate_transformation_mode", "str", "half_pixel",
                "how an output position maps to the input"),
           Attr("nearest_mode", "str", "round_prefer_floor", "rounding of that position"),
           Attr("cubic_coeff_a", "float", -0.75, "cubic: the kernel's a"),
           Attr("exclude_outside", "int", 0, "1: weights of points off the input are 0"),
           Attr("extrapolation_value", "float", 0.0, "tf_crop_and_resize: off the input"),
           Attr("antialias", "int", 0, "1: linear / cubic kernel widened when shrinking"),
           Attr("roi", "floats", None, "tf_crop_and_resize: starts then ends, per axis")),
    shape=_shape, reference=resize,
    flops=_flops,
    onnx=OnnxSpec((10, 11, 13, 18, 19),
                  frozenset({"mode", "coordinate_transformation_mode", "nearest_mode",
                             "cubic_coeff_a", "exclude_outside", "extrapolation_value",
                             "antialias", "axes", "keep_aspect_ratio_policy"}),
                  (10, (1, 2, 3)), _onnx_resize),
    builder="resize", doc="nearest, linear or cubic resize by scales or to sizes"))
register(OpDef(
    "Upsample", runtime=False,
    onnx=OnnxSpec((9, 10), frozenset({"mode", "scales"}), (9, (1,)), _onnx_upsample),
    doc="ONNX Upsample (nearest): imported as a Resize"))
