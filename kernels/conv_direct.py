"""Direct (loop) fp32 convolution kernel, NCHW, with fused bias + activation epilogue.

Strategy: the input image is copied once per batch image into a zero-padded scratch
(``xpad``), so the tap loops need no bounds checks. Output channels are processed in
parallel (``prange`` over pairs of output channels); for each output row the innermost
loop runs over the contiguous output width, reading a contiguous (stride 1) or strided input row slice, so
LLVM vectorizes it with FMAs. Special paths: 3x3 with unit width-stride accumulates all
nine taps of one input channel in a single pass over the output row, for two output
channels at once (sharing the input loads); 1x1 accumulates four input channels per pass,
also two output channels at once. Everything else goes through the generic per-tap path.

The per-output-channel(-pair) compute (``conv_pair``) takes fp32 weight panels (Cg,KH,KW)
and is shared by every weight storage: here the panels are views of the fp32 weights; the
low-memory kernels (kernels/conv_lowmem.py) fill a small panel buffer per channel pair from
fp16 / int8 / int4 storage and call the same function.

This is the "correct, reasonably fast" baseline; register-tiled kernels live elsewhere.
"""

import numpy as np
from numba import njit, prange

from .epilogue import ACT_CLIP, ACT_NONE, ACT_RELU  # noqa: F401

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


def conv2d_scratch_shape(C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw):
    """Shape (C, Hp, Wp) of the zero-padded input scratch that conv2d_direct needs."""
    if OH <= 0 or OW <= 0:
        return (int(C), 0, 0)
    Hp = max(H + pt, (OH - 1) * sh + (KH - 1) * dh + 1)
    Wp = max(W + pl, (OW - 1) * sw + (KW - 1) * dw + 1)
    return (int(C), int(Hp), int(Wp))


@njit(parallel=True, **_OPTS)
def _fill_padded(xn, xpad, pt, pl):
    """xn (C,H,W) contiguous -> xpad (C,Hp,Wp): zero border, xn copied at offset (pt, pl)."""
    C, H, W = xn.shape
    Hp = xpad.shape[1]
    Wp = xpad.shape[2]
    zero = np.float32(0.0)
    for c in prange(C):
        for r in range(Hp):
            dst = xpad[c, r]
            ih = r - pt
            if ih >= 0 and ih < H:
                src = xn[c, ih]
                for j in range(pl):
                    dst[j] = zero
                d2 = dst[pl:]
                for j in range(W):
                    d2[j] = src[j]
                d3 = dst[pl + W:]
                for j in range(Wp - pl - W):
                    d3[j] = zero
            else:
                for j in range(Wp):
                    dst[j] = zero


@njit(**_OPTS)
def _epilogue(o, act, lo, hi):
    """o (OH,OW) contiguous output plane: in-place relu (act 1) or clip(lo, hi) (act 2)."""
    OH, OW = o.shape
    zero = np.float32(0.0)
    if act == ACT_RELU:
        for oh in range(OH):
            orow = o[oh]
            for ow in range(OW):
                v = orow[ow]
                orow[ow] = zero if v < zero else v
    elif act == ACT_CLIP:
        for oh in range(OH):
            orow = o[oh]
            for ow in range(OW):
                v = orow[ow]
                if v < lo:
                    v = lo
                if v > hi:
                    v = hi
                orow[ow] = v


