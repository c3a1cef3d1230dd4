"""Winograd F(2,3) / F(4,3) kernel (kernels/winograd.py) against the NumPy reference conv."""

import zlib

import numba
import numpy as np
import pytest

from jitconv.kernels import winograd
from jitconv.runtime.planner import allocate
from jitconv.runtime.reference import run_op

# max abs error <= TOL * max |reference before the activation| (fp32 accumulation;
# F(4,3)'s transforms add a few ulps of the pre-activation magnitude)
TOL = 1e-4
ACTS = {"": 0, "relu": 1, "clip": 2}
LO, HI = -0.5, 0.75

# (N, C, H, W, M, pads [t, l, b, r])
CASES = [
    (1, 3, 9, 11, 5, (1, 1, 1, 1)),  # H, W not multiples of m
    (2, 17, 7, 10, 9, (0, 2, 1, 0)),  # batch 2, asymmetric pads
    (1, 1, 1, 1, 1, (1, 1, 1, 1)),  # 1x1 map, one channel
    (1, 4, 2, 2, 3, (1, 1, 1, 1)),  # 2x2 map
    (1, 3, 5, 6, 4, (0, 0, 0, 0)),  # no padding
    (1, 5, 3, 4, 6, (2, 0, 1, 3)),  # pads larger than needed on some sides
    (1, 256, 14, 14, 32, (1, 1, 1, 1)),  # 256 channels: the accuracy bound
    (1, 8, 23, 57, 19, (1, 1, 1, 1)),  # rows longer than one 16-tile chunk, M not a multiple of 8
    (0, 3, 8, 8, 4, (1, 1, 1, 1)),  # batch 0
    (2, 6, 30, 30, 20, (1, 2, 1, 0)),  # many tiles: the 8x32 micro-kernel
]


def _ids(c):
    return "x".join(map(str, c[:5])) + "_p" + "".join(map(str, c[5]))


