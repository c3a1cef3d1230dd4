"""fp32 pooling kernels, NCHW. Windows are clipped to the input, so padding never wins."""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(**_OPTS)
def _ow_range(OW, W, sw, off):
    """[lo, hi) of ow such that 0 <= ow*sw + off < W (sw >= 1)."""
    # ow*sw + off >= 0  <=>  ow >= ceil(-off / sw)
    if off >= 0:
        lo = 0
    else:
        lo = (-off + sw - 1) // sw
    # ow*sw + off <= W - 1  <=>  ow <= floor((W - 1 - off) / sw)
    top = W - 1 - off
    if top < 0:
        hi = 0
    else:
        hi = top // sw + 1
    if hi > OW:
        hi = OW
    if lo > hi:
        lo = hi
    return lo, hi


@njit(inline="always", **_OPTS)
def _vmax(cur, v):
    """max that propagates NaN from v, like numpy's max."""
    return v if (v > cur or v != v) else cur


@njit(parallel=True, **_OPTS)
def max_pool2d(x, out, kh, kw, sh, sw, pt, pl, dh, dw):
    """x (N,C,H,W), out (N,C,OH,OW) fp32 C-contiguous; cells outside the input are ignored (empty window -> -inf).

    Per input row of a window: the row is copied once into a -inf padded row t, which for
    sw > 1 is split into sw phase rows (phase b holds t[u*sw + b]); every tap j then reads
    one phase row contiguously at offset (j*dw) // sw. NOTE: reading t[ow*sw + j] directly
    compiles to gathers (~8x slower for 3x3 stride 2); the phase split reads t[2u] and
    t[2u+1] together, which LLVM vectorizes with wide loads and permutes.
    """
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    ninf = np.float32(-np.inf)
    # padded columns 0 .. Wt-1 (input column q - pl), rounded up to whole phases
    Wp = OW + ((kw - 1) * dw) // sw + 1
    Wt = Wp * sw
    for p in prange(N * C):
        t = np.empty(Wt, np.float32)    # hoisted by Numba: one pair per thread chunk
        ph = np.empty(Wt, np.float32)
        n = p // C
        c = p % C
        xp = x[n, c]
        op = out[n, c]
        for oh in range(OH):
            orow = op[oh]
            for ow in range(OW):
                orow[ow] = ninf
            for i in range(kh):
                ih = oh * sh - pt + i * dh
                if ih < 0 or ih >= H:
                    continue
                xrow = xp[ih]
                # t[q] = xrow[q - pl] inside the input, -inf outside
                q0 = min(max(pl, 0), Wt)
                q1 = min(max(pl + W, q0), Wt)
                for q in range(q0):
                    t[q] = ninf
                src = xrow[q0 - pl:]
                dst = t[q0:]
                for q in range(q1 - q0):
                    dst[q] = src[q]
                for q in range(q1, Wt):
                    t[q] = ninf
                if sw == 1:
                    rows = t
                elif sw == 2:
                    e = ph[:Wp]
                    o = ph[Wp:]
                    for u in range(Wp):
                        e[u] = t[2 * u]
                        o[u] = t[2 * u + 1]
                    rows = ph
                else:
                    for b in range(sw):
                        d = ph[b * Wp:]
                        for u in range(Wp):
                            d[u] = t[u * sw + b]
                    rows = ph
                for j in range(kw):
                    r = j * dw
                    xs = rows[(r % sw) * Wp + r // sw:]
                    for ow in range(OW):
                        orow[ow] = _vmax(orow[ow], xs[ow])


@njit(parallel=True, **_OPTS)
def avg_pool2d(x, out, kh, kw, sh, sw, pt, pl, pb, pr, count_include_pad):
    """x (N,C,H,W), out (N,C,OH,OW) fp32 C-contiguous; divisor: valid cells, or cells inside [-pt,H+pb)x[-pl,W+pr) if count_include_pad."""
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    zero = np.float32(0.0)
    for p in prange(N * C):
        n = p // C
        c = p % C
        xp = x[n, c]
        op = out[n, c]
        for oh in range(OH):
            orow = op[oh]
            for ow in range(OW):
                orow[ow] = zero
            h0 = oh * sh - pt
            for i in range(kh):
                ih = h0 + i
                if ih < 0 or ih >= H:
                    continue
                xrow = xp[ih]
                for j in range(kw):
                    off = j - pl
                    lo, hi = _ow_range(OW, W, sw, off)
                    if hi <= lo:
                        continue
                    xs = xrow[lo * sw + off::sw]
                    os_ = orow[lo:hi]
                    for k in range(hi - lo):
                        os_[k] += xs[k]
            # rows counted by the divisor
            if count_include_pad != 0:
                hlo = -pt
                hhi = H + pb
            else:
                hlo = 0
                hhi = H
            ch = min(h0 + kh, hhi) - max(h0, hlo)
            if count_include_pad != 0:
                wlo = -pl
                whi = W + pr
            else:
                wlo = 0
                whi = W
            for ow in range(OW):
                w0 = ow * sw - pl
                cw = min(w0 + kw, whi) - max(w0, wlo)
                orow[ow] = orow[ow] / np.float32(ch * cw)


@njit(parallel=True, **_OPTS)
def global_avg_pool(x, out):
    """x (R, S) fp32 C-contiguous (R = N*C, S = H*W), out (R,) = mean over S (float64 accumulation)."""
    R, S = x.shape
    for r in prange(R):
        xr = x[r]
        s = 0.0
        for i in range(S):
            s += np.float64(xr[i])
        out[r] = np.float32(s / S)
