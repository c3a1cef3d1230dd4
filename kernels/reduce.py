"""Mean reduction: fp32 in, float64 accumulation, fp32 out."""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(parallel=True, **_OPTS)
def mean_middle(x, out):
    """x: (O, R, I) fp32 C-contiguous; out: (O, I). out[o, i] = mean over r of x[o, r, i]."""
    O, R, I = x.shape
    inv = 1.0 / R if R > 0 else np.nan
    for o in prange(O):
        acc = np.zeros(I, np.float64)
        for r in range(R):
            row = x[o, r]
            for i in range(I):
                acc[i] += row[i]
        orow = out[o]
        for i in range(I):
            orow[i] = np.float32(acc[i] * inv)
