"""CPU kernel objects for Conv.

``Conv`` asks ``choose_conv`` (backends/choice.py) which kernel runs, then builds that
kernel's plan: the packed weights it keeps, the scratch it needs per shape, and the call.
"""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels import conv_chanvec, conv_lowmem, conv_tiled, depthwise, int8dot, tiled_weights
from jitconv.kernels import winograd
from jitconv.kernels import elementwise as ew
from jitconv.kernels.conv_direct import conv2d_direct, conv2d_scratch_shape
from jitconv.kernels.vnni import has_vnni
from jitconv.runtime.shapes import window_geometry

from .base import Kernel, scratch_view
from .choice import choose_conv, int8_dot_fits, keep_weights

ACT_NONE, ACT_RELU, ACT_CLIP = 0, 1, 2
NO_ZERO = conv_lowmem.NO_ZERO
NO_RES = np.zeros((0, 0, 0, 0), np.float32)


def activation_code(node):
    """(code, lo, hi) of the Conv's fused activation attribute."""
    act = node.attr("activation", "") or ""
    if act == "relu":
        return ACT_RELU, 0.0, 0.0
    if act == "clip":
        return (ACT_CLIP, float(node.attr("activation_min", -np.inf)),
                float(node.attr("activation_max", np.inf)))
    return ACT_NONE, 0.0, 0.0


def apply_residual(out, res, act):
    """out = act(out + res), for kernels without a fused residual epilogue."""
    flat = out.reshape(-1)
    ew.add_same(flat, res.reshape(-1), flat)
    if act[0] == ACT_RELU:
        ew.relu(flat, flat)
    elif act[0] == ACT_CLIP:
        ew.clip(flat, flat, act[1], act[2])


class _Plan:
    """One kernel family: kept arrays, scratch bytes per shape, and the call."""
    fuses_residual = False
    arrays: tuple = ()

    def scratch(self, x, w, out, geom, groups):
        return 0

    def __call__(self, x, bias, res, out, scratch, geom, groups, act):
        raise NotImplementedError


class _Direct(_Plan):
    """conv2d_direct and its fp16/int8/int4 twins: per-pair weight panels."""
    FNS = {"conv2d_direct": conv2d_direct, "conv2d_fp16w": conv_lowmem.conv2d_fp16w,
           "conv2d_int8w": conv_lowmem.conv2d_int8w, "conv2d_int4w": conv_lowmem.conv2d_int4w}

    def __init__(self, name, kept, w_runtime=False):
        self.fn = self.FNS[name]
        if w_runtime:
            self.weights = None
        elif name == "conv2d_direct":
            self.weights = (kept.data,)
        elif name == "conv2d_fp16w":
            self.weights = (kept.data.view(np.uint16),)
        else:
            zero = kept.zero if kept.zero is not None else NO_ZERO
            self.weights = (kept.data, kept.scale, zero, kept.shape[2], kept.shape[3])
        self.arrays = tuple(kept.arrays()) if kept is not None else ()

    def scratch(self, x, w, out, geom, groups):
        sh, sw, pt, pl, dh, dw = geom
        self.shape = conv2d_scratch_shape(x[1], x[2], x[3], out[2], out[3], w[2], w[3],
                                          sh, sw, pt, pl, dh, dw)
        return 4 * math.prod(self.shape)

    def __call__(self, x, bias, res, out, scratch, geom, groups, act, w=None):
        weights = self.weights if self.weights is not None else (w,)
        self.fn(x, *weights, bias, out, scratch_view(scratch, self.shape), *geom, groups, *act)


class _Tiled(_Plan):
    """conv2d_tiled: fp32 panels, or fp16 / int8 / int4 panels decoded one at a time."""
    fuses_residual = True

    def __init__(self, kept, threads):
        self.w_shape = kept.shape
        self.threads = threads      # the session's thread count: one weight panel each
        self.packed = tiled_weights.pack_stored(kept)
        self.arrays = self.packed.arrays()

    def scratch(self, x, w, out, geom, groups):
        return conv_tiled.tiled_scratch_bytes(x, w, out, *geom, groups, nthreads=self.threads)

    def __call__(self, x, bias, res, out, scratch, geom, groups, act):
        conv_tiled.conv2d_tiled(x, self.packed, self.w_shape, bias, res, out, scratch, *geom,
                                groups, *act)


