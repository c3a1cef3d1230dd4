"""Depthwise fp32 convolution (groups == C == M, multiplier 1), NCHW, fused bias + activation.

Layout: x (N,C,H,W), w (C,1,KH,KW), bias (C,), out (N,C,OH,OW), all float32 C-contiguous.
Entry points: ``depthwise_scratch_bytes`` and ``conv2d_depthwise``.

Work distribution: work units are (image, channel, block of output rows). One worker per
Numba thread (``prange`` over threads) owns a slot of the scratch (a few KiB, stays in L1)
and takes units from a shared atomic counter, a few at a time, so a thread that starts late
leaves its share to the others. Few planes: the planes are cut into more row blocks.

Rows path (dilation 1, any kernel and stride). For each unit the input rows it reads are
copied into the slot, zero-padded and split by column phase (``sw`` phase rows: phase ``p``
holds padded columns ``p, p+sw, ...``; stride 2 is deinterleaved with vector permutes), so
every tap of every stride reads a contiguous run of floats; rows outside the image point at
a zero row. Compute: a register tile of R output rows x 16 output columns, one zmm
accumulator per row. 3x3 and 5x5 with strides (1,1) / (2,2) have specialized tiles whose
kernel size, strides and R are compile-time constants (``inline="always"`` bodies called
with literals), so the tap loops unroll, the weights and row offsets sit in registers and
the R rows share the input loads of the rows they have in common. Any other geometry runs a
generic one-row tile with the taps in runtime loops. Rows narrower than a whole number of
vectors: the last chunk of a row overlaps the previous one (OW >= 16), or a 16-wide store
spills into the next row, which is rewritten afterwards (OW < 16); a store that would leave
the unit's rows is masked.

Flat path (3x3 / 5x5, stride 1, OW == W, small planes such as 7x7 where 16-wide rows would
waste most lanes): the plane is copied unpadded (row pitch W) between zero rows and the
output is computed on the flattened plane, 16 consecutive pixels per vector; taps that
would wrap into the neighbouring row are masked per kernel column. Chosen by a cost model.

Dilation > 1 runs a direct path (per-tap loops with in-kernel bounds, no scratch).

Vector loads, stores and masked moves are small ``@intrinsic``s (see NUMBA_NOTES.md): an
index computed from memory would get Numba's negative-index wraparound (gathers), and LLVM
scalarizes a 16-element copy loop whose two arrays it cannot prove disjoint.
"""

import numba
from llvmlite import ir
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.ufunc.parallel import _iget_num_threads

from .atomics import fetch_add

from .epilogue import ACT_CLIP, ACT_NONE, ACT_RELU  # noqa: F401
from .stack import stack_ptr_f32

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)

_VL = 16  # output columns per vector (fp32 zmm)
_R3 = 4  # output rows per register tile, 3x3
_R5 = 2  # output rows per register tile, 5x5
_NCH3 = 1  # FMA chains per output, 3x3
_NCH5 = 2  # FMA chains per output, 5x5
_RMAX = 4
_KMAX = 5  # largest specialized kernel side
_RB = (_RMAX - 1) * 2 + _KMAX  # most input rows one specialized tile reads
_WK = _KMAX * _KMAX  # stack weights
_ACC = _RMAX * _VL  # stack accumulators
_VL2 = 2 * _VL
_PART = 4  # most FMA chains per output
_BLOCK_FLOATS = 4096  # target size of one unit's input rows in the slot (16 KiB)
_ALIGN = 16  # floats (64 bytes)
_CTR_BYTES = 64  # head of the scratch: the shared work counter (own cache line)
_GRABS = 8  # work units are taken in about _GRABS pieces per thread


# ----------------------------------------------------------------------------- stack arrays

@intrinsic
def _stack_i64(typingctx, n):
    """An int64 array of the literal size n on the stack (entry-block alloca)."""
    if not isinstance(n, types.IntegerLiteral):
        return None
    size = n.literal_value
    sig = types.CPointer(types.int64)(n)

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.int64), size=size)

    return sig, codegen


@intrinsic
def _ld(typingctx, a, i):
    """a[i] for a 1-D array: a plain load, no negative-index wraparound, no bounds check."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and isinstance(i, types.Integer)):
        return None
    sig = a.dtype(a, i)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load(builder.gep(arr.data, [args[1]], inbounds=True))

    return sig, codegen


@intrinsic
def _st(typingctx, a, i, v):
    """a[i] = v for a 1-D array: a plain store, no wraparound, no bounds check."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and isinstance(i, types.Integer)):
        return None
    sig = types.void(a, i, a.dtype)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        builder.store(args[2], builder.gep(arr.data, [args[1]], inbounds=True))
        return context.get_dummy_value()

    return sig, codegen


