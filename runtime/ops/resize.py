"""Resize (nearest only), and ONNX Upsample, which the importer turns into a Resize."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import REQUIRED, Attr, OnnxSpec, OpDef, register
from ..reference import _keep, resize_source_index
from ..shapes import _fail, resize_output_shape


def _shape(node, shapes):
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


def resize(inputs, attrs) -> np.ndarray:
    """Resize (mode nearest): ``scales`` per axis, output ``sizes`` (default floor(in * scale))."""
    x = np.asarray(inputs[0])
    if attrs.get("mode", "nearest") != "nearest":
        raise ValueError(f"Resize mode {attrs.get('mode')!r}: only 'nearest' is implemented")
    scales = [float(s) for s in attrs["scales"]]
    sizes = attrs.get("sizes")
    if sizes is None:
        # floor(in * scale) with the product in float32, as onnxruntime computes it
        sizes = [int(math.floor(np.float32(d) * np.float32(s))) for d, s in zip(x.shape, scales)]
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = attrs.get("nearest_mode", "round_prefer_floor")
    y = x
    for axis, (d, o, s) in enumerate(zip(x.shape, sizes, scales)):
        if o != d or s != 1.0:
            y = np.take(y, resize_source_index(d, int(o), s, coord, nearest), axis=axis)
    return _keep(y)


def _emit_resize(imp, x, scales, sizes, coord, nearest, axes=None, policy="stretch"):
    """Emit a nearest Resize of ``x`` from ONNX scales or sizes (over ``axes``)."""
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
    attrs.update(mode="nearest", coordinate_transformation_mode=coord, nearest_mode=nearest)
    imp.emit("Resize", [x], [out], attrs)


def _onnx_upsample(imp):
    mode = imp.attr_str("mode", "nearest")
    if mode != "nearest":
        imp.fail(f"mode={mode!r} is not supported (only 'nearest')")
    _emit_resize(imp, imp.in_name(0), imp.const(1, "scales"), None, "asymmetric", "simple")


def _onnx_resize(imp):
    mode = imp.attr_str("mode", "nearest")
    if mode != "nearest":
        imp.fail(f"mode={mode!r} is not supported (only 'nearest')")
    x = imp.in_name(0)
    if imp.since < 11:
        _emit_resize(imp, x, imp.const(1, "scales"), None, "asymmetric", "simple")
        return
    coord = imp.attr_str("coordinate_transformation_mode", "half_pixel")
    if coord == "tf_crop_and_resize":
        imp.fail("coordinate_transformation_mode='tf_crop_and_resize' is not supported")
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
    _emit_resize(imp, x, scales, sizes, coord, nearest, axes, policy)


register(OpDef(
    "Resize",
    attrs=(Attr("scales", "floats", REQUIRED, "one per axis"),
           Attr("sizes", "ints", None, "output shape (default floor(in x scale))"),
           Attr("mode", "str", "nearest", "only nearest"),
           Attr("coordinate_transformation_mode", "str", "half_pixel",
                "how an output position maps to the input"),
           Attr("nearest_mode", "str", "round_prefer_floor", "rounding of that position")),
    shape=_shape, reference=resize,
    # nearest: a source index and a copy per output element, counted as one
    flops=lambda node, ins, outs: math.prod(outs[0]),
    onnx=OnnxSpec((10, 11, 13, 18, 19),
                  frozenset({"mode", "coordinate_transformation_mode", "nearest_mode",
                             "cubic_coeff_a", "exclude_outside", "extrapolation_value",
                             "antialias", "axes", "keep_aspect_ratio_policy"}),
                  (10, (1, 2, 3)), _onnx_resize),
    builder="resize", doc="nearest-neighbour resize by scales or to sizes"))
register(OpDef(
    "Upsample", runtime=False,
    onnx=OnnxSpec((9, 10), frozenset({"mode", "scales"}), (9, (1,)), _onnx_upsample),
    doc="ONNX Upsample (nearest): imported as a Resize"))