def _data(case, seed_extra=""):
    N, C, H, W, M, pads = case
    rng = np.random.default_rng(zlib.crc32((repr(case) + seed_extra).encode()))
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((M, C, 3, 3)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    return rng, x, w, b


def _reference(x, w, b, pads, act, res):
    """(expected output, max |pre-activation output|): conv + bias (+ res), then the activation."""
    y = run_op("Conv", [x, w, b], {"strides": [1, 1], "pads": list(pads)}).astype(np.float64)
    if res is not None:
        y = y + res
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    if act == "relu":
        y = np.maximum(y, 0.0)
    elif act == "clip":
        y = np.clip(y, LO, HI)
    return y, scale


def _run(x, U, m, b, res, out_shape, pads, act):
    out = np.full(out_shape, np.nan, dtype=np.float32)  # every output must be written
    nbytes = winograd.winograd_scratch_bytes(x.shape, out_shape, m, pads[0], pads[1])
    scratch = allocate(nbytes)
    scratch[:] = 0xFF  # NaN patterns: the kernel must overwrite whatever it reads
    none = np.empty(0, dtype=np.float32)
    winograd.conv2d_winograd(x, U, m, b, none if res is None else res, out, scratch,
                             pads[0], pads[1], ACTS[act], LO, HI)
    return out


def _check(got, ref, scale, what):
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    if not ref.size:
        return
    err = float(np.max(np.abs(got.astype(np.float64) - ref)))
    assert err <= TOL * scale, f"{what}: max abs err {err:.3g} > {TOL} x {scale:.3g}"


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("act", ["", "relu", "clip"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv2d_winograd(case, act, m):
    N, C, H, W, M, pads = case
    _, x, w, b = _data(case)
    ref, scale = _reference(x, w, b, pads, act, None)
    got = _run(x, winograd.winograd_pack(w, m), m, b, None, ref.shape, pads, act)
    _check(got, ref, scale, f"F({m},3) {case} {act or 'none'}")


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("act", ["", "relu", "clip"])
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[7]], ids=_ids)
def test_conv2d_winograd_residual(case, act, m):
    rng, x, w, b = _data(case, "res")
    pre, _ = _reference(x, w, b, case[5], "", None)
    res = rng.standard_normal(pre.shape).astype(np.float32)
    ref, scale = _reference(x, w, b, case[5], act, res)
    got = _run(x, winograd.winograd_pack(w, m), m, b, res, ref.shape, case[5], act)
    _check(got, ref, scale, f"F({m},3) {case} {act or 'none'} + res")


@pytest.mark.parametrize("m", [2, 4])
def test_conv2d_winograd_several_blocks(m):
    """Enough tiles x channels that V is split into blocks of tiles (scratch stays bounded)."""
    case = (1, 256, 40, 44, 8, (1, 1, 1, 1))
    _, x, w, b = _data(case)
    nbytes = winograd.winograd_scratch_bytes(x.shape, (1, 8, 40, 44), m, 1, 1)
    assert winograd._plan(256, 40, 44, m)[5] > 1
    assert nbytes < 4 * 2**20
    ref, scale = _reference(x, w, b, case[5], "relu", None)
    got = _run(x, winograd.winograd_pack(w, m), m, b, None, ref.shape, case[5], "relu")
    _check(got, ref, scale, f"F({m},3) {case} blocks")


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_winograd_threads(threads):
    """Same results whatever the thread count (jobs are handed out dynamically)."""
    case = (1, 17, 21, 19, 24, (1, 1, 1, 1))
    _, x, w, b = _data(case)
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        ref, scale = _reference(x, w, b, case[5], "", None)
        got = _run(x, winograd.winograd_pack(w, 4), 4, b, None, ref.shape, case[5], "")
    finally:
        numba.set_num_threads(old)
    _check(got, ref, scale, f"{threads} threads")


@pytest.mark.parametrize("m", [2, 4])
def test_accuracy_bound_256_channels(m):
    """The bound the kernel choice relies on: fp32, random data, 256 input channels."""
    case = (1, 256, 28, 28, 64, (1, 1, 1, 1))
    _, x, w, b = _data(case)
    ref, scale = _reference(x, w, b, case[5], "", None)
    got = _run(x, winograd.winograd_pack(w, m), m, b, None, ref.shape, case[5], "")
    err = float(np.max(np.abs(got - ref))) / scale
    assert err <= TOL
    assert err <= (2e-6 if m == 2 else 3e-5)  # today: about 5e-7 and 8e-6


def test_pack_layout_and_errors():
    w = np.ones((5, 3, 3, 3), dtype=np.float32)
    U2 = winograd.winograd_pack(w, 2)
    U4 = winograd.winograd_pack(w, 4)
    assert U2.shape == (16, 1, 3, winograd.MRP) and U2.dtype == np.float32
    assert U4.shape == (36, 1, 3, winograd.MRP)
    assert not U4[:, :, :, 5:].any()  # padded output channels are zero
    with pytest.raises(ValueError, match="m must be 2 or 4"):
        winograd.winograd_pack(w, 6)
    with pytest.raises(ValueError, match=r"\(M, C, 3, 3\)"):
        winograd.winograd_pack(np.ones((5, 3, 5, 5), np.float32), 4)
    with pytest.raises(ValueError, match="m must be 2 or 4"):
        winograd.winograd_scratch_bytes((1, 3, 8, 8), (1, 5, 8, 8), 3, 1, 1)


def test_scratch_too_small():
    x = np.zeros((1, 3, 8, 8), dtype=np.float32)
    U = winograd.winograd_pack(np.zeros((4, 3, 3, 3), np.float32), 4)
    out = np.zeros((1, 4, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="scratch"):
        winograd.conv2d_winograd(x, U, 4, np.zeros(4, np.float32), np.empty(0, np.float32),
                                 out, allocate(1024), 1, 1, 0, 0.0, 0.0)


def test_cost_model():
    # large maps: F(4,3) well under direct, and under F(2,3)
    a4 = winograd.winograd_cost(64, 64, 56, 56, 4)
    a2 = winograd.winograd_cost(64, 64, 56, 56, 2)
    assert 0 < a4 < a2 < 1
    # 7x7 with 512 channels: F(4,3) has 4 tiles and streams 36 MiB of U; F(2,3) wins
    assert winograd.winograd_cost(512, 512, 7, 7, 2) < winograd.winograd_cost(512, 512, 7, 7, 4)
    # a 1x1 map: mostly padding, Winograd does not pay
    assert winograd.winograd_cost(64, 64, 1, 1, 4) > 1


# maps with enough tiles for the per-thread mode (two blocks of VOWN bytes per thread):
# m=2 128 channels 34x30 -> 255 tiles in 64-tile blocks; m=4 64 channels 58x50 -> 195 tiles
OWN_CASES = [(2, 128, 34, 30, 40, (1, 1, 1, 1)), (1, 64, 58, 50, 24, (1, 2, 1, 0))]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case,m", [(OWN_CASES[0], 2), (OWN_CASES[1], 4)], ids=["m2-C128", "m4-C64"])
def test_conv2d_winograd_per_thread_blocks(case, m, threads):
    N, C, H, W, M, pads = case
    OH, OW = H + pads[0] + pads[2] - 2, W + pads[1] + pads[3] - 2
    nslab = int(numba.config.NUMBA_NUM_THREADS)
    if not winograd._own_plan(C, OH, OW, m, nslab)[0]:
        pytest.skip(f"NUMBA_NUM_THREADS={nslab}: the shared mode runs this map")
    rng, x, w, b = _data(case, "own")
    pre, _ = _reference(x, w, b, pads, "", None)
    res = rng.standard_normal(pre.shape).astype(np.float32)
    ref, scale = _reference(x, w, b, pads, "relu", res)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, nslab))
    try:
        got = _run(x, winograd.winograd_pack(w, m), m, b, res, ref.shape, pads, "relu")
    finally:
        numba.set_num_threads(previous)
    _check(got, ref, scale, f"F({m},3) {case} per-thread blocks, {threads} threads")
