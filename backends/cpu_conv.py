"""CPU kernel objects for Conv (fp32 weights)."""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels.conv_direct import conv2d_direct, conv2d_scratch_shape
from jitconv.runtime.shapes import window_geometry

from .base import Kernel, scratch_view

ACT_NONE, ACT_RELU, ACT_CLIP = 0, 1, 2


def activation_code(node):
    """(code, lo, hi) of the Conv's fused activation attribute."""
    act = node.attr("activation", "") or ""
    if act == "relu":
        return ACT_RELU, 0.0, 0.0
    if act == "clip":
        return (ACT_CLIP, float(node.attr("activation_min", -np.inf)),
                float(node.attr("activation_max", np.inf)))
    return ACT_NONE, 0.0, 0.0


class ConvDirect(Kernel):
    """General direct convolution: any stride, padding, dilation and groups."""
    name = "conv2d_direct"

    def __init__(self, ctx):
        self.node = ctx.node
        w, b = ctx.constant(1), ctx.constant(2)
        self.weight = w.as_float32() if w is not None else None
        self.storage = w.storage if w is not None else "computed"
        m = ctx.in_shapes[1][0]
        has_b = len(ctx.node.inputs) > 2 and ctx.node.inputs[2]
        self.bias_const = b is not None
        self.bias = b.as_float32() if b is not None else np.zeros(m, np.float32)
        self.has_runtime_bias = has_b and b is None
        self.owned_inputs = tuple(i for i, c in ((1, w), (2, b)) if c is not None)
        self.act = activation_code(ctx.node)
        self.reason = ("general direct conv, fp32 weights used as stored; "
                       "correct for any stride/padding/dilation/groups")

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
        w = self.weight if self.weight is not None else inputs[1]
        b = inputs[2] if self.has_runtime_bias else self.bias
        sh, sw, pt, pl, dh, dw = self.geom
        conv2d_direct(inputs[0], w, b, outputs[0], scratch_view(scratch, self.scratch_shape),
                      sh, sw, pt, pl, dh, dw, int(self.node.attr("group", 1)), *self.act)

    def held_arrays(self):
        held = [self.weight] if self.weight is not None else []
        return held + ([self.bias] if self.bias_const else [])


def create_conv(ctx):
    return ConvDirect(ctx)
