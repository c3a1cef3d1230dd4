"""CPU kernel objects for the non-conv ops: elementwise, pooling, gemm, softmax, layout.

Layout ops (Concat, Flatten, Reshape, Transpose) are memory copies done by numpy, which
already runs them at memcpy speed; everything that computes is a Numba kernel.
"""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels import activations as act
from jitconv.kernels import elementwise as ew
from jitconv.kernels.gemm import matmul_batched
from jitconv.kernels.depthwise_blocked import depthwise_blocked
from jitconv.kernels.epilogue import ACT_NONE
from jitconv.kernels.pool_blocked import max_pool_blocked
from jitconv.kernels.pool_dilated import avg_pool2d_dilated
from jitconv.kernels.pool_blocked import global_avg_pool_blocked
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


class Planned(Kernel):
    """A weightless kernel whose work depends on the shapes: ``plan(in_shapes, out_shapes)``
    returns the ``fn(inputs, outputs)`` to run, and is called again on every resize."""

    def __init__(self, name, reason, plan):
        self.name, self.reason, self._plan = name, reason, plan
        self._fn = None

    def resize(self, in_shapes, out_shapes):
        self._fn = self._plan([tuple(s) if s is not None else None for s in in_shapes],
                              [tuple(s) for s in out_shapes])
        return 0

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


class Binary(Kernel):
    """Add/Mul/Sub/Div/PRelu: a same-shape loop when both inputs have the output's shape,
    else the 6-D broadcast kernel; which one is decided per shape plan (on every resize),
    since a batch change can turn a same-shape pair into a broadcast one."""

    def __init__(self, op, op_code, same_fn):
        self.op, self.op_code, self.same_fn = op, op_code, same_fn
        self.name, self.reason = f"{op}_broadcast", "planned per shape"
        self._fn = None

    def resize(self, in_shapes, out_shapes):
        a, b, out = tuple(in_shapes[0]), tuple(in_shapes[1]), tuple(out_shapes[0])
        same = self.same_fn is not None and a == b == out
        if same:
            fn = self.same_fn
            self._fn = lambda i, o: fn(_flat(i[0]), _flat(i[1]), _flat(o[0]))
            self.name, self.reason = f"{self.op}_same", "same shapes"
        else:
            shape6 = (1,) * (6 - len(out)) + out
            code = self.op_code
            self._fn = lambda i, o: act.binary_broadcast(_pad6(i[0], shape6),
                                                         _pad6(i[1], shape6),
                                                         o[0].reshape(shape6), code)
            self.name, self.reason = f"{self.op}_broadcast", f"broadcast {a} with {b}"
        return 0

    def run(self, inputs, outputs, scratch):
        self._fn(inputs, outputs)


def _binary(ctx, op_code, same_fn, name):
    if len(ctx.out_shapes[0]) > 6:
        return None
    return Binary(name, op_code, same_fn)


def create_add(ctx):
    return _binary(ctx, act.OP_ADD, ew.add_same, "add")


def create_mul(ctx):
    return _binary(ctx, act.OP_MUL, ew.mul_same, "mul")


