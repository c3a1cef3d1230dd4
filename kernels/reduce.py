"""Reductions over the middle axis of an (O, R, I) view: mean, sum, max, L2 norm, sum of
squares, argmax.

fp32 in, float64 accumulation, fp32 out."""

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


RED_SUM = 0
RED_MAX = 1
RED_L2 = 2
RED_SUMSQ = 3


@njit(parallel=True, **_OPTS)
def reduce_middle(x, out, op):
    """x: (O, R, I) fp32 C-contiguous; out: (O, I). Over r: RED_SUM the sum, RED_MAX the
    maximum (NaN if any is NaN; -inf when R is 0), RED_L2 sqrt of the sum of squares,
    RED_SUMSQ the sum of squares. Sums accumulate in float64."""
    O, R, I = x.shape
    for o in prange(O):
        acc = np.zeros(I, np.float64)
        if op == RED_MAX:
            acc[:] = -np.inf
        for r in range(R):
            row = x[o, r]
            if op == RED_SUM:
                for i in range(I):
                    acc[i] += row[i]
            elif op == RED_L2 or op == RED_SUMSQ:
                for i in range(I):
                    v = np.float64(row[i])
                    acc[i] += v * v
            else:
                for i in range(I):
                    v = np.float64(row[i])
                    a = acc[i]
                    if a == a and (v > a or v != v):
                        acc[i] = v
        orow = out[o]
        if op == RED_L2:
            for i in range(I):
                orow[i] = np.float32(np.sqrt(acc[i]))
        else:
            for i in range(I):
                orow[i] = np.float32(acc[i])


@njit(parallel=True, **_OPTS)
def argmax_middle(x, out, last):
    """x: (O, R, I) fp32 C-contiguous, R >= 1; out: (O, I) the index over r of the largest
    value as float32: the first one, or the last one when ``last``; a NaN counts as larger
    than any number (numpy's argmax)."""
    O, R, I = x.shape
    for o in prange(O):
        best = x[o, 0].copy()
        idx = np.zeros(I, np.int64)
        for r in range(1, R):
            row = x[o, r]
            for i in range(I):
                v = row[i]
                b = best[i]
                if b != b:
                    take = last and v != v
                elif v != v:
                    take = True
                else:
                    take = v > b or (last and v == b)
                if take:
                    best[i] = v
                    idx[i] = r
        orow = out[o]
        for i in range(I):
            orow[i] = np.float32(idx[i])
