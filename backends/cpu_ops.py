"""CPU kernel objects for the non-conv ops: elementwise, pooling, gemm, softmax, layout.

Layout ops (Concat, Flatten, Reshape, Transpose) are memory copies done by numpy, which
already runs them at memcpy speed; everything that computes is a Numba kernel.
"""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels import elementwise as ew
from jitconv.kernels.gemm import matmul_batched
from jitconv.kernels.pooling import avg_pool2d, global_avg_pool, max_pool2d
from jitconv.kernels.softmax import softmax
from jitconv.runtime.shapes import window_geometry

from .base import Kernel


def _flat(a):
    return a.reshape(-1)


class Simple(Kernel):
    """A kernel whose run is a function of (inputs, outputs); no weights, no scratch."""

    def __init__(self, name, reason, fn):
        self.name, self.reason, self._fn = name, reason, fn

    def run(self, inputs, outputs, scratch):
        self._fn(inputs, outputs)


def create_relu(ctx):
    return Simple("relu", "elementwise", lambda i, o: ew.relu(_flat(i[0]), _flat(o[0])))


def create_clip(ctx):
    lo = float(ctx.node.attr("min", -np.inf))
    hi = float(ctx.node.attr("max", np.inf))
    return Simple("clip", "elementwise",
                  lambda i, o: ew.clip(_flat(i[0]), _flat(o[0]), lo, hi))


def _pad6(a, shape):
    a = a.reshape((1,) * (6 - a.ndim) + a.shape)
    return np.broadcast_to(a, shape)


def _binary(ctx, op_code, same_fn, name):
    a, b = ctx.in_shapes
    out = ctx.out_shapes[0]
    if tuple(a) == tuple(b):
        return Simple(f"{name}_same", "same shapes",
                      lambda i, o: same_fn(_flat(i[0]), _flat(i[1]), _flat(o[0])))
    if len(out) > 6:
        return None

    def run(i, o):
        shape6 = (1,) * (6 - len(out)) + tuple(out)
        ew.binary_broadcast(_pad6(i[0], shape6), _pad6(i[1], shape6),
                            o[0].reshape(shape6), op_code)
    return Simple(f"{name}_broadcast", f"broadcast {tuple(a)} with {tuple(b)}", run)


def create_add(ctx):
    return _binary(ctx, 0, ew.add_same, "add")


def create_mul(ctx):
    return _binary(ctx, 1, ew.mul_same, "mul")


class Pool(Kernel):
    def __init__(self, ctx):
        self.node = ctx.node
        self.is_max = ctx.node.op_type == "MaxPool"
        self.name = "max_pool2d" if self.is_max else "avg_pool2d"
        self.reason = "window loop over NCHW"

    def resize(self, in_shapes, out_shapes):
        kh, kw = self.node.attr("kernel_shape")
        pads, s, d, _ = window_geometry(self.node, in_shapes[0][2:], (kh, kw),
                                        ceil_mode=bool(self.node.attr("ceil_mode", 0)))
        if self.is_max:
            self.args = (kh, kw, s[0], s[1], pads[0], pads[1], d[0], d[1])
        else:
            if d != [1, 1]:
                from jitconv.errors import GraphError
                raise GraphError(f"{self.node.describe()}: dilations are not supported by "
                                 f"AveragePool")
            self.args = (kh, kw, s[0], s[1], pads[0], pads[1], pads[2], pads[3],
                         int(self.node.attr("count_include_pad", 0)))
        return 0

    def run(self, inputs, outputs, scratch):
        (max_pool2d if self.is_max else avg_pool2d)(inputs[0], outputs[0], *self.args)


def create_pool(ctx):
    return Pool(ctx)


def create_global_avg_pool(ctx):
    def run(i, o):
        n, c, h, w = i[0].shape
        global_avg_pool(i[0].reshape(n * c, h * w), o[0].reshape(n * c))
    return Simple("global_avg_pool", "mean over H*W", run)


def create_matmul(ctx):
    sa, sb = list(ctx.in_shapes[0]), list(ctx.in_shapes[1])
    out_shape = ctx.out_shapes[0]
    a1, b1 = len(sa) == 1, len(sb) == 1
    sa = [1] + sa if a1 else sa
    sb = sb + [1] if b1 else sb
    batch = tuple(np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2])))
    nb = math.prod(batch)
    m, k, n = sa[-2], sa[-1], sb[-1]

    def run(i, o):
        a = np.broadcast_to(i[0].reshape(sa), batch + (m, k)).reshape(-1, m, k) \
            if nb else np.empty((0, m, k), np.float32)
        b = np.broadcast_to(i[1].reshape(sb), batch + (k, n))
        b = b.reshape(-1, k, n) if nb else np.empty((0, k, n), np.float32)
        matmul_batched(a, b, o[0].reshape(nb, m, n))
    return Simple("matmul_batched", f"batch {batch}, {m}x{k} @ {k}x{n}", run)


def create_softmax(ctx):
    shape = ctx.in_shapes[0]
    axis = int(ctx.node.attr("axis", -1)) % len(shape)
    o3 = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))
    return Simple("softmax", f"along axis {axis}",
                  lambda i, o: softmax(i[0].reshape(o3), o[0].reshape(o3)))


class BatchNorm(Kernel):
    """Unfolded BatchNormalization: a per-channel affine with precomputed scale/shift."""
    name = "channel_affine"
    reason = "not foldable into a preceding conv"

    def __init__(self, ctx):
        params = [ctx.constant(i) for i in range(1, 5)]
        self.params = None
        if all(p is not None for p in params):
            self.params = self._fold(*(p.as_float32() for p in params),
                                     float(ctx.node.attr("epsilon", 1e-5)))
            self.owned_inputs = (1, 2, 3, 4)
            self.storage = "fp32"
        self.eps = float(ctx.node.attr("epsilon", 1e-5))

    @staticmethod
    def _fold(scale, bias, mean, var, eps):
        k = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        return k.astype(np.float32), (bias - mean * k).astype(np.float32)

    def run(self, inputs, outputs, scratch):
        k, s = self.params or self._fold(*inputs[1:5], self.eps)
        x = inputs[0]
        shape3 = (x.shape[0], x.shape[1], math.prod(x.shape[2:]))
        ew.channel_affine(x.reshape(shape3), k, s, outputs[0].reshape(shape3))

    def held_arrays(self):
        return list(self.params) if self.params else []


def create_batchnorm(ctx):
    return BatchNorm(ctx)


def create_concat(ctx):
    axis = int(ctx.node.attr("axis", 1)) % len(ctx.out_shapes[0])
    return Simple("concat", "numpy copy",
                  lambda i, o: np.concatenate(i, axis=axis, out=o[0]))


def create_reshape(ctx):
    return Simple("reshape_copy", "numpy copy",
                  lambda i, o: np.copyto(o[0], i[0].reshape(o[0].shape)))


def create_transpose(ctx):
    perm = list(ctx.node.attr("perm", list(range(len(ctx.in_shapes[0])))[::-1]))
    return Simple("transpose_copy", "numpy copy",
                  lambda i, o: np.copyto(o[0], i[0].transpose(perm)))
