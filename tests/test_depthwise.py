"""kernels/depthwise.py against the NumPy reference (runtime.reference.run_op("Conv"))."""

import zlib

import numba
import numpy as np
import pytest

from jitconv.kernels.depthwise import conv2d_depthwise, depthwise_scratch_bytes
from jitconv.runtime.planner import allocate
from jitconv.runtime.reference import conv_output_hw, run_op
from jitconv.runtime.threads import numba_threads

ACT = {"": 0, "relu": 1, "clip": 2}
LO, HI = -0.5, 1.5

# (N, C, H, W, K (int or (KH, KW)), strides, pads [t,l,b,r], dilations, activation)
CASES = [
    (1, 5, 9, 11, 3, (1, 1), (1, 1, 1, 1), (1, 1), ""),
    (2, 7, 56, 56, 3, (1, 1), (1, 1, 1, 1), (1, 1), "relu"),  # layer D shape, odd C, batch 2
    (1, 3, 112, 112, 3, (2, 2), (1, 1, 1, 1), (1, 1), ""),  # MobileNetV2 stride 2
    (1, 3, 112, 112, 3, (2, 2), (0, 0, 1, 1), (1, 1), "clip"),  # TF "SAME" pads at the end
    (1, 9, 7, 7, 3, (1, 1), (1, 1, 1, 1), (1, 1), "clip"),  # 7x7 maps (flat path)
    (2, 5, 14, 14, 5, (1, 1), (2, 2, 2, 2), (1, 1), "relu"),  # layer H shape
    (1, 3, 7, 7, 5, (1, 1), (2, 2, 2, 2), (1, 1), ""),  # 5x5 on 7x7 (flat path)
    (1, 3, 14, 14, 5, (2, 2), (1, 2, 2, 1), (1, 1), ""),  # 5x5 stride 2, asymmetric
    (1, 3, 15, 15, 5, (2, 2), (2, 2, 2, 2), (1, 1), "relu"),
    (1, 4, 5, 6, 3, (1, 1), (1, 1, 1, 1), (1, 1), ""),  # width smaller than a vector
    (1, 4, 3, 5, 3, (1, 1), (1, 1, 1, 1), (1, 1), "relu"),  # fewer rows than a row tile
    (1, 3, 6, 9, 3, (1, 1), (0, 0, 0, 0), (1, 1), ""),  # no padding, OW != W
    (1, 3, 5, 6, 3, (1, 1), (0, 0, 0, 0), (1, 1), "clip"),  # 3 output rows: generic tile
    (2, 3, 28, 28, 3, (1, 1), (1, 1, 1, 1), (1, 1), ""),  # 28 = 16 + 12: overlapping chunk
    (1, 2, 9, 16, 3, (1, 1), (1, 1, 1, 1), (1, 1), ""),  # exactly one vector wide
    (1, 2, 9, 17, 3, (1, 1), (1, 1, 1, 1), (1, 1), "relu"),
    (1, 3, 10, 33, 3, (2, 2), (1, 1, 1, 1), (1, 1), ""),  # odd width, stride 2
    (1, 3, 11, 70, 3, (2, 2), (0, 1, 1, 0), (1, 1), "clip"),  # stride 2, pad left only
    (1, 2, 13, 17, 4, (1, 1), (2, 1, 1, 2), (1, 1), "clip"),  # even kernel: generic tile
    (1, 2, 11, 10, 7, (1, 1), (3, 3, 3, 3), (1, 1), ""),  # 7x7 kernel: generic tile
    (1, 2, 12, 13, (3, 5), (1, 1), (1, 2, 1, 2), (1, 1), "relu"),  # non-square kernel
    (1, 3, 9, 30, 3, (3, 3), (1, 1, 1, 1), (1, 1), ""),  # stride 3: three column phases
    (1, 3, 20, 21, 3, (1, 2), (1, 1, 1, 1), (1, 1), ""),  # row stride != column stride
    (1, 3, 20, 21, 3, (2, 1), (1, 0, 1, 2), (1, 1), "relu"),
    (1, 3, 13, 17, 3, (1, 1), (2, 1, 0, 2), (2, 2), ""),  # dilated
    (2, 3, 12, 12, 5, (2, 2), (4, 4, 4, 4), (2, 2), "relu"),  # dilated stride 2
    (1, 2, 10, 9, 3, (1, 1), (1, 1, 1, 1), (1, 3), "clip"),  # dilation on one axis
    (1, 2, 5, 6, 3, (1, 1), (4, 5, 3, 6), (1, 1), ""),  # pads larger than the kernel
    (1, 1, 1, 1, 3, (1, 1), (1, 1, 1, 1), (1, 1), "relu"),  # 1x1 image
    (1, 1, 200, 40, 3, (1, 1), (1, 1, 1, 1), (1, 1), ""),  # one channel: rows split
    (1, 1, 200, 12, 3, (1, 1), (1, 0, 1, 0), (1, 1), "relu"),  # rows split, OW < 16
    (1, 2, 90, 33, 5, (1, 1), (2, 2, 2, 2), (1, 1), "clip"),  # 5x5, rows split
    (0, 4, 8, 8, 3, (1, 1), (1, 1, 1, 1), (1, 1), "relu"),  # batch 0
]


