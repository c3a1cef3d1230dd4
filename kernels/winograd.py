"""Winograd fp32 convolution for 3x3, stride 1, dilation 1, groups 1 (NCHW): F(2,3) and F(4,3).

An output tile of m x m pixels (m = 2 or 4) comes from an a x a input patch (a = m + 2)
as ``A^T [ (G g G^T) . (B^T d B) ] A``. Summed over input channels, the a*a element-wise
products are T = a*a independent GEMMs: for each transformed position t,
``O[t] (M x tiles) = U[t] (M x C) @ V[t] (C x tiles)``.

Layouts (fp32, C-contiguous):

- U, packed once by ``winograd_pack``: (T, MB, C, MRP), output channels in blocks of
  MRP = 16 (zero-padded): the micro-kernels broadcast 8 or 16 consecutive weights per
  input channel.
- V, per block of tiles: (C, T, Qp + JC), tiles contiguous; Qp is a multiple of 32 (16 for
  blocks of few tiles), and the JC spare columns take the input transform's full-vector
  writes past the last tile.
- O, per thread: (T, MRP, NR), one micro-tile of GEMM results.

Per image and per block of tiles (sized so V stays under about VCAP = 2 MiB), two steps:

1. input transform, one job per input channel. For each tile row and each chunk of JC = 16
   tiles: the a input rows (zero-padded into a stack buffer) are combined along H with
   B^T, split into m phases with AVX-512 permutes (``_deint``) so that tile j's columns
   m*j + s are contiguous vectors over j, then combined along W straight into V;
2. GEMM + output transform, one job per (channel block, tile sub-block): the
   register-tiled micro-kernel runs for each of the T positions (accumulators on the
   stack: 8 channels x 32 tiles; 16 x 16 when the block has few tiles and for a last
   partial sub-block of <= 16 tiles), then A^T O A + bias per channel, interleaved back
   to pixel order with permutes (``_inter``), copied to ``out``, and the residual add and
   activation applied on the contiguous output row piece.

All steps of all images and blocks run in one parallel region, in one of two modes:

- per-thread (``_run_blocks``), when every thread gets at least two blocks of VOWN bytes
  of V: a thread claims whole blocks from an atomic counter and runs their input transform
  and GEMM jobs itself, in V of its own slot, which stays in its core's L2;
- shared (``_run_jobs``), for maps with fewer tiles: threads claim numbered jobs from an
  atomic counter, and a step starts when every job before it is done, so both threads
  share every step whatever its size. OpenMP's end-of-region barrier (which waits
  milliseconds for a worker descheduled by a neighbour process) is paid once a call rather
  than twice a block.

Every transform loop runs on stack buffers (entry-block allocas) over a constant 16 or 32
lanes: LLVM then needs no runtime alias checks and never falls back to the scalar
remainder loop (rows of 14 tiles are shorter than one VF=16 vector iteration times its
interleave). Arrays are passed on without their NRT meminfo (``_borrow``), so slicing them
inside the parallel jobs costs no atomic refcount traffic between the cores.
"""

import numpy as np
from llvmlite import ir
from numba import carray, get_num_threads, njit, prange, types
from numba import config as _nb_config
from numba.core import cgutils
from numba.extending import intrinsic

from .atomics import fetch_add as _fetch_add
from .atomics import fetch_add_release as _fetch_add_release
from .atomics import load_acquire as _load_acquire

from .epilogue import ACT_CLIP, ACT_NONE, ACT_RELU  # noqa: F401
from .stack import stack_ptr_f32

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)

MRP = 16  # output channels per packed U block
MR = 8  # kernel A: 8 channels (broadcast) x NR tiles (two zmm)
NR = 32
NB = 16  # kernel B: 16 channels x 16 tiles, for blocks with few tiles
JC = 16  # tiles per input-transform chunk (one zmm)
VCAP = 2 * 2**20  # target bytes of V per block of tiles
VOWN = 2**19  # per-thread mode: bytes of V per block of tiles, kept in the claiming core's L2
_AL = 16  # scratch regions start on 64-byte boundaries (16 floats)

# stack buffer sizes: _stack_f32 needs a literal, so module constants
_NACC = 256  # MR * NR == NB * NB
_WD4 = 80  # input columns per chunk, m=4 (needs JC*4 + 2; 5 vectors)
_WD2 = 48  # m=2 (needs JC*2 + 2; 3 vectors)
_PH = 32  # stride of one phase row (needs JC + 1)
_ND4 = 6 * _WD4
_ND2 = 4 * _WD2
_NP4 = 6 * 4 * _PH
_NP2 = 4 * 2 * _PH
_NT4 = 24 * NR
_NY4 = 16 * NR
_NT2 = 8 * NR
_NY2 = 4 * NR
_NR4 = 4 * 4 * NR
_NR2 = 2 * 2 * NR


# ------------------------------------------------------------------------- intrinsics


@intrinsic
def _borrow(typingctx, arr):
    """The same array view without its meminfo: slicing it costs no NRT refcount atomics.

    NOTE: every slice of an NRT array increments and decrements its meminfo's refcount
    with an atomic add; with both threads slicing the same arrays that cache line
    ping-pongs between the cores. Only for views used while the caller holds the array.
    """
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        src = context.make_array(arr)(context, builder, value=args[0])
        dst = context.make_array(arr)(context, builder)
        for f in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(dst, f, getattr(src, f))
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        dst.parent = cgutils.get_null_value(dst.parent.type)
        return dst._getvalue()

    return arr(arr), codegen


@intrinsic
def _sched_yield(typingctx):
    """libc sched_yield(): give the core away while waiting on a descheduled thread."""
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"), [])
        return context.get_dummy_value()

    return types.void(), codegen


_V16 = ir.VectorType(ir.FloatType(), 16)
_I64 = ir.IntType(64)


def _mask(idx):
    i32 = ir.IntType(32)
    return ir.Constant(ir.VectorType(i32, 16), [ir.Constant(i32, i) for i in idx])


def _vptr(context, builder, aty, arr, idx):
    a = context.make_array(aty)(context, builder, arr)
    return builder.bitcast(cgutils.gep(builder, a.data, idx), _V16.as_pointer())


