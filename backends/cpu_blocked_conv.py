"""The conv families of the channel-blocked layout (backends/cpu_layout.py decides which
convs compute in it): ``Blocked`` (conv2d_blocked, depthwise_blocked, and their
stored-weight variants in memory=low) and ``WinogradBlocked`` (conv2d_winograd_blocked),
with the choice rules that pick them for a conv the layout pass marked blocked.
"""
from __future__ import annotations

import numpy as np

from jitconv.kernels.blocked_weights import FP32, KIND_F32, NO_F32, pack_stored_blocked
from jitconv.kernels.conv_blocked import (BLK, BlockedCall, act_bounds, pack_blocked,
                                          unpack_blocked)
from jitconv.kernels.conv_lowmem import load_rows
from jitconv.kernels.depthwise_blocked import (check_depthwise_blocked, pack_depthwise_blocked,
                                               pad_depthwise_bias, rows_to_blocked,
                                               run_depthwise_blocked)
from jitconv.kernels.winograd_blocked import (conv2d_winograd_blocked, pack_winograd_blocked,
                                              unpack_winograd_blocked,
                                              winograd_blocked_cost,
                                              winograd_blocked_scratch_floats)
from jitconv.kernels.winograd_stored import u_floats, u_from_stored
from jitconv.runtime.ir import Constant

from .base import scratch_view
from .choice import Choice, _storage_reason
from .conv_family import ConvFamily, register_conv_family
from .cpu_conv import stored_depthwise_source
from .cpu_layout import BLOCKED


