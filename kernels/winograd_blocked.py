"""Winograd F(m, 3) fp32 convolution in the channel-blocked layout NCHW16c (3x3, stride 1,
dilation 1, groups 1; m = 2 or 4), with fused bias, residual and activation.

An m x m output tile comes from an a x a input patch (a = m + 2) as
``A^T [(G g G^T) . (B^T d B)] A``; summed over input channels, the T = a*a transformed
positions are T independent products. In the blocked layout the 16 channels of a pixel are
one vector, so every transform is a handful of vector adds and FMAs on whole lines, and
each product is a 1x1 conv over a map of tiles, which conv_blocked's register tile runs.
Three steps, each one parallel region of jobs (kernels/jobs.py):

1. input transform, one job per (input block, tile row): V[t] (CB, NT, 16) = B^T d B for
   every tile (NT = TH * TW tiles, a tile's patch read with zeros outside the image);
2. the T products as one batch of 1x1 blocked convs (``conv_blocked._launch``):
   O[t] (MB, NT, 16) = V[t] x U[t], U[t] packed once by ``pack_winograd_blocked``;
3. output transform, one job per (output block, tile row): A^T O A, plus bias (and the
   residual), clamped, stored where the tile lies inside the output.

V and O live in the caller's scratch (``winograd_blocked_scratch_floats``). The transforms
are written as LLVM vector IR generated from the transform matrices, with zero
coefficients skipped and +-1 as plain adds.
"""
import numpy as np
import numba
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .atomics import fetch_add, grab_size
from .blocked_weights import KIND_F32
from .conv_blocked import (BLK, _launch, _path, _plan, act_bounds, pack_blocked, packed_size,
                           unpack_blocked)
from .jobs import f32_at, i64_at, job_address, run_jobs
from .tile_fma import _fma_fn, _ptr16, _splat, emit_epilogue

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)

# the transforms of F(2,3) and F(4,3) (Lavin and Gray's points 0, +-1, +-2, inf)
_BT = {
    2: ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
    4: ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
}
_AT = {
    2: ((1, 1, 1, 0), (0, 1, -1, -1)),
    4: ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
}
_G = {
    2: ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0)),
    4: ((1 / 4, 0.0, 0.0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0.0, 0.0, 1.0)),
}
_V16 = ir.VectorType(ir.FloatType(), 16)
_I64 = ir.IntType(64)


# ------------------------------------------------------------------------ weights

def pack_winograd_blocked(w, m):
    """(M, C, 3, 3) float32 -> U: the T = (m+2)^2 matrices G g G^T (computed in float64,
    rounded once), each packed as a 1x1 conv's weights for conv_blocked (``pack_blocked``,
    input blocks of 16), one after the other: a flat float32 array of T *
    ``packed_size((M, C, 1, 1), 16)``."""
    w = np.asarray(w, np.float64)
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"pack_winograd_blocked needs weights (M, C, 3, 3), got {w.shape}")
    if m not in _G:
        raise ValueError(f"winograd output tile m must be 2 or 4, got {m}")
    g = np.array(_G[m])
    M, C = w.shape[:2]
    T = (m + 2) ** 2
    # U[(i, j)] = sum over (k, l) of G[i, k] G[j, l] w[k, l]: one product with kron(G, G)
    u = (np.kron(g, g) @ w.reshape(M * C, 9).T).astype(np.float32)      # (T, M * C)
    step = packed_size((M, C, 1, 1), BLK)
    out = np.empty(T * step, np.float32)
    for t in range(T):
        out[t * step:(t + 1) * step] = pack_blocked(u[t].reshape(M, C, 1, 1), BLK)
    return out


def unpack_winograd_blocked(U, m, w_shape):
    """The (M, C, 3, 3) float32 weights ``pack_winograd_blocked(w, m)`` made ``U`` from:
    G (x) G has full column rank, so its pseudo-inverse gives them back (to a few ulps)."""
    M, C = int(w_shape[0]), int(w_shape[1])
    T = (m + 2) ** 2
    step = packed_size((M, C, 1, 1), BLK)
    u = np.stack([unpack_blocked(U[t * step:(t + 1) * step], (M, C, 1, 1), BLK)
                  for t in range(T)]).astype(np.float64)
    g = np.array(_G[m])
    w = np.linalg.pinv(np.kron(g, g)) @ u.reshape(T, M * C)
    return np.ascontiguousarray(w.T.reshape(M, C, 3, 3), dtype=np.float32)


# ------------------------------------------------------------------------ transforms as IR

