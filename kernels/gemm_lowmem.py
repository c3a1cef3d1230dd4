"""gemm_nt with weights kept as stored (fp16 bits, int8, int4): memory mode "low".

Same math as ``kernels.gemm.gemm_nt`` (out = alpha * a @ bt.T + beta * c) and the same
inner loops: both call ``kernels.gemm.gemm_panel`` (4 output columns per pass sharing each
loaded element of a row of a, dot products vectorized with 'reassoc').
A task is a block of 4 output columns x a range of rows of a: its 4 weight rows are decoded
into a small fp32 panel (4, K) (allocated in the prange body, hoisted by Numba to once per
thread chunk), then every row of a in the range runs against that panel. Rows are split into
ranges only when there are few column blocks (small N), so each block is normally decoded
once per call. The fp32 weight matrix is never built. Layouts and decoders: see
kernels/conv_lowmem.py (rows_fp16 / rows_int8 / rows_int4).
"""

import numpy as np
from numba import njit, prange

from .conv_lowmem import KIND_FP16, KIND_INT4, KIND_INT8, NO_ZERO, load_rows
from .gemm import NB, gemm_panel

_OPTS = dict(cache=True, error_model="numpy", boundscheck=False)
_FM = {"contract"}

_MIN_TASKS = 32  # split rows of a when there are fewer column blocks than this
_NO_SCALE = np.zeros((0, 0), np.float32)


@njit(parallel=True, fastmath=_FM, **_OPTS)
def _gemm_lowmem(kind, a, wsrc, scale, zero, c, out, alpha, beta, has_c):
    """The one driver for every storage: per task (4 columns x a row range) decode 4 rows, run gemm_panel."""
    M, K = a.shape
    N = wsrc.shape[0]
    if M == 0 or N == 0:
        return
    fa = np.float32(alpha)
    fb = np.float32(beta)
    nblk = (N + NB - 1) // NB
    # split the rows too when there are too few column blocks to keep the threads busy
    nrc = 1
    if nblk < _MIN_TASKS:
        nrc = min(M, (_MIN_TASKS + nblk - 1) // nblk)
    rpc = (M + nrc - 1) // nrc
    nrc = (M + rpc - 1) // rpc
    for t in prange(nblk * nrc):
        pan = np.empty((NB, K), np.float32)  # hoisted by Numba: one per thread chunk
        jb = t // nrc
        rc = t % nrc
        j0 = jb * NB
        nj = min(NB, N - j0)
        load_rows(kind, wsrc, scale, zero, j0, nj, pan)
        gemm_panel(a, pan, nj, rc * rpc, min(M, (rc + 1) * rpc), j0, c, out, fa, fb, has_c)


@njit(**_OPTS)
def gemm_nt_fp16w(a, bt16, c, out, alpha, beta, has_c):
    """As gemm_nt, with bt16 uint16 (N, K): the bits of fp16 weights."""
    _gemm_lowmem(KIND_FP16, a, bt16, _NO_SCALE, NO_ZERO, c, out, alpha, beta, has_c)


@njit(**_OPTS)
def gemm_nt_int8w(a, q, scale, zero, c, out, alpha, beta, has_c):
    """As gemm_nt, with int8 q (N, K), scale (N, nb), zero (N, nb) or (0, 0) (symmetric)."""
    _gemm_lowmem(KIND_INT8, a, q, scale, zero, c, out, alpha, beta, has_c)


@njit(**_OPTS)
def gemm_nt_int4w(a, q, scale, zero, c, out, alpha, beta, has_c):
    """As gemm_nt_int8w, with q uint8 (N, (K+1)//2): packed 4-bit values, low nibble first."""
    _gemm_lowmem(KIND_INT4, a, q, scale, zero, c, out, alpha, beta, has_c)
