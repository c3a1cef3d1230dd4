"""CPU kernel object for Gemm: B packed as (N, K) rows, fp32 or kept fp16/int8/int4."""
from __future__ import annotations

import numpy as np

from jitconv.kernels import gemm_lowmem
from jitconv.kernels.gemm import gemm_nt
from jitconv.runtime.ir import Constant

from .base import Kernel
from .choice import choose_gemm, keep_weights

NO_ZERO = gemm_lowmem.NO_ZERO
KERNELS = {"gemm_nt": gemm_nt, "gemm_nt_fp16w": gemm_lowmem.gemm_nt_fp16w,
           "gemm_nt_int8w": gemm_lowmem.gemm_nt_int8w,
           "gemm_nt_int4w": gemm_lowmem.gemm_nt_int4w}


class Gemm(Kernel):
    """Y = alpha * A' B' + beta * C."""

    def __init__(self, ctx):
        node, cfg = ctx.node, ctx.config
        self.alpha = float(node.attr("alpha", 1.0))
        self.beta = float(node.attr("beta", 1.0))
        self.trans_a = bool(node.attr("transA", 0))
        self.trans_b = bool(node.attr("transB", 0))
        self.has_c = len(node.inputs) > 2 and bool(node.inputs[2])
        b = ctx.constant(1)
        self.kept = None
        self.name, self.reason = "gemm_nt", "B computed at run time; transposed per run"
        if b is None:
            return
        self.owned_inputs = (1,)
        kept = keep_weights(b, cfg.memory)
        if not self.trans_b:
            # quantized rows must be output columns; quantize() always stores transB=1
            kept = Constant(b.name, np.ascontiguousarray(kept.as_float32().T), "fp32")
        self.kept = kept
        choice = choose_gemm(node.describe(), kept, decoded_from=b.storage,
                             precision=cfg.precision, memory=cfg.memory)
        self.name, self.reason = choice.kernel, choice.reason
        self.storage = kept.storage if kept.storage == b.storage else \
            f"{kept.storage} (from {b.storage})"
        if self.name == "gemm_nt":
            self.weights = (kept.data,)
        elif self.name == "gemm_nt_fp16w":
            self.weights = (kept.data.view(np.uint16),)
        else:
            self.weights = (kept.data, kept.scale,
                            kept.zero if kept.zero is not None else NO_ZERO)

    def run(self, inputs, outputs, scratch):
        a = np.ascontiguousarray(inputs[0].T if self.trans_a else inputs[0])
        if self.kept is not None:
            weights = self.weights
        else:
            weights = (np.ascontiguousarray(inputs[1] if self.trans_b else inputs[1].T),)
        out = outputs[0]
        c = np.broadcast_to(inputs[2], out.shape) if self.has_c else out
        KERNELS[self.name](a, *weights, c, out, self.alpha, self.beta, self.has_c)

    def held_arrays(self):
        return self.kept.arrays() if self.kept is not None else []


def create_gemm(ctx):
    return Gemm(ctx)
