"""Nearest-neighbour resize as a 4-D gather with one source-index array per axis."""

from numba import njit, prange

_OPTS = dict(cache=True, boundscheck=False)


@njit(parallel=True, **_OPTS)
def gather4(x, out, i0, i1, i2, i3):
    """x: 4-D fp32; out: 4-D C-contiguous; out[a, b, c, d] = x[i0[a], i1[b], i2[c], i3[d]]."""
    d0, d1, d2, d3 = out.shape
    for r in prange(d0 * d1 * d2):
        c = r % d2
        q = r // d2
        b = q % d1
        a = q // d1
        src = x[i0[a], i1[b], i2[c]]
        orow = out[a, b, c]
        for d in range(d3):
            orow[d] = src[i3[d]]