@intrinsic
def _deint(typingctx, src, si, dst, di, ds, f):
    """dst[di + p*ds + q] = src[si + f*q + p] for q < 16, p < f (f = 2 or 4): f*16 floats in."""
    if not isinstance(f, types.IntegerLiteral) or f.literal_value not in (2, 4):
        return None
    fac = f.literal_value

    def codegen(context, builder, sig, args):
        aty, dty = sig.args[0], sig.args[2]
        v = [builder.load(_vptr(context, builder, aty, args[0],
                                builder.add(args[1], ir.Constant(_I64, 16 * k))), align=4)
             for k in range(fac)]
        for p in range(fac):
            if fac == 2:
                r = builder.shuffle_vector(v[0], v[1], _mask([p + 2 * k for k in range(16)]))
            else:
                lo = [p + 4 * k for k in range(8)]
                ab = builder.shuffle_vector(v[0], v[1], _mask(lo + lo))
                cd = builder.shuffle_vector(v[2], v[3], _mask(lo + lo))
                r = builder.shuffle_vector(ab, cd, _mask(list(range(8)) + list(range(16, 24))))
            off = builder.add(args[3], builder.mul(args[4], ir.Constant(_I64, p)))
            builder.store(r, _vptr(context, builder, dty, args[2], off), align=4)
        return context.get_dummy_value()

    return types.void(src, si, dst, di, ds, f), codegen