@njit(**_OPTS)
def _conv_plane(xpad, wa, c0, o, sh, sw, dh, dw):
    """Accumulate into o (OH,OW) the conv of xpad[c0:c0+Cg] (C,Hp,Wp) with the weight panel wa (Cg,KH,KW)."""
    OH, OW = o.shape
    Cg, KH, KW = wa.shape
    if KH == 3 and KW == 3 and sw == 1:
        # all nine taps of one input channel per pass over an output row
        for ci in range(Cg):
            xp = xpad[c0 + ci]
            w00 = wa[ci, 0, 0]
            w01 = wa[ci, 0, 1]
            w02 = wa[ci, 0, 2]
            w10 = wa[ci, 1, 0]
            w11 = wa[ci, 1, 1]
            w12 = wa[ci, 1, 2]
            w20 = wa[ci, 2, 0]
            w21 = wa[ci, 2, 1]
            w22 = wa[ci, 2, 2]
            for oh in range(OH):
                orow = o[oh]
                r0 = xp[oh * sh]
                r1 = xp[oh * sh + dh]
                r2 = xp[oh * sh + 2 * dh]
                a0 = r0[dw:]
                a1 = r1[dw:]
                a2 = r2[dw:]
                b0 = r0[2 * dw:]
                b1 = r1[2 * dw:]
                b2 = r2[2 * dw:]
                for ow in range(OW):
                    orow[ow] += (w00 * r0[ow] + w01 * a0[ow] + w02 * b0[ow]
                                 + w10 * r1[ow] + w11 * a1[ow] + w12 * b1[ow]
                                 + w20 * r2[ow] + w21 * a2[ow] + w22 * b2[ow])
    elif KH == 1 and KW == 1 and sw == 1:
        # pointwise: four input channels per pass over an output row
        ci = 0
        while ci + 4 <= Cg:
            w0 = wa[ci, 0, 0]
            w1 = wa[ci + 1, 0, 0]
            w2 = wa[ci + 2, 0, 0]
            w3 = wa[ci + 3, 0, 0]
            x0 = xpad[c0 + ci]
            x1 = xpad[c0 + ci + 1]
            x2 = xpad[c0 + ci + 2]
            x3 = xpad[c0 + ci + 3]
            for oh in range(OH):
                orow = o[oh]
                ih = oh * sh
                r0 = x0[ih]
                r1 = x1[ih]
                r2 = x2[ih]
                r3 = x3[ih]
                for ow in range(OW):
                    orow[ow] += w0 * r0[ow] + w1 * r1[ow] + w2 * r2[ow] + w3 * r3[ow]
            ci += 4
        while ci < Cg:
            w0 = wa[ci, 0, 0]
            x0 = xpad[c0 + ci]
            for oh in range(OH):
                orow = o[oh]
                r0 = x0[oh * sh]
                for ow in range(OW):
                    orow[ow] += w0 * r0[ow]
            ci += 1
    elif sw == 1:
        for ci in range(Cg):
            xp = xpad[c0 + ci]
            for kh in range(KH):
                for kw in range(KW):
                    wv = wa[ci, kh, kw]
                    for oh in range(OH):
                        orow = o[oh]
                        xs = xp[oh * sh + kh * dh, kw * dw:]
                        for ow in range(OW):
                            orow[ow] += wv * xs[ow]
    else:
        for ci in range(Cg):
            xp = xpad[c0 + ci]
            for kh in range(KH):
                for kw in range(KW):
                    wv = wa[ci, kh, kw]
                    for oh in range(OH):
                        orow = o[oh]
                        # strided view: index with the plain range variable (no wraparound)
                        xs = xp[oh * sh + kh * dh, kw * dw::sw]
                        for ow in range(OW):
                            orow[ow] += wv * xs[ow]


@njit(**_OPTS)
def _conv3x3_pair(xpad, wa, wb, c0, o0, o1, sh, dh, dw):
    """3x3, width-stride 1: accumulate two output channels (planes o0, o1 (OH,OW); panels wa, wb (Cg,3,3)) from xpad[c0:c0+Cg] (C,Hp,Wp)."""
    OH, OW = o0.shape
    Cg = wa.shape[0]
    for ci in range(Cg):
        xp = xpad[c0 + ci]
        a00 = wa[ci, 0, 0]
        a01 = wa[ci, 0, 1]
        a02 = wa[ci, 0, 2]
        a10 = wa[ci, 1, 0]
        a11 = wa[ci, 1, 1]
        a12 = wa[ci, 1, 2]
        a20 = wa[ci, 2, 0]
        a21 = wa[ci, 2, 1]
        a22 = wa[ci, 2, 2]
        b00 = wb[ci, 0, 0]
        b01 = wb[ci, 0, 1]
        b02 = wb[ci, 0, 2]
        b10 = wb[ci, 1, 0]
        b11 = wb[ci, 1, 1]
        b12 = wb[ci, 1, 2]
        b20 = wb[ci, 2, 0]
        b21 = wb[ci, 2, 1]
        b22 = wb[ci, 2, 2]
        for oh in range(OH):
            p0 = o0[oh]
            p1 = o1[oh]
            r0 = xp[oh * sh]
            r1 = xp[oh * sh + dh]
            r2 = xp[oh * sh + 2 * dh]
            s0 = r0[dw:]
            s1 = r1[dw:]
            s2 = r2[dw:]
            t0 = r0[2 * dw:]
            t1 = r1[2 * dw:]
            t2 = r2[2 * dw:]
            for ow in range(OW):
                x00 = r0[ow]
                x01 = s0[ow]
                x02 = t0[ow]
                x10 = r1[ow]
                x11 = s1[ow]
                x12 = t1[ow]
                x20 = r2[ow]
                x21 = s2[ow]
                x22 = t2[ow]
                p0[ow] += (a00 * x00 + a01 * x01 + a02 * x02 + a10 * x10 + a11 * x11
                           + a12 * x12 + a20 * x20 + a21 * x21 + a22 * x22)
                p1[ow] += (b00 * x00 + b01 * x01 + b02 * x02 + b10 * x10 + b11 * x11
                           + b12 * x12 + b20 * x20 + b21 * x21 + b22 * x22)


