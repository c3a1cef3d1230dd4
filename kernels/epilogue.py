"""Activation codes of the fused conv epilogue, shared by every conv kernel.

A conv kernel takes ``act, lo, hi`` after its other arguments: ACT_NONE, ACT_RELU
(max(v, 0)) or ACT_CLIP (min(max(v, lo), hi)), applied after the bias (and the residual
add, in kernels that fuse it). Numba reads these module globals as compile-time constants.

The smooth activations a Conv node may carry (runtime/passes.py fuses them) have codes
too: ACT_SILU (v sigmoid(v)), ACT_GELU (0.5 v (1 + erf(v / sqrt 2))) and ACT_GELU_TANH
(the tanh form). Kernels do not take them as ``act``: the conv op object applies them
to the output after the kernel (kernels/act_vec.py).
"""
ACT_NONE = 0
ACT_RELU = 1
ACT_CLIP = 2
ACT_SILU = 3
ACT_GELU = 4
ACT_GELU_TANH = 5
