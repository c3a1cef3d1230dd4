"""Conv: grouped, strided, dilated 2-D convolution with a fused bias/activation epilogue."""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, OnnxSpec, OpDef, register
from ..reference import (_clip, _f64, _out, _spatial_attrs, _window, conv_output_hw,
                         resolve_pads)
from ..shapes import _fail, _need_rank, window_geometry

WINDOW_ATTRS = (
    Attr("strides", "ints", [1, 1], "step per spatial axis"),
    Attr("pads", "ints", [0, 0, 0, 0], "[top, left, bottom, right]"),
    Attr("dilations", "ints", [1, 1], "spacing of the window taps"),
    Attr("auto_pad", "str", "NOTSET", "NOTSET, SAME_UPPER, SAME_LOWER or VALID"),
)
ONNX_WINDOW = frozenset({"auto_pad", "pads", "strides", "kernel_shape"})


def check_inputs(node, shapes, layout=""):
    """X (N, C, H, W), W (M, C/group, KH, KW), bias (M,) and kernel_shape agree (Conv and
    ConvTranspose, whose W has the same layout in the IR); ``layout`` names it in errors."""
    x, w = shapes[0], shapes[1]
    _need_rank(node, x, 4)
    _need_rank(node, w, 4, "weight W")
    group = int(node.attr("group", 1))
    if group < 1 or x[1] % group or w[0] % group:
        _fail(node, f"group={group} must divide input channels {x[1]} and output channels {w[0]}")
    if w[1] * group != x[1]:
        _fail(node, f"weight W shape {tuple(w)}{layout} expects {w[1] * group} input channels "
                    f"(group={group}), input X has shape {tuple(x)}")
    if len(shapes) > 2 and shapes[2] is not None and tuple(shapes[2]) != (w[0],):
        _fail(node, f"bias B shape {tuple(shapes[2])} must be ({w[0]},)")
    ks = node.attr("kernel_shape")
    if ks is not None and list(ks) != list(w[2:]):
        _fail(node, f"kernel_shape {list(ks)} disagrees with weight shape {tuple(w)}")


def _shape(node, shapes):
    x, w = shapes[0], shapes[1]
    blocked = node.attr("_layout") == "nchw16c"
    if blocked:
        # set by the CPU layout pass (backends/cpu_layout.py): the output (and a residual)
        # are channel-blocked, the input blocked or NCHW
        from .blocked import blocked_shape, logical_shape
        x = logical_shape(node, x, w[1] * int(node.attr("group", 1)))
        shapes = [x] + list(shapes[1:3])
    check_inputs(node, shapes)
    _, _, _, out_hw = window_geometry(node, x[2:], w[2:])
    out = (x[0], w[0], *out_hw)
    if blocked and node.attr("_out_layout") != "nchw":
        out = blocked_shape(out)
    # a 4th input is a residual fused in by runtime/passes.py: added before the activation
    if len(shapes) > 3 and shapes[3] is not None and tuple(shapes[3]) != out:
        _fail(node, f"residual input shape {tuple(shapes[3])} must equal the output {out}")
    return [out]


# the smooth activations runtime/passes.py fuses into a Conv: SiLU (Sigmoid -> Mul) and
# Gelu's two forms
SMOOTH_ACTIVATIONS = ("silu", "gelu", "gelu_tanh")


def smooth_activation(y, act):
    """The reference of a fused smooth activation on float64 y."""
    from .elementwise import gelu  # noqa: PLC0415 (elementwise imports this package)
    if act == "silu":
        with np.errstate(over="ignore"):
            return y / (1.0 + np.exp(-y))
    mode = "tanh" if act == "gelu_tanh" else "none"
    return gelu([y], {"approximate": mode}).astype(np.float64)


def conv(inputs, attrs) -> np.ndarray:
    """Conv: grouped, strided, dilated 2-D convolution + bias + optional relu/clip epilogue."""
    x, w = _f64(inputs[0]), _f64(inputs[1])
    b = _f64(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    group = int(attrs.get("group", 1))
    if c != cg * group or m % group != 0:
        raise ValueError(f"Conv shape mismatch: X {x.shape}, W {w.shape}, group {group}")
    strides, dilations, auto_pad = _spatial_attrs(attrs)
    pads = resolve_pads((h, wd), (kh, kw), strides, dilations, attrs.get("pads"), auto_pad)
    oh, ow = conv_output_hw((h, wd), (kh, kw), strides, dilations, pads)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    wg = w.reshape(group, m // group, cg, kh, kw)
    acc = np.zeros((n, group, m // group, oh, ow))
    if oh > 0 and ow > 0:
        for i in range(kh):
            for j in range(kw):
                patch = _window(xp, i, j, (oh, ow), strides, dilations)
                patch = patch.reshape(n, group, cg, oh, ow)
                acc += np.einsum("ngchw,gmc->ngmhw", patch, wg[:, :, :, i, j])
    y = acc.reshape(n, m, oh, ow)
    if b is not None:
        y = y + b.reshape(1, m, 1, 1)
    act = attrs.get("activation", "") or ""
    if act == "relu":
        y = np.maximum(y, 0.0)
    elif act == "clip":
        y = _clip(y, attrs.get("activation_min"), attrs.get("activation_max"))
    elif act in SMOOTH_ACTIVATIONS:
        y = smooth_activation(y, act)
    elif act:
        raise ValueError(f"unknown Conv activation {act!r}")
    if attrs.get("_fq_scale") is not None:      # a fused fake-quant (runtime/passes.py)
        from .quant import quantize_linear  # noqa: PLC0415
        y = quantize_linear([_out(y), np.float32(attrs["_fq_scale"]),
                             np.float32(attrs.get("_fq_zero", 0.0))],
                            {"dtype": attrs.get("_fq_dtype", "uint8"), "dequantize": 1})
    return _out(y)


def _flops(node, ins, outs):
    w, out = ins[1], outs[0]
    return 2 * out[0] * w[0] * out[2] * out[3] * w[1] * w[2] * w[3]


def _onnx_conv(imp):
    imp._windowed("Conv", ("auto_pad", "pads", "strides", "kernel_shape", "dilations",
                           "group"))


register(OpDef(
    "Conv", inputs=(2, 4),
    attrs=WINDOW_ATTRS + (Attr("group", "int", 1, "groups of channels"),
                          Attr("kernel_shape", "ints", None, "(KH, KW); taken from W")),
    shape=_shape, reference=conv, flops=_flops,
    onnx=OnnxSpec((1, 11, 22), ONNX_WINDOW | {"dilations", "group"}, convert=_onnx_conv),
    builder="conv2d",
    doc="2-D convolution (NCHW), optional bias; fused relu/clip and residual epilogue"))
