"""kernels/conv_tiled.py (register-tiled implicit-GEMM conv) against the NumPy reference."""

import zlib

import numba
import numpy as np
import pytest

from jitconv.kernels import conv_tiled as ct
from jitconv.kernels import tiled_weights as tw
from jitconv.runtime.ir import Constant
from jitconv.runtime.quantize import quantize_weight
from jitconv.runtime.planner import allocate
from jitconv.runtime.reference import conv_output_hw, run_op

RTOL = 1e-4  # max abs err <= RTOL * max|ref|

# (N, C, H, W, M, KH, KW, strides, pads [t,l,b,r], dilations, group)
CASES = [
    (1, 5, 7, 9, 11, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),  # C, M not multiples of 8
    (1, 64, 12, 12, 24, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 17, 6, 5, 20, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),  # width far below a tile
    (1, 3, 4, 3, 9, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),  # whole image below one tile
    (2, 16, 10, 10, 24, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1 path, batch 2
    (1, 33, 9, 9, 10, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1 path with a tail tile
    (1, 40, 8, 8, 72, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1, pixels a multiple of 32
    (1, 17, 9, 9, 10, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),  # 1x1 stride 2
    (1, 12, 9, 10, 13, 1, 1, (1, 2), (1, 0, 0, 2), (1, 1), 1),  # 1x1 padded, row stride 1
    (1, 8, 20, 21, 16, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),  # stride 2
    (1, 3, 71, 69, 20, 3, 3, (2, 2), (1, 2, 1, 2), (1, 1), 1),  # stride 2, odd sizes and pads
    (1, 3, 30, 30, 32, 3, 3, (2, 2), (0, 0, 0, 0), (1, 1), 1),  # stride 2, no padding
    (1, 6, 9, 9, 12, 5, 5, (2, 2), (3, 3, 3, 3), (1, 1), 1),  # 5x5 stride 2
    (1, 5, 9, 11, 7, 3, 3, (3, 2), (2, 3, 1, 1), (1, 2), 1),  # mixed strides + dilation
    (1, 5, 11, 9, 7, 3, 3, (2, 3), (2, 3, 1, 1), (2, 1), 1),
    (1, 8, 20, 21, 16, 3, 3, (1, 1), (2, 1, 0, 3), (2, 3), 1),  # dilation, asymmetric pads
    (1, 2, 5, 6, 9, 3, 3, (1, 1), (4, 5, 3, 6), (1, 1), 1),  # large padding
    (1, 3, 6, 5, 10, 2, 4, (3, 2), (1, 2, 0, 0), (1, 1), 1),  # even kernel, odd strides
    (1, 4, 8, 8, 8, 7, 1, (1, 1), (3, 0, 3, 0), (1, 1), 1),
    (3, 9, 13, 12, 19, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),  # batch 3
    (0, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),  # batch 0
    (0, 8, 8, 8, 16, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # batch 0, 1x1 path
    (1, 16, 12, 12, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2),  # groups 2
    (2, 32, 9, 9, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 4),  # groups 4
    (1, 12, 10, 10, 12, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 4),  # groups 4, 3 channels a group
    (1, 12, 9, 9, 20, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 2),  # 1x1 groups 2, tiles straddle
    (1, 16, 11, 11, 24, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 2),  # strided groups 2
    # column stride 2, odd left pad, the odd phase plane full: the last even column was
    # dropped (found by tests/test_property_conv.py)
    (1, 1, 2, 2, 2, 2, 2, (1, 2), (0, 1, 0, 0), (1, 1), 1),
    (1, 20, 6, 8, 40, 3, 2, (1, 2), (1, 1, 0, 0), (1, 1), 1),
]

ACTS = [("", 0), ("relu", 1), ("clip", 2)]


def _case_id(c):
    N, C, H, W, M, KH, KW, s, p, d, g = c
    return f"n{N}c{C}h{H}w{W}m{M}k{KH}x{KW}s{s[0]}{s[1]}p{''.join(map(str, p))}d{d[0]}{d[1]}g{g}"


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _data(case, key):
    N, C, H, W, M, KH, KW, s, p, d, g = case
    rng = _rng(case, key)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((M, C // g, KH, KW)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    return x, w, b


def _reference(case, x, w, b, act_name, res=None, lo=-0.5, hi=0.7):
    """run_op Conv; with a residual, conv (no activation) + res, then the activation."""
    N, C, H, W, M, KH, KW, s, p, d, g = case
    attrs = dict(strides=list(s), pads=list(p), dilations=list(d), group=g)
    if res is None:
        if act_name:
            attrs.update(activation=act_name, activation_min=lo, activation_max=hi)
        return run_op("Conv", [x, w, b], attrs)
    y = run_op("Conv", [x, w, b], attrs).astype(np.float64) + res
    if act_name == "relu":
        y = np.maximum(y, 0.0)
    elif act_name == "clip":
        y = np.minimum(np.maximum(y, lo), hi)
    return y.astype(np.float32)


def _out_shape(case):
    N, C, H, W, M, KH, KW, s, p, d, g = case
    OH, OW = conv_output_hw((H, W), (KH, KW), s, d, p)
    return (N, M, OH, OW)


def _run(case, x, packed, w_shape, b, res, act, lo=-0.5, hi=0.7, out=None, scratch=None):
    N, C, H, W, M, KH, KW, s, p, d, g = case
    if out is None:
        out = np.full(_out_shape(case), np.nan, np.float32)
    if scratch is None:
        nbytes = ct.tiled_scratch_bytes(x.shape, w_shape, out.shape, s[0], s[1], p[0], p[1],
                                        d[0], d[1], g)
        scratch = allocate(nbytes)
        scratch[:] = 0xFF  # NaN bit patterns: the kernel must not rely on zeroed scratch
    ct.conv2d_tiled(x, packed, w_shape, b, res, out, scratch, s[0], s[1], p[0], p[1], d[0], d[1],
                    g, act, lo, hi)
    return out


def _check(got, ref, what):
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    if ref.size == 0:
        return
    scale = float(np.max(np.abs(ref)))
    err = float(np.max(np.abs(got.astype(np.float64) - ref)))
    assert err <= RTOL * scale, f"{what}: max abs err {err:.3g} > {RTOL} x {scale:.3g}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("act_name,act", ACTS, ids=["none", "relu", "clip"])
def test_conv2d_tiled_matches_reference(case, act_name, act):
    x, w, b = _data(case, "plain")
    ref = _reference(case, x, w, b, act_name)
    got = _run(case, x, ct.pack_weights(w), w.shape, b, np.zeros(0, np.float32), act)
    _check(got, ref, _case_id(case))


# (storage, block, symmetric): every weight loader of the tiled kernel
STORED = [("fp16", None, True), ("int8", None, True), ("int8", None, False),
          ("int4", None, True), ("int4", None, False), ("int8", 16, True), ("int4", 16, False)]


def _stored(w, storage, block, symmetric):
    """w kept as stored (the memory=low loader's input); block falls back to per channel."""
    if storage == "fp16":
        return Constant("w", w.astype(np.float16), "fp16")
    return quantize_weight("w", w, storage, block, symmetric)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("storage,block,symmetric", STORED,
                         ids=[f"{s}-{'b%d' % b if b else 'ch'}-{'sym' if y else 'asym'}"
                              for s, b, y in STORED])
def test_conv2d_tiled_low_storage_panels_match_reference(case, storage, block, symmetric):
    # the reference gets the weights as the loader decodes them (Constant.as_float32)
    x, w, b = _data(case, "stored")
    const = _stored(w, storage, block, symmetric)
    packed = tw.pack_stored(const)
    assert packed.wq.dtype == {"fp16": np.uint16, "int8": np.int8, "int4": np.uint8}[storage]
    fp32_panels = 4 * packed.panels * tw.MR * packed.k
    assert packed.kind != tw.KIND_F32 and sum(a.nbytes for a in packed.arrays()) < fp32_panels
    wdec = const.as_float32().reshape(w.shape)
    res = _rng(case, "res").standard_normal(_out_shape(case)).astype(np.float32)
    ref = _reference(case, x, wdec, b, "relu", res=res)
    got = _run(case, x, packed, w.shape, b, res, 1)
    _check(got, ref, f"{_case_id(case)} {storage}")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("act_name,act", ACTS, ids=["none", "relu", "clip"])
def test_conv2d_tiled_residual(case, act_name, act):
    x, w, b = _data(case, "res")
    res = _rng(case, "resin").standard_normal(_out_shape(case)).astype(np.float32)
    ref = _reference(case, x, w, b, act_name, res=res)
    got = _run(case, x, ct.pack_weights(w), w.shape, b, res, act)
    _check(got, ref, _case_id(case) + " +res")


@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[10], CASES[23]], ids=_case_id)
def test_conv2d_tiled_residual_in_place(case):
    """res may be out itself (Add fused into the conv writing over its other input)."""
    x, w, b = _data(case, "inplace")
    res = _rng(case, "resin").standard_normal(_out_shape(case)).astype(np.float32)
    ref = _reference(case, x, w, b, "relu", res=res)
    out = res.copy()
    _run(case, x, ct.pack_weights(w), w.shape, b, out, 1, out=out)
    _check(out, ref, _case_id(case) + " in place")


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_tiled_thread_counts_agree(threads):
    """Same result, bit for bit, whatever the thread count (each output has one owner)."""
    case = CASES[19]
    x, w, b = _data(case, "threads")
    packed = ct.pack_weights(w)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _run(case, x, packed, w.shape, b, np.zeros(0, np.float32), 1)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        many = _run(case, x, packed, w.shape, b, np.zeros(0, np.float32), 1)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def test_conv2d_tiled_reuses_buffers():
    """A second call on the same out / scratch (dirty from the first) gives the same answer."""
    case = CASES[9]
    x, w, b = _data(case, "reuse")
    packed = ct.pack_weights(w)
    out = _run(case, x, packed, w.shape, b, np.zeros(0, np.float32), 0)
    s, p, d = case[7], case[8], case[9]
    scratch = allocate(ct.tiled_scratch_bytes(x.shape, w.shape, out.shape, s[0], s[1], p[0], p[1],
                                              d[0], d[1], 1))
    first = _run(case, x, packed, w.shape, b, np.zeros(0, np.float32), 0, scratch=scratch).copy()
    x2 = x[:, ::-1].copy()
    _run(case, x2, packed, w.shape, b, np.zeros(0, np.float32), 0, out=out, scratch=scratch)
    again = _run(case, x, packed, w.shape, b, np.zeros(0, np.float32), 0, out=out, scratch=scratch)
    np.testing.assert_array_equal(first, again)


def test_conv2d_tiled_keeps_nan():
    """A NaN input stays NaN through relu and clip (as the reference's maximum / minimum)."""
    case = CASES[1]
    x, w, b = _data(case, "nan")
    x[0, 3, 5, 5] = np.nan
    for act_name, act in ACTS:
        ref = _reference(case, x, w, b, act_name)
        got = _run(case, x, ct.pack_weights(w), w.shape, b, np.zeros(0, np.float32), act)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        ok = ~np.isnan(ref)
        _check(got[ok], ref[ok], act_name or "none")


def test_conv2d_tiled_clip_lo_above_hi():
    """clip with lo > hi gives hi everywhere, as ONNX Clip and the reference."""
    case = CASES[0]
    x, w, b = _data(case, "clip")
    got = _run(case, x, ct.pack_weights(w), w.shape, b, np.zeros(0, np.float32), 2, lo=1.0, hi=-1.0)
    np.testing.assert_array_equal(got, np.full_like(got, -1.0))


def test_pack_weights_layout():
    w = np.arange(11 * 3 * 2 * 2, dtype=np.float32).reshape(11, 3, 2, 2)
    packed = ct.pack_weights(w)
    K = 3 * 2 * 2
    assert packed.shape == (2, K, ct.MR) and packed.dtype == np.float32
    assert packed.flags.c_contiguous
    for m in range(16):
        col = packed[m // ct.MR, :, m % ct.MR]
        expect = w[m].reshape(K) if m < 11 else np.zeros(K, np.float32)
        np.testing.assert_array_equal(col, expect)
    with pytest.raises(ValueError, match="pack_weights"):
        ct.pack_weights(np.zeros((4, 4), np.float32))


def test_tiled_scratch_bytes():
    panel = 64 * ct.MR * 4  # one thread's (K, MR) float32 weight panel, K = 64
    # 1x1 stride 1 unpadded, pixels a multiple of the tile: only the threads' panels
    assert ct.tiled_scratch_bytes((1, 64, 8, 8), (32, 64, 1, 1), (1, 32, 8, 8), 1, 1, 0, 0, 1, 1, 1,
                                  nthreads=1) == panel
    assert ct.tiled_scratch_bytes((1, 64, 8, 8), (32, 64, 1, 1), (1, 32, 8, 8), 1, 1, 0, 0, 1, 1, 1,
                                  nthreads=3) == 3 * panel
    # ... a partial last pixel tile: C x NR floats for its copy
    assert (ct.tiled_scratch_bytes((1, 64, 7, 7), (32, 64, 1, 1), (1, 32, 7, 7), 1, 1, 0, 0, 1, 1, 1,
                                   nthreads=1) == panel + 64 * ct.NR * 4)
    # general path: the padded copy plus slack (K = 27 rounds up to 28 panel rows)
    n = ct.tiled_scratch_bytes((1, 3, 10, 10), (4, 3, 3, 3), (1, 4, 10, 10), 1, 1, 1, 1, 1, 1, 1,
                               nthreads=1)
    assert n >= 28 * ct.MR * 4 + 3 * 12 * 12 * 4
    # 0 for an empty batch
    assert ct.tiled_scratch_bytes((0, 3, 10, 10), (4, 3, 3, 3), (0, 4, 10, 10), 1, 1, 1, 1, 1, 1, 1) == 0


def test_conv2d_tiled_rejects_small_scratch():
    case = CASES[0]
    x, w, b = _data(case, "small")
    out = np.empty(_out_shape(case), np.float32)
    with pytest.raises(ValueError, match="scratch"):
        ct.conv2d_tiled(x, ct.pack_weights(w), w.shape, b, np.zeros(0, np.float32), out,
                        np.empty(16, np.uint8), 1, 1, 1, 1, 1, 1, 1, 0, 0.0, 0.0)


def test_conv2d_tiled_rejects_mismatched_arguments():
    case = CASES[0]
    x, w, b = _data(case, "mismatch")
    packed = ct.pack_weights(w)
    out = np.empty(_out_shape(case), np.float32)
    scratch = allocate(4096)
    none = np.zeros(0, np.float32)
    args = (1, 1, 1, 1, 1, 1, 1, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="weight panels"):
        ct.conv2d_tiled(x, ct.pack_weights(w[:, :2]), w.shape, b, none, out, scratch, *args)
    with pytest.raises(ValueError, match="residual"):
        ct.conv2d_tiled(x, packed, w.shape, b, np.zeros((1, 2, 3, 4), np.float32), out, scratch,
                        *args)
    with pytest.raises(ValueError, match="bias"):
        ct.conv2d_tiled(x, packed, w.shape, b[:3], none, out, scratch, *args)
    with pytest.raises(ValueError, match="out"):
        ct.conv2d_tiled(x, packed, w.shape, b, none, out[:, :3], scratch, *args)
    with pytest.raises(ValueError, match="groups"):
        ct.conv2d_tiled(x, packed, w.shape, b, none, out, scratch, 1, 1, 1, 1, 1, 1, 2, 0, 0.0, 0.0)
