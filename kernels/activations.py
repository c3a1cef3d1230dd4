"""Elementwise fp32 kernels of the ONNX CNN op set: sigmoid-family activations,
broadcast Sub/Div/PRelu, and LRN across channels.

Unary kernels take 1-D contiguous arrays; ``binary_broadcast`` takes 6-D views padded
with leading 1s (zero strides for broadcast axes), like kernels/elementwise.py.
NaN passes through every activation.
"""

import numpy as np
from numba import njit, prange

from .rows import unravel5

OP_ADD = 0
OP_MUL = 1
OP_SUB = 2
OP_DIV = 3
OP_PRELU = 4     # a if a >= 0 else a * b

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(**_OPTS)
def sigmoid(x, out):
    """x, out: 1-D contiguous fp32, same length. out = 1 / (1 + exp(-x))."""
    one = np.float32(1.0)
    for i in range(x.shape[0]):
        out[i] = one / (one + np.exp(-x[i]))


@njit(**_OPTS)
def hard_sigmoid(x, out, alpha, beta):
    """out = max(0, min(1, alpha * x + beta))."""
    a, b = np.float32(alpha), np.float32(beta)
    zero, one = np.float32(0.0), np.float32(1.0)
    for i in range(x.shape[0]):
        v = a * x[i] + b
        if v < zero:
            v = zero
        if v > one:
            v = one
        out[i] = v


@njit(**_OPTS)
def hard_swish(x, out):
    """out = x * max(0, min(1, x / 6 + 0.5))."""
    sixth, half = np.float32(1.0 / 6.0), np.float32(0.5)
    zero, one = np.float32(0.0), np.float32(1.0)
    for i in range(x.shape[0]):
        v = x[i]
        g = v * sixth + half
        if g < zero:
            g = zero
        if g > one:
            g = one
        out[i] = v * g


@njit(**_OPTS)
def leaky_relu(x, out, alpha):
    """out = x if x >= 0 else alpha * x."""
    a = np.float32(alpha)
    zero = np.float32(0.0)
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = v if v >= zero else a * v


@njit(**_OPTS)
def sub_same(a, b, out):
    """a, b, out: 1-D contiguous fp32, same length. out = a - b."""
    for i in range(out.shape[0]):
        out[i] = a[i] - b[i]


@njit(**_OPTS)
def div_same(a, b, out):
    """a, b, out: 1-D contiguous fp32, same length. out = a / b."""
    for i in range(out.shape[0]):
        out[i] = a[i] / b[i]


@njit(parallel=True, **_OPTS)
def binary_broadcast(a, b, out, op):
    """a, b: 6-D fp32 views of out's shape (any strides, zero strides allowed); out: 6-D
    C-contiguous (it may be the same array as a). op: OP_ADD, OP_MUL, OP_SUB, OP_DIV,
    OP_PRELU."""
    d0, d1, d2, d3, d4, d5 = out.shape
    rows = d0 * d1 * d2 * d3 * d4
    zero = np.float32(0.0)
    for r in prange(rows):
        i0, i1, i2, i3, i4 = unravel5(r, d1, d2, d3, d4)
        ar = a[i0, i1, i2, i3, i4]
        br = b[i0, i1, i2, i3, i4]
        orow = out[i0, i1, i2, i3, i4]
        if op == OP_ADD:
            for j in range(d5):
                orow[j] = ar[j] + br[j]
        elif op == OP_MUL:
            for j in range(d5):
                orow[j] = ar[j] * br[j]
        elif op == OP_SUB:
            for j in range(d5):
                orow[j] = ar[j] - br[j]
        elif op == OP_DIV:
            for j in range(d5):
                orow[j] = ar[j] / br[j]
        else:
            for j in range(d5):
                v = ar[j]
                orow[j] = v if v >= zero else v * br[j]


@njit(parallel=True, **_OPTS)
def lrn(x, out, size, alpha, beta, bias):
    """x, out: (N, C, S) fp32 C-contiguous. Sum of squares over the channel window
    [c - (size-1)//2, c + ceil((size-1)/2)] (clipped), out = x / (bias + alpha/size*sum)^beta.
    The sum is accumulated in float64."""
    N, C, S = x.shape
    lo = (size - 1) // 2
    hi = size - 1 - lo
    k = alpha / size
    for r in prange(N * C):
        n = r // C
        c = r % C
        c0 = max(0, c - lo)
        c1 = min(C - 1, c + hi)
        for s in range(S):
            acc = 0.0
            for cc in range(c0, c1 + 1):
                v = x[n, cc, s]
                acc += v * v
            out[n, c, s] = np.float32(x[n, c, s] / (bias + k * acc) ** beta)
