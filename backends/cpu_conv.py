"""CPU conv kernel families, and the Conv kernel that chooses among them per shape.

Each family (backends/conv_family.py: pack / plan / run) adapts one kernel module: its
weight layout, its scratch size per geometry and its call. ``Conv`` keeps what the loader
kept until its first plan; every plan asks ``choose_conv`` (backends/choice.py) again, and
a conv whose best family changes at a new input size repacks from the current family's
``unpack()`` (every fp32 layout can give its weights back; the low-memory families are
chosen by storage and groups only, so their choice never changes with the size).
"""
from __future__ import annotations

import math

import numpy as np

from jitconv.kernels import conv_chanvec, conv_lowmem, conv_tiled, depthwise, int8dot, tiled_weights
from jitconv.kernels import winograd
from jitconv.kernels import elementwise as ew
from jitconv.kernels.conv_direct import conv2d_direct, conv2d_scratch_shape
from jitconv.kernels import quant
from jitconv.kernels.act_vec import apply_activation
from jitconv.kernels.epilogue import ACT_CLIP, ACT_RELU
from jitconv.runtime.ir import Constant
from jitconv.runtime.resident import file_backed

from .base import Kernel, scratch_view
from .choice import Choice, choose_conv, int8_dot_fits, keep_weights
from .conv_family import ConvFamily, ConvGeometry, Epilogue, family, register_conv_family
from .cpu_quant import per_tensor_view as fq_view

NO_ZERO = conv_lowmem.NO_ZERO
NO_RES = np.zeros((0, 0, 0, 0), np.float32)


def apply_residual(out, res, epi):
    """out = act(out + res), for kernels without a fused residual epilogue."""
    flat = out.reshape(-1)
    ew.add_same(flat, res.reshape(-1), flat)
    if epi.act == ACT_RELU:
        ew.relu(flat, flat)
    elif epi.act == ACT_CLIP:
        ew.clip(flat, flat, epi.lo, epi.hi)


def _unpanel(panels, m, w_shape):
    """(ceil(M/R), K, R) float32 panels (channel-minor) back to (M, ...) weights."""
    nt, k, r = panels.shape
    return np.ascontiguousarray(panels.transpose(0, 2, 1).reshape(nt * r, k)[:m]
                                ).reshape(w_shape)


class Direct(ConvFamily):
    """conv2d_direct and its fp16/int8/int4 twins: per-pair weight panels. The only family
    that also takes weights computed at run time (``run(..., w=)``)."""
    key = "direct"
    FNS = {"conv2d_direct": conv2d_direct, "conv2d_fp16w": conv_lowmem.conv2d_fp16w,
           "conv2d_int8w": conv_lowmem.conv2d_int8w, "conv2d_int4w": conv_lowmem.conv2d_int4w}

    def pack(self, kept):
        name = self.choice.kernel
        self.fn = self.FNS[name]
        self.kept = kept
        if kept is None:             # weights computed at run time
            self.weights = None
        elif name == "conv2d_direct":
            self.weights = (kept.data,)
        elif name == "conv2d_fp16w":
            self.weights = (kept.data.view(np.uint16),)
        else:
            zero = kept.zero if kept.zero is not None else NO_ZERO
            self.weights = (kept.data, kept.scale, zero, kept.shape[2], kept.shape[3])

    def plan(self, geom):
        x, w, out = geom.x, geom.w, geom.out
        self.geom = geom
        self.shape = conv2d_scratch_shape(x[1], x[2], x[3], out[2], out[3], w[2], w[3],
                                          *geom.args)
        return 4 * math.prod(self.shape)

    def run(self, x, bias, res, out, scratch, epi, w=None):
        weights = self.weights if self.weights is not None else (w,)
        self.fn(x, *weights, bias, out, scratch_view(scratch, self.shape), *self.geom.args,
                self.geom.groups, *epi.act_args)

    def arrays(self):
        return tuple(self.kept.arrays()) if self.kept is not None else ()

    def unpack(self):
        return self.kept if self.kept is not None and self.kept.storage == "fp32" else None