class Pool(Kernel):
    def __init__(self, ctx):
        self.node = ctx.node
        self.is_max = ctx.node.op_type == "MaxPool"
        self.name = "max_pool2d" if self.is_max else "avg_pool2d"
        self.reason = "window loop over NCHW"
        self.blocked = ctx.node.attr("_layout") == "nchw16c"
        if self.is_max and self.blocked:
            self.fn, self.name = max_pool_blocked, "max_pool_blocked"
            self.reason = "16-channel vectors over NCHW16c (layout pass)"
        elif self.blocked:
            # the layout pass blocks only windows that never count a missing cell
            # (cpu_layout.avg_pool_blocks): a depthwise conv with weights 1 / (KH KW)
            self.name = "avg_pool_blocked"
            self.reason = ("depthwise_blocked with weights 1 / (KH*KW) over NCHW16c "
                           "(layout pass)")

    def resize(self, in_shapes, out_shapes):
        kh, kw = self.node.attr("kernel_shape")
        pads, s, d, out_hw = window_geometry(self.node, in_shapes[0][2:4], (kh, kw),
                                             ceil_mode=bool(self.node.attr("ceil_mode", 0)))
        # NOTE: one window along an axis: its stride is never used, and max_pool2d's row
        # buffer grows with the column stride (a stride of 10**9 would take 4 GB)
        s = [1 if o <= 1 else v for o, v in zip(out_hw, s)]
        if self.is_max:     # max_pool2d and max_pool_blocked take the same window
            self.args = (kh, kw, s[0], s[1], pads[0], pads[1], d[0], d[1])
        elif self.blocked:
            c = in_shapes[0][1] * in_shapes[0][4]
            wp = np.full((in_shapes[0][1], kh, kw, in_shapes[0][4]), 1.0 / (kh * kw),
                         np.float32)
            self.fn = _avg_blocked
            self.args = (wp, (c, 1, kh, kw), np.zeros(c, np.float32), s[0], s[1], pads[0],
                         pads[1])
        elif d != [1, 1]:
            self.fn, self.name = avg_pool2d_dilated, "avg_pool2d_dilated"
            self.args = (kh, kw, s[0], s[1], d[0], d[1], pads[0], pads[1], pads[2], pads[3],
                         int(self.node.attr("count_include_pad", 0)))
        else:
            self.args = (kh, kw, s[0], s[1], pads[0], pads[1], pads[2], pads[3],
                         int(self.node.attr("count_include_pad", 0)))
        return 0

    def run(self, inputs, outputs, scratch):
        fn = getattr(self, "fn", None) or (max_pool2d if self.is_max else avg_pool2d)
        fn(inputs[0], outputs[0], *self.args)


def _avg_blocked(x, out, wp, w_shape, bias, sh, sw, pt, pl):
    depthwise_blocked(x, wp, w_shape, bias, None, out, sh, sw, pt, pl, 1, 1, ACT_NONE, 0.0,
                      0.0)


def create_pool(ctx):
    return Pool(ctx)


def create_global_avg_pool(ctx):
    if ctx.node.attr("_layout") == "nchw16c":
        # after a blocked conv chain (the layout pass): reads NCHW16c, writes NCHW
        return Simple("global_avg_pool_blocked", "mean over H*W of NCHW16c blocks, written "
                      "as NCHW (no FromBlocked before it)",
                      lambda i, o: global_avg_pool_blocked(i[0], o[0].reshape(
                          o[0].shape[0], o[0].shape[1])))

    def run(i, o):
        n, c, h, w = i[0].shape
        global_avg_pool(i[0].reshape(n * c, h * w), o[0].reshape(n * c))
    return Simple("global_avg_pool", "mean over H*W", run)


def _matmul_plan(ins, outs):
    sa, sb = list(ins[0]), list(ins[1])
    sa = [1] + sa if len(sa) == 1 else sa
    sb = sb + [1] if len(sb) == 1 else sb
    batch = tuple(np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2])))
    nb = math.prod(batch)
    m, k, n = sa[-2], sa[-1], sb[-1]

    def run(i, o):
        if not nb:
            return
        a = np.broadcast_to(i[0].reshape(sa), batch + (m, k)).reshape(-1, m, k)
        b = np.broadcast_to(i[1].reshape(sb), batch + (k, n)).reshape(-1, k, n)
        matmul_batched(a, b, o[0].reshape(nb, m, n))
    return run


def create_matmul(ctx):
    sa, sb = ctx.in_shapes[0], ctx.in_shapes[1]
    return Planned("matmul_batched", f"batched {len(sa)}-D @ {len(sb)}-D, planned per shape",
                   _matmul_plan)


def create_softmax(ctx):
    axis = int(ctx.node.attr("axis", -1))

    def plan(ins, outs):
        shape = ins[0]
        ax = axis % len(shape)
        o3 = (math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:]))
        return lambda i, o: softmax(i[0].reshape(o3), o[0].reshape(o3))
    return Planned("softmax", f"along axis {axis % len(ctx.in_shapes[0])}", plan)


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


# --------------------------------------------------------------------------- ops of ONNX CNNs
# Compute ops run Numba kernels (kernels/activations.py, reduce.py, resize_nearest.py);
# layout ops (Pad, Slice, Split, Squeeze, Unsqueeze, Gather, Identity) are numpy copies.

from jitconv.kernels.reduce import mean_middle  # noqa: E402
from jitconv.kernels.resize_nearest import gather4  # noqa: E402
from jitconv.runtime.reference import resize_source_index, slice_bounds  # noqa: E402


def _unary(name, fn, *args):
    return Simple(name, "elementwise", lambda i, o: fn(_flat(i[0]), _flat(o[0]), *args))