def _vec_ptr(context, builder, ty, val, idx, n):
    """Pointer to the <n x float> vector at element idx of a 1-D array or a pointer."""
    if isinstance(ty, types.Array):
        data = context.make_array(ty)(context, builder, val).data
    else:
        data = val
    elem = builder.gep(data, [idx], inbounds=True)
    return builder.bitcast(elem, ir.VectorType(ir.FloatType(), n).as_pointer())


def _is_f32_buffer(ty):
    return (isinstance(ty, types.Array) and ty.ndim == 1 or isinstance(ty, types.CPointer)) \
        and ty.dtype == types.float32


@intrinsic
def _vcopy16(typingctx, dst, di, src, si):
    """dst[di:di+16] = src[si:si+16] (float32 1-D arrays or pointers): one vector load+store."""
    if not (_is_f32_buffer(dst) and _is_f32_buffer(src)):
        return None
    sig = types.void(dst, di, src, si)

    def codegen(context, builder, signature, args):
        d, i, s, j = args
        v = builder.load(_vec_ptr(context, builder, signature.args[2], s, j, _VL), align=4)
        builder.store(v, _vec_ptr(context, builder, signature.args[0], d, i, _VL), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _vcopy_n(typingctx, dst, di, src, si, n):
    """dst[di:di+n] = src[si:si+n] for n <= 16, as one masked vector load and store
    (no memory outside the n elements is touched)."""
    if not (_is_f32_buffer(dst) and _is_f32_buffer(src) and isinstance(n, types.Integer)):
        return None
    sig = types.void(dst, di, src, si, n)

    def codegen(context, builder, signature, args):
        d, i, s, j, nn = args
        i32 = ir.IntType(32)
        vty = ir.VectorType(ir.FloatType(), _VL)
        mty = ir.VectorType(ir.IntType(1), _VL)
        n32 = builder.trunc(nn, i32) if nn.type.width > 32 else builder.sext(nn, i32)
        nv = builder.insert_element(ir.Constant(ir.VectorType(i32, _VL), None), n32,
                                    ir.Constant(i32, 0))
        nv = builder.shuffle_vector(nv, nv, ir.Constant(ir.VectorType(i32, _VL), [0] * _VL))
        iota = ir.Constant(ir.VectorType(i32, _VL), list(range(_VL)))
        mask = builder.icmp_signed("<", iota, nv)
        mod = builder.module
        load = cgutils.get_or_insert_function(
            mod, ir.FunctionType(vty, [vty.as_pointer(), i32, mty, vty]),
            "llvm.masked.load.v16f32.p0")
        store = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), i32, mty]),
            "llvm.masked.store.v16f32.p0")
        v = builder.call(load, [_vec_ptr(context, builder, signature.args[2], s, j, _VL),
                                ir.Constant(i32, 4), mask, ir.Constant(vty, None)])
        builder.call(store, [v, _vec_ptr(context, builder, signature.args[0], d, i, _VL),
                             ir.Constant(i32, 4), mask])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _vfma16(typingctx, acc, w, src, si):
    """acc[0:16] += w * src[si:si+16] (acc a float32 pointer, src a float32 1-D array)."""
    if not (_is_f32_buffer(acc) and _is_f32_buffer(src)):
        return None
    sig = types.void(acc, w, src, si)

    def codegen(context, builder, signature, args):
        a, wv, s, j = args
        vty = ir.VectorType(ir.FloatType(), _VL)
        pa = _vec_ptr(context, builder, signature.args[0], a, ir.Constant(ir.IntType(64), 0),
                      _VL)
        x = builder.load(_vec_ptr(context, builder, signature.args[2], s, j, _VL), align=4)
        wb = _splat(builder, wv)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                             "llvm.fma.v16f32")
        builder.store(builder.call(fma, [wb, x, builder.load(pa, align=4)]), pa, align=4)
        return context.get_dummy_value()

    return sig, codegen


