"""CPU kernel object for linear and cubic Resize (kernels/resize_linear.py).

Per shape plan, each axis gets its index/weight table (runtime/ops/resize.axis_tables:
the ONNX definition); axes left as they are skip. Axes before the last two that change
run one pass each (``resize_axis``) into scratch, then the last two run together in one
separable pass (``resize_hw``), parallel over the leading axes (N*C for images).
"""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels.resize_linear import resize_axis, resize_hw
from jitconv.runtime.ops.resize import axis_tables, output_sizes

from .base import Kernel


def _identity(n):
    return (np.arange(n, dtype=np.int64)[:, None], np.ones((n, 1)), np.zeros(n, np.uint8))


class ResizeInterp(Kernel):
    def __init__(self, node):
        self.node = node
        mode = node.attr("mode")
        coord = node.attr("coordinate_transformation_mode", "half_pixel")
        self.name = f"resize_{mode}"
        self.reason = f"{mode}, {coord}: separable per-axis tables"
        self.extrap = float(node.attr("extrapolation_value", 0.0))

    def resize(self, in_shapes, out_shapes):
        x = tuple(in_shapes[0])
        if len(x) < 3:              # seen as (1, [1,] ...): the last two axes are H, W
            x3 = (1,) * (3 - len(x)) + x
        else:
            x3 = x
        tables = axis_tables(x, self.node.attrs)
        tables = [None] * (len(x3) - len(x)) + tables
        sizes = [1] * (len(x3) - len(x)) + output_sizes(x, self.node.attrs)
        r = len(x3)
        self.passes, cur, offset = [], list(x3), 0
        for a in range(r - 2):
            if tables[a] is None:
                continue
            new = cur[:a] + [sizes[a]] + cur[a + 1:]
            src = (math.prod(cur[:a]), cur[a], math.prod(cur[a + 1:]))
            dst = (math.prod(new[:a]), new[a], math.prod(new[a + 1:]))
            self.passes.append((src, dst, offset, tables[a]))
            offset += 4 * math.prod(new)
            cur = new
        h, w = (tables[r - 2] or _identity(cur[r - 2])), (tables[r - 1] or _identity(cur[r - 1]))
        self.hw = ((math.prod(cur[:r - 2]), cur[r - 2], cur[r - 1]),
                   (math.prod(cur[:r - 2]), sizes[r - 2], sizes[r - 1]), h, w)
        return offset

    def run(self, inputs, outputs, scratch):
        src = inputs[0]
        if src.size == 0 or outputs[0].size == 0:
            return
        for shape_in, shape_out, offset, (idx, w, mask) in self.passes:
            dst = scratch[offset:offset + 4 * math.prod(shape_out)].view(np.float32)
            dst = dst.reshape(shape_out)
            resize_axis(src.reshape(shape_in), dst, idx, w, mask, self.extrap)
            src = dst
        shape_in, shape_out, (iy, wy, my), (ix, wx, mx) = self.hw
        resize_hw(src.reshape(shape_in), outputs[0].reshape(shape_out), iy, wy, my,
                  ix, wx, mx, self.extrap)

    def needs_scratch(self):
        return bool(getattr(self, "passes", ()))


def create_resize_interp(ctx):
    return ResizeInterp(ctx.node)
