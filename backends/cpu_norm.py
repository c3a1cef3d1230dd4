"""CPU kernel objects for LayerNormalization (over trailing axes, or over channels in the
private ``_channels`` form runtime/passes.py makes), GroupNormalization and
InstanceNormalization. The Numba code is in kernels/norm.py; statistics in float64."""
from __future__ import annotations

import math

import numpy as np

from jitconv.errors import GraphError
from jitconv.kernels.norm import group_norm, layer_norm_channels, layer_norm_rows

from .base import Kernel


def _vector(node, what, a, shape):
    """Parameter ``a`` broadcast to ``shape`` and flattened (a view when it has that size)."""
    n = math.prod(shape)
    a = np.asarray(a, np.float32)
    if a.size == n:
        return a.reshape(-1)
    try:
        return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1)
    except ValueError:
        raise GraphError(f"{node.describe()}: input {what} of shape {a.shape} does not "
                         f"broadcast to {tuple(shape)}") from None


class _Norm(Kernel):
    """Shared planning: the kernel views the input as 2-D or 3-D per shape plan."""

    def __init__(self, node, name, reason):
        self.node, self.name, self.reason = node, name, reason
        self.eps = float(node.attr("epsilon", 1e-5))
        self._view = None

    def _params(self, inputs, shape):
        scale = _vector(self.node, "Scale", inputs[1], shape)
        b = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        bias = np.zeros(math.prod(shape), np.float32) if b is None else \
            _vector(self.node, "B", b, shape)
        return scale, bias


class LayerNorm(_Norm):
    def __init__(self, node):
        channels = bool(int(node.attr("_channels", 0)))
        super().__init__(node, "layer_norm_channels" if channels else "layer_norm_rows",
                         "normalized over axis 1 (NHWC transposes fused away)" if channels
                         else "rows over the trailing axes, float64 statistics")
        self.channels = channels

    def resize(self, in_shapes, out_shapes):
        x = tuple(in_shapes[0])
        if self.channels:
            self._view = (x[0], x[1], math.prod(x[2:]))
            self._pshape = (x[1],)
        else:
            axis = int(self.node.attr("axis", -1)) % len(x)
            self._view = (math.prod(x[:axis]), math.prod(x[axis:]))
            self._pshape = x[axis:]
        return 0

    def run(self, inputs, outputs, scratch):
        x = inputs[0]
        if x.size == 0:
            return
        scale, bias = self._params(inputs, self._pshape)
        fn = layer_norm_channels if self.channels else layer_norm_rows
        fn(x.reshape(self._view), outputs[0].reshape(self._view), scale, bias, self.eps)


class GroupNorm(_Norm):
    def __init__(self, node, instance):
        super().__init__(node, "instance_norm" if instance else "group_norm",
                         "per (sample, group), float64 statistics")
        self.instance = instance

    def resize(self, in_shapes, out_shapes):
        x = tuple(in_shapes[0])
        self._view = (x[0], x[1], math.prod(x[2:]))
        self.groups = x[1] if self.instance else int(self.node.attr("num_groups"))
        return 0

    def run(self, inputs, outputs, scratch):
        x = inputs[0]
        if x.size == 0:
            return
        scale = np.asarray(inputs[1], np.float32).reshape(-1)
        bias = np.asarray(inputs[2], np.float32).reshape(-1)
        group_norm(x.reshape(self._view), outputs[0].reshape(self._view), scale, bias,
                   self.groups, self.eps)


def create_layer_norm(ctx):
    return LayerNorm(ctx.node)


def create_group_norm(ctx):
    return GroupNorm(ctx.node, instance=False)


def create_instance_norm(ctx):
    return GroupNorm(ctx.node, instance=True)