def _splat(builder, v):
    vty = ir.VectorType(v.type, _VL)
    b = builder.insert_element(ir.Constant(vty, None), v, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(b, b, ir.Constant(ir.VectorType(ir.IntType(32), _VL),
                                                    [0] * _VL))


@intrinsic
def _vfill16(typingctx, acc, v):
    """acc[0:16] = v (acc a float32 pointer)."""
    if not _is_f32_buffer(acc):
        return None
    sig = types.void(acc, types.float32)

    def codegen(context, builder, signature, args):
        pa = _vec_ptr(context, builder, signature.args[0], args[0],
                      ir.Constant(ir.IntType(64), 0), _VL)
        builder.store(_splat(builder, args[1]), pa, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _vclip16(typingctx, acc, lo, hi):
    """acc[0:16] = min(max(acc, lo), hi) lane by lane; NaN stays NaN (acc a float32 pointer)."""
    if not _is_f32_buffer(acc):
        return None
    sig = types.void(acc, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        pa = _vec_ptr(context, builder, signature.args[0], args[0],
                      ir.Constant(ir.IntType(64), 0), _VL)
        v = builder.load(pa, align=4)
        vlo = _splat(builder, args[1])
        vhi = _splat(builder, args[2])
        v = builder.select(builder.fcmp_ordered("<", v, vlo), vlo, v)
        v = builder.select(builder.fcmp_ordered(">", v, vhi), vhi, v)
        builder.store(v, pa, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _vsplit16(typingctx, dst, d0, d1, src, si):
    """dst[d0+j] = src[si+2j], dst[d1+j] = src[si+2j+1] for j < 16 (1-D float32 arrays)."""
    if not (_is_f32_buffer(dst) and _is_f32_buffer(src)):
        return None
    sig = types.void(dst, d0, d1, src, si)

    def codegen(context, builder, signature, args):
        d, i0, i1, s, j = args
        v = builder.load(_vec_ptr(context, builder, signature.args[3], s, j, 2 * _VL), align=4)
        mty = ir.VectorType(ir.IntType(32), _VL)
        even = builder.shuffle_vector(v, v, ir.Constant(mty, [2 * k for k in range(_VL)]))
        odd = builder.shuffle_vector(v, v, ir.Constant(mty, [2 * k + 1 for k in range(_VL)]))
        builder.store(even, _vec_ptr(context, builder, signature.args[0], d, i0, _VL), align=4)
        builder.store(odd, _vec_ptr(context, builder, signature.args[0], d, i1, _VL), align=4)
        return context.get_dummy_value()

    return sig, codegen


# ----------------------------------------------------------------------------- geometry

@njit(cache=True)
def _flat_cost(OH, OW, K):
    """Vector ops per plane of the flat path (vs _rows_cost): chunks x (K*K FMAs + K masks)."""
    return -(-OH * OW // _VL) * (K * K + K)


@njit(cache=True)
def _rows_cost(OH, OW, K):
    R = _R3 if K == 3 else _R5
    return -(-OH // R) * R * -(-OW // _VL) * K * K


@njit(cache=True)
def _layout(H, W, KH, KW, OH, OW, sh, sw, pt, pl):
    """Geometry of the dilation-1 buffered paths: (flat, br, Wq, Z, slot floats).

    Rows path: units of br output rows, phase rows of Wq floats, slot = zero row + input rows.
    Flat path (stride 1, OW == W, small planes): the plane is copied unpadded (row pitch W)
    at offset Z, with zeros around it; after it, the column masks (KW x chunks x 16).
    """
    if (sh == 1 and sw == 1 and OW == W and KH == KW and (KH == 3 or KH == 5)
            and OH * OW <= _BLOCK_FLOATS and _flat_cost(OH, OW, KH) < _rows_cost(OH, OW, KH)):
        nch = -(-OH * OW // _VL)
        Z = -(-(pt * W + pl) // _ALIGN) * _ALIGN
        end = Z + nch * _VL + (KH - 1 - pt) * W + (KW - 1 - pl)  # past the last read
        end = max(end, Z + H * W)
        m0 = -(-end // _ALIGN) * _ALIGN
        return True, OH, 0, Z, m0 + KW * nch * _VL
    Wq = max(OW, _VL) + (KW - 1) // sw
    Wq = -(-Wq // _ALIGN) * _ALIGN
    row = sw * Wq
    rows_in = max(KH + sh * (_RMAX - 1), _BLOCK_FLOATS // row)
    br = max(1, (rows_in - KH) // sh + 1)
    if br >= _RMAX:
        br -= br % _RMAX
    br = min(br, max(OH, 1))
    rows_in = min(H, (br - 1) * sh + KH)
    slot = (1 + rows_in) * row + _ALIGN  # + room to shift the rows (see _units_rows)
    slot = -(-slot // _ALIGN) * _ALIGN
    return False, br, Wq, 0, slot


def depthwise_scratch_bytes(x_shape, k_hw, out_shape, sh, sw, pt, pl):
    """Bytes of scratch that conv2d_depthwise needs (x_shape (N,C,H,W), k_hw (KH,KW),
    out_shape (..., OH, OW), strides, top/left pads): a work counter and one slot of a few
    KiB per Numba thread (numba.config.NUMBA_NUM_THREADS), whatever the batch and channel
    count. Sized for dilation 1; dilated convs use no scratch."""
    N, C, H, W = (int(v) for v in x_shape)
    KH, KW = (int(v) for v in k_hw)
    OH, OW = int(out_shape[-2]), int(out_shape[-1])
    if N == 0 or C == 0 or OH <= 0 or OW <= 0:
        return 0
    slot = _layout(H, W, KH, KW, OH, OW, int(sh), int(sw), int(pt), int(pl))[-1]
    return _CTR_BYTES + 4 * slot * numba.config.NUMBA_NUM_THREADS


# ----------------------------------------------------------------------------- unit fill

@njit(**_OPTS)
def _fill_rows(xf, xo, W, buf, ih_lo, ih_hi, sw, pl, Wq):
    """Copy input rows [ih_lo, ih_hi) of the plane at xf[xo:] (H,W) into buf by column phase.

    Buffer row i (i >= 1) holds input row ih_lo + i - 1: phase p at [(i*sw + p)*Wq, +Wq),
    column q of phase p = padded column q*sw + p. Only in-image columns are written; the
    rest of the slot was zeroed once and stays zero.
    """
    if sw == 1:
        n = min(Wq - pl, W)  # input columns [0, n) go to q = pl + column
        for ih in range(ih_lo, ih_hi):
            s0 = xo + ih * W
            d0 = (1 + ih - ih_lo) * Wq + pl
            if n >= _VL:
                j = 0
                while j < n:
                    j = min(j, n - _VL)  # the last chunk overlaps the previous one
                    _vcopy16(buf, d0 + j, xf, s0 + j)
                    j += _VL
            elif n > 0:
                _vcopy_n(buf, d0, xf, s0, n)
        return
    # q chunks [q, q+16) whose 2 x 16 input columns 2q - pl .. 2q - pl + 31 are all in the
    # image are deinterleaved as vectors (sw == 2); the q's left over are copied one by one
    qa = (pl + 1) // 2
    qz = min((W - _VL2 + pl) // 2, Wq - _VL)  # last possible chunk start
    if sw != 2 or qz < qa:
        qa = 0
        qz = -_VL
    if qz >= qa:
        for ih in range(ih_lo, ih_hi):
            s0 = xo + ih * W - pl
            rbase = (1 + ih - ih_lo) * 2 * Wq
            q = qa
            while q < qz + _VL:
                q = min(q, qz)
                _vsplit16(buf, rbase + q, rbase + Wq + q, xf, s0 + 2 * q)
                q += _VL
    for p in range(sw):
        # q whose input column q*sw + p - pl lies in [0, W), q < Wq; minus the chunks
        q0 = max(0, (pl - p + sw - 1) // sw)
        q1 = min(Wq, (W - 1 + pl - p) // sw + 1)
        qb = min(q1, qa)
        qc = max(q0, qz + _VL)
        for ih in range(ih_lo, ih_hi):
            dst = (1 + ih - ih_lo) * sw * Wq + p * Wq
            src = xo + ih * W + p - pl
            for q in range(q0, qb):
                _st(buf, dst + q, _ld(xf, src + q * sw))
            for q in range(qc, q1):
                _st(buf, dst + q, _ld(xf, src + q * sw))


# ----------------------------------------------------------------------------- tiles

@njit(inline="always", **_OPTS)
def _weights(wc, K):
    """The (K,K) weights wc copied to a stack array; K literal: they end up in registers."""
    wk = stack_ptr_f32(_WK)
    for kh in range(K):
        for kw in range(K):
            wk[kh * K + kw] = wc[kh, kw]
    return wk


@njit(**_OPTS)
def _weights_mem(wc, wk):
    """The (K,K) weights wc copied to wk, returned. Passed on to a callee, they stay in memory
    (FMA broadcast operands): 25 weights of a 5x5 in registers would spill the tile."""
    K = wc.shape[1]
    for kh in range(wc.shape[0]):
        for kw in range(K):
            wk[kh * K + kw] = wc[kh, kw]
    return wk


@njit(inline="always", **_OPTS)
def _tile(buf, ofl, oend, wk, bias, lo, hi, ob, oh, ih_lo, H, pt, Wq, OW, K, SH, SW, R, NCH):
    """R output rows from oh (flat plane offset ob) of a KxK, stride (SH, SW) conv.

    K, SH, SW, R, NCH are literal constants at every call site (the body is inlined), so the tap
    and row loops unroll and the accumulators live in registers.
    """
    rb = _stack_i64(_RB)
    row = SW * Wq
    for i in range((R - 1) * SH + K):
        ih = oh * SH - pt + i
        rb[i] = (1 + ih - ih_lo) * row if ih >= 0 and ih < H else 0
    acc = stack_ptr_f32(_ACC)
    part = stack_ptr_f32(_PART)
    ow0 = 0
    while ow0 < OW:
        if ow0 + _VL > OW and OW >= _VL:
            ow0 = OW - _VL
        for j in range(_VL):
            for r in range(R):
                # NCH independent FMA chains per output (kernel rows taken in turn), so that
                # R * NCH chains hide the FMA latency
                for i in range(NCH):
                    part[i] = bias if i == 0 else np.float32(0.0)
                for kh in range(K):
                    base = rb[r * SH + kh] + ow0 + j
                    for kw in range(K):
                        part[kh % NCH] += wk[kh * K + kw] * _ld(
                            buf, base + (kw % SW) * Wq + kw // SW)
                s = part[0]
                for i in range(1, NCH):
                    s += part[i]
                s = lo if s < lo else s
                acc[r * _VL + j] = hi if s > hi else s
        for r in range(R):
            # a 16-wide store may spill into the next row (rewritten later), never past oend
            o0 = ob + r * OW + ow0
            if o0 + _VL <= oend:
                _vcopy16(ofl, o0, acc, r * _VL)
            else:
                _vcopy_n(ofl, o0, acc, r * _VL, min(_VL, OW - ow0))
        ow0 += _VL


@njit(**_OPTS)
def _tile_generic(buf, ofl, oend, wk, bias, lo, hi, ob, oh, ih_lo, H, pt, Wq, OW, KH, KW,
                  sh, sw):
    """One output row (flat plane offset ob) of any KHxKW, any stride (dilation 1)."""
    row = sw * Wq
    acc = stack_ptr_f32(_VL)
    ow0 = 0
    while ow0 < OW:
        if ow0 + _VL > OW and OW >= _VL:
            ow0 = OW - _VL
        _vfill16(acc, bias)
        for kh in range(KH):
            ih = oh * sh - pt + kh
            base = ((1 + ih - ih_lo) * row if ih >= 0 and ih < H else 0) + ow0
            for kw in range(KW):
                wv = wk[kh * KW + kw]
                src = base + (kw % sw) * Wq + kw // sw
                _vfma16(acc, wv, buf, src)
        _vclip16(acc, lo, hi)
        o0 = ob + ow0
        if o0 + _VL <= oend:
            _vcopy16(ofl, o0, acc, 0)
        else:
            _vcopy_n(ofl, o0, acc, 0, min(_VL, OW - ow0))
        ow0 += _VL


@njit(**_OPTS)
def _rows_k3s1(buf, ofl, oend, wc, bias, lo, hi, ob, oh0, oh1, ih_lo, H, pt, Wq, OW):
    """Output rows [oh0, oh1) (oh1 - oh0 >= R), 3x3 stride 1; wc the (K,K) weights."""
    wk = _weights(wc, 3)
    oh = oh0
    while oh < oh1:
        if oh + _R3 > oh1:
            oh = oh1 - _R3
        _tile(buf, ofl, oend, wk, bias, lo, hi, ob + oh * OW, oh, ih_lo, H, pt, Wq, OW,
              3, 1, 1, _R3, _NCH3)
        oh += _R3


@njit(**_OPTS)
def _rows_k3s2(buf, ofl, oend, wc, bias, lo, hi, ob, oh0, oh1, ih_lo, H, pt, Wq, OW):
    """Output rows [oh0, oh1) (oh1 - oh0 >= R), 3x3 stride 2; wc the (K,K) weights."""
    wk = _weights(wc, 3)
    oh = oh0
    while oh < oh1:
        if oh + _R3 > oh1:
            oh = oh1 - _R3
        _tile(buf, ofl, oend, wk, bias, lo, hi, ob + oh * OW, oh, ih_lo, H, pt, Wq, OW,
              3, 2, 2, _R3, _NCH3)
        oh += _R3


@njit(**_OPTS)
def _rows_k5s1(buf, ofl, oend, wk, bias, lo, hi, ob, oh0, oh1, ih_lo, H, pt, Wq, OW):
    """Output rows [oh0, oh1) (oh1 - oh0 >= R), 5x5 stride 1; wk the 25 weights (memory)."""
    oh = oh0
    while oh < oh1:
        if oh + _R5 > oh1:
            oh = oh1 - _R5
        _tile(buf, ofl, oend, wk, bias, lo, hi, ob + oh * OW, oh, ih_lo, H, pt, Wq, OW,
              5, 1, 1, _R5, _NCH5)
        oh += _R5


@njit(**_OPTS)
def _rows_k5s2(buf, ofl, oend, wk, bias, lo, hi, ob, oh0, oh1, ih_lo, H, pt, Wq, OW):
    """Output rows [oh0, oh1) (oh1 - oh0 >= R), 5x5 stride 2; wk the 25 weights (memory)."""
    oh = oh0
    while oh < oh1:
        if oh + _R5 > oh1:
            oh = oh1 - _R5
        _tile(buf, ofl, oend, wk, bias, lo, hi, ob + oh * OW, oh, ih_lo, H, pt, Wq, OW,
              5, 2, 2, _R5, _NCH5)
        oh += _R5


# ----------------------------------------------------------------------------- flat

@njit(inline="always", **_OPTS)
def _flat_plane(buf, mt, ofl, ob, P, wk, bias, lo, hi, Z, W, pt, pl, nch, K):
    """One output plane (P = OH*OW floats at ofl[ob:]) of a KxK stride-1 conv with OW == W.

    Output g = oh*W + ow reads buf[Z + g + (kh-pt)*W + kw - pl]: rows above and below the
    image are zeros in buf; a tap column that wraps into the neighbouring row is masked out
    (mt[(c*K + kw)*16 + j] == 0). Per column kw the K taps are summed first, so there is
    one mask per column, not per tap. K is a literal constant (the body is inlined).
    """
    acc = stack_ptr_f32(_VL)
    for c in range(nch):
        g0 = c * _VL
        for j in range(_VL):
            s = bias
            for kw in range(K):
                base = Z + g0 + j + kw - pl - pt * W
                t = wk[kw] * _ld(buf, base)
                for kh in range(1, K):
                    t += wk[kh * K + kw] * _ld(buf, base + kh * W)
                if _ld(mt, (c * K + kw) * _VL + j) != np.float32(0.0):
                    s += t
            s = lo if s < lo else s
            acc[j] = hi if s > hi else s
        if g0 + _VL <= P:
            _vcopy16(ofl, ob + g0, acc, 0)
        else:
            _vcopy_n(ofl, ob + g0, acc, 0, P - g0)


@njit(**_OPTS)
def _flat_k3(buf, mt, ofl, ob, P, wc, bias, lo, hi, Z, W, pt, pl, nch):
    _flat_plane(buf, mt, ofl, ob, P, _weights(wc, 3), bias, lo, hi, Z, W, pt, pl, nch, 3)


@njit(**_OPTS)
def _flat_k5(buf, mt, ofl, ob, P, wk, bias, lo, hi, Z, W, pt, pl, nch):
    _flat_plane(buf, mt, ofl, ob, P, wk, bias, lo, hi, Z, W, pt, pl, nch, 5)


@njit(**_OPTS)
def _units_flat(x, w, bias, ofl, slot, ctr, U, grab, Z, OH, OW, pt, pl, lo, hi):
    """Take planes (plane = n * C + c < U) grab at a time from ctr; run them by the flat path
    in the thread's slot."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    K = w.shape[2]
    P = OH * OW
    nch = (P + _VL - 1) // _VL
    m0 = slot.shape[0] - K * nch * _VL
    for i in range(m0):
        slot[i] = np.float32(0.0)
    mt = slot[m0:]
    for c in range(nch):
        for kw in range(K):
            for j in range(_VL):
                col = (c * _VL + j) % W + kw - pl
                mt[(c * K + kw) * _VL + j] = 1.0 if col >= 0 and col < W else 0.0
    xf = x.reshape(x.size)
    HW = H * W
    wk = stack_ptr_f32(_WK)
    while True:
        u0 = fetch_add(ctr, 0, grab)
        if u0 >= U:
            break
        c = u0 % C
        for u in range(u0, min(U, u0 + grab)):
            # the plane, unpadded, at slot[Z:]; the zeros around it were written above
            s0 = u * HW
            j = 0
            while j + _VL <= HW:
                _vcopy16(slot, Z + j, xf, s0 + j)
                j += _VL
            if j < HW:
                _vcopy_n(slot, Z + j, xf, s0 + j, HW - j)
            if K == 3:
                _flat_k3(slot, mt, ofl, u * P, P, w[c, 0], bias[c], lo, hi, Z, W, pt, pl, nch)
            else:
                _flat_k5(slot, mt, ofl, u * P, P, _weights_mem(w[c, 0], wk), bias[c], lo, hi,
                         Z, W, pt, pl, nch)
            c += 1
            if c == C:
                c = 0


# ----------------------------------------------------------------------------- units

@njit(**_OPTS)
def _units_rows(x, w, bias, ofl, slot, ctr, U, grab, nblk, br, Wq, OH, OW, sh, sw, pt, pl,
                lo, hi):
    """Take work units (unit = (n, c, block of br output rows) < U) grab at a time from ctr;
    run them by the rows path in the thread's slot."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    KH, KW = w.shape[2], w.shape[3]
    xf = x.reshape(x.size)
    special = KH == KW and (KH == 3 or KH == 5) and sh == sw and (sh == 1 or sh == 2)
    wk = stack_ptr_f32(_WK)
    for i in range(slot.shape[0]):
        slot[i] = np.float32(0.0)
    # NOTE: the rows start `lead` floats into the slot so that input column 0 lands on a
    # 64-byte boundary: the row copies then store whole cache lines.
    buf = slot[(-((pl + sw - 1) // sw)) % _ALIGN:]
    while True:
        u0 = fetch_add(ctr, 0, grab)
        if u0 >= U:
            break
        nc = u0 // nblk  # plane index n * C + c, then stepped without divisions
        blk = u0 - nc * nblk
        c = nc % C
        for _ in range(u0, min(U, u0 + grab)):
            oh0 = blk * br
            oh1 = min(OH, oh0 + br)
            ih_lo = max(0, oh0 * sh - pt)
            ih_hi = min(H, (oh1 - 1) * sh - pt + KH)
            _fill_rows(xf, nc * H * W, W, buf, ih_lo, ih_hi, sw, pl, Wq)
            ob = nc * OH * OW
            oend = ob + oh1 * OW
            b = bias[c]
            wc = w[c, 0]
            if special and oh1 - oh0 >= (_R3 if KH == 3 else _R5):
                if KH == 3 and sh == 1:
                    _rows_k3s1(buf, ofl, oend, wc, b, lo, hi, ob, oh0, oh1, ih_lo, H, pt, Wq,
                               OW)
                elif KH == 3:
                    _rows_k3s2(buf, ofl, oend, wc, b, lo, hi, ob, oh0, oh1, ih_lo, H, pt, Wq,
                               OW)
                elif sh == 1:
                    _rows_k5s1(buf, ofl, oend, _weights_mem(wc, wk), b, lo, hi, ob, oh0, oh1,
                               ih_lo, H, pt, Wq, OW)
                else:
                    _rows_k5s2(buf, ofl, oend, _weights_mem(wc, wk), b, lo, hi, ob, oh0, oh1,
                               ih_lo, H, pt, Wq, OW)
            else:
                wg = wc.reshape(KH * KW)
                for oh in range(oh0, oh1):
                    _tile_generic(buf, ofl, oend, wg, b, lo, hi, ob + oh * OW, oh, ih_lo, H,
                                  pt, Wq, OW, KH, KW, sh, sw)
            blk += 1
            if blk == nblk:
                blk = 0
                nc += 1
                c += 1
                if c == C:
                    c = 0


@njit(parallel=True, **_OPTS)
def _run_buffered(x, w, bias, ofl, scratch_u8, flat, br, Wq, Z, slot, OH, OW, sh, sw, pt, pl,
                  lo, hi):
    """One slot-owning worker per thread; the units go to whichever worker is free."""
    N, C = x.shape[0], x.shape[1]
    # NOTE: the intrinsic that parfors themselves use; numba.get_num_threads() inside njit
    # goes through a ctypes pointer, which would make this function uncacheable.
    T = _iget_num_threads()
    if scratch_u8.shape[0] < _CTR_BYTES + 4 * slot * T:
        raise ValueError("conv2d_depthwise: scratch smaller than depthwise_scratch_bytes()")
    # NOTE: threads take units from a shared counter rather than a fixed 1/T share: on a
    # busy machine a thread that starts late or loses its core leaves its work to the others
    ctr = scratch_u8[:8].view(np.int64)
    ctr[0] = 0
    slots = scratch_u8[_CTR_BYTES:_CTR_BYTES + 4 * slot * T].view(np.float32).reshape((T, slot))
    if flat:
        U = N * C
        grab = max(1, U // (_GRABS * T))
        if T == 1:
            _units_flat(x, w, bias, ofl, slots[0], ctr, U, grab, Z, OH, OW, pt, pl, lo, hi)
        else:
            for t in prange(T):
                _units_flat(x, w, bias, ofl, slots[t], ctr, U, grab, Z, OH, OW, pt, pl, lo, hi)
        return
    nblk = (OH + br - 1) // br
    # few planes: cut them into more row blocks so that every thread has work
    while N * C * nblk < 4 * T and br >= 2 * _RMAX:
        br = (br // 2 + _RMAX - 1) // _RMAX * _RMAX
        nblk = (OH + br - 1) // br
    U = N * C * nblk
    grab = max(1, U // (_GRABS * T))
    if T == 1:
        _units_rows(x, w, bias, ofl, slots[0], ctr, U, grab, nblk, br, Wq, OH, OW, sh, sw, pt,
                    pl, lo, hi)
    else:
        for t in prange(T):
            _units_rows(x, w, bias, ofl, slots[t], ctr, U, grab, nblk, br, Wq, OH, OW, sh, sw,
                        pt, pl, lo, hi)


# ----------------------------------------------------------------------------- dilated

@njit(parallel=True, **_OPTS)
def _run_dilated(x, w, bias, out, sh, sw, pt, pl, dh, dw, lo, hi):
    """Any geometry, no scratch: per tap, the output columns whose input is in the image."""
    N, C, H, W = x.shape
    KH, KW = w.shape[2], w.shape[3]
    OH, OW = out.shape[2], out.shape[3]
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        xc = x[n, c]
        oc = out[n, c]
        b = bias[c]
        for oh in range(OH):
            orow = oc[oh]
            for ow in range(OW):
                orow[ow] = b
            for kh in range(KH):
                ih = oh * sh - pt + kh * dh
                if ih < 0 or ih >= H:
                    continue
                xr = xc[ih]
                for kw in range(KW):
                    wv = w[c, 0, kh, kw]
                    off = kw * dw - pl  # input column = ow*sw + off
                    ow_lo = max(0, (-off + sw - 1) // sw)
                    ow_hi = min(OW, (W - 1 - off) // sw + 1) if W - 1 - off >= 0 else 0
                    if ow_hi <= ow_lo:
                        continue
                    src = xr[ow_lo * sw + off::sw]
                    dst = orow[ow_lo:]
                    for j in range(ow_hi - ow_lo):
                        dst[j] += wv * src[j]
            for ow in range(OW):
                v = orow[ow]
                v = lo if v < lo else v
                orow[ow] = hi if v > hi else v


# ----------------------------------------------------------------------------- entry

@njit(**_OPTS)
def conv2d_depthwise(x, w, bias, out, scratch_u8, sh, sw, pt, pl, dh, dw, act, lo, hi):
    """Depthwise conv: x (N,C,H,W), w (C,1,KH,KW), bias (C,), out (N,C,OH,OW) float32 C-contig.

    scratch_u8: uint8, 64-byte aligned, at least depthwise_scratch_bytes(...) bytes.
    act: 0 none, 1 relu, 2 clip(lo, hi). Pads are top/left; bottom/right follow from out.
    """
    N, C, H, W = x.shape
    KH, KW = w.shape[2], w.shape[3]
    OH, OW = out.shape[2], out.shape[3]
    if N == 0 or C == 0 or OH <= 0 or OW <= 0:
        return
    flo = np.float32(-np.inf)
    fhi = np.float32(np.inf)
    if act == ACT_RELU:
        flo = np.float32(0.0)
    elif act == ACT_CLIP:
        flo = np.float32(lo)
        fhi = np.float32(hi)
    # NOTE: int64 / float32 from here on, so that callers passing other integer types only
    # recompile this small function, not the kernels below it
    ish, isw, ipt, ipl = np.int64(sh), np.int64(sw), np.int64(pt), np.int64(pl)
    if dh != 1 or dw != 1:
        _run_dilated(x, w, bias, out, ish, isw, ipt, ipl, np.int64(dh), np.int64(dw), flo, fhi)
        return
    flat, br, Wq, Z, slot = _layout(H, W, KH, KW, OH, OW, ish, isw, ipt, ipl)
    _run_buffered(x, w, bias, out.reshape(N * C * OH * OW), scratch_u8, flat, br, Wq, Z, slot,
                  OH, OW, ish, isw, ipt, ipl, flo, fhi)
