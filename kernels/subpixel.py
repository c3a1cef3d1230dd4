"""Interleaving a ConvTranspose's sub-pixel phase outputs into its output (backends/cpu_convt).

Phase (rh, rw) of a stride (sh, sw) ConvTranspose computed output rows rh, rh+sh, ... and
columns rw, rw+sw, ... as a dense (N, M, Hp, Wp) map; ``interleave`` writes every output
row once, in parallel over (n, m, row), reading the sw phases of that row's phase row from
one flat buffer. A phase with no taps (offset -1) contributes the bias alone.
"""
import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, error_model="numpy", boundscheck=False)


@njit(parallel=True, **_OPTS)
def interleave(flat, offs, hp, wp, bias, out, sh, sw):
    """out[n, m, rh + i*sh, rw + j*sw] = phase (rh, rw)[n, m, i, j].

    flat: float32 1-D buffer holding the phases; offs[p] (p = rh*sw + rw): element offset
    of phase p, a C-contiguous (N, M, hp[p], wp[p]) block, or -1 for a bias-only phase."""
    n_, m_, oh, ow = out.shape
    for r in prange(n_ * m_ * oh):
        oy = r % oh
        nm = r // oh
        m = nm % m_
        rh = oy % sh
        i = oy // sh
        row = out.reshape(n_ * m_, oh, ow)[nm, oy]
        if sw == 2 and offs[rh * 2] >= 0 and offs[rh * 2 + 1] >= 0:
            # the common case (2x upsampling): two phase rows zipped, which LLVM vectorizes
            # as interleaved stores
            a0 = offs[rh * 2] + (nm * hp[rh * 2] + i) * wp[rh * 2]
            b0 = offs[rh * 2 + 1] + (nm * hp[rh * 2 + 1] + i) * wp[rh * 2 + 1]
            half = ow // 2
            for j in range(half):
                row[2 * j] = flat[a0 + j]
                row[2 * j + 1] = flat[b0 + j]
            if ow % 2:
                row[ow - 1] = flat[a0 + half]
            continue
        for rw in range(sw):
            p = rh * sw + rw
            count = (ow - rw + sw - 1) // sw
            o = offs[p]
            if o < 0:
                for j in range(count):
                    row[rw + j * sw] = bias[m]
            else:
                base = o + (nm * hp[p] + i) * wp[p]
                for j in range(count):
                    row[rw + j * sw] = flat[base + j]
