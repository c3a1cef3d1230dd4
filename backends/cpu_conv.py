"""CPU kernel objects for Conv: fp32 direct conv, and fp16/int8/int4 weights kept as stored."""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels import conv_lowmem
from jitconv.kernels import elementwise as ew
from jitconv.kernels.conv_direct import conv2d_direct, conv2d_scratch_shape
from jitconv.runtime.shapes import window_geometry

from .base import Kernel, scratch_view
from .choice import choose_conv, keep_weights

ACT_NONE, ACT_RELU, ACT_CLIP = 0, 1, 2
NO_ZERO = np.zeros((0, 0), np.float32)


def activation_code(node):
    """(code, lo, hi) of the Conv's fused activation attribute."""
    act = node.attr("activation", "") or ""
    if act == "relu":
        return ACT_RELU, 0.0, 0.0
    if act == "clip":
        return (ACT_CLIP, float(node.attr("activation_min", -np.inf)),
                float(node.attr("activation_max", np.inf)))
    return ACT_NONE, 0.0, 0.0


def weight_args(kernel: str, kept):
    """The kernel's weight arguments, views of the kept arrays (no copies)."""
    if kernel == "conv2d_direct":
        return (kept.data,)
    if kernel == "conv2d_fp16w":
        return (kept.data.view(np.uint16),)
    _, _, kh, kw = kept.shape
    zero = kept.zero if kept.zero is not None else NO_ZERO
    return (kept.data, kept.scale, zero, kh, kw)


KERNELS = {
    "conv2d_direct": conv2d_direct,
    "conv2d_fp16w": conv_lowmem.conv2d_fp16w,
    "conv2d_int8w": conv_lowmem.conv2d_int8w,
    "conv2d_int4w": conv_lowmem.conv2d_int4w,
}


def apply_residual(out, res, act):
    """out = act(out + res), for kernels without a fused residual epilogue."""
    flat = out.reshape(-1)
    ew.add_same(flat, res.reshape(-1), flat)
    if act[0] == ACT_RELU:
        ew.relu(flat, flat)
    elif act[0] == ACT_CLIP:
        ew.clip(flat, flat, act[1], act[2])


class Conv(Kernel):
    """Conv with the kernel picked by choose_conv from the weights the loader kept."""

    def __init__(self, ctx):
        self.node = ctx.node
        w, b = ctx.constant(1), ctx.constant(2)
        cfg = ctx.config
        m = ctx.in_shapes[1][0]
        if w is None:
            self.kept, self.name, self.storage = None, "conv2d_direct", "computed"
            self.reason = "weights computed at run time; direct conv"
        else:
            self.kept = keep_weights(w, cfg.memory)
            choice = choose_conv(ctx.node.describe(), ctx.node.attrs, self.kept,
                                 decoded_from=w.storage, precision=cfg.precision,
                                 memory=cfg.memory)
            self.name, self.reason = choice.kernel, choice.reason
            self.storage = self.kept.storage if self.kept.storage == w.storage else \
                f"{self.kept.storage} (from {w.storage})"
            self.weights = weight_args(self.name, self.kept)
        has_b = len(ctx.node.inputs) > 2 and bool(ctx.node.inputs[2])
        self.bias_const = b is not None
        self.bias = b.as_float32() if b is not None else np.zeros(m, np.float32)
        self.has_runtime_bias = has_b and b is None
        self.has_res = len(ctx.node.inputs) > 3 and bool(ctx.node.inputs[3])
        self.owned_inputs = tuple(i for i, c in ((1, w), (2, b)) if c is not None)
        self.act = activation_code(ctx.node)
        self.fn = KERNELS[self.name]

    def resize(self, in_shapes, out_shapes):
        x, w, out = in_shapes[0], in_shapes[1], out_shapes[0]
        pads, strides, dil, _ = window_geometry(self.node, x[2:], w[2:])
        self.geom = (strides[0], strides[1], pads[0], pads[1], dil[0], dil[1])
        self.scratch_shape = conv2d_scratch_shape(x[1], x[2], x[3], out[2], out[3], w[2], w[3],
                                                  strides[0], strides[1], pads[0], pads[1],
                                                  dil[0], dil[1])
        return 4 * math.prod(self.scratch_shape)

    def needs_scratch(self):
        return True

    def run(self, inputs, outputs, scratch):
        weights = self.weights if self.kept is not None else (inputs[1],)
        b = inputs[2] if self.has_runtime_bias else self.bias
        xpad = scratch_view(scratch, self.scratch_shape)
        act = (ACT_NONE, 0.0, 0.0) if self.has_res else self.act
        self.fn(inputs[0], *weights, b, outputs[0], xpad, *self.geom,
                int(self.node.attr("group", 1)), *act)
        if self.has_res:
            apply_residual(outputs[0], inputs[3], self.act)

    def held_arrays(self):
        held = self.kept.arrays() if self.kept is not None else []
        return held + ([self.bias] if self.bias_const else [])


def create_conv(ctx):
    return Conv(ctx)