def create_unary(ctx):
    """Any op whose OpDef gives a ``scalar``: kernels/unary.py's kernel made from it, with
    the op's float attributes as its parameters."""
    from jitconv.kernels.unary import make_unary  # noqa: PLC0415
    from jitconv.runtime.opdef import get  # noqa: PLC0415
    d = get(ctx.node.op_type, ctx.node)
    if d.scalar is None:
        return None
    params = d.scalar_params(ctx.node)
    kernel = make_unary(d.scalar, len(params))
    return Simple(f"unary_{d.op_type.lower()}", "elementwise, from the OpDef's scalar",
                  lambda i, o: kernel(_flat(i[0]), _flat(o[0]), params))


def create_sigmoid(ctx):
    return _unary("sigmoid", act.sigmoid)


def create_hard_sigmoid(ctx):
    return _unary("hard_sigmoid", act.hard_sigmoid, float(ctx.node.attr("alpha", 0.2)),
                  float(ctx.node.attr("beta", 0.5)))


def create_hard_swish(ctx):
    return _unary("hard_swish", act.hard_swish)


def create_leaky_relu(ctx):
    return _unary("leaky_relu", act.leaky_relu, float(ctx.node.attr("alpha", 0.01)))


def create_sub(ctx):
    return _binary(ctx, act.OP_SUB, act.sub_same, "sub")


def create_div(ctx):
    return _binary(ctx, act.OP_DIV, act.div_same, "div")


def create_prelu(ctx):
    return _binary(ctx, act.OP_PRELU, None, "prelu")


def folded_broadcast(ctx, name, reason, fold):
    """A variadic broadcasting op (Sum, Max, Min; also the binary ones): ``fold(a, b, out)``
    on 6-D views, the inputs folded in turn into the output; one input is a copy. None (the
    op declined) above 6 dimensions."""
    if len(ctx.out_shapes[0]) > 6:
        return None

    def plan(ins, outs):
        shape6 = (1,) * (6 - len(outs[0])) + outs[0]

        def run(i, o):
            y = o[0].reshape(shape6)
            if len(i) == 1:
                np.copyto(y, _pad6(i[0], shape6))
                return
            fold(_pad6(i[0], shape6), _pad6(i[1], shape6), y)
            for t in i[2:]:
                fold(y, _pad6(t, shape6), y)
        return run
    return Planned(name, reason, plan)


def create_sum(ctx):
    return folded_broadcast(ctx, "sum_broadcast", f"{len(ctx.in_shapes)} inputs added in turn",
                            lambda a, b, y: act.binary_broadcast(a, b, y, act.OP_ADD))


def create_identity(ctx):
    return Simple("copy", "numpy copy", lambda i, o: np.copyto(o[0], i[0]))


def create_pad(ctx):
    mode = ctx.node.attr("mode", "constant")
    value = float(ctx.node.attr("value", 0.0))

    def plan(ins, outs):
        x = ins[0]
        r = len(x)
        pads = [int(p) for p in ctx.node.attr("pads", [0] * (2 * r))]
        crop = tuple(slice(max(0, -pads[k]), x[k] - max(0, -pads[k + r])) for k in range(r))
        widths = [(max(0, pads[k]), max(0, pads[k + r])) for k in range(r)]
        inner = tuple(slice(b, b + (sl.stop - sl.start)) for (b, _), sl in zip(widths, crop))

        def run_constant(i, o):
            o[0].fill(value)
            o[0][inner] = i[0][crop]

        def run_other(i, o):
            np.copyto(o[0], np.pad(i[0][crop], widths, mode=mode))
        return run_constant if mode == "constant" else run_other
    return Planned(f"pad_{mode}", "numpy copy", plan)


def create_lrn(ctx):
    node = ctx.node
    args = (int(node.attr("size")), float(node.attr("alpha", 1e-4)),
            float(node.attr("beta", 0.75)), float(node.attr("bias", 1.0)))

    def plan(ins, outs):
        x = ins[0]
        s3 = (x[0], x[1], math.prod(x[2:]))
        return lambda i, o: act.lrn(i[0].reshape(s3), o[0].reshape(s3), *args)
    return Planned("lrn", "channel window, float64 sum", plan)