@njit(**_OPTS)
def _conv1x1_pair(xpad, wa, wb, c0, o0, o1, sh):
    """1x1, width-stride 1: accumulate two output channels (planes o0, o1 (OH,OW); panels wa, wb (Cg,1,1)) from xpad[c0:c0+Cg] (C,Hp,Wp)."""
    OH, OW = o0.shape
    Cg = wa.shape[0]
    ci = 0
    while ci + 4 <= Cg:
        a0 = wa[ci, 0, 0]
        a1 = wa[ci + 1, 0, 0]
        a2 = wa[ci + 2, 0, 0]
        a3 = wa[ci + 3, 0, 0]
        b0 = wb[ci, 0, 0]
        b1 = wb[ci + 1, 0, 0]
        b2 = wb[ci + 2, 0, 0]
        b3 = wb[ci + 3, 0, 0]
        x0 = xpad[c0 + ci]
        x1 = xpad[c0 + ci + 1]
        x2 = xpad[c0 + ci + 2]
        x3 = xpad[c0 + ci + 3]
        for oh in range(OH):
            p0 = o0[oh]
            p1 = o1[oh]
            ih = oh * sh
            r0 = x0[ih]
            r1 = x1[ih]
            r2 = x2[ih]
            r3 = x3[ih]
            for ow in range(OW):
                v0 = r0[ow]
                v1 = r1[ow]
                v2 = r2[ow]
                v3 = r3[ow]
                p0[ow] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                p1[ow] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
        ci += 4
    while ci < Cg:
        a0 = wa[ci, 0, 0]
        b0 = wb[ci, 0, 0]
        x0 = xpad[c0 + ci]
        for oh in range(OH):
            p0 = o0[oh]
            p1 = o1[oh]
            r0 = x0[oh * sh]
            for ow in range(OW):
                v0 = r0[ow]
                p0[ow] += a0 * v0
                p1[ow] += b0 * v0
        ci += 1


@njit(**_OPTS)
def _fill_bias(o, b):
    """o (OH,OW) contiguous output plane <- b."""
    OH, OW = o.shape
    for oh in range(OH):
        orow = o[oh]
        for ow in range(OW):
            orow[ow] = b


@njit(**_OPTS)
def conv_pair(xpad, wa, wb, two, ca, cb, o0, o1, ba, bb, sh, sw, dh, dw, act, lo, hi):
    """The shared compute of every direct-conv kernel, whatever the weight storage.

    Output planes o0 (and o1 when ``two``) (OH,OW) <- bias + conv of xpad (C,Hp,Wp) with the
    fp32 weight panels wa / wb (Cg,KH,KW), reading input channels [ca, ca+Cg) / [cb, cb+Cg),
    then the activation epilogue. A pair in the same group (ca == cb) shares every input load
    on the 3x3 / 1x1 width-stride-1 paths. When not ``two``, wb / o1 are ignored (pass wa / o0).
    """
    _fill_bias(o0, ba)
    Cg, KH, KW = wa.shape
    if two:
        _fill_bias(o1, bb)
        if ca == cb and sw == 1 and KH == 3 and KW == 3:
            _conv3x3_pair(xpad, wa, wb, ca, o0, o1, sh, dh, dw)
        elif ca == cb and sw == 1 and KH == 1 and KW == 1:
            _conv1x1_pair(xpad, wa, wb, ca, o0, o1, sh)
        else:
            _conv_plane(xpad, wa, ca, o0, sh, sw, dh, dw)
            _conv_plane(xpad, wb, cb, o1, sh, sw, dh, dw)
        _epilogue(o1, act, lo, hi)
    else:
        _conv_plane(xpad, wa, ca, o0, sh, sw, dh, dw)
    _epilogue(o0, act, lo, hi)


@njit(parallel=True, **_OPTS)
def conv2d_direct(x, w, bias, out, xpad, sh, sw, pt, pl, dh, dw, groups, act, act_lo, act_hi):
    """x (N,C,H,W), w (M,C/groups,KH,KW), bias (M,), out (N,M,OH,OW), xpad (C,Hp,Wp) scratch; all fp32 C-contiguous."""
    N = x.shape[0]
    M = w.shape[0]
    Cg = w.shape[1]
    OH = out.shape[2]
    OW = out.shape[3]
    Mg = M // groups if groups > 0 else M
    lo = np.float32(act_lo)
    hi = np.float32(act_hi)
    if OH == 0 or OW == 0 or M == 0:
        return
    npairs = (M + 1) // 2
    for n in range(N):
        _fill_padded(x[n], xpad, pt, pl)
        # output channels two at a time: a pair in the same group shares every input load;
        # fp32 weights are their own panel (views, no copy)
        for mp in prange(npairs):
            m0 = 2 * mp
            m1 = min(m0 + 1, M - 1)
            conv_pair(xpad, w[m0], w[m1], m0 + 1 < M, (m0 // Mg) * Cg, (m1 // Mg) * Cg,
                      out[n, m0], out[n, m1], bias[m0], bias[m1], sh, sw, dh, dw, act, lo, hi)
