"""ConvTranspose: the gradient of a strided 2-D convolution, as decoders upsample with it.

The IR keeps its weight in *conv layout*, (M, C/group, KH, KW): output channels first,
like Conv's, so that quantization (one scale per output channel, blocks along a row), the
memory modes and the kernel choice treat it exactly as they treat a Conv weight. ONNX
stores it (C, M/group, KH, KW); the importer and ``GraphBuilder.conv_transpose2d`` swap
the two channel axes per group (``onnx_to_ir_weight``). Nothing else differs from ONNX:

    y[n, m, oy, ox] = B[m] + sum over c in m's group, i, j of
                      x[n, c, iy, ix] * W[m, c, i, j],  oy = iy*sh - pt + i*dh,
                                                         ox = ix*sw - pl + j*dw

with the output size s*(in-1) + output_padding + (k-1)*d + 1 - pad_begin - pad_end, or
``output_shape`` (pads then derived as ONNX says; auto_pad SAME_* means in * stride).
"""
from __future__ import annotations

import math

import numpy as np

from ..opdef import Attr, OnnxSpec, OpDef, register
from ..reference import _f64, _out
from ..shapes import _fail
from .conv import check_inputs

ATTRS = (
    Attr("strides", "ints", [1, 1], "step of the input in the output"),
    Attr("pads", "ints", [0, 0, 0, 0], "[top, left, bottom, right] cropped off the output"),
    Attr("dilations", "ints", [1, 1], "spacing of the kernel taps"),
    Attr("output_padding", "ints", [0, 0], "extra rows/columns at the output's end"),
    Attr("output_shape", "ints", None, "(OH, OW): pads derived from it"),
    Attr("auto_pad", "str", "NOTSET", "NOTSET, SAME_UPPER, SAME_LOWER or VALID"),
    Attr("group", "int", 1, "groups of channels"),
    Attr("kernel_shape", "ints", None, "(KH, KW); taken from W"),
)


def _pair(node, attrs, key, default):
    v = [int(a) for a in attrs.get(key, default)]
    if len(v) != len(default):
        _fail(node, f"attribute {key}={v} must have {len(default)} values")
    return v