def create_gather(ctx):
    idx = np.asarray(ctx.node.attr("indices"), dtype=np.int64)

    def plan(ins, outs):
        axis = int(ctx.node.attr("axis", 0)) % len(ins[0])
        n = ins[0][axis]
        fixed = np.where(idx < 0, idx + n, idx)
        return lambda i, o: np.take(i[0], fixed, axis=axis, out=o[0])
    return Planned("gather_copy", "numpy take", plan)


def create_slice(ctx):
    attrs = ctx.node.attrs

    def plan(ins, outs):
        x = ins[0]
        starts = attrs["starts"]
        axes = attrs.get("axes", range(len(starts)))
        steps = attrs.get("steps", [1] * len(starts))
        index = [slice(None)] * len(x)
        for a, s, e, st in zip(axes, starts, attrs["ends"], steps):
            a = int(a) % len(x)
            index[a] = slice_bounds(x[a], int(s), int(e), int(st))
        index = tuple(index)
        return lambda i, o: np.copyto(o[0], i[0][index])
    return Planned("slice_copy", "numpy copy", plan)


def create_split(ctx):
    def plan(ins, outs):
        axis = int(ctx.node.attr("axis", 0)) % len(ins[0])
        bounds = np.cumsum([0] + [int(s) for s in ctx.node.attr("split")]).tolist()
        pieces = [(slice(None),) * axis + (slice(bounds[k], bounds[k + 1]),)
                  for k in range(len(bounds) - 1)]

        def run(i, o):
            for out, sl in zip(o, pieces):
                np.copyto(out, i[0][sl])
        return run
    return Planned("split_copy", "numpy copy", plan)


def reduction(ctx, name, what, reduce3):
    """A reduction over the node's ``axes`` (all when absent): ``reduce3(x3, out2)`` reduces
    the middle axis of an (outer, reduced, inner) view into (outer, inner). Axes that are not
    one run are moved last by a numpy copy first. With no axes (``axes=[]``, or a 0-D input)
    each element is reduced on its own, over a middle axis of size 1: the identity for a
    sum, mean or max, |x| for ReduceL2."""
    def axes_of(x):
        axes = ctx.node.attr("axes")
        return list(range(len(x))) if axes is None else sorted(int(a) % len(x) for a in axes)

    def plan(ins, outs):
        x = ins[0]
        axes = axes_of(x)
        if not axes:
            n = math.prod(x)
            return lambda i, o: reduce3(i[0].reshape(n, 1, 1), o[0].reshape(n, 1))
        if axes == list(range(axes[0], axes[-1] + 1)):
            o3 = (math.prod(x[:axes[0]]), math.prod(x[a] for a in axes),
                  math.prod(x[axes[-1] + 1:]))
            return lambda i, o: reduce3(i[0].reshape(o3), o[0].reshape(o3[0], o3[2]))
        kept = [a for a in range(len(x)) if a not in axes]
        o3 = (math.prod(x[a] for a in kept), math.prod(x[a] for a in axes), 1)

        def run(i, o):
            moved = np.ascontiguousarray(i[0].transpose(kept + axes)).reshape(o3)
            reduce3(moved, o[0].reshape(o3[0], 1))
        return run
    axes = axes_of(ctx.in_shapes[0])
    contiguous = not axes or axes == list(range(axes[0], axes[-1] + 1))
    return Planned(name, f"{what} over axes {axes}" + (
        "" if contiguous else " (moved last by a numpy copy first)"), plan)


def create_reduce_mean(ctx):
    return reduction(ctx, "mean_middle", "mean", mean_middle)


def create_resize(ctx):
    node = ctx.node
    if node.attr("mode", "nearest") != "nearest":      # linear, cubic: backends/cpu_resize.py
        from .cpu_resize import create_resize_interp  # noqa: PLC0415
        return create_resize_interp(ctx)
    if len(ctx.in_shapes[0]) > 4:
        return None
    coord = node.attr("coordinate_transformation_mode", "half_pixel")
    nearest = node.attr("nearest_mode", "round_prefer_floor")

    def plan(ins, outs):
        x, out = ins[0], outs[0]
        idx = [resize_source_index(d, o, float(s), coord, nearest)
               for d, o, s in zip(x, out, node.attr("scales"))]
        pad = 4 - len(x)
        idx = [np.zeros(1, np.int64)] * pad + idx
        x4, out4 = (1,) * pad + x, (1,) * pad + out
        return lambda i, o: gather4(i[0].reshape(x4), o[0].reshape(out4), *idx)
    return Planned("resize_nearest", f"nearest, {coord}, {nearest}", plan)