@intrinsic
def _inter(typingctx, src, si, ss, dst, di, f):
    """dst[di + f*q + s] = src[si + s*ss + q] for q < 16, s < f (f = 2 or 4): f*16 floats out."""
    if not isinstance(f, types.IntegerLiteral) or f.literal_value not in (2, 4):
        return None
    fac = f.literal_value

    def codegen(context, builder, sig, args):
        aty, dty = sig.args[0], sig.args[3]
        y = [builder.load(_vptr(context, builder, aty, args[0],
                                builder.add(args[1], builder.mul(args[2], ir.Constant(_I64, s)))),
                          align=4)
             for s in range(fac)]
        zip_lo = _mask([k // 2 + 16 * (k % 2) for k in range(16)])  # a0 b0 a1 b1 ... a7 b7
        zip_hi = _mask([8 + k // 2 + 16 * (k % 2) for k in range(16)])
        if fac == 2:
            outs = [builder.shuffle_vector(y[0], y[1], zip_lo),
                    builder.shuffle_vector(y[0], y[1], zip_hi)]
        else:
            lo01 = builder.shuffle_vector(y[0], y[1], zip_lo)
            hi01 = builder.shuffle_vector(y[0], y[1], zip_hi)
            lo23 = builder.shuffle_vector(y[2], y[3], zip_lo)
            hi23 = builder.shuffle_vector(y[2], y[3], zip_hi)
            pair_lo = _mask([2 * (k // 4) + (k % 2) + 16 * ((k // 2) % 2) for k in range(16)])
            pair_hi = _mask([8 + 2 * (k // 4) + (k % 2) + 16 * ((k // 2) % 2) for k in range(16)])
            outs = [builder.shuffle_vector(lo01, lo23, pair_lo),
                    builder.shuffle_vector(lo01, lo23, pair_hi),
                    builder.shuffle_vector(hi01, hi23, pair_lo),
                    builder.shuffle_vector(hi01, hi23, pair_hi)]
        for k, o in enumerate(outs):
            off = builder.add(args[4], ir.Constant(_I64, 16 * k))
            builder.store(o, _vptr(context, builder, dty, args[3], off), align=4)
        return context.get_dummy_value()

    return types.void(src, si, ss, dst, di, f), codegen


# ------------------------------------------------------------------------- planning


def _rup(v, k):
    return (v + k - 1) // k * k


@njit(cache=True)
def _plan(C, OH, OW, m):
    """(TH, TW, ntiles, tiles per block, Qp (V columns: multiple of NB or NR), nblocks)."""
    a = m + 2
    TH = (OH + m - 1) // m
    TW = (OW + m - 1) // m
    ntiles = TH * TW
    per_tile = a * a * max(C, 1) * 4
    q = max(VCAP // per_tile, 1)
    q = min(q, max(ntiles, 1))
    nblocks = (ntiles + q - 1) // q
    q = (ntiles + nblocks - 1) // nblocks if nblocks > 0 else 1
    return TH, TW, ntiles, q, _v_cols(q), nblocks


@njit(cache=True)
def _v_cols(q):
    """Columns of V for blocks of q tiles: whole sub-blocks of the micro-kernel the GEMM
    step will use."""
    Qp = (q + NB - 1) // NB * NB if _use_b(q) else (q + NR - 1) // NR * NR
    return max(Qp, NB)


@njit(cache=True)
def _layout(C, OH, OW, m, nslab):
    """Float offsets into the scratch: (offV, offThr, per-thread stride, total floats).

    The last 32 floats hold the two job counters (int64, 64 bytes apart).
    """
    a = m + 2
    T = a * a
    TH, TW, ntiles, q, Qp, nblocks = _plan(C, OH, OW, m)
    nV = (C * T * (Qp + JC) + _AL - 1) // _AL * _AL
    thr = (T * MRP * NR + _AL - 1) // _AL * _AL
    # then two job counters (int64), each on its own 64-byte line
    return 0, nV, thr, nV + nslab * thr + 2 * _AL


@njit(cache=True)
def _own_plan(C, OH, OW, m, nslab):
    """The per-thread mode (``_run_blocks``): (tiles per block, Qp, nblocks), or all 0
    when there are fewer than two blocks of at least NR tiles per slab (small maps): the
    shared mode (``_run_jobs``) runs then."""
    if nslab < 2:
        return 0, 0, 0
    ntiles = _plan(C, OH, OW, m)[2]
    q = max(VOWN // ((m + 2) * (m + 2) * max(C, 1) * 4), NR)
    nblocks = (ntiles + q - 1) // q
    if nblocks < 2 * nslab:
        return 0, 0, 0
    q = (ntiles + nblocks - 1) // nblocks
    return q, _v_cols(q), nblocks


@njit(cache=True)
def _own_layout(C, Qp, m, nslab):
    """Per-thread mode, in floats: (V per slab, GEMM micro-tile per slab, total with the
    job counter)."""
    T = (m + 2) * (m + 2)
    nV = (C * T * (Qp + JC) + _AL - 1) // _AL * _AL
    thr = (T * MRP * NR + _AL - 1) // _AL * _AL
    return nV, thr, nslab * (nV + thr) + 2 * _AL


def winograd_scratch_bytes(x_shape, out_shape, m, pt, pl):
    """Bytes of scratch ``conv2d_winograd`` needs (for up to NUMBA_NUM_THREADS threads).

    V for one block of tiles (C x T x (Qp + 16) floats: about VCAP = 2 MiB at most, unless
    one 32-tile column of V is larger by itself, i.e. C > 455 for F(4,3)), per thread one
    micro-tile of GEMM results (T x 16 x 32 floats: 32 KiB for F(2,3), 72 KiB for
    F(4,3)), and 128 bytes of job counters. Examples (2 threads): 3x3 64->64 56x56 F(4,3)
    2.25 MiB; 256->256 14x14 F(4,3) 1.27 MiB; 512->512 7x7 F(2,3) 1.06 MiB.
    """
    _, C, _, _ = (int(v) for v in x_shape)
    _, _, OH, OW = (int(v) for v in out_shape)
    if m not in (2, 4):
        raise ValueError(f"winograd output tile m must be 2 or 4, got {m}")
    nslab = int(_nb_config.NUMBA_NUM_THREADS)
    shared = int(_layout(C, max(OH, 0), max(OW, 0), m, nslab)[3])
    q, Qp, _ = _own_plan(C, max(OH, 0), max(OW, 0), m, nslab)
    own = int(_own_layout(C, Qp, m, nslab)[2]) if q else 0
    return max(shared, own) * 4


# ------------------------------------------------------------------------- weights

_G = {
    2: np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]),
    4: np.array([[1 / 4, 0.0, 0.0],
                 [-1 / 6, -1 / 6, -1 / 6],
                 [-1 / 6, 1 / 6, -1 / 6],
                 [1 / 24, 1 / 12, 1 / 6],
                 [1 / 24, -1 / 12, 1 / 6],
                 [0.0, 0.0, 1.0]]),
}


def winograd_pack(w_f32, m):
    """U = G g G^T for w (M, C, 3, 3), packed as (T, ceil(M/MRP), C, MRP) float32 (T = (m+2)^2).

    Computed in float64, rounded once. Output channels past M are zero.
    """
    w = np.asarray(w_f32, dtype=np.float64)
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"winograd_pack needs weights (M, C, 3, 3), got {w.shape}")
    if m not in _G:
        raise ValueError(f"winograd output tile m must be 2 or 4, got {m}")
    a = m + 2
    M, C = w.shape[:2]
    MB = (M + MRP - 1) // MRP
    # U[(i, j)] = sum over (k, l) of G[i, k] G[j, l] g[k, l]: one GEMM of kron(G, G) (T, 9)
    # with every (c, m) filter as a column (3.2x faster than an einsum over ResNet-50's 13
    # Winograd convs: 0.37 -> 0.12 s of Session())
    cols = np.zeros((9, C, MB * MRP))
    cols[:, :, :M] = w.reshape(M, C, 9).transpose(2, 1, 0)
    u = (np.kron(_G[m], _G[m]) @ cols.reshape(9, -1)).astype(np.float32)   # (T, C * MBp)
    return np.ascontiguousarray(u.reshape(a * a, C, MB, MRP).transpose(0, 2, 1, 3))


def winograd_unpack(U, m, M):
    """The (M, C, 3, 3) float32 weights that ``winograd_pack(w, m)`` turned into ``U``.

    G has full column rank, so g = pinv(G (x) G) u exactly in exact arithmetic; in float64
    from the float32 U the result is within a few ulps of the original weights. A conv
    that leaves Winograd at a new input size repacks from these (backends/cpu_conv.py).
    """
    T, MB, C, R = U.shape
    u = np.asarray(U, np.float64).transpose(0, 2, 1, 3).reshape(T, C * MB * R)
    g = (np.linalg.pinv(np.kron(_G[m], _G[m])) @ u).reshape(9, C, MB * R)[:, :, :M]
    return np.ascontiguousarray(g.transpose(2, 1, 0).reshape(M, C, 3, 3), dtype=np.float32)


# ------------------------------------------------------------------------- micro-kernels


@njit(**_OPTS)
def _micro_a(U, t, mb, h, V, q0, Ot, nacc):
    """Ot[0:8, 0:32] = sum_k U[t, mb, k, 8h:8h+8] x V[k, t, q0:q0+32]: 16 zmm accumulators."""
    C = V.shape[0]
    acc = carray(stack_ptr_f32(_NACC), (_NACC,))
    zero = np.float32(0.0)
    for i in range(_NACC):
        acc[i] = zero
    hb = h * MR
    for k in range(C):
        vk = V[k, t, q0:]
        uk = U[t, mb, k, hb:]
        for j in range(NR):
            xv = vk[j]
            for i in range(MR):
                acc[i * NR + j] += uk[i] * xv
    # NOTE: a runtime trip count (nacc == 256) keeps this copy a vector loop; with the
    # constant one LLVM unrolls it into 256 scalar moves before it vectorizes
    of = Ot[:MR].reshape(nacc)
    for i in range(nacc):
        of[i] = acc[i]


@njit(**_OPTS)
def _micro_b(U, t, mb, V, q0, Ot, nb):
    """Ot[0:16, 0:16] = sum_k U[t, mb, k, 0:16] x V[k, t, q0:q0+16]: 16 zmm accumulators."""
    C = V.shape[0]
    acc = carray(stack_ptr_f32(_NACC), (_NACC,))
    zero = np.float32(0.0)
    for i in range(_NACC):
        acc[i] = zero
    for k in range(C):
        vk = V[k, t, q0:]
        uk = U[t, mb, k]
        for j in range(NB):
            xv = vk[j]
            for i in range(NB):
                acc[i * NB + j] += uk[i] * xv
    for i in range(NB):
        orow = Ot[i]
        for j in range(nb):
            orow[j] = acc[i * NB + j]


# ------------------------------------------------------------------------- input transform


@njit(**_OPTS)
def _load_rows(x_c, ih0, a, col0, ncol, d, wd):
    """d[r*wd + w] = x_c[ih0 + r, col0 + w] for r < a, w < ncol; zero elsewhere up to wd."""
    H, W = x_c.shape
    wlo = min(max(-col0, 0), ncol)
    whi = max(min(W - col0, ncol), wlo)
    zero = np.float32(0.0)
    for r in range(a):
        ih = ih0 + r
        dr = d[r * wd:]
        if ih < 0 or ih >= H:
            for w in range(wd):
                dr[w] = zero
        else:
            for w in range(wlo):
                dr[w] = zero
            src = x_c[ih, col0 + wlo:]
            dd = dr[wlo:]
            for w in range(whi - wlo):
                dd[w] = src[w]
            de = dr[whi:]
            for w in range(wd - whi):
                de[w] = zero


@njit(**_OPTS)
def _itrans_c4(x_c, Vc, pt, pl, TW, qb0, qb1):
    """m=4: Vc (36, Qp+JC) <- B^T d B of channel plane x_c (H,W) for tiles [qb0, qb1)."""
    wd = _WD4
    d = carray(stack_ptr_f32(_ND4), (_ND4,))
    th = carray(stack_ptr_f32(_ND4), (_ND4,))
    ph = carray(stack_ptr_f32(_NP4), (_NP4,))
    f4 = np.float32(4.0)
    f5 = np.float32(5.0)
    f2 = np.float32(2.0)
    for i in range(qb0 // TW, (qb1 - 1) // TW + 1):
        ja = max(qb0 - i * TW, 0)
        jb = min(qb1 - i * TW, TW)
        for jc in range(ja, jb, JC):
            nj = min(JC, jb - jc)
            _load_rows(x_c, i * 4 - pt, 6, jc * 4 - pl, nj * 4 + 2, d, wd)
            # along H, all wd columns (zeros past the chunk)
            for w in range(wd):
                d0 = d[w]
                d1 = d[wd + w]
                d2 = d[2 * wd + w]
                d3 = d[3 * wd + w]
                d4 = d[4 * wd + w]
                d5 = d[5 * wd + w]
                th[w] = f4 * d0 - f5 * d2 + d4
                th[wd + w] = -f4 * (d1 + d2) + d3 + d4
                th[2 * wd + w] = f4 * (d1 - d2) - d3 + d4
                th[3 * wd + w] = f2 * (d3 - d1) - d2 + d4
                th[4 * wd + w] = f2 * (d1 - d3) - d2 + d4
                th[5 * wd + w] = f4 * d1 - f5 * d3 + d5
            # phases: ph[t1][p][q] = th[t1][4q + p]; q = 16 only for p < 2 (tile 15's e4, e5)
            for t1 in range(6):
                pb = t1 * 4 * _PH
                _deint(th, t1 * wd, ph, pb, _PH, 4)
                ph[pb + 16] = th[t1 * wd + 64]
                ph[pb + _PH + 16] = th[t1 * wd + 65]
            # along W, 16 tiles (lanes past nj land in the next tiles' or spare columns)
            q = i * TW + jc - qb0
            for t1 in range(6):
                pb = t1 * 4 * _PH
                v0 = Vc[t1 * 6, q:]
                v1 = Vc[t1 * 6 + 1, q:]
                v2 = Vc[t1 * 6 + 2, q:]
                v3 = Vc[t1 * 6 + 3, q:]
                v4 = Vc[t1 * 6 + 4, q:]
                v5 = Vc[t1 * 6 + 5, q:]
                for j in range(JC):
                    e0 = ph[pb + j]
                    e1 = ph[pb + _PH + j]
                    e2 = ph[pb + 2 * _PH + j]
                    e3 = ph[pb + 3 * _PH + j]
                    e4 = ph[pb + 1 + j]
                    e5 = ph[pb + _PH + 1 + j]
                    v0[j] = f4 * e0 - f5 * e2 + e4
                    v1[j] = -f4 * (e1 + e2) + e3 + e4
                    v2[j] = f4 * (e1 - e2) - e3 + e4
                    v3[j] = f2 * (e3 - e1) - e2 + e4
                    v4[j] = f2 * (e1 - e3) - e2 + e4
                    v5[j] = f4 * e1 - f5 * e3 + e5


@njit(**_OPTS)
def _itrans_c2(x_c, Vc, pt, pl, TW, qb0, qb1):
    """m=2: Vc (16, Qp+JC) <- B^T d B of channel plane x_c (H,W) for tiles [qb0, qb1)."""
    wd = _WD2
    d = carray(stack_ptr_f32(_ND2), (_ND2,))
    th = carray(stack_ptr_f32(_ND2), (_ND2,))
    ph = carray(stack_ptr_f32(_NP2), (_NP2,))
    for i in range(qb0 // TW, (qb1 - 1) // TW + 1):
        ja = max(qb0 - i * TW, 0)
        jb = min(qb1 - i * TW, TW)
        for jc in range(ja, jb, JC):
            nj = min(JC, jb - jc)
            _load_rows(x_c, i * 2 - pt, 4, jc * 2 - pl, nj * 2 + 2, d, wd)
            for w in range(wd):
                d0 = d[w]
                d1 = d[wd + w]
                d2 = d[2 * wd + w]
                d3 = d[3 * wd + w]
                th[w] = d0 - d2
                th[wd + w] = d1 + d2
                th[2 * wd + w] = d2 - d1
                th[3 * wd + w] = d1 - d3
            for t1 in range(4):
                pb = t1 * 2 * _PH
                _deint(th, t1 * wd, ph, pb, _PH, 2)
                ph[pb + 16] = th[t1 * wd + 32]
                ph[pb + _PH + 16] = th[t1 * wd + 33]
            q = i * TW + jc - qb0
            for t1 in range(4):
                pb = t1 * 2 * _PH
                v0 = Vc[t1 * 4, q:]
                v1 = Vc[t1 * 4 + 1, q:]
                v2 = Vc[t1 * 4 + 2, q:]
                v3 = Vc[t1 * 4 + 3, q:]
                for j in range(JC):
                    e0 = ph[pb + j]
                    e1 = ph[pb + _PH + j]
                    e2 = ph[pb + 1 + j]
                    e3 = ph[pb + _PH + 1 + j]
                    v0[j] = e0 - e2
                    v1[j] = e1 + e2
                    v2[j] = e2 - e1
                    v3[j] = e1 - e3


@njit(**_OPTS)
def _input_job(xn, c, m, pt, pl, TW, qb0, qb1, V, Qp):
    """V[c, :, q - qb0] for tiles q in [qb0, qb1) of channel c of image xn (C,H,W)."""
    T = V.shape[1]
    nq = qb1 - qb0
    zero = np.float32(0.0)
    Vc = V[c]
    if m == 4:
        _itrans_c4(xn[c], Vc, pt, pl, TW, qb0, qb1)
    else:
        _itrans_c2(xn[c], Vc, pt, pl, TW, qb0, qb1)
    # columns past the block's last tile: zeros (no stale values in the GEMM)
    for t in range(T):
        vz = Vc[t, nq:]
        for k in range(Qp - nq):
            vz[k] = zero


# ------------------------------------------------------------------------- output transform


@njit(**_OPTS)
def _epilogue_row(o, rr, has_res, act, lo, hi):
    """o (n,) output row piece: += rr (when has_res), then relu / clip."""
    n = o.shape[0]
    zero = np.float32(0.0)
    if has_res:
        for k in range(n):
            o[k] += rr[k]
    if act == ACT_RELU:
        for k in range(n):
            v = o[k]
            o[k] = zero if v < zero else v
    elif act == ACT_CLIP:
        for k in range(n):
            v = o[k]
            v = lo if v < lo else v
            o[k] = hi if v > hi else v


@njit(**_OPTS)
def _write_rows(rb, m, mch, n, out, res, TW, qa, qe, has_res, act, lo, hi):
    """rb (m rows of m*NR, rb[r*m*NR + m*jj + s] = pixel (r, s) of tile qa+jj) -> out[n, mch]."""
    OH = out.shape[2]
    OW = out.shape[3]
    rw = m * NR
    q = qa
    while q < qe:
        ti = q // TW
        j0 = q % TW
        j1 = min(TW, j0 + (qe - q))
        jj0 = q - qa
        c0 = j0 * m
        c1 = min(j1 * m, OW)
        nrow = min(m, OH - ti * m)
        for r in range(nrow):
            orow = out[n, mch, ti * m + r, c0:c1]
            src = rb[r * rw + jj0 * m:]
            for k in range(c1 - c0):
                orow[k] = src[k]
            if has_res or act != ACT_NONE:
                rr = res[n, mch, ti * m + r, c0:c1] if has_res else orow
                _epilogue_row(orow, rr, has_res, act, lo, hi)
        q += j1 - j0


@njit(**_OPTS)
def _out_block4(O, nch, ch0, bias, res, out, n, TW, qa, qe, has_res, act, lo, hi):
    """m=4: channels ch0 + i (i < nch): A^T O[:, i, :] A + bias over NR tiles -> out[n]."""
    M = out.shape[1]
    tmp = carray(stack_ptr_f32(_NT4), (_NT4,))
    Y = carray(stack_ptr_f32(_NY4), (_NY4,))
    rb = carray(stack_ptr_f32(_NR4), (_NR4,))
    f2 = np.float32(2.0)
    f4 = np.float32(4.0)
    f8 = np.float32(8.0)
    for i in range(nch):
        mch = ch0 + i
        if mch >= M:
            break
        b = bias[mch]
        for t2 in range(6):
            o0 = O[t2, i]
            o1 = O[6 + t2, i]
            o2 = O[12 + t2, i]
            o3 = O[18 + t2, i]
            o4 = O[24 + t2, i]
            o5 = O[30 + t2, i]
            for j in range(NR):
                a1 = o1[j] + o2[j]
                b1 = o1[j] - o2[j]
                a3 = o3[j] + o4[j]
                b3 = o3[j] - o4[j]
                tmp[t2 * NR + j] = o0[j] + a1 + a3
                tmp[(6 + t2) * NR + j] = b1 + f2 * b3
                tmp[(12 + t2) * NR + j] = a1 + f4 * a3
                tmp[(18 + t2) * NR + j] = b1 + f8 * b3 + o5[j]
        for r in range(4):
            for j in range(NR):
                k = r * 6 * NR + j
                e0 = tmp[k]
                e1 = tmp[k + NR]
                e2 = tmp[k + 2 * NR]
                e3 = tmp[k + 3 * NR]
                e4 = tmp[k + 4 * NR]
                e5 = tmp[k + 5 * NR]
                a1 = e1 + e2
                b1 = e1 - e2
                a3 = e3 + e4
                b3 = e3 - e4
                Y[r * 4 * NR + j] = e0 + a1 + a3 + b
                Y[(r * 4 + 1) * NR + j] = b1 + f2 * b3 + b
                Y[(r * 4 + 2) * NR + j] = a1 + f4 * a3 + b
                Y[(r * 4 + 3) * NR + j] = b1 + f8 * b3 + e5 + b
        for r in range(4):
            _inter(Y, r * 4 * NR, NR, rb, r * 4 * NR, 4)
            _inter(Y, r * 4 * NR + 16, NR, rb, r * 4 * NR + 64, 4)
        _write_rows(rb, 4, mch, n, out, res, TW, qa, qe, has_res, act, lo, hi)


@njit(**_OPTS)
def _out_block2(O, nch, ch0, bias, res, out, n, TW, qa, qe, has_res, act, lo, hi):
    """m=2: channels ch0 + i (i < nch): A^T O[:, i, :] A + bias over NR tiles -> out[n]."""
    M = out.shape[1]
    tmp = carray(stack_ptr_f32(_NT2), (_NT2,))
    Y = carray(stack_ptr_f32(_NY2), (_NY2,))
    rb = carray(stack_ptr_f32(_NR2), (_NR2,))
    for i in range(nch):
        mch = ch0 + i
        if mch >= M:
            break
        b = bias[mch]
        for t2 in range(4):
            o0 = O[t2, i]
            o1 = O[4 + t2, i]
            o2 = O[8 + t2, i]
            o3 = O[12 + t2, i]
            for j in range(NR):
                tmp[t2 * NR + j] = o0[j] + o1[j] + o2[j]
                tmp[(4 + t2) * NR + j] = o1[j] - o2[j] - o3[j]
        for r in range(2):
            for j in range(NR):
                k = r * 4 * NR + j
                e0 = tmp[k]
                e1 = tmp[k + NR]
                e2 = tmp[k + 2 * NR]
                e3 = tmp[k + 3 * NR]
                Y[r * 2 * NR + j] = e0 + e1 + e2 + b
                Y[(r * 2 + 1) * NR + j] = e1 - e2 - e3 + b
        for r in range(2):
            _inter(Y, r * 2 * NR, NR, rb, r * 2 * NR, 2)
            _inter(Y, r * 2 * NR + 16, NR, rb, r * 2 * NR + 32, 2)
        _write_rows(rb, 2, mch, n, out, res, TW, qa, qe, has_res, act, lo, hi)


@njit(cache=True)
def _gemm_jobs(MB, nq):
    """Jobs of the GEMM step for a block of nq tiles: channel blocks x tile sub-blocks.

    Few tiles (``_use_b``): 16-tile sub-blocks, 16-channel blocks (kernel B). Otherwise
    32-tile sub-blocks, 8-channel blocks (kernel A), and a last partial sub-block of at
    most 16 tiles goes to kernel B (A would compute 32).
    """
    if _use_b(nq):
        return MB * ((nq + NB - 1) // NB)
    nfull = nq // NR
    tail = nq - nfull * NR
    if tail == 0:
        return 2 * MB * nfull
    return 2 * MB * nfull + (MB if tail <= NB else 2 * MB)


@njit(**_OPTS)
def _gemm_job(U, V, bias, res, out, n, m, TW, qb0, qb1, O, job, has_res, act, lo, hi):
    """One (channel block, tile sub-block): T micro-kernels into O, A^T O A + bias -> out[n]."""
    T = U.shape[0]
    MB = U.shape[1]
    M = out.shape[1]
    nq = qb1 - qb0
    # sub-block-major: consecutive jobs reuse the same V columns in cache
    if _use_b(nq):
        use_b = True
        q0 = job // MB * NB
        cb = job % MB
    else:
        nfull = nq // NR
        if job < 2 * MB * nfull:
            use_b = False
            q0 = job // (2 * MB) * NR
            cb = job % (2 * MB)
        else:
            q0 = nfull * NR
            cb = job - 2 * MB * nfull
            use_b = nq - q0 <= NB
    if use_b:
        width = NB
        nch = NB
        if cb * NB >= M:
            return
        for t in range(T):
            _micro_b(U, t, cb, V, q0, O[t], NB)
    else:
        width = NR
        nch = MR
        if cb * MR >= M:
            return
        for t in range(T):
            _micro_a(U, t, cb // 2, cb % 2, V, q0, O[t], _NACC)
    ch0 = cb * nch
    qa = qb0 + q0
    qe = min(qa + width, qb1)
    if m == 4:
        _out_block4(O, nch, ch0, bias, res, out, n, TW, qa, qe, has_res, act, lo, hi)
    else:
        _out_block2(O, nch, ch0, bias, res, out, n, TW, qa, qe, has_res, act, lo, hi)


# ------------------------------------------------------------------------- driver


@njit(cache=True)
def _use_b(nq):
    """The 16x16 micro-kernel when 32-tile columns would waste a quarter of the GEMM."""
    return (nq + NB - 1) // NB * NB * 4 <= (nq + NR - 1) // NR * NR * 3


_SPINS = 4096  # busy polls (a few microseconds) before yielding the core


@njit(parallel=True, **_OPTS)
def _run_jobs(x, U, m, bias, res, out, pt, pl, V, Qp, thr_buf, nth, cnt, act, lo, hi):
    """Every step of every image and block of tiles, in one parallel region.

    Jobs are numbered in order: per image, per block of tiles, C input-transform jobs then
    the GEMM jobs. Each thread claims the next number from cnt[0] and, before running it,
    waits until cnt[8] (jobs finished) reaches the first number of the job's step: a step
    starts only when every job of the steps before it is done. A thread waits only on jobs
    another running thread has claimed, so this cannot deadlock, whether the nth
    iterations run concurrently or one after another.

    NOTE: one region instead of two per block: with a neighbour process on one core,
    OpenMP's end-of-region barrier waits for a descheduled worker (milliseconds) once a
    call; the dynamic claims let the running thread do the descheduled one's share.
    """
    N, C = x.shape[0], x.shape[1]
    T = U.shape[0]
    MB = U.shape[1]
    OH = out.shape[2]
    OW = out.shape[3]
    has_res = res.size > 0
    TH, TW, ntiles, q, Qp_, nblocks = _plan(C, OH, OW, m)
    per_img = 0
    for blk in range(nblocks):
        per_img += C + _gemm_jobs(MB, min(q, ntiles - blk * q))
    total = N * per_img
    for tid in prange(nth):
        O = thr_buf[tid, :T * MRP * NR].reshape((T, MRP, NR))
        while True:
            g = _fetch_add(cnt, 0, 1)
            if g >= total:
                break
            n = g // per_img
            r = g - n * per_img
            start = n * per_img
            blk = 0
            step = 0
            nq = 0
            while True:
                nq = min(q, ntiles - blk * q)
                if r < C:
                    step = 0
                    break
                r -= C
                start += C
                njg = _gemm_jobs(MB, nq)
                if r < njg:
                    step = 1
                    break
                r -= njg
                start += njg
                blk += 1
            spins = 0
            while _load_acquire(cnt, 8) < start:
                spins += 1
                if spins > _SPINS:
                    _sched_yield()
            qb0 = blk * q
            qb1 = qb0 + nq
            if step == 0:
                _input_job(x[n], r, m, pt, pl, TW, qb0, qb1, V, Qp)
            else:
                _gemm_job(U, V, bias, res, out, n, m, TW, qb0, qb1, O, r, has_res, act, lo, hi)
            _fetch_add_release(cnt, 8, 1)


@njit(parallel=True, **_OPTS)
def _run_blocks(x, U, m, bias, res, out, pt, pl, Vs, Qp, q, nblocks, thr_buf, nth, cnt, act,
                lo, hi):
    """The per-thread mode: each thread claims whole blocks of tiles (cnt[0]) and runs the
    input transform of every channel and then every GEMM job of the block itself, in V of
    its own slot.

    NOTE: in the shared mode (_run_jobs) V is written channel by channel by whichever thread
    claims the job and every GEMM job reads all channels of its tiles, so at 2 threads
    half of V came from the other core's L2: 3x3 64->64 56x56 ran 1.10 ms at 1 thread and
    1.02 at 2. Blocks of VOWN bytes stay in one core's L2; the shared mode is kept for maps
    with too few tiles to give every thread two blocks.
    """
    for tid in prange(nth):
        _block_worker(x, U, m, bias, res, out, pt, pl, Vs[tid], Qp, q, nblocks, thr_buf[tid],
                      cnt, act, lo, hi)


@njit(**_OPTS)
def _block_worker(x, U, m, bias, res, out, pt, pl, vslab, Qp, q, nblocks, thr, cnt, act, lo,
                  hi):
    """One thread's share of _run_blocks, with its V (vslab) and GEMM micro-tile (thr)."""
    N, C = x.shape[0], x.shape[1]
    T = U.shape[0]
    MB = U.shape[1]
    OH = out.shape[2]
    OW = out.shape[3]
    has_res = res.size > 0
    TH, TW, ntiles, _, _, _ = _plan(C, OH, OW, m)
    V = vslab[:C * T * (Qp + JC)].reshape((C, T, Qp + JC))
    O = thr[:T * MRP * NR].reshape((T, MRP, NR))
    total = N * nblocks
    while True:
        g = _fetch_add(cnt, 0, 1)
        if g >= total:
            break
        n = g // nblocks
        qb0 = (g - n * nblocks) * q
        qb1 = min(qb0 + q, ntiles)
        for c in range(C):
            _input_job(x[n], c, m, pt, pl, TW, qb0, qb1, V, Qp)
        for j in range(_gemm_jobs(MB, qb1 - qb0)):
            _gemm_job(U, V, bias, res, out, n, m, TW, qb0, qb1, O, j, has_res, act, lo, hi)


@njit(**_OPTS)
def _conv2d_winograd(x, U, m, bias, res, out, scratch_u8, pt, pl, act, act_lo, act_hi, nthreads,
                     nslab_cfg):
    N, C, H, W = x.shape
    M = out.shape[1]
    OH = out.shape[2]
    OW = out.shape[3]
    if N == 0 or M == 0 or OH <= 0 or OW <= 0:
        return
    lo = np.float32(act_lo)
    hi = np.float32(act_hi)
    a = m + 2
    T = a * a
    sc = _borrow(scratch_u8).view(np.float32)
    q_own, Qp_own, nb_own = _own_plan(C, OH, OW, m, nslab_cfg)
    if q_own > 0:
        nV, thr_own, tot = _own_layout(C, Qp_own, m, nslab_cfg)
        if sc.size >= tot:
            Vs = sc[:nslab_cfg * nV].reshape((nslab_cfg, nV))
            bufs = sc[nslab_cfg * nV:nslab_cfg * (nV + thr_own)].reshape((nslab_cfg, thr_own))
            cnt = sc[tot - 2 * _AL:tot].view(np.int64)
            cnt[0] = 0
            _run_blocks(_borrow(x), _borrow(U), m, _borrow(bias), _borrow(res), _borrow(out),
                        pt, pl, Vs, Qp_own, q_own, nb_own, bufs,
                        max(min(nthreads, nslab_cfg), 1), cnt, act, lo, hi)
            return
    TH, TW, ntiles, q, Qp, nblocks = _plan(C, OH, OW, m)
    offV, offThr, thr, total = _layout(C, OH, OW, m, 1)
    nslab = (sc.size - offThr - 2 * _AL) // thr
    total = offThr + nslab * thr + 2 * _AL
    nth = max(min(nthreads, nslab), 1)
    V = sc[offV:offV + C * T * (Qp + JC)].reshape((C, T, Qp + JC))
    thr_buf = sc[offThr:offThr + nth * thr].reshape((nth, thr))
    cnt = sc[total - 2 * _AL:total].view(np.int64)
    cnt[0] = 0
    cnt[8] = 0
    _run_jobs(_borrow(x), _borrow(U), m, _borrow(bias), _borrow(res), _borrow(out), pt, pl,
              V, Qp, thr_buf, nth, cnt, act, lo, hi)


def conv2d_winograd(x, U, m, bias, res, out, scratch_u8, pt, pl, act, lo, hi):
    """Winograd F(m,3) conv, 3x3 stride 1 dilation 1 groups 1, fp32 NCHW, into ``out``.

    Parameters
    ----------
    x : (N, C, H, W) float32, C-contiguous.
    U : the packed weights from ``winograd_pack(w, m)``.
    m : 2 or 4, the output tile (F(2,3) or F(4,3)); must match ``U``.
    bias : (M,) float32.
    res : float32 array of out's shape, added before the activation; a 0-size array: none.
    out : (N, M, OH, OW) float32, C-contiguous; OH = H + pt + pb - 2, OW = W + pl + pr - 2
        (the bottom/right pads are implied by its shape).
    scratch_u8 : uint8 buffer of at least ``winograd_scratch_bytes(...)`` bytes (64-byte
        aligned is best); it must not be shared with a concurrent call.
    pt, pl : top and left padding.
    act, lo, hi : 0 none, 1 relu, 2 clip(lo, hi).

    Examples
    --------
    >>> import numpy as np
    >>> from jitconv.kernels import winograd
    >>> x = np.ones((1, 2, 5, 5), np.float32)
    >>> w = np.ones((3, 2, 3, 3), np.float32)
    >>> out = np.empty((1, 3, 5, 5), np.float32)
    >>> scratch = np.empty(winograd.winograd_scratch_bytes(x.shape, out.shape, 4, 1, 1), np.uint8)
    >>> winograd.conv2d_winograd(x, winograd.winograd_pack(w, 4), 4, np.zeros(3, np.float32),
    ...                          np.empty(0, np.float32), out, scratch, 1, 1, 0, 0.0, 0.0)
    >>> out[0, 0, :2, :3].round(4).tolist()
    [[8.0, 12.0, 12.0], [12.0, 18.0, 18.0]]
    """
    if m not in (2, 4):
        raise ValueError(f"winograd output tile m must be 2 or 4, got {m}")
    C = x.shape[1]
    OH, OW = out.shape[2], out.shape[3]
    need = int(_layout(C, max(OH, 0), max(OW, 0), m, 1)[3]) * 4
    if scratch_u8.size < need:
        raise ValueError(f"winograd scratch has {scratch_u8.size} bytes, needs at least {need} "
                         f"(winograd_scratch_bytes)")
    scratch_u8 = scratch_u8[:scratch_u8.size - scratch_u8.size % 8]
    if res.size:
        res = res.reshape(out.shape)
    else:
        res = np.empty((0, 0, 0, 0), dtype=np.float32)
    _conv2d_winograd(x, U, m, bias, res, out, scratch_u8, pt, pl, act, lo, hi, get_num_threads(),
                     int(_nb_config.NUMBA_NUM_THREADS))


# cost model constants, in multiply-adds at the FMA peak (MAC-eq), measured on the dev
# machine (one thread, ~56 G MAC/s at the time): see winograd_cost
GEMM_EFF_A = 0.7  # 8x32 micro-kernel in place, fraction of peak (0.8-0.95 in L1)
GEMM_EFF_B = 0.75  # 16x16 micro-kernel in place
ITRANS_CHUNK = 12000.0  # input transform, one channel x 16 tiles of a row (~200 ns)
OTRANS_TILE = {2: 80.0, 4: 300.0}  # output transform, one channel x tile (1.4 / 5.4 ns)
U_BYTE = 1.0  # streaming U once per block of tiles (~56 GB/s)


def winograd_cost(c, m_out, oh, ow, m, direct_efficiency=0.85):
    """Estimated time of Winograd F(m,3) relative to a direct 3x3 conv (< 1: Winograd wins).

    Both sides are counted in multiply-adds at the FMA peak ("MAC-eq"):

    - direct: 9 * c * m_out * oh * ow / direct_efficiency. The default 0.85 is what a
      register-tiled direct / implicit-GEMM kernel reaches; pass the efficiency of the
      direct kernel actually competing (today's ``conv2d_direct`` runs at about 0.3).
    - Winograd GEMM: (m+2)^2 * c * m_out_padded * tiles_padded / efficiency, with tiles
      padded to the micro-kernel's width (32, or 16 for blocks of few tiles and for a last
      partial sub-block of <= 16 tiles, as the kernel chooses) and m_out padded to 8 or 16;
      efficiency GEMM_EFF_A / GEMM_EFF_B;
    - input transform: ITRANS_CHUNK per (channel, tile row, 16-tile chunk);
    - output transform: OTRANS_TILE[m] per (output channel, padded tile);
    - a floor for streaming U (4 * (m+2)^2 * c * m_out bytes) once per block of tiles:
      U_BYTE per byte. It matters when the map is small and the channels many (7x7 x 512:
      F(4,3)'s U is 36 MiB for 4 tiles).

    Calibrated single-threaded against onnxruntime (about 0.85-0.9 of peak, like a good
    direct kernel); predicted / measured time ratios: 3x3 64->64 56x56 F(4,3) 0.43 /
    0.5-0.55, F(2,3) 0.90 / 0.8-0.9; 128->128 28x28 F(4,3) 0.49 / 0.5-0.6; 256->256
    14x14 F(4,3) 0.47 / 0.5-0.75; 512->512 7x7 F(2,3) 0.84 / 0.7-0.8, F(4,3) 1.59 / 1.7.
    At 2 threads the GEMM and transforms halve but memory bandwidth does not: small maps
    with many channels (7x7 x 512, U of 16 MiB for F(2,3)) fall to 0.85-1.3 of
    onnxruntime's time, so treat estimates above ~0.7 for such layers as a tie.
    """
    c, m_out, oh, ow, m = int(c), int(m_out), int(oh), int(ow), int(m)
    if c <= 0 or m_out <= 0 or oh <= 0 or ow <= 0:
        return 1.0
    a = m + 2
    T = a * a
    direct = 9.0 * c * m_out * oh * ow / direct_efficiency
    TH, TW, ntiles, q, Qp, nblocks = _plan(c, oh, ow, m)
    gemm = 0.0
    chunks = 0
    out_tiles = 0
    for blk in range(nblocks):
        nq = min(q, ntiles - blk * q)
        if _use_b(nq):
            gemm += T * c * _rup(m_out, NB) * _rup(nq, NB) / GEMM_EFF_B
            out_tiles += _rup(nq, NB)
            continue
        tail = nq % NR
        if 0 < tail <= NB:
            gemm += T * c * _rup(m_out, NB) * NB / GEMM_EFF_B
            out_tiles += NR  # the output transform always runs NR lanes
            nq -= tail
        gemm += T * c * _rup(m_out, MR) * _rup(nq, NR) / GEMM_EFF_A
        out_tiles += _rup(nq, NR)
    rows = [(i, max(blk * q - i * TW, 0), min((blk + 1) * q - i * TW, TW))
            for blk in range(nblocks) for i in range(TH)]
    chunks = sum((jb - ja + JC - 1) // JC for _, ja, jb in rows if jb > ja)
    transforms = ITRANS_CHUNK * c * chunks + OTRANS_TILE[m] * m_out * out_tiles
    stream = U_BYTE * nblocks * 4.0 * T * c * _rup(m_out, MRP)
    return float((max(gemm, stream) + transforms) / direct)
