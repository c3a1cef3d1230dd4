"""fp32 GEMM kernels written as loops (numba's np.dot would need SciPy BLAS)."""

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, error_model="numpy", boundscheck=False)
# dot products are reductions: LLVM only vectorizes them when reassociation is allowed
_FM_DOT = {"contract", "reassoc"}
_FM = {"contract"}

NB = 4  # gemm_panel: columns of out computed together (reuses each loaded row of a)
_NCOL = 256  # matmul_batched: output columns per parallel tile


@njit(fastmath=_FM_DOT, **_OPTS)
def gemm_panel(a, pan, nj, i0, i1, j0, c, out, fa, fb, has_c):
    """out[i, j0:j0+nj] = fa * a[i] . pan[jj] (+ fb * c[i, j0+jj]) for i in [i0, i1); pan (>=nj, K) fp32."""
    K = a.shape[1]
    for i in range(i0, i1):
        ar = a[i]
        orow = out[i]
        if nj == NB:
            b0 = pan[0]
            b1 = pan[1]
            b2 = pan[2]
            b3 = pan[3]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            for k in range(K):
                av = ar[k]
                s0 += av * b0[k]
                s1 += av * b1[k]
                s2 += av * b2[k]
                s3 += av * b3[k]
            orow[j0] = fa * s0
            orow[j0 + 1] = fa * s1
            orow[j0 + 2] = fa * s2
            orow[j0 + 3] = fa * s3
        else:
            for jj in range(nj):
                br = pan[jj]
                s = np.float32(0.0)
                for k in range(K):
                    s += ar[k] * br[k]
                orow[j0 + jj] = fa * s
        if has_c:
            cr = c[i]
            for jj in range(nj):
                orow[j0 + jj] += fb * cr[j0 + jj]


@njit(parallel=True, fastmath=_FM_DOT, **_OPTS)
def gemm_nt(a, bt, c, out, alpha, beta, has_c):
    """a (M,K), bt (N,K) fp32 C-contiguous; c (M,N) any strides (zero ok, unused unless has_c); out (M,N). out = alpha*a@bt.T + beta*c."""
    M, K = a.shape
    N = bt.shape[0]
    fa = np.float32(alpha)
    fb = np.float32(beta)
    nblk = (N + NB - 1) // NB
    for t in prange(M * nblk):
        i = t // nblk
        j0 = (t % nblk) * NB
        nj = min(NB, N - j0)
        gemm_panel(a, bt[j0:j0 + nj], nj, i, i + 1, j0, c, out, fa, fb, has_c)


@njit(parallel=True, fastmath=_FM, **_OPTS)
def matmul_batched(a, b, out):
    """a (B,M,K), b (B,K,N) fp32 views (zero strides along B allowed); out (B,M,N) C-contiguous. out[i] = a[i] @ b[i]."""
    B, M, K = a.shape
    N = b.shape[2]
    zero = np.float32(0.0)
    # tiles: one output row x a block of _NCOL columns (keeps both threads busy when B*M is small)
    ncb = (N + _NCOL - 1) // _NCOL
    for t in prange(B * M * ncb):
        r = t // ncb
        j0 = (t % ncb) * _NCOL
        j1 = min(j0 + _NCOL, N)
        bi = r // M
        i = r % M
        orow = out[bi, i, j0:j1]
        nj = j1 - j0
        for j in range(nj):
            orow[j] = zero
        ar = a[bi, i]
        bb = b[bi]
        for k in range(K):
            av = ar[k]
            br = bb[k, j0:j1]
            for j in range(nj):
                orow[j] += av * br[j]