def _lincomb(builder, coeffs, vecs):
    """sum of c * v over the nonzero coefficients (+-1 as adds / subtracts)."""
    fma = _fma_fn(builder.module)
    acc = None
    neg = []
    for c, v in zip(coeffs, vecs):
        if c == 0:
            continue
        if c == 1:
            acc = v if acc is None else builder.fadd(acc, v)
        elif c == -1:
            if acc is None:
                neg.append(v)
            else:
                acc = builder.fsub(acc, v)
        else:
            k = _splat(builder, ir.Constant(ir.FloatType(), float(c)))
            acc = builder.fmul(v, k) if acc is None else builder.call(fma, [v, k, acc])
    if acc is None:
        if not neg:
            return ir.Constant(_V16, [0.0] * 16)
        acc = builder.fsub(ir.Constant(_V16, [0.0] * 16), neg.pop(0))
    for v in neg:
        acc = builder.fsub(acc, v)
    return acc


def _sandwich(builder, L, R, d):
    """L d R^T for a matrix of vectors d (rows of lists): L (p x q), d (q x q), R (r x q)."""
    tmp = [[_lincomb(builder, L[i], [d[k][j] for k in range(len(d))])
            for j in range(len(d[0]))] for i in range(len(L))]
    return [[_lincomb(builder, R[j], tmp[i]) for j in range(len(R))] for i in range(len(L))]


def _arrays_ok(*tys):
    return all(isinstance(t, types.Array) and t.dtype == types.float32 for t in tys)


