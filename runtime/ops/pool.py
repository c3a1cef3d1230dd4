"""Pooling: MaxPool, AveragePool (windows over H, W) and GlobalAveragePool."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import REQUIRED, Attr, OnnxSpec, OpDef, register
from ..reference import (_effective, _f64, _out, _spatial_attrs, _window, pool_output_hw,
                         resolve_pads)
from ..shapes import _fail, _need_rank, window_geometry
from .conv import ONNX_WINDOW, WINDOW_ATTRS


def _pool_shape(node, shapes):
    x = shapes[0]
    # a blocked MaxPool (the CPU layout pass): (N, CB, H, W, 16) in and out
    blocked = node.attr("_layout") == "nchw16c"
    _need_rank(node, x, 5 if blocked else 4)
    ks = node.attr("kernel_shape")
    if ks is None or len(ks) != 2:
        _fail(node, f"kernel_shape must be given as 2 values, got {ks}")
    _, _, _, out_hw = window_geometry(node, x[2:4], ks,
                                      ceil_mode=bool(node.attr("ceil_mode", 0)))
    return [(x[0], x[1], *out_hw) + ((x[4],) if blocked else ())]


def _global_shape(node, shapes):
    if node.attr("_layout") == "nchw16c":
        # the CPU layout pass: blocked (N, CB, H, W, 16) in, NCHW (N, channels, 1, 1) out
        _need_rank(node, shapes[0], 5)
        return [(shapes[0][0], int(node.attr("channels")), 1, 1)]
    _need_rank(node, shapes[0], 4)
    return [(shapes[0][0], shapes[0][1], 1, 1)]


def _pool(inputs, attrs, kind: str) -> np.ndarray:
    """Shared MaxPool/AveragePool: explicit taps over a padded copy plus validity masks."""
    x = _f64(inputs[0])
    n, c, h, w = x.shape
    kh, kw = (int(k) for k in attrs["kernel_shape"])
    strides, dilations, auto_pad = _spatial_attrs(attrs)
    pads = resolve_pads((h, w), (kh, kw), strides, dilations, attrs.get("pads"), auto_pad)
    # With auto_pad the output is fixed by the spec formulas, which ignore ceil_mode.
    ceil_mode = int(attrs.get("ceil_mode", 0)) if auto_pad == "NOTSET" else 0
    oh, ow = pool_output_hw((h, w), (kh, kw), strides, dilations, pads, ceil_mode)
    # Extra cells past the end padding, reachable only by ceil_mode windows.
    ph = max(h + pads[0] + pads[2], (oh - 1) * strides[0] + _effective(kh, dilations[0]))
    pw = max(w + pads[1] + pads[3], (ow - 1) * strides[1] + _effective(kw, dilations[1]))
    xp = np.zeros((n, c, ph, pw))
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    real = np.zeros((ph, pw))  # 1 on input cells
    real[pads[0]:pads[0] + h, pads[1]:pads[1] + w] = 1.0
    counted = np.zeros((ph, pw))  # 1 on input cells and explicit pad cells
    counted[:h + pads[0] + pads[2], :w + pads[1] + pads[3]] = 1.0
    if kind == "max":
        y = np.full((n, c, oh, ow), -np.inf)
    else:
        y, n_real, n_counted = np.zeros((n, c, oh, ow)), np.zeros((oh, ow)), np.zeros((oh, ow))
    if oh > 0 and ow > 0:
        for i in range(kh):
            for j in range(kw):
                win = _window(xp, i, j, (oh, ow), strides, dilations)
                ok = _window(real, i, j, (oh, ow), strides, dilations)
                if kind == "max":
                    y = np.maximum(y, np.where(ok > 0, win, -np.inf))  # pads never win
                else:
                    y += win
                    n_real += ok
                    n_counted += _window(counted, i, j, (oh, ow), strides, dilations)
    if kind == "avg":
        with np.errstate(invalid="ignore", divide="ignore"):
            y = y / (n_counted if int(attrs.get("count_include_pad", 0)) else n_real)
    return _out(y)


def max_pool(inputs, attrs) -> np.ndarray:
    """MaxPool: padded positions never win; supports dilations, ceil_mode, auto_pad."""
    return _pool(inputs, attrs, "max")


def average_pool(inputs, attrs) -> np.ndarray:
    """AveragePool: count_include_pad counts explicit pads but never ceil_mode overhang."""
    return _pool(inputs, attrs, "avg")


def global_average_pool(inputs, attrs) -> np.ndarray:
    """GlobalAveragePool: mean over all spatial axes, keeping them as size 1."""
    x = _f64(inputs[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return _out(np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True))


def _window_flops(node, ins, outs):
    kh, kw = node.attr("kernel_shape")
    return math.prod(outs[0]) * kh * kw


def _onnx_max_pool(imp):
    if len(imp.cur.output) > 1 and imp.cur.output[1]:
        imp.fail("the Indices output is not supported")
    if int(imp.attr("storage_order", 0)):
        imp.fail("storage_order=1 is not supported")
    imp._windowed("MaxPool", ("auto_pad", "pads", "strides", "kernel_shape", "dilations",
                              "ceil_mode"))


def _onnx_average_pool(imp):
    imp._windowed("AveragePool", ("auto_pad", "pads", "strides", "kernel_shape", "dilations",
                                  "ceil_mode", "count_include_pad"))


def _onnx_global_average_pool(imp):
    x = imp.in_name(0)
    shape = imp.shape_of(x)
    out = imp.cur.output[0]
    if len(shape) == 4:
        imp.emit("GlobalAveragePool", [x], [out])
        return
    if len(shape) < 3:
        imp.fail(f"input must be at least 3-D (N, C, ...), got shape {shape}")
    flat, pooled = imp.fresh(out + "_4d"), imp.fresh(out + "_pooled")
    imp.emit("Reshape", [x], [flat], {"shape": [shape[0], shape[1], 1, -1]}, "_to4d")
    imp.emit("GlobalAveragePool", [flat], [pooled])
    imp.emit("Reshape", [pooled], [out],
             {"shape": [shape[0], shape[1]] + [1] * (len(shape) - 2)}, "_back")


_KERNEL = Attr("kernel_shape", "ints", REQUIRED, "(KH, KW)")
_CEIL = Attr("ceil_mode", "int", 0, "1: output size rounded up")

register(OpDef(
    "MaxPool", attrs=(_KERNEL,) + WINDOW_ATTRS + (_CEIL,),
    shape=_pool_shape, reference=max_pool, flops=_window_flops,
    onnx=OnnxSpec((8, 10, 11, 12, 22), ONNX_WINDOW | {"dilations", "ceil_mode",
                                                      "storage_order"},
                  convert=_onnx_max_pool),
    builder="max_pool", doc="max over each window; padded positions never win"))

register(OpDef(
    "AveragePool",
    attrs=(_KERNEL,) + WINDOW_ATTRS + (
        _CEIL, Attr("count_include_pad", "int", 0, "1: explicit pad cells count")),
    shape=_pool_shape, reference=average_pool, flops=_window_flops,
    onnx=OnnxSpec((7, 10, 11, 19, 22), ONNX_WINDOW | {"dilations", "ceil_mode",
                                                      "count_include_pad"},
                  convert=_onnx_average_pool),
    builder="average_pool", doc="mean over each window"))

register(OpDef(
    "GlobalAveragePool", shape=_global_shape, reference=global_average_pool,
    flops=lambda node, ins, outs: math.prod(ins[0]),
    onnx=OnnxSpec((1, 22), convert=_onnx_global_average_pool),
    builder="global_average_pool", doc="mean over H and W: output (N, C, 1, 1)"))
