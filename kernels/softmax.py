"""Numerically stable fp32 softmax along the middle axis of an (O, A, I) array."""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(parallel=True, **_OPTS)
def softmax(x, out):
    """x, out: (O, A, I) fp32 C-contiguous; softmax over axis 1 (max subtracted, float64 sum)."""
    O, A, I = x.shape
    for t in prange(O * I):
        o = t // I
        i = t % I
        xs = x[o, :, i]
        os_ = out[o, :, i]
        mx = -np.inf
        for a in range(A):
            v = xs[a]
            if v > mx:
                mx = v
        mx32 = np.float32(mx)
        s = 0.0
        for a in range(A):
            e = np.exp(xs[a] - mx32)
            os_[a] = e
            s += e
        inv = np.float32(1.0 / s)
        for a in range(A):
            os_[a] = os_[a] * inv
