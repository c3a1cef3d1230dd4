"""Phase-split padded input for the register-tiled conv (conv_tiled.py; int8dot uses the offsets).

For strides (sh, sw) the zero-padded image of each channel is split into sh*sw phase planes
of Hq x Wq: plane (a, b) holds padded pixel (i*sh + a, j*sw + b) at (i, j). A tap (c, kh, kw)
then reads one plane at a fixed shift, so a strided or dilated conv becomes a stride-1 walk
(see kernels/conv_tiled.py). ``tap_offsets`` gives each tap's offset and which planes are
read; ``fill_phases`` writes the planes that are.
"""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


@njit(**_OPTS)
def phase_grid(OH, OW, KH, KW, sh, sw, dh, dw):
    """(Hq, Wq): the size of each phase plane, i.e. of the padded-width grid the kernels walk:
    enough padded rows / columns for OH x OW outputs of a KH x KW kernel, split by stride.
    Callable from Python (scratch sizes, the cost model) and from njit drivers."""
    hp = (OH - 1) * sh + (KH - 1) * dh + 1
    wp = (OW - 1) * sw + (KW - 1) * dw + 1
    return (hp + sh - 1) // sh, (wp + sw - 1) // sw


@njit(**_OPTS)
def tap_offsets(nc, KH, KW, sh, sw, dh, dw, Hq, Wq):
    """(koff, used) for nc channels (or channel groups) of phase planes Hq x Wq.

    Tap k = (c, kh, kw) reads plane ((kh*dh) % sh, (kw*dw) % sw) of channel c shifted by
    ((kh*dh) // sh, (kw*dw) // sw): koff[k] is its offset in the phase-split scratch, whose
    channels are sh*sw planes each. used[a*sw + b] is 1 for the planes some tap reads.
    Used by kernels/int8dot.py too (channels in groups of 4 there).
    """
    plane = Hq * Wq
    cplane = sh * sw * plane
    used = np.zeros(sh * sw, np.int64)
    koff = np.empty(nc * KH * KW, np.int64)
    k = 0
    for c in range(nc):
        for kh in range(KH):
            a = (kh * dh) % sh
            r = (kh * dh) // sh
            for kw in range(KW):
                b = (kw * dw) % sw
                s = (kw * dw) // sw
                used[a * sw + b] = 1
                koff[k] = c * cplane + (a * sw + b) * plane + r * Wq + s
                k += 1
    return koff, used


@njit(inline="always", **_OPTS)
def fill_pair(xn, xf, q, sh, pt, pl, Hq, Wq):
    """Width stride 2: both column phases (planes 2q, 2q+1) of channel c = q // sh, row phase a.

    NOTE: a loop reading only src[2*u] is vectorized with gathers; reading src[2*u] and
    src[2*u + 1] together is a full interleave group: wide loads + vpermt2ps, ~3x faster.
    """
    C, H, W = xn.shape
    plane = Hq * Wq
    zero = np.float32(0.0)
    c = q // sh
    a = q - c * sh
    # padded column 2u + pl: even source columns land in phase pl % 2, odd ones in the other
    jE = pl // 2
    jO = (pl + 1) // 2
    # source columns that land inside the planes: nE even ones, nO odd ones (nE >= nO:
    # jE <= jO and (W + 1) // 2 >= W // 2); the first nu of each are copied in pairs
    nE = min((W + 1) // 2, Wq - jE)
    nO = min(W // 2, Wq - jO)
    nu = min(nE, nO)
    d0 = xf[2 * q * plane:(2 * q + 1) * plane]
    d1 = xf[(2 * q + 1) * plane:(2 * q + 2) * plane]
    for j in range(plane):
        d0[j] = zero
        d1[j] = zero
    dE = d0
    dO = d1
    if pl % 2 == 1:
        dE = d1
        dO = d0
    ilo = 0
    if pt > a:
        ilo = (pt - a + sh - 1) // sh
    ihi = 0
    if H - 1 + pt - a >= 0:
        ihi = (H - 1 + pt - a) // sh + 1
    ihi = min(ihi, Hq)
    for i in range(ilo, ihi):
        src = xn[c, i * sh + a - pt]
        e = dE[i * Wq + jE:]
        o = dO[i * Wq + jO:]
        for u in range(nu):
            e[u] = src[2 * u]
            o[u] = src[2 * u + 1]
        # the even columns past the last pair: the last column of an odd W, and (odd pl)
        # the one whose odd partner falls outside its plane
        for u in range(nu, nE):
            e[u] = src[2 * u]


@njit(**_OPTS)
def fill_plane(xn, xf, q, sh, sw, pt, pl, Hq, Wq, used):
    """Phase plane q = (c*sh + a)*sw + b of xf (see fill_phases)."""
    C, H, W = xn.shape
    nph = sh * sw
    plane = Hq * Wq
    zero = np.float32(0.0)
    c = q // nph
    ab = q - c * nph
    if sw == 2:
        # both column phases at once (wide loads); skipped when no tap reads either
        # (1x1 stride 2 reads only row phase 0: half the planes)
        if ab % 2 == 0 and (used[ab] != 0 or used[ab + 1] != 0):
            fill_pair(xn, xf, q // 2, sh, pt, pl, Hq, Wq)
        return
    if used[ab] == 0:
        return
    a = ab // sw
    b = ab - a * sw
    dst = xf[q * plane:(q + 1) * plane]
    # NOTE: zero the plane in one flat pass (a memset), then copy the rows in: short
    # rows make per-row zero / copy / zero loops cost ~4x numpy's padded copy
    for j in range(plane):
        dst[j] = zero
    # columns j whose source column j*sw + b - pl lies in [0, W)
    jlo = 0
    if pl > b:
        jlo = (pl - b + sw - 1) // sw
    jhi = 0
    if W - 1 + pl - b >= 0:
        jhi = (W - 1 + pl - b) // sw + 1
    jlo = min(jlo, Wq)
    jhi = min(max(jhi, jlo), Wq)
    nj = jhi - jlo
    if nj <= 0:
        return
    c0 = jlo * sw + b - pl
    # rows i whose source row i*sh + a - pt lies in [0, H)
    ilo = 0
    if pt > a:
        ilo = (pt - a + sh - 1) // sh
    ihi = 0
    if H - 1 + pt - a >= 0:
        ihi = (H - 1 + pt - a) // sh + 1
    ihi = min(ihi, Hq)
    for i in range(ilo, ihi):
        dm = dst[i * Wq + jlo:]
        src = xn[c, i * sh + a - pt, c0:]
        if sw == 1:
            for j in range(nj):
                dm[j] = src[j]
        else:
            for j in range(nj):
                dm[j] = src[j * sw]


@njit(parallel=True, **_OPTS)
def fill_phases(xn, xf, sh, sw, pt, pl, Hq, Wq, used):
    """xn (C,H,W) -> xf flat (C, sh, sw, Hq, Wq) + slack: zero-padded phase planes.

    Plane (a, b) of channel c holds padded pixel (i*sh + a, j*sw + b) at (i, j); planes with
    used[a*sw + b] == 0 (no tap reads them) are skipped. The slack after the planes is zeroed.
    """
    C = xn.shape[0]
    n = C * sh * sw
    # NOTE: fill_plane is a call, not inlined by Numba: the parfor passes then see one line
    for q in prange(n):
        fill_plane(xn, xf, q, sh, sw, pt, pl, Hq, Wq, used)
    tail = xf[n * Hq * Wq:]
    for j in range(tail.shape[0]):
        tail[j] = np.float32(0.0)
