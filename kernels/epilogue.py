"""Activation codes of the fused conv epilogue, shared by every conv kernel.

A conv kernel takes ``act, lo, hi`` after its other arguments: ACT_NONE, ACT_RELU
(max(v, 0)) or ACT_CLIP (min(max(v, lo), hi)), applied after the bias (and the residual
add, in kernels that fuse it). Numba reads these module globals as compile-time constants.
"""
ACT_NONE = 0
ACT_RELU = 1
ACT_CLIP = 2