def _ids(case):
    N, C, H, W, K, s, p, d, act = case
    return f"n{N}c{C}-{H}x{W}-k{K}-s{s[0]}{s[1]}-p{''.join(map(str, p))}-d{d[0]}{d[1]}-{act}"


def _data(case):
    N, C, H, W, K, s, p, d, act = case
    KH, KW = (K, K) if isinstance(K, int) else K
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((C, 1, KH, KW)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    return x, w, b


def _reference(x, w, b, s, p, d, act):
    attrs = {"strides": list(s), "pads": list(p), "dilations": list(d), "group": x.shape[1]}
    if act:
        attrs["activation"] = act
    if act == "clip":
        attrs.update(activation_min=LO, activation_max=HI)
    return run_op("Conv", [x, w, b], attrs)


def _run(x, w, b, s, p, d, act, threads=2, scratch_bytes=None):
    N, C, H, W = x.shape
    KH, KW = w.shape[2:]
    OH, OW = conv_output_hw((H, W), (KH, KW), s, d, p)
    out = np.full((N, C, OH, OW), np.nan, np.float32)  # every element must be written
    need = depthwise_scratch_bytes(x.shape, (KH, KW), out.shape, s[0], s[1], p[0], p[1])
    scratch = allocate(need if scratch_bytes is None else scratch_bytes)
    with numba_threads(min(threads, numba.config.NUMBA_NUM_THREADS)):
        conv2d_depthwise(x, w, b, out, scratch, s[0], s[1], p[0], p[1], d[0], d[1], ACT[act],
                         LO, HI)
    return out


def _assert_close(got, ref):
    assert got.shape == ref.shape
    if ref.size == 0:
        return
    err = float(np.max(np.abs(got - ref)))
    assert err <= 1e-5 * max(1.0, float(np.max(np.abs(ref)))), f"max abs err {err:.3g}"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_reference(case, threads):
    x, w, b = _data(case)
    s, p, d, act = case[5:]
    _assert_close(_run(x, w, b, s, p, d, act, threads), _reference(x, w, b, s, p, d, act))


@pytest.mark.parametrize("H,W,K,s", [(7, 7, 3, 1), (14, 14, 5, 1), (56, 56, 3, 1),
                                     (16, 33, 3, 2)])
def test_nonfinite_inputs_stay_local(H, W, K, s):
    """An inf at the right edge must reach only the outputs whose window covers it (the flat
    path masks taps that would wrap into the neighbouring row)."""
    x, w, b = _data((1, 2, H, W, K, (s, s), (K // 2,) * 4, (1, 1), ""))
    x[0, 0, H // 2, W - 1] = np.inf
    x[0, 1, 1, 0] = -np.inf
    x[0, 1, H - 2, W // 2] = np.nan
    args = ((s, s), (K // 2,) * 4, (1, 1), "")
    got = _run(x, w, b, *args)
    ref = _reference(x, w, b, *args)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    fin = np.isfinite(ref)
    _assert_close(np.where(fin, got, 0), np.where(fin, ref, 0))


def test_clip_with_lo_above_hi_gives_hi():
    x, w, b = _data((1, 3, 9, 9, 3, (1, 1), (1, 1, 1, 1), (1, 1), "clip"))
    N, C = x.shape[:2]
    out = np.empty((N, C, 9, 9), np.float32)
    scratch = allocate(depthwise_scratch_bytes(x.shape, (3, 3), out.shape, 1, 1, 1, 1))
    conv2d_depthwise(x, w, b, out, scratch, 1, 1, 1, 1, 1, 1, 2, 2.0, 1.0)
    assert np.all(out == 1.0)


def test_scratch_bytes():
    assert depthwise_scratch_bytes((0, 4, 8, 8), (3, 3), (0, 4, 8, 8), 1, 1, 1, 1) == 0
    n = depthwise_scratch_bytes((1, 144, 56, 56), (3, 3), (1, 144, 56, 56), 1, 1, 1, 1)
    assert n > 0 and n % 64 == 0
    # a few KiB per thread, not a padded copy of the input
    assert n <= 64 * 1024 * numba.config.NUMBA_NUM_THREADS


def test_scratch_too_small_raises():
    x, w, b = _data((1, 3, 9, 9, 3, (1, 1), (1, 1, 1, 1), (1, 1), ""))
    with pytest.raises(ValueError, match="scratch"):
        _run(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), "", scratch_bytes=64)