class Tiled(ConvFamily):
    """conv2d_tiled: fp32 panels, or fp16 / int8 / int4 panels decoded one at a time."""
    key = "tiled"
    fuses_residual = True

    def pack(self, kept):
        self.w_shape = kept.shape
        self.name = kept.name
        self.packed = tiled_weights.pack_stored(kept)

    def plan(self, geom):
        self.geom = geom
        # the session's thread count: one decoded weight panel each
        return conv_tiled.tiled_scratch_bytes(geom.x, geom.w, geom.out, *geom.args,
                                              geom.groups, nthreads=self.target.threads)

    def run(self, x, bias, res, out, scratch, epi, w=None):
        conv_tiled.conv2d_tiled(x, self.packed, self.w_shape, bias, res, out, scratch,
                                *self.geom.args, self.geom.groups, *epi.act_args)

    def arrays(self):
        return self.packed.arrays()

    def unpack(self):
        if self.packed.kind != tiled_weights.KIND_F32:
            return None
        return Constant(self.name, _unpanel(self.packed.wp, self.w_shape[0], self.w_shape))


class ChanVec(ConvFamily):
    """conv2d_chanvec: fp32 weights packed as (M/32, K, 32) chunks, groups 1."""
    key = "chanvec"
    fuses_residual = True

    def pack(self, kept):
        self.w_shape, self.name = kept.shape, kept.name
        self.wp = conv_chanvec.pack_chanvec(kept.data)

    def plan(self, geom):
        self.geom = geom
        return conv_chanvec.chanvec_scratch_bytes(geom.x, geom.w, geom.out, *geom.args)

    def run(self, x, bias, res, out, scratch, epi, w=None):
        conv_chanvec.conv2d_chanvec(x, self.wp, self.w_shape, bias, res, out, scratch,
                                    *self.geom.args, *epi.act_args)

    def arrays(self):
        return (self.wp,)

    def unpack(self):
        return Constant(self.name, _unpanel(self.wp, self.w_shape[0], self.w_shape))


class Depthwise(ConvFamily):
    """conv2d_depthwise on fp32 weights, used as they are."""
    key = "depthwise"

    def pack(self, kept):
        self.kept = kept
        self.w = kept.data

    def plan(self, geom):
        self.geom = geom
        sh, sw, pt, pl, _, _ = geom.args
        return depthwise.depthwise_scratch_bytes(geom.x, geom.w[2:], geom.out, sh, sw, pt, pl)

    def run(self, x, bias, res, out, scratch, epi, w=None):
        depthwise.conv2d_depthwise(x, self.w, bias, out, scratch, *self.geom.args,
                                   *epi.act_args)

    def arrays(self):
        return (self.w,)

    def unpack(self):
        return self.kept


def stored_depthwise_source(kept):
    """(kind, rows, scale, zero) for conv_lowmem.load_rows of a depthwise weight kept as
    stored (fp16 / int8 / int4): its whole (C, KH*KW) panel."""
    c, _, kh, kw = kept.shape
    kind = DepthwiseStored.KINDS[kept.storage]
    if kept.storage == "fp16":
        return kind, kept.data.view(np.uint16).reshape(c, kh * kw), NO_ZERO, NO_ZERO
    zero = kept.zero if kept.zero is not None else NO_ZERO
    return kind, kept.data, kept.scale, zero


