"""The CPU backend: Numba-compiled kernels, registered in the default registry on import."""
from __future__ import annotations

from . import cpu_conv, cpu_gemm, cpu_ops
from .base import Backend
from .registry import default_registry

CREATORS = {
    "Conv": cpu_conv.create_conv,
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
}


def make_cpu_backend() -> Backend:
    backend = Backend("cpu", "Numba-compiled kernels on the host CPU")
    for op_type, creator in CREATORS.items():
        backend.register(op_type, creator)
    return backend


if "cpu" not in default_registry:
    default_registry.register_backend(make_cpu_backend())
