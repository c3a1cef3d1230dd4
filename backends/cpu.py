"""The CPU backend: Numba-compiled kernels, registered in the default registry on import."""
from __future__ import annotations

from contextlib import contextmanager

from jitconv.runtime.opdef import OPDEFS
from jitconv.runtime.threads import check_fork, numba_threads

from . import (cpu_conv, cpu_convt, cpu_gemm, cpu_layout, cpu_math, cpu_norm, cpu_ops,
               cpu_quant)
from . import cpu_blocked_conv  # noqa: F401 (registers the blocked conv families)
from .base import Backend, Target
from .registry import default_registry

CREATORS = {
    "Conv": cpu_conv.create_conv,
    "ConvTranspose": cpu_convt.create_conv_transpose,
    "ToBlocked": cpu_layout.create_to_blocked,
    "FromBlocked": cpu_layout.create_from_blocked,
    "Relu": cpu_ops.create_relu,
    "Clip": cpu_ops.create_clip,
    "Add": cpu_ops.create_add,
    "Mul": cpu_ops.create_mul,
    "MaxPool": cpu_ops.create_pool,
    "AveragePool": cpu_ops.create_pool,
    "GlobalAveragePool": cpu_ops.create_global_avg_pool,
    "Concat": cpu_ops.create_concat,
    "Flatten": cpu_ops.create_reshape,
    "Reshape": cpu_ops.create_reshape,
    "Transpose": cpu_ops.create_transpose,
    "Gemm": cpu_gemm.create_gemm,
    "MatMul": cpu_ops.create_matmul,
    "Softmax": cpu_ops.create_softmax,
    "BatchNormalization": cpu_ops.create_batchnorm,
    "Sub": cpu_ops.create_sub,
    "Div": cpu_ops.create_div,
    "Sum": cpu_ops.create_sum,
    "Sigmoid": cpu_ops.create_sigmoid,
    "HardSigmoid": cpu_ops.create_hard_sigmoid,
    "HardSwish": cpu_ops.create_hard_swish,
    "LeakyRelu": cpu_ops.create_leaky_relu,
    "PRelu": cpu_ops.create_prelu,
    "Identity": cpu_ops.create_identity,
    "Pad": cpu_ops.create_pad,
    "LRN": cpu_ops.create_lrn,
    "Unsqueeze": cpu_ops.create_reshape,
    "Squeeze": cpu_ops.create_reshape,
    "Gather": cpu_ops.create_gather,
    "ReduceMean": cpu_ops.create_reduce_mean,
    "Resize": cpu_ops.create_resize,
    "Split": cpu_ops.create_split,
    "Slice": cpu_ops.create_slice,
    "LayerNormalization": cpu_norm.create_layer_norm,
    "GroupNormalization": cpu_norm.create_group_norm,
    "InstanceNormalization": cpu_norm.create_instance_norm,
    "Gelu": cpu_math.create_gelu,
    "Pow": cpu_math.create_pow,
    "Max": cpu_math.create_max,
    "Min": cpu_math.create_min,
    "Equal": cpu_math.create_equal,
    "Less": cpu_math.create_less,
    "Greater": cpu_math.create_greater,
    "LessOrEqual": cpu_math.create_less_or_equal,
    "GreaterOrEqual": cpu_math.create_greater_or_equal,
    "Where": cpu_math.create_where,
    "Cast": cpu_math.create_cast,
    "Expand": cpu_math.create_expand,
    "Tile": cpu_math.create_tile,
    "ReduceSum": cpu_math.create_reduce_sum,
    "ReduceMax": cpu_math.create_reduce_max,
    "ReduceL2": cpu_math.create_reduce_l2,
    "ReduceSumSquare": cpu_math.create_reduce_sum_square,
    "ArgMax": cpu_math.create_argmax,
    "Einsum": cpu_math.create_einsum,
    "QuantizeLinear": cpu_quant.create_quant,
    "DequantizeLinear": cpu_quant.create_quant,
}


@contextmanager
def cpu_run(config, what):
    """Around every run of CPU kernels: the fork guard, then the config's Numba thread count
    (the caller's own setting is restored after)."""
    check_fork(what)
    with numba_threads(config.resolved_threads()):
        yield


class CpuBackend(Backend):
    """The CPU backend: CREATORS (hand-written kernels), plus ``cpu_ops.create_unary`` for
    every runtime OpDef with a ``scalar`` and no hand-written kernel: those registered
    when the backend is made, and any registered later (runtime.opdef.register)."""

    def creator(self, op_type):
        found = super().creator(op_type)
        if found is None and _generic(op_type):
            return cpu_ops.create_unary
        return found


def _generic(op_type) -> bool:
    d = OPDEFS.get(op_type)
    return d is not None and d.runtime and d.scalar is not None


def make_cpu_backend() -> Backend:
    backend = CpuBackend("cpu", "Numba-compiled kernels on the host CPU",
                         target=lambda config: Target.host(config.resolved_threads()),
                         run_context=cpu_run, graph_pass=cpu_layout.block_layout)
    for op_type, creator in CREATORS.items():
        backend.register(op_type, creator)
    for op_type in list(OPDEFS):
        if op_type not in CREATORS and _generic(op_type):
            backend.register(op_type, cpu_ops.create_unary)
    return backend


if "cpu" not in default_registry:
    default_registry.register_backend(make_cpu_backend())
