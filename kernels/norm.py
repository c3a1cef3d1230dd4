"""Normalization kernels: layer norm over trailing axes or over channels, group norm.

Statistics are taken in two passes (mean, then the mean of squared deviations) with
float64 accumulators; outputs are fp32. Rows (layer norm), pixel blocks (layer norm
over channels) and (batch, group) pairs (group norm) run in parallel.
"""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)

_BLOCK = 64          # pixels per task in layer_norm_channels


@njit(parallel=True, **_OPTS)
def layer_norm_rows(x, out, scale, bias, eps):
    """x, out: (R, L) fp32; scale, bias: (L,) fp32. Each row normalized on its own."""
    R, L = x.shape
    for r in prange(R):
        xr = x[r]
        orow = out[r]
        s = 0.0
        for j in range(L):
            s += xr[j]
        mean = s / L
        v = 0.0
        for j in range(L):
            d = xr[j] - mean
            v += d * d
        inv = 1.0 / np.sqrt(v / L + eps)
        for j in range(L):
            orow[j] = np.float32((xr[j] - mean) * inv * scale[j] + bias[j])


@njit(parallel=True, **_OPTS)
def layer_norm_channels(x, out, scale, bias, eps):
    """x, out: (N, C, S) fp32; scale, bias: (C,). Each (n, s) normalized over C."""
    N, C, S = x.shape
    nb = (S + _BLOCK - 1) // _BLOCK
    for t in prange(N * nb):
        n = t // nb
        s0 = (t % nb) * _BLOCK
        w = min(S, s0 + _BLOCK) - s0
        mean = np.zeros(_BLOCK)
        var = np.zeros(_BLOCK)
        for c in range(C):
            xr = x[n, c]
            for k in range(w):
                mean[k] += xr[s0 + k]
        for k in range(w):
            mean[k] /= C
        for c in range(C):
            xr = x[n, c]
            for k in range(w):
                d = xr[s0 + k] - mean[k]
                var[k] += d * d
        for k in range(w):
            var[k] = 1.0 / np.sqrt(var[k] / C + eps)
        for c in range(C):
            xr = x[n, c]
            orow = out[n, c]
            sc = scale[c]
            b = bias[c]
            for k in range(w):
                orow[s0 + k] = np.float32((xr[s0 + k] - mean[k]) * var[k] * sc + b)


@njit(parallel=True, **_OPTS)
def group_norm(x, out, scale, bias, groups, eps):
    """x, out: (N, C, S) fp32, C a multiple of groups; scale, bias: (C,) per channel or
    (groups,) per group. Each (n, group) normalized over its C/groups channels x S."""
    N, C, S = x.shape
    cg = C // groups
    per_group = scale.shape[0] != C
    count = cg * S
    for t in prange(N * groups):
        n = t // groups
        g = t % groups
        c0 = g * cg
        s = 0.0
        for c in range(c0, c0 + cg):
            xr = x[n, c]
            for k in range(S):
                s += xr[k]
        mean = s / count
        v = 0.0
        for c in range(c0, c0 + cg):
            xr = x[n, c]
            for k in range(S):
                d = xr[k] - mean
                v += d * d
        inv = 1.0 / np.sqrt(v / count + eps)
        for c in range(c0, c0 + cg):
            sc = scale[g] if per_group else scale[c]
            b = bias[g] if per_group else bias[c]
            xr = x[n, c]
            orow = out[n, c]
            for k in range(S):
                orow[k] = np.float32((xr[k] - mean) * inv * sc + b)
