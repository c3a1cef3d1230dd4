"""CPU kernel objects of QuantizeLinear (plain, or fused with its DequantizeLinear:
``dequantize=1``) and DequantizeLinear; the Numba code is kernels/quant.py."""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels import quant
from jitconv.runtime.ops.quant import QRANGES, axis_index

from .base import Kernel

_ZERO = np.zeros(1, np.float32)


def _rows(n, most=8192, least=512):
    """(rows, length) with rows * length == n: rows of at most ``most`` values (long
    enough to vectorize, many enough to share out), or one row when no divisor of n
    between ``least`` and ``most`` exists and n is small."""
    if n <= most:
        return 1, n
    for length in range(most, least - 1, -1):
        if n % length == 0:
            return n // length, length
    return 1, n


def _view3(shape, per_axis, axis):
    """(outer, channels, inner) of a tensor of ``shape``: per tensor the flat tensor in
    rows (spread over the threads), per axis the quantized axis is channels."""
    shape = tuple(shape)
    if not per_axis:
        rows, length = _rows(math.prod(shape))
        return rows, 1, length
    a = axis_index(axis, len(shape))
    return math.prod(shape[:a]), shape[a], math.prod(shape[a + 1:])


def per_tensor_view(shape):
    """The (rows, 1, length) view a per-tensor quantization of a tensor of ``shape`` runs
    on (also a conv's fused fake-quant, backends/cpu_conv.py)."""
    return _view3(shape, False, 1)


class Quant(Kernel):
    """QuantizeLinear / DequantizeLinear on float32 tensors holding the integers."""

    def __init__(self, node):
        self.node = node
        self.axis = int(node.attr("axis", 1))
        self.quantize = node.op_type == "QuantizeLinear"
        self.dequant = bool(int(node.attr("dequantize", 0)))
        self.qmin, self.qmax = QRANGES[node.attr("dtype", "uint8")] if self.quantize else (0, 0)
        if not self.quantize:
            self.name, self.reason = "dequantize_linear", "(x - zero) * scale, one pass"
        elif self.dequant:
            self.name = "quantize_dequantize"
            self.reason = "QuantizeLinear -> DequantizeLinear fused: float32 in and out"
        else:
            self.name, self.reason = "quantize_linear", "round(x / scale) + zero, saturated"
        self.shape3 = None

    def resize(self, in_shapes, out_shapes):
        per_axis = math.prod(in_shapes[1]) > 1
        self.shape3 = _view3(out_shapes[0], per_axis, self.axis)
        self.step = 1 if per_axis else 0
        return 0

    def run(self, inputs, outputs, scratch):
        x = inputs[0].reshape(self.shape3)
        out = outputs[0].reshape(self.shape3)
        scale = np.ascontiguousarray(inputs[1], np.float32).reshape(-1)
        zero = inputs[2] if len(inputs) > 2 and inputs[2] is not None else _ZERO
        zero = np.ascontiguousarray(zero, np.float32).reshape(-1)
        if zero.size != scale.size:
            zero = np.broadcast_to(zero, scale.shape).copy()
        if self.quantize:
            quant.quantize(x, scale, zero, self.step, out, self.qmin, self.qmax, self.dequant)
        else:
            quant.dequantize(x, scale, zero, self.step, out)


def create_quant(ctx):
    return Quant(ctx.node)