class DepthwiseStored(ConvFamily):
    """conv2d_depthwise on fp16 / int8 / int4 weights kept as stored (memory=low).

    A depthwise weight is one (C, KH*KW) panel, the size of one register-tiled panel of a
    dense conv: each call decodes it into the head of the scratch and runs the fp32 kernel.
    """
    key = "depthwise_stored"
    KINDS = {"fp16": conv_lowmem.KIND_FP16, "int8": conv_lowmem.KIND_INT8,
             "int4": conv_lowmem.KIND_INT4}

    def pack(self, kept):
        self.kind, *self.src = stored_depthwise_source(kept)
        c, _, kh, kw = kept.shape
        self.w_shape = (c, 1, kh, kw)
        self.kept_arrays = tuple(kept.arrays())
        self.head = -(-4 * c * kh * kw // 64) * 64  # decoded weights, 64-byte aligned

    def plan(self, geom):
        self.geom = geom
        sh, sw, pt, pl, _, _ = geom.args
        return self.head + depthwise.depthwise_scratch_bytes(geom.x, geom.w[2:], geom.out,
                                                             sh, sw, pt, pl)

    def run(self, x, bias, res, out, scratch, epi, w=None):
        c, _, kh, kw = self.w_shape
        wd = scratch_view(scratch, (c, kh * kw))
        conv_lowmem.load_rows(self.kind, *self.src, 0, c, wd)
        depthwise.conv2d_depthwise(x, wd.reshape(self.w_shape), bias, out,
                                   scratch[self.head:], *self.geom.args, *epi.act_args)

    def arrays(self):
        return self.kept_arrays


class Winograd(ConvFamily):
    """conv2d_winograd F(m, 3), m = the choice's option (2 or 4)."""
    key = "winograd"
    fuses_residual = True

    def pack(self, kept):
        self.w_shape, self.name = kept.shape, kept.name
        self.U = winograd.winograd_pack(kept.data, self.option)

    def plan(self, geom):
        self.geom = geom
        return winograd.winograd_scratch_bytes(geom.x, geom.out, self.option, geom.pads[0],
                                               geom.pads[1])

    def run(self, x, bias, res, out, scratch, epi, w=None):
        winograd.conv2d_winograd(x, self.U, self.option, bias, res, out, scratch,
                                 self.geom.pads[0], self.geom.pads[1], *epi.act_args)

    def arrays(self):
        return (self.U,)

    def unpack(self):
        return Constant(self.name, winograd.winograd_unpack(self.U, self.option,
                                                            self.w_shape[0]))


class Int8Dot(ConvFamily):
    """conv2d_int8dot: int8 weights x activations quantized per tensor (precision=low)."""
    key = "int8dot"

    def pack(self, kept):
        self.w_shape = kept.shape
        self.packed, self.wsum, self.wscale = int8dot.pack_int8dot(kept.data, kept.scale,
                                                                   kept.shape)

    def plan(self, geom):
        self.geom = geom
        return int8dot.int8dot_scratch_bytes(geom.x, geom.w, geom.out, *geom.args)

    def run(self, x, bias, res, out, scratch, epi, w=None):
        int8dot.conv2d_int8dot(x, self.packed, self.wsum, self.wscale, self.w_shape, bias, out,
                               scratch, *self.geom.args, *epi.act_args,
                               vnni=self.target.vnni)

    def arrays(self):
        return (self.packed, self.wsum, self.wscale)


for _cls in (Direct, Tiled, ChanVec, Depthwise, DepthwiseStored, Winograd, Int8Dot):
    register_conv_family(_cls)


class Conv(Kernel):
    """Conv whose family is chosen at every plan from the weights the loader kept.

    Creation keeps the weights (``keep_weights``) and reads nothing of the shapes. The
    first ``resize`` chooses and packs; later ones choose again for the new geometry and
    repack only when the choice changed, from ``family.unpack()``. A family that cannot
    unpack (the low-memory and int8 ones) keeps its choice: the built-in table picks those
    by storage and groups alone, never by size.
    """

    def __init__(self, ctx):
        self.node, self.target = ctx.node, ctx.target
        w, b = ctx.constant(1), ctx.constant(2)
        cfg = ctx.config
        self.precision, self.memory = cfg.precision, cfg.memory
        self.family = None
        self._shape_only = None      # an fp32 stand-in of the weights' shape, for re-choosing
        if w is None:
            self.name, self.storage = "conv2d_direct", "computed"
            self.reason = "weights computed at run time; direct conv"
            self._source, self._decoded_from = None, "fp32"
        else:
            self._source = keep_weights(w, cfg.memory, int8_dot=int8_dot_fits(
                w, ctx.node.attrs, cfg.precision, self.target.vnni))
            self._decoded_from = w.storage
            kept = self._source.storage
            self.storage = kept if kept == w.storage else f"{kept} (from {w.storage})"
            self.name, self.reason = "conv2d", "not planned yet"
        m = ctx.in_shapes[1][0] if w is None else w.shape[0]
        has_b = len(ctx.node.inputs) > 2 and bool(ctx.node.inputs[2])
        self.bias_const = b is not None
        self.bias = b.as_float32() if b is not None else np.zeros(m, np.float32)
        if file_backed(self.bias):
            # copied: a bias read from a mapped file at each run keeps whole large folios
            # of the file around it resident (2 MiB each for ResNet-50's convs)
            self.bias = self.bias.copy()
        self.has_runtime_bias = has_b and b is None
        self.epi = Epilogue.of(ctx.node)
        self.owned_inputs = tuple(i for i, c in ((1, w), (2, b)) if c is not None)

    def resize(self, in_shapes, out_shapes):
        size = self._resize(in_shapes, out_shapes)
        notes = []
        if self.epi.post:
            notes.append(f"; fused {self.node.attr('activation')}: applied to the output in "
                         f"place after the kernel (vector exp)")
        if self.epi.fq:
            # per tensor: the output as rows spread over the threads, as Quant does
            self._fq_view = fq_view(out_shapes[0])
            self._fq_scale = np.array([self.epi.fq[0]], np.float32)
            self._fq_zero = np.array([self.epi.fq[1]], np.float32)
            notes.append("; fused fake-quant (QuantizeLinear -> DequantizeLinear, per "
                         "tensor): applied to the output in place after the kernel")
        for note in notes:
            if note not in self.reason:
                self.reason += note
        return size

    def _resize(self, in_shapes, out_shapes):
        from .cpu_layout import logical_conv_shapes   # noqa: PLC0415 (imports this module)
        x, out = logical_conv_shapes(self.node, in_shapes[0], in_shapes[1], out_shapes[0])
        geom = ConvGeometry.of(self.node, x, in_shapes[1], out)
        if self.storage == "computed":
            if self.family is None:
                self.family = Direct(Choice("conv2d_direct", self.reason, family="direct"),
                                     self.target)
                self.family.pack(None)
            return self.family.plan(geom)
        if self.family is not None and self._shape_only is None:
            return self.family.plan(geom)     # a low-memory / int8 family: fixed choice
        kept = self._source if self._source is not None else self._shape_only
        choice = choose_conv(self.node.describe(), self.node.attrs, kept,
                             decoded_from=self._decoded_from, precision=self.precision,
                             memory=self.memory, geom=geom, target=self.target)
        now = self.family
        if now is None or (choice.family, choice.kernel, choice.option) != (
                now.key, now.choice.kernel, now.option):
            source = self._source if self._source is not None else now.unpack()
            if source is None:
                self.reason = (f"{now.choice.reason}; kept at this size although "
                               f"{choice.kernel} was chosen: {now.key} cannot unpack")
                return now.plan(geom)
            fam = family(choice.family)(choice, self.target)
            fam.pack(source)
            if source.storage == "fp32":
                self._shape_only = Constant(source.name, np.broadcast_to(np.float32(0),
                                                                         source.shape))
            self.family, self._source = fam, None    # the family holds the weights now
        else:
            now.choice = choice
        self.name, self.reason = choice.kernel, choice.reason
        return self.family.plan(geom)

    def needs_scratch(self):
        return isinstance(self.family, Direct)

    def run(self, inputs, outputs, scratch):
        b = inputs[2] if self.has_runtime_bias else self.bias
        out = outputs[0]
        epi = self.epi
        fused = self.family.fuses_residual or not epi.residual
        res = inputs[3] if epi.residual and self.family.fuses_residual else NO_RES
        run_epi = epi if fused else Epilogue()
        if self.storage == "computed":
            self.family.run(inputs[0], b, res, out, scratch, run_epi, w=inputs[1])
        else:
            self.family.run(inputs[0], b, res, out, scratch, run_epi)
        if not fused:
            apply_residual(out, inputs[3], epi)
        if epi.post:
            apply_activation(out.reshape(-1), epi.post)
        if epi.fq:
            _, _, qmin, qmax = epi.fq
            o3 = out.reshape(self._fq_view)
            quant.quantize(o3, self._fq_scale, self._fq_zero, 0, o3, qmin, qmax, True)

    def held_arrays(self):
        held = list(self.family.arrays()) if self.family is not None else \
            list(self._source.arrays()) if self._source is not None else []
        return held + ([self.bias] if self.bias_const else [])


def create_conv(ctx):
    return Conv(ctx)