def geometry(node, attrs, in_hw, kernel_hw):
    """(pads [t, l, b, r], strides, dilations, output_padding, out_hw) of a ConvTranspose.

    ``node`` is only used to name the node in errors (None: a plain ValueError)."""
    def fail(msg):
        if node is None:
            raise ValueError(f"ConvTranspose: {msg}")
        _fail(node, msg)
    s = _pair(node, attrs, "strides", [1, 1])
    d = _pair(node, attrs, "dilations", [1, 1])
    op = _pair(node, attrs, "output_padding", [0, 0])
    pads = _pair(node, attrs, "pads", [0, 0, 0, 0])
    if any(v < 1 for v in s + d) or any(v < 0 for v in op + pads):
        fail(f"strides {s} and dilations {d} must be >= 1, pads {pads} and "
             f"output_padding {op} >= 0")
    if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
        fail(f"output_padding {op} must be less than the stride {s} or the dilation {d}")
    full = [s[i] * (in_hw[i] - 1) + op[i] + (kernel_hw[i] - 1) * d[i] + 1 for i in range(2)]
    auto = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        fail(f"auto_pad={auto!r} not understood; use NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    want = attrs.get("output_shape")
    if want is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        want = [in_hw[0] * s[0], in_hw[1] * s[1]]
    if want is not None:
        want = [int(v) for v in want][-2:]
        if len(want) != 2:
            fail(f"output_shape {attrs.get('output_shape')} must give (OH, OW)")
        total = [full[i] - want[i] for i in range(2)]
        # an output_shape past what the taps reach adds zero rows at the end, as
        # output_padding does (ONNX's reference and onnxruntime agree)
        op = [o - min(t, 0) for o, t in zip(op, total)]
        full = [f - min(t, 0) for f, t in zip(full, total)]
        total = [max(t, 0) for t in total]
        if auto == "SAME_UPPER":
            pads = [total[0] // 2, total[1] // 2, total[0] - total[0] // 2,
                    total[1] - total[1] // 2]
        else:
            pads = [total[0] - total[0] // 2, total[1] - total[1] // 2, total[0] // 2,
                    total[1] // 2]
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    out = [full[0] - pads[0] - pads[2], full[1] - pads[1] - pads[3]]
    if any(v < 1 for v in out):
        fail(f"pads {pads} crop the whole {full[0]}x{full[1]} output")
    return pads, s, d, op, out


def _shape(node, shapes):
    x, w = shapes[0], shapes[1]
    check_inputs(node, shapes, " (conv layout: M, C/group, KH, KW)")
    *_, out = geometry(node, node.attrs, x[2:], w[2:])
    return [(x[0], w[0], *out)]


def conv_transpose(inputs, attrs) -> np.ndarray:
    """ConvTranspose with W in conv layout (M, C/group, KH, KW), float64 sums."""
    x, w = _f64(inputs[0]), _f64(inputs[1])
    b = _f64(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    g = int(attrs.get("group", 1))
    pads, s, d, op, out = geometry(None, attrs, (h, wd), (kh, kw))   # op: effective
    full = (s[0] * (h - 1) + op[0] + (kh - 1) * d[0] + 1,
            s[1] * (wd - 1) + op[1] + (kw - 1) * d[1] + 1)
    y = np.zeros((n, g, m // g, full[0], full[1]))
    xg = x.reshape(n, g, cg, h, wd)
    wg = w.reshape(g, m // g, cg, kh, kw)
    for i in range(kh):
        for j in range(kw):
            contrib = np.einsum("ngchw,gmc->ngmhw", xg, wg[:, :, :, i, j])
            y[:, :, :, i * d[0]:i * d[0] + (h - 1) * s[0] + 1:s[0],
              j * d[1]:j * d[1] + (wd - 1) * s[1] + 1:s[1]] += contrib
    y = y.reshape(n, m, full[0], full[1])[:, :, pads[0]:pads[0] + out[0],
                                          pads[1]:pads[1] + out[1]]
    if b is not None:
        y = y + b.reshape(1, m, 1, 1)
    return _out(y)


def _flops(node, ins, outs):
    """Every input value meets M/group x KH x KW weights: a multiply-add each."""
    x, w = ins[0], ins[1]
    return 2 * math.prod(x) * w[0] // int(node.attr("group", 1)) * w[2] * w[3]


def onnx_to_ir_weight(w, group):
    """ONNX's (C, M/group, KH, KW) weight -> conv layout (M, C/group, KH, KW)."""
    w = np.asarray(w)
    c, mg, kh, kw = w.shape
    if c % group:
        raise ValueError(f"weight of shape {w.shape}: {c} input channels do not split "
                         f"into {group} groups")
    cg = c // group
    return np.ascontiguousarray(w.reshape(group, cg, mg, kh, kw).transpose(0, 2, 1, 3, 4)
                                .reshape(group * mg, cg, kh, kw))


def _onnx_convt(imp):
    """2-D as is; 1-D lifted to 2-D (H = 1) between Unsqueeze and Squeeze."""
    x = imp.in_name(0)
    rank = len(imp.shape_of(x))
    if rank not in (3, 4):
        imp.fail(f"only 1-D and 2-D ConvTranspose are supported; input has shape "
                 f"{imp.shape_of(x)}")
    attrs = imp._attrs("auto_pad", "pads", "strides", "kernel_shape", "dilations", "group",
                       "output_padding", "output_shape")
    if attrs.get("auto_pad") == "NOTSET":
        del attrs["auto_pad"]
    group = int(attrs.get("group", 1))
    w = imp.const(1, "W")
    if w.ndim != rank:
        imp.fail(f"weight W must be {rank}-D like the input, got shape {w.shape}")
    out = imp.cur.output[0]
    if rank == 3:
        w = w[:, :, None, :]
        for key, first in (("kernel_shape", 1), ("strides", 1), ("dilations", 1),
                           ("output_padding", 0), ("output_shape", 1)):
            if key in attrs:
                attrs[key] = [first] + [int(v) for v in attrs[key]]
        if "pads" in attrs:
            p = [int(v) for v in attrs["pads"]]
            attrs["pads"] = [0, p[0], 0, p[1]]
        x4 = imp.fresh(out + "_2d_in")
        imp.emit("Unsqueeze", [x], [x4], {"axes": [2]}, "_lift")
        x = x4
    try:
        w_ir = onnx_to_ir_weight(w, group)
    except ValueError as exc:
        imp.fail(str(exc))
    name = imp.fresh(imp.in_name(1) + "_convlayout")
    imp.values[name] = w_ir
    ins = [x, name] + ([imp.in_name(2)] if len(imp.cur.input) > 2 and imp.cur.input[2] else [])
    if rank == 4:
        imp.emit("ConvTranspose", ins, [out], attrs)
        return
    y4 = imp.fresh(out + "_2d")
    imp.emit("ConvTranspose", ins, [y4], attrs)
    imp.emit("Squeeze", [y4], [out], {"axes": [2]}, "_drop")


register(OpDef(
    "ConvTranspose", inputs=(2, 3), attrs=ATTRS, shape=_shape, reference=conv_transpose,
    flops=_flops,
    onnx=OnnxSpec((1, 11, 22), frozenset({"auto_pad", "pads", "strides", "kernel_shape",
                                          "dilations", "group", "output_padding",
                                          "output_shape"}), params=(1, (1,)),
                  convert=_onnx_convt),
    builder="conv_transpose2d",
    doc="transposed 2-D convolution (NCHW); W in conv layout (M, C/group, KH, KW)"))