class Blocked(ConvFamily):
    """conv2d_blocked: NCHW16c output (or NCHW from a stem, attribute _out_layout), input
    blocked or NCHW (``choice.option``: 16 or 1 channels per input block), fp32 weights packed per 64 output channels (fp16 / int8 /
    int4 kept as stored: the same order, decoded pass by pass); or, option "dw",
    depthwise_blocked (blocked input, weights per 16 channels; kept as stored, decoded
    whole into the scratch and reordered on each call)."""
    key = "blocked"
    fuses_residual = True

    def pack(self, kept):
        self.w_shape, self.name = kept.shape, kept.name
        self.stored = FP32
        self.dw_src = None
        if self.option == "dw" and kept.storage != "fp32":
            # kept as stored (memory=low): each call decodes the whole (C, KH*KW) weight
            # into the scratch, as DepthwiseStored does, and reorders it into blocks
            self.dw_src = stored_depthwise_source(kept)
            self.dw_kept = tuple(kept.arrays())
            self.wp = NO_F32
        elif self.option == "dw":
            self.wp = pack_depthwise_blocked(kept.data)
        elif kept.storage == "fp32":
            self.wp = pack_blocked(kept.data, self.option)
        else:       # fp16 / int8 kept as stored: decoded pass by pass in the kernel
            self.wp = NO_F32
            self.stored = pack_stored_blocked(kept, self.option, pack_blocked)

    def _dw_parts(self):
        """Scratch views' shapes for a stored depthwise weight: decoded rows, then blocks."""
        c, _, kh, kw = self.w_shape
        return (c, kh * kw), (-(-c // 16), kh * kw, 16)

    def plan(self, geom):
        self.geom = geom
        self._call = None        # (arguments it was made for, BlockedCall), at the first run
        self._bias = (None, None)    # (bias given, bias padded to whole blocks)
        if self.dw_src is None:
            return 0
        rows, blocks = self._dw_parts()
        self.head = -(-4 * rows[0] * rows[1] // 64) * 64
        return self.head + 4 * blocks[0] * blocks[1] * blocks[2]

    def run(self, x, bias, res, out, scratch, epi, w=None):
        if self.option == "dw":
            wp = self.wp
            if self.dw_src is not None:
                rows, blocks = self._dw_parts()
                wd = scratch_view(scratch, rows)
                load_rows(*self.dw_src, 0, rows[0], wd)
                wp = scratch_view(scratch[self.head:], blocks)
                rows_to_blocked(wd, wp)
                wp = wp.reshape(blocks[0], self.w_shape[2], self.w_shape[3], 16)
            key = (x.shape, out.shape, None if res is None or res.size == 0 else res.shape,
                   epi)
            if self._call is None or self._call[0] != key:
                check_depthwise_blocked(x.shape, wp.shape, self.w_shape, out.shape, key[2])
                self._call = (key, act_bounds(*epi.act_args))
            if self._bias[0] is not bias:
                self._bias = (bias, pad_depthwise_bias(bias, self.w_shape))
            run_depthwise_blocked(x, wp, self._bias[1], res, out, self.geom.args,
                                  *self._call[1])
        else:
            self._blocked_call(x, bias, res, out, epi)

    def _blocked_call(self, x, bias, res, out, epi):
        """conv2d_blocked through a BlockedCall made at the first run of this plan (the
        shapes checked and the parameter blocks filled once)."""
        has_res = res is not None and res.size > 0
        key = (x.shape, out.shape, has_res, epi)
        if self._call is None or self._call[0] != key:
            self._call = (key, BlockedCall(x.shape, self.wp, self.w_shape, out.shape,
                                           self.geom.args, *epi.act_args, has_res,
                                           self.stored))
        call = self._call[1]
        if self._bias[0] is not bias:
            self._bias = (bias, call.pad_bias(bias))
        call(np.ascontiguousarray(x), self._bias[1], res, out)

    def arrays(self):
        if self.dw_src is not None:
            return self.dw_kept
        return (self.wp,) if self.stored.kind == KIND_F32 else self.stored.arrays()

    def unpack(self):
        if self.option == "dw" or self.stored.kind != KIND_F32:
            return None
        return Constant(self.name, unpack_blocked(self.wp, self.w_shape, self.option))


# a 3x3 conv runs Winograd when its cost is below this share of the direct kernel's (the
# cost model's error margin)
WINOGRAD_BELOW = 0.85
# in memory=low (weights kept as stored) U is made at each call into the scratch: only
# where it is at most this many bytes (ResNet-50: the 56x56 and 28x28 convs, F(4,3); the
# 14x14 ones would need 4 MiB at F(2,3)), so the scratch stays small beside the weights
WINOGRAD_LOW_U = 2.5 * 2 ** 20


class WinogradBlocked(ConvFamily):
    """conv2d_winograd_blocked F(m, 3), m = the choice's option (2 or 4): blocked input and
    output, U = the transformed weights as (m+2)^2 packed 1x1 convs; or, for weights kept
    as stored (memory=low), the stored weights, U made into the scratch at each call
    (kernels/winograd_stored.py)."""
    key = "winograd_blocked"
    fuses_residual = True

    def pack(self, kept):
        self.w_shape, self.name = kept.shape, kept.name
        if kept.storage == "fp32":
            self.U, self.stored = pack_winograd_blocked(kept.data, self.option), None
        else:
            self.U, self.stored = None, pack_stored_blocked(kept, BLK, pack_blocked)

    def _floats(self, geom):
        return winograd_blocked_scratch_floats(geom.w[1], geom.w[0], geom.out[2],
                                               geom.out[3], self.option)

    def _u_floats(self):
        return 0 if self.stored is None else u_floats(self.w_shape, self.option)

    def plan(self, geom):
        self.geom = geom
        return 4 * (self._floats(geom) + self._u_floats())

    def run(self, x, bias, res, out, scratch, epi, w=None):
        n = self._floats(self.geom)
        sc = scratch_view(scratch, (n + self._u_floats(),))
        U = self.U
        if self.stored is not None:
            U = sc[n:]
            u_from_stored(self.stored, self.w_shape, self.option, U)
        conv2d_winograd_blocked(x, U, self.option, self.w_shape, bias, res, out, sc[:n],
                                self.geom.pads[0], self.geom.pads[1], *epi.act_args)

    def arrays(self):
        return (self.U,) if self.stored is None else self.stored.arrays()

    def unpack(self):
        if self.stored is not None:
            return None
        return Constant(self.name, unpack_winograd_blocked(self.U, self.option, self.w_shape))


def _winograd_blocked_rule(request):
    """A blocked 3x3 conv (stride 1, dilation 1, groups 1, blocked input) runs Winograd
    where the cost model rates it below WINOGRAD_BELOW of the direct kernel. fp32 weights
    outside memory=low: U packed once (it holds (m+2)^2 / 9 times the weights). In
    memory=low only weights kept as stored (fp16 / int8 / int4), with U made at each
    call into the scratch where it takes at most WINOGRAD_LOW_U bytes (fp32 weights in
    memory=low stay direct). precision=high rules it out."""
    a, g = request.attrs, request.geom
    if a.get("_layout") != BLOCKED or a.get("_in_layout") != BLOCKED or g is None:
        return None
    stored = request.kept.storage != "fp32"
    if request.precision == "high" or stored != (request.memory == "low"):
        return None
    if tuple(g.w[2:]) != (3, 3) or tuple(g.strides) != (1, 1) or \
            tuple(g.dilations) != (1, 1) or g.groups != 1:
        return None
    threads = getattr(request.target, "threads", 1)
    options = [m for m in (4, 2) if not stored or 4 * u_floats(g.w, m) <= WINOGRAD_LOW_U]
    if not options:
        return None
    cost, m = min((winograd_blocked_cost(g.w[1], g.w[0], g.out[2], g.out[3], m, threads), m)
                  for m in options)
    if cost >= WINOGRAD_BELOW:
        return None
    why = _storage_reason(request.kept, request.memory, request.decoded_from)
    made = (f"; U ({4 * u_floats(g.w, m) / 2 ** 20:.1f} MiB) made from the stored weights "
            f"into the scratch at each call") if stored else ""
    suffix = "" if not stored else f"_{request.kept.storage}w"
    return Choice("conv2d_winograd_blocked" + suffix,
                  f"{why}; channel-blocked layout NCHW16c chosen by the layout pass; "
                  f"Winograd F({m},3): cost {cost:.2f} of the direct blocked kernel at "
                  f"{threads} thread{'s' if threads > 1 else ''}{made}", option=m,
                  family="winograd_blocked")


def _blocked_rule(request):
    """A conv the layout pass blocked runs conv2d_blocked, whatever its size."""
    if request.attrs.get("_layout") != BLOCKED:
        return None
    why = _storage_reason(request.kept, request.memory, request.decoded_from)
    kept = request.kept.storage
    suffix = "" if kept == "fp32" else f"_{kept}w"
    if int(request.attrs.get("group", 1)) > 1:
        return Choice("depthwise_blocked" + suffix, f"{why}; depthwise, channel-blocked layout "
                                                    f"NCHW16c chosen by the layout pass",
                      option="dw", family="blocked")
    ci = 16 if request.attrs.get("_in_layout") == BLOCKED else 1
    out = ", output NCHW (the tiles store it transposed)" \
        if request.attrs.get("_out_layout") == "nchw" else ""
    return Choice("conv2d_blocked" + suffix,
                  f"{why}; channel-blocked layout NCHW16c chosen by the layout pass, input "
                  f"{'blocked' if ci == 16 else 'NCHW'}{out}", option=ci, family="blocked")


register_conv_family(WinogradBlocked, rule=_winograd_blocked_rule)   # asked first
register_conv_family(Blocked, rule=_blocked_rule)
