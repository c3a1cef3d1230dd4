"""Winograd's transformed weights U made at each call from weights kept as stored (fp16,
int8, int4: memory=low), for conv2d_winograd_blocked (kernels/winograd_blocked.py).

A session in memory=low holds a 3x3 conv's weights as stored, in conv2d_blocked's row
order (kernels/blocked_weights.py). Holding U as well would cost (m+2)^2 / 9 times the
fp32 weights, so instead each call decodes one chunk of 64 output channels at a time and
writes that chunk's U rows into the scratch: U[t] = sum over the 9 taps of
kron(G, G)[t, tap] * w[tap], 16 output channels a vector. U then has exactly
``pack_winograd_blocked``'s layout (T packed 1x1 convs), up to float32 rounding (that
one sums in float64).
"""
import numpy as np
from numba import njit, prange

from .blocked_weights import decode_rows
from .conv_blocked import BLK, NCH, packed_size
from .winograd_blocked import _G

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)


def u_floats(w_shape, m):
    """Floats of U for weights (M, C, 3, 3) and output tile m."""
    M, C = int(w_shape[0]), int(w_shape[1])
    return (m + 2) ** 2 * packed_size((M, C, 1, 1), BLK)


_KRON = {m: np.kron(np.array(g), np.array(g)).astype(np.float32) for m, g in _G.items()}


@njit(parallel=True, **_OPTS)
def _u_chunks(kind, wq, scale_t, zero_t, rows, Mp, Cp, kron, U):
    T = kron.shape[0]
    K = 9 * Cp
    step = Mp * Cp
    nchunk = (Mp + NCH - 1) // NCH
    for q in prange(nchunk):
        m0 = q * NCH
        w16 = min(NCH, Mp - m0)
        dec = np.empty(K * w16, np.float32)
        # rows (tap, input channel) of this chunk, as float32
        decode_rows(kind, wq, scale_t, zero_t, rows, m0 * K, 0, K, w16, m0, dec)
        base = m0 * Cp
        # NOTE: flat arrays and uint64 offsets, no slice per row (a slice in this loop
        # costs reference counting: 10x slower); the j loop vectorizes, the taps unroll
        for c in range(Cp):
            for t in range(T):
                d = np.uint64(t * step + base + c * w16)
                for j in range(w16):
                    acc = np.float32(0.0)
                    for tap in range(9):
                        acc += kron[t, tap] * dec[np.uint64((tap * Cp + c) * w16 + j)]
                    U[d + np.uint64(j)] = acc


def u_from_stored(stored, w_shape, m, U):
    """U (u_floats(w_shape, m) float32) <- the transformed weights of ``stored`` (a
    StoredBlocked of 3x3 weights for blocked inputs: pack_stored_blocked(kept, 16, ...))."""
    M, C = int(w_shape[0]), int(w_shape[1])
    Mp, Cp = -(-M // BLK) * BLK, -(-C // BLK) * BLK
    if U.size < u_floats(w_shape, m) or tuple(w_shape[2:]) != (3, 3):
        raise ValueError(f"u_from_stored: {U.size} floats for U of w {tuple(w_shape)}, m={m}")
    _u_chunks(stored.kind, stored.wq, stored.scale_t, stored.zero_t, stored.rows, Mp, Cp,
              _KRON[m], U)