@intrinsic
def _wino_in(typingctx, xf, offs, v, vbase, vstride, m):
    """V[vbase + t vstride : +16] = (B^T d B)[t] for t < (m+2)^2, d the patch of vectors
    xf[offs[k] : +16] (k < (m+2)^2, row-major; a negative offset reads zeros)."""
    if not (_arrays_ok(xf, v) and isinstance(offs, types.Array) and offs.dtype == types.int64
            and isinstance(vbase, types.Integer) and isinstance(vstride, types.Integer)
            and isinstance(m, types.IntegerLiteral)):
        return None
    M = int(m.literal_value)
    a = M + 2
    sig = types.void(xf, offs, v, vbase, vstride, m)

    def codegen(context, builder, signature, args):
        tys = signature.args
        x, o, vv = (context.make_array(tys[j])(context, builder, args[j]).data
                    for j in (0, 1, 2))
        base = context.cast(builder, args[3], tys[3], types.int64)
        stride = context.cast(builder, args[4], tys[4], types.int64)
        zero = ir.Constant(_V16, [0.0] * 16)
        d = []
        for i in range(a):
            row = []
            for j in range(a):
                off = builder.load(builder.gep(o, [ir.Constant(_I64, i * a + j)]))
                ok = builder.icmp_signed(">=", off, ir.Constant(_I64, 0))
                safe = builder.select(ok, off, ir.Constant(_I64, 0))
                val = builder.load(_ptr16(builder, x, safe), align=4)
                row.append(builder.select(ok, val, zero))
            d.append(row)
        r = _sandwich(builder, _BT[M], _BT[M], d)
        for i in range(a):
            for j in range(a):
                at = builder.add(base, builder.mul(stride, ir.Constant(_I64, i * a + j)))
                builder.store(r[i][j], _ptr16(builder, vv, at), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _wino_out(typingctx, src, sbase, sstride, bias, boff, out, res, has_res, offs, lo, hi, m):
    """y = A^T s A + bias[boff : +16] for the (m+2)^2 vectors s[t] = src[sbase + t sstride :
    +16]; out[offs[k] : +16] = clamp(y[k] (+ res there when has_res), lo, hi) for the m*m
    outputs k whose offset is not negative."""
    if not (_arrays_ok(src, bias, out, res) and isinstance(offs, types.Array)
            and offs.dtype == types.int64 and isinstance(has_res, types.Boolean)
            and all(isinstance(t, types.Integer) for t in (sbase, sstride, boff))
            and all(isinstance(t, types.Float) for t in (lo, hi))
            and isinstance(m, types.IntegerLiteral)):
        return None
    M = int(m.literal_value)
    a = M + 2
    sig = types.void(src, sbase, sstride, bias, boff, out, res, has_res, offs, lo, hi, m)

    def codegen(context, builder, signature, args):
        tys = signature.args
        s, b, o, r, of = (context.make_array(tys[j])(context, builder, args[j]).data
                          for j in (0, 3, 5, 6, 8))
        base, stride, bo = (context.cast(builder, args[j], tys[j], types.int64)
                            for j in (1, 2, 4))
        lo_, hi_ = (_splat(builder, context.cast(builder, args[j], tys[j], types.float32))
                    for j in (9, 10))
        d = [[builder.load(_ptr16(builder, s, builder.add(
            base, builder.mul(stride, ir.Constant(_I64, i * a + j)))), align=4)
            for j in range(a)] for i in range(a)]
        y = _sandwich(builder, _AT[M], _AT[M], d)
        bv = builder.load(_ptr16(builder, b, bo), align=4)
        for i in range(M):
            for j in range(M):
                off = builder.load(builder.gep(of, [ir.Constant(_I64, i * M + j)]))
                with builder.if_then(builder.icmp_signed(">=", off, ir.Constant(_I64, 0))):
                    emit_epilogue(builder, builder.fadd(y[i][j], bv), o, r, off, lo_, hi_,
                                  args[7])
        return context.get_dummy_value()

    return sig, codegen


# ------------------------------------------------------------------------ job functions

# input transform parameters (int64 slots)
(I_X, I_XN, I_V, I_VN, I_CB, I_H, I_W, I_TH, I_TW, I_PT, I_PL, I_CTR, I_GRAB) = range(13)
# output transform parameters; lo and hi are float32 bits
(O_S, O_SN, O_O, O_ON, O_R, O_HASRES, O_B, O_BN, O_MB, O_OH, O_OW, O_TH, O_TW, O_CTR,
 O_GRAB, O_LO, O_HI) = range(17)
NSLOT = 17


def _make_in_job(M):
    a = M + 2

    @njit(**_OPTS)
    def job(aaddr, t):
        p = i64_at(aaddr, NSLOT)
        ctr = i64_at(aaddr + I_CTR * 8, 1)
        xf = f32_at(p[I_X], p[I_XN])
        v = f32_at(p[I_V], p[I_VN])
        CB, H, W, TH, TW, pt, pl = p[I_CB], p[I_H], p[I_W], p[I_TH], p[I_TW], p[I_PT], p[I_PL]
        grab = p[I_GRAB]
        NT = TH * TW
        vstride = CB * NT * BLK
        njobs = CB * TH
        offs = np.empty(a * a, np.int64)
        while True:
            i0 = fetch_add(ctr, 0, grab)
            if i0 >= njobs:
                break
            for j in range(i0, min(njobs, i0 + grab)):
                cb = j // TH
                th = j - cb * TH
                for tw in range(TW):
                    for r in range(a):
                        ih = th * M - pt + r
                        for c in range(a):
                            iw = tw * M - pl + c
                            offs[r * a + c] = ((cb * H + ih) * W + iw) * BLK \
                                if 0 <= ih < H and 0 <= iw < W else -1
                    _wino_in(xf, offs, v, (cb * NT + th * TW + tw) * BLK, vstride, M)

    return job


def _make_out_job(M):
    @njit(**_OPTS)
    def job(aaddr, t):
        p = i64_at(aaddr, NSLOT)
        ctr = i64_at(aaddr + O_CTR * 8, 1)
        lo = f32_at(aaddr + O_LO * 8, 1)[0]
        hi = f32_at(aaddr + O_HI * 8, 1)[0]
        src = f32_at(p[O_S], p[O_SN])
        out = f32_at(p[O_O], p[O_ON])
        res = f32_at(p[O_R], p[O_ON])
        bias = f32_at(p[O_B], p[O_BN])
        has_res = p[O_HASRES] != 0
        MB, OH, OW, TH, TW, grab = p[O_MB], p[O_OH], p[O_OW], p[O_TH], p[O_TW], p[O_GRAB]
        NT = TH * TW
        sstride = MB * NT * BLK
        njobs = MB * TH
        offs = np.empty(M * M, np.int64)
        while True:
            i0 = fetch_add(ctr, 0, grab)
            if i0 >= njobs:
                break
            for j in range(i0, min(njobs, i0 + grab)):
                mb = j // TH
                th = j - mb * TH
                for tw in range(TW):
                    for r in range(M):
                        oh = th * M + r
                        for c in range(M):
                            ow = tw * M + c
                            offs[r * M + c] = ((mb * OH + oh) * OW + ow) * BLK \
                                if oh < OH and ow < OW else -1
                    _wino_out(src, (mb * NT + th * TW + tw) * BLK, sstride, bias, mb * BLK,
                              out, res, has_res, offs, lo, hi, M)

    return job


# What the cost model counts in (2-vCPU Xeon, Emerald Rapids; see winograd_blocked_cost)
DIRECT_MACS = 100e9    # conv2d_blocked's multiply-adds per second and thread (3x3 layers)
GEMM_MACS = 85e9       # the batch of 1x1 products, per thread
U_BW = 24e9            # bytes per second streaming U, not more with the second thread
TRANS_BW = 20e9        # bytes per second and thread of V and O through the transforms


def winograd_blocked_cost(C, M, OH, OW, m, threads):
    """Estimated time of F(m, 3) relative to conv2d_blocked on the same 3x3 conv (< 1:
    Winograd is faster). The products take the longer of their multiply-adds (pixels
    padded to the 6-pixel register tile) spread over the threads and streaming U ((m+2)^2
    C M floats), which did not speed up with the second thread; the transforms write and
    read V and O once, spread over the threads. So small maps with many channels (7x7 x
    512) stay direct. Kernels alone, 2 threads, direct / F(4,3) ms (noisy: the second
    vCPU comes and goes): 56x56x64 0.58 / 0.36-0.42, 28x28x128 0.54 / 0.31-0.49,
    14x14x256 0.58 / 0.39-0.70; at 1 thread 1.17 / 0.53, 1.07 / 0.48, 1.31 / 0.66."""
    C, M, OH, OW, m, threads = (int(v) for v in (C, M, OH, OW, m, threads))
    if min(C, M, OH, OW) <= 0:
        return 1.0
    Cp, Mp = -(-C // BLK) * BLK, -(-M // BLK) * BLK
    TH, TW = _tiles(OH, OW, m)
    T, NT = (m + 2) ** 2, TH * TW
    ntp = -(-NT // 6) * 6
    direct = 9.0 * Cp * Mp * OH * OW / (DIRECT_MACS * threads)
    wino = (max(T * Cp * Mp * ntp / (GEMM_MACS * threads), 4.0 * T * Cp * Mp / U_BW)
            + 8.0 * T * NT * (Cp + Mp) / (TRANS_BW * threads))
    return wino / direct


_JOBS = {}      # (step, m) -> (job function, its address)


def _job(step, m):
    got = _JOBS.get((step, m))
    if got is None:
        job = (_make_in_job if step == "in" else _make_out_job)(m)
        got = _JOBS[(step, m)] = (job, job_address(job))
    return got[1]


def _tiles(OH, OW, m):
    return -(-OH // m), -(-OW // m)


def winograd_blocked_scratch_floats(C, M, OH, OW, m):
    """Floats of scratch ``conv2d_winograd_blocked`` takes per image: V (T, ceil(C/16),
    NT, 16) and O (T, ceil(M/16), NT, 16)."""
    TH, TW = _tiles(OH, OW, m)
    T, NT = (m + 2) ** 2, TH * TW
    return T * NT * BLK * (-(-C // BLK) + -(-M // BLK))


@njit(**_OPTS)
def _run(fn_in, fn_out, gfns, gchunks, xf, U, zb, bias, of, rf, has_res, V, O, CB, MB, H, W,
         OH, OW, pt, pl, m, lo, hi, nthreads, wstride):
    TH = (OH + m - 1) // m
    TW = (OW + m - 1) // m
    NT = TH * TW
    T = (m + 2) * (m + 2)
    # 1. input transform
    fi = np.empty(1, np.int64)
    fi[0] = fn_in
    p = np.zeros((1, NSLOT), np.int64)
    q = p[0]
    q[I_X], q[I_XN], q[I_V], q[I_VN] = xf.ctypes.data, xf.size, V.ctypes.data, V.size
    q[I_CB], q[I_H], q[I_W], q[I_TH], q[I_TW], q[I_PT], q[I_PL] = CB, H, W, TH, TW, pt, pl
    nth = max(1, min(nthreads, CB * TH))
    q[I_GRAB] = grab_size(CB * TH, nth, 4)
    run_jobs(fi, p, nth)
    # 2. the T products: 1x1 convs of CB blocks over a 1 x NT map
    geo = (MB * BLK, 1, NT, 1, NT, CB, BLK, 1, 1, 1, 1, 0, 0, 1, 1)
    empty_q = np.empty(0, np.uint8)
    empty_t = np.empty((0, 0), np.float32)
    rows = (0, 0, 0, 0, 0, 0)
    _launch(gfns, gchunks, V, U, KIND_F32, empty_q, empty_t, empty_t, rows, zb, O, O, False,
            geo, -np.inf, np.inf, nthreads, (T, CB * NT * BLK, wstride, MB * NT * BLK))
    # 3. output transform
    fo = np.empty(1, np.int64)
    fo[0] = fn_out
    p2 = np.zeros((1, NSLOT), np.int64)
    q = p2[0]
    q[O_S], q[O_SN], q[O_O], q[O_ON], q[O_R] = O.ctypes.data, O.size, of.ctypes.data, \
        of.size, rf.ctypes.data
    q[O_HASRES] = 1 if has_res else 0
    q[O_B], q[O_BN], q[O_MB], q[O_OH], q[O_OW], q[O_TH], q[O_TW] = bias.ctypes.data, \
        bias.size, MB, OH, OW, TH, TW
    nth = max(1, min(nthreads, MB * TH))
    q[O_GRAB] = grab_size(MB * TH, nth, 4)
    fv = q.view(np.float32)
    fv[2 * O_LO] = lo
    fv[2 * O_HI] = hi
    run_jobs(fo, p2, nth)


def conv2d_winograd_blocked(x, U, m, w_shape, bias, res, out, scratch, pt, pl, act, lo, hi):
    """out (N, ceil(M/16), OH, OW, 16) <- act(conv3x3(x, w) + bias (+ res)), stride 1,
    dilation 1, groups 1, by Winograd F(m, 3). x blocked (N, ceil(C/16), H, W, 16); U from
    ``pack_winograd_blocked(w, m)``; bias (M,); res out-shaped or None; scratch a float32
    array of at least ``winograd_blocked_scratch_floats(C, M, OH, OW, m)``; act 0 none /
    1 relu / 2 clip(lo, hi). Output channels past M are written as act(0 + res)."""
    M, C = int(w_shape[0]), int(w_shape[1])
    if tuple(w_shape[2:]) != (3, 3) or m not in _AT:
        raise ValueError(f"conv2d_winograd_blocked: F({m}, 3) with w {tuple(w_shape)}")
    MB, CBn = -(-M // BLK), -(-C // BLK)
    if x.ndim != 5 or x.shape[1] != CBn or x.shape[4] != BLK:
        raise ValueError(f"conv2d_winograd_blocked: x {x.shape} does not match w "
                         f"{tuple(w_shape)}")
    N, CB, H, W, _ = x.shape
    OH, OW = out.shape[2], out.shape[3]
    if out.shape != (N, MB, OH, OW, BLK) or out.dtype != np.float32 or \
            not out.flags.c_contiguous:
        raise ValueError(f"conv2d_winograd_blocked: out {out.dtype} {out.shape} is not "
                         f"blocked ({N}, {MB}, OH, OW, {BLK}) float32")
    wstride = packed_size((M, C, 1, 1), BLK)
    if U.size != (m + 2) ** 2 * wstride:
        raise ValueError(f"conv2d_winograd_blocked: {U.size} packed weights do not match "
                         f"w {tuple(w_shape)} for F({m}, 3)")
    need = winograd_blocked_scratch_floats(C, M, OH, OW, m)
    if scratch.dtype != np.float32 or scratch.size < need:
        raise ValueError(f"conv2d_winograd_blocked: scratch of {scratch.size} "
                         f"{scratch.dtype} values, {need} float32 needed")
    has_res = res is not None and res.size > 0
    if has_res and (res.shape != out.shape or not res.flags.c_contiguous):
        raise ValueError(f"conv2d_winograd_blocked: residual {res.shape} is not out's "
                         f"shape {out.shape}")
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    if bias.shape != (M,):
        raise ValueError(f"conv2d_winograd_blocked: bias {bias.shape} for {M} outputs")
    if M % BLK:
        bias = np.concatenate([bias, np.zeros(MB * BLK - M, np.float32)])
    if N == 0 or OH <= 0 or OW <= 0:
        return
    TH, TW = _tiles(OH, OW, m)
    T, NT = (m + 2) ** 2, TH * TW
    V = scratch[:T * CB * NT * BLK]
    O = scratch[V.size:V.size + T * MB * NT * BLK]
    zb = np.zeros(MB * BLK, np.float32)
    lo, hi = act_bounds(act, lo, hi)
    gfns, gchunks = _plan(_path(CB, BLK, 1, 1, True), MB)
    fi, fo = _job("in", m), _job("out", m)
    nt = numba.get_num_threads()
    x = np.ascontiguousarray(x)
    for n in range(N):
        of = out[n].reshape(-1)
        rf = res[n].reshape(-1) if has_res else of
        _run(fi, fo, gfns, gchunks, x[n].reshape(-1), U, zb, bias, of, rf, has_res, V, O,
             CB, MB, H, W, OH, OW, int(pt), int(pl), m, lo, hi, nt, wstride)