class _ChanVec(_Plan):
    """conv2d_chanvec: fp32 weights packed as (M/32, K, 32) chunks, groups 1."""
    fuses_residual = True

    def __init__(self, kept):
        self.w_shape = kept.shape
        self.wp = conv_chanvec.pack_chanvec(kept.data)
        self.arrays = (self.wp,)

    def scratch(self, x, w, out, geom, groups):
        return conv_chanvec.chanvec_scratch_bytes(x, w, out, *geom)

    def __call__(self, x, bias, res, out, scratch, geom, groups, act):
        conv_chanvec.conv2d_chanvec(x, self.wp, self.w_shape, bias, res, out, scratch, *geom,
                                    *act)


class _Depthwise(_Plan):
    def __init__(self, kept):
        self.w = kept.data
        self.arrays = (self.w,)

    def scratch(self, x, w, out, geom, groups):
        sh, sw, pt, pl, _, _ = geom
        return depthwise.depthwise_scratch_bytes(x, w[2:], out, sh, sw, pt, pl)

    def __call__(self, x, bias, res, out, scratch, geom, groups, act):
        depthwise.conv2d_depthwise(x, self.w, bias, out, scratch, *geom, *act)


class _DepthwiseStored(_Plan):
    """conv2d_depthwise on fp16 / int8 / int4 weights kept as stored (memory=low).

    A depthwise weight is one (C, KH*KW) panel, the size of one register-tiled panel of a
    dense conv: each call decodes it into the head of the scratch and runs the fp32 kernel.
    """
    KINDS = {"fp16": conv_lowmem.KIND_FP16, "int8": conv_lowmem.KIND_INT8,
             "int4": conv_lowmem.KIND_INT4}

    def __init__(self, kept):
        self.kind = self.KINDS[kept.storage]
        c, _, kh, kw = kept.shape
        self.w_shape = (c, 1, kh, kw)
        if kept.storage == "fp16":
            self.src = (kept.data.view(np.uint16).reshape(c, kh * kw), NO_ZERO, NO_ZERO)
        else:
            zero = kept.zero if kept.zero is not None else NO_ZERO
            self.src = (kept.data, kept.scale, zero)
        self.arrays = tuple(kept.arrays())
        self.head = -(-4 * c * kh * kw // 64) * 64  # decoded weights, 64-byte aligned

    def scratch(self, x, w, out, geom, groups):
        sh, sw, pt, pl, _, _ = geom
        return self.head + depthwise.depthwise_scratch_bytes(x, w[2:], out, sh, sw, pt, pl)

    def __call__(self, x, bias, res, out, scratch, geom, groups, act):
        c, _, kh, kw = self.w_shape
        w = scratch_view(scratch, (c, kh * kw))
        conv_lowmem.load_rows(self.kind, *self.src, 0, c, w)
        depthwise.conv2d_depthwise(x, w.reshape(self.w_shape), bias, out, scratch[self.head:],
                                   *geom, *act)


class _Winograd(_Plan):
    fuses_residual = True

    def __init__(self, kept, m):
        self.m = m
        self.U = winograd.winograd_pack(kept.data, m)
        self.arrays = (self.U,)

    def scratch(self, x, w, out, geom, groups):
        return winograd.winograd_scratch_bytes(x, out, self.m, geom[2], geom[3])

    def __call__(self, x, bias, res, out, scratch, geom, groups, act):
        winograd.conv2d_winograd(x, self.U, self.m, bias, res, out, scratch, geom[2], geom[3],
                                 *act)


class _Int8Dot(_Plan):
    def __init__(self, kept):
        self.w_shape = kept.shape
        self.packed, self.wsum, self.wscale = int8dot.pack_int8dot(kept.data, kept.scale,
                                                                   kept.shape)
        self.arrays = (self.packed, self.wsum, self.wscale)

    def scratch(self, x, w, out, geom, groups):
        return int8dot.int8dot_scratch_bytes(x, w, out, *geom)

    def __call__(self, x, bias, res, out, scratch, geom, groups, act):
        int8dot.conv2d_int8dot(x, self.packed, self.wsum, self.wscale, self.w_shape, bias, out,
                               scratch, *geom, *act)


def make_plan(kernel: str, kept, option=None, threads=1) -> _Plan:
    if kernel.startswith("conv2d_tiled"):
        return _Tiled(kept, threads)
    if kernel == "conv2d_chanvec":
        return _ChanVec(kept)
    if kernel == "conv2d_depthwise":
        return _Depthwise(kept)
    if kernel.startswith("conv2d_depthwise_"):
        return _DepthwiseStored(kept)
    if kernel == "conv2d_winograd":
        return _Winograd(kept, option)
    if kernel == "conv2d_int8dot":
        return _Int8Dot(kept)
    return _Direct(kernel, kept)


class Conv(Kernel):
    """Conv with the kernel picked by choose_conv from the weights the loader kept."""

    def __init__(self, ctx):
        self.node = ctx.node
        w, b = ctx.constant(1), ctx.constant(2)
        cfg = ctx.config
        m = ctx.in_shapes[1][0]
        self.groups = int(ctx.node.attr("group", 1))
        if w is None:
            self.name, self.storage = "conv2d_direct", "computed"
            self.reason = "weights computed at run time; direct conv"
            self.plan = _Direct("conv2d_direct", None, w_runtime=True)
        else:
            vnni = has_vnni()
            kept = keep_weights(w, cfg.memory, int8_dot=int8_dot_fits(
                w, ctx.node.attrs, cfg.precision, vnni))
            choice = choose_conv(ctx.node.describe(), ctx.node.attrs, kept,
                                 decoded_from=w.storage, precision=cfg.precision,
                                 memory=cfg.memory, x_shape=ctx.in_shapes[0],
                                 out_shape=ctx.out_shapes[0], vnni=vnni)
            self.name, self.reason = choice.kernel, choice.reason
            self.storage = kept.storage if kept.storage == w.storage else \
                f"{kept.storage} (from {w.storage})"
            self.plan = make_plan(choice.kernel, kept, choice.option, cfg.resolved_threads())
        has_b = len(ctx.node.inputs) > 2 and bool(ctx.node.inputs[2])
        self.bias_const = b is not None
        self.bias = b.as_float32() if b is not None else np.zeros(m, np.float32)
        self.has_runtime_bias = has_b and b is None
        self.has_res = len(ctx.node.inputs) > 3 and bool(ctx.node.inputs[3])
        self.owned_inputs = tuple(i for i, c in ((1, w), (2, b)) if c is not None)
        self.act = activation_code(ctx.node)

    def resize(self, in_shapes, out_shapes):
        x, w, out = in_shapes[0], in_shapes[1], out_shapes[0]
        pads, strides, dil, _ = window_geometry(self.node, x[2:], w[2:])
        self.geom = (strides[0], strides[1], pads[0], pads[1], dil[0], dil[1])
        return self.plan.scratch(x, w, out, self.geom, self.groups)

    def needs_scratch(self):
        return isinstance(self.plan, _Direct)

    def run(self, inputs, outputs, scratch):
        b = inputs[2] if self.has_runtime_bias else self.bias
        out = outputs[0]
        fused = self.plan.fuses_residual or not self.has_res
        res = inputs[3] if self.has_res and self.plan.fuses_residual else NO_RES
        act = self.act if fused else (ACT_NONE, 0.0, 0.0)
        if self.storage == "computed":
            self.plan(inputs[0], b, res, out, scratch, self.geom, self.groups, act, w=inputs[1])
        else:
            self.plan(inputs[0], b, res, out, scratch, self.geom, self.groups, act)
        if not fused:
            apply_residual(out, inputs[3], self.act)

    def held_arrays(self):
        return list(self.plan.arrays) + ([self.bias] if self.bias_const else [])


def create_conv(ctx):
    return Conv(ctx)
