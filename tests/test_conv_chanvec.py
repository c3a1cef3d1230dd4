"""kernels/conv_chanvec.py (channel-vectorized implicit-GEMM conv) against the NumPy reference.

The geometry cases are conv_tiled's (groups 1) plus shapes that hit this kernel's own edges:
channel counts around the 32-channel chunk, pixel counts around the 7-pixel tile (the 1x1
path reads the image in place only when H*W is a multiple of 7), and runs longer than the
16 tiles a thread stages before storing.
"""
import numba
import numpy as np
import pytest

from test_conv_tiled import ACTS, CASES, _case_id, _check, _data, _out_shape, _reference, _rng

from jitconv.kernels import conv_chanvec as cv
from jitconv.runtime.planner import allocate

# (N, C, H, W, M, KH, KW, strides, pads [t,l,b,r], dilations, group)
OWN_CASES = [
    (1, 40, 7, 7, 70, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # in place, M = 2 chunks + 6
    (1, 9, 14, 14, 33, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # in place, one channel over
    (2, 130, 7, 7, 64, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # in place, batch 2, odd C
    (1, 24, 15, 13, 31, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 195 pixels: copied path
    (1, 16, 28, 28, 96, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 112 tiles: many staged runs
    (1, 32, 14, 14, 64, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),  # 1x1 stride 2 (downsample)
    (1, 64, 14, 14, 40, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),  # 3x3 stride 2 to 7x7
    (1, 7, 2, 3, 5, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 6 pixels: below one tile
    (1, 3, 1, 1, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),  # 1x1 image, all padding
]
GEOMETRY = [c for c in CASES if c[10] == 1] + OWN_CASES


def _run(case, x, w, b, res, act, lo=-0.5, hi=0.7, out=None, scratch=None):
    N, C, H, W, M, KH, KW, s, p, d, g = case
    if out is None:
        out = np.full(_out_shape(case), np.nan, np.float32)
    if scratch is None:
        nbytes = cv.chanvec_scratch_bytes(x.shape, w.shape, out.shape, s[0], s[1], p[0], p[1],
                                          d[0], d[1])
        scratch = allocate(nbytes)
        scratch[:] = 0xFF  # NaN bit patterns: the kernel must not rely on zeroed scratch
    cv.conv2d_chanvec(x, cv.pack_chanvec(w), w.shape, b, res, out, scratch, s[0], s[1], p[0],
                      p[1], d[0], d[1], act, lo, hi)
    return out


@pytest.mark.parametrize("case", GEOMETRY, ids=_case_id)
@pytest.mark.parametrize("act_name,act", ACTS, ids=["none", "relu", "clip"])
def test_conv2d_chanvec_matches_reference(case, act_name, act):
    x, w, b = _data(case, "plain")
    ref = _reference(case, x, w, b, act_name)
    got = _run(case, x, w, b, None, act)
    _check(got, ref, _case_id(case))


@pytest.mark.parametrize("case", GEOMETRY, ids=_case_id)
@pytest.mark.parametrize("act_name,act", ACTS, ids=["none", "relu", "clip"])
def test_conv2d_chanvec_residual(case, act_name, act):
    x, w, b = _data(case, "res")
    res = _rng(case, "resin").standard_normal(_out_shape(case)).astype(np.float32)
    ref = _reference(case, x, w, b, act_name, res=res)
    got = _run(case, x, w, b, res, act)
    _check(got, ref, _case_id(case) + " +res")


@pytest.mark.parametrize("case", [OWN_CASES[0], OWN_CASES[3], OWN_CASES[6], CASES[10]],
                         ids=_case_id)
def test_conv2d_chanvec_residual_in_place(case):
    """res may be out itself (Add fused into the conv writing over its other input)."""
    x, w, b = _data(case, "inplace")
    res = _rng(case, "resin").standard_normal(_out_shape(case)).astype(np.float32)
    ref = _reference(case, x, w, b, "relu", res=res)
    out = res.copy()
    _run(case, x, w, b, out, 1, out=out)
    _check(out, ref, _case_id(case) + " in place")


@pytest.mark.parametrize("case", [OWN_CASES[2], OWN_CASES[4], CASES[19]], ids=_case_id)
def test_conv2d_chanvec_thread_counts_agree(case):
    """Same result, bit for bit, whatever the thread count (each output has one owner)."""
    x, w, b = _data(case, "threads")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _run(case, x, w, b, None, 1)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        many = _run(case, x, w, b, None, 1)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def test_conv2d_chanvec_keeps_nan():
    case = OWN_CASES[0]
    x, w, b = _data(case, "nan")
    x[0, 3, 2, 5] = np.nan
    for act_name, act in ACTS:
        ref = _reference(case, x, w, b, act_name)
        got = _run(case, x, w, b, None, act)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        ok = ~np.isnan(ref)
        _check(got[ok], ref[ok], act_name or "none")


def test_pack_chanvec_layout():
    w = np.arange(35 * 3 * 2 * 2, dtype=np.float32).reshape(35, 3, 2, 2)
    wp = cv.pack_chanvec(w)
    K = 3 * 2 * 2
    assert wp.shape == (2, K, cv.NC) and wp.dtype == np.float32 and wp.flags.c_contiguous
    for m in range(2 * cv.NC):
        expect = w[m].reshape(K) if m < 35 else np.zeros(K, np.float32)
        np.testing.assert_array_equal(wp[m // cv.NC, :, m % cv.NC], expect)


def test_chanvec_scratch_bytes():
    # 1x1 stride 1, pixels a multiple of 7: the image is read in place
    assert cv.chanvec_scratch_bytes((1, 64, 7, 7), (32, 64, 1, 1), (1, 32, 7, 7),
                                    1, 1, 0, 0, 1, 1) == 0
    # 64 pixels: copied, plus slack
    assert cv.chanvec_scratch_bytes((1, 64, 8, 8), (32, 64, 1, 1), (1, 32, 8, 8),
                                    1, 1, 0, 0, 1, 1) >= 64 * 64 * 4
    # 3x3 stride 2 pad 1 on 14x14: 4 phase planes of 8x8 per channel
    assert cv.chanvec_scratch_bytes((1, 5, 14, 14), (8, 5, 3, 3), (1, 8, 7, 7),
                                    2, 2, 1, 1, 1, 1) >= 5 * 4 * 64 * 4
    assert cv.chanvec_scratch_bytes((0, 5, 14, 14), (8, 5, 3, 3), (0, 8, 7, 7),
                                    2, 2, 1, 1, 1, 1) == 0


def test_conv2d_chanvec_rejects_mismatched_arguments():
    case = OWN_CASES[3]
    x, w, b = _data(case, "mismatch")
    wp = cv.pack_chanvec(w)
    out = np.empty(_out_shape(case), np.float32)
    scratch = allocate(1 << 16)
    args = (1, 1, 0, 0, 1, 1, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="weight chunks"):
        cv.conv2d_chanvec(x, cv.pack_chanvec(w[:, :2]), w.shape, b, None, out, scratch, *args)
    with pytest.raises(ValueError, match="residual"):
        cv.conv2d_chanvec(x, wp, w.shape, b, np.zeros((1, 2, 3, 4), np.float32), out, scratch,
                          *args)
    with pytest.raises(ValueError, match="bias"):
        cv.conv2d_chanvec(x, wp, w.shape, b[:3], None, out, scratch, *args)
    with pytest.raises(ValueError, match="out"):
        cv.conv2d_chanvec(x, wp, w.shape, b, None, out[:, :3], scratch, *args)
    with pytest.raises(ValueError, match="scratch"):
        cv.conv2d_chanvec(x, wp, w.shape, b, None, out, np.empty(16, np.uint8), *args)
    with pytest.raises(ValueError, match="does not match"):
        cv.conv2d_chanvec(x[:, :3], wp, w.shape, b, None, out, scratch, *args)
