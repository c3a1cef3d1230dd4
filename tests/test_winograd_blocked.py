"""Winograd in the channel-blocked layout: conv2d_winograd_blocked against the reference,
its weight transform both ways, and the sessions that choose it (and those that must not)."""
import numpy as np
import pytest

import jitconv as jc
from jitconv.kernels.conv_blocked import pack_blocked, unpack_blocked
from jitconv.kernels.epilogue import ACT_CLIP, ACT_NONE, ACT_RELU
from jitconv.kernels.reorder import blocked_shape
from jitconv.kernels.vnni import has_avx512
from jitconv.kernels.winograd_blocked import (conv2d_winograd_blocked, pack_winograd_blocked,
                                              unpack_winograd_blocked, winograd_blocked_cost,
                                              winograd_blocked_scratch_floats)
from jitconv.runtime.reference import evaluate, run_op

from helpers import assert_close, blocked, rand, unblocked

# (N, C, M, pad, H, W, m)
CASES = [
    (1, 16, 16, 1, 8, 8, 4),        # whole tiles
    (1, 20, 40, 1, 9, 11, 2),       # channels not whole blocks, partial tiles
    (2, 64, 80, 1, 13, 7, 4),       # batch 2, M % 64 = 16 (a one-block chunk)
    (1, 32, 96, 0, 14, 14, 4),      # no padding: 12x12 output
    (1, 48, 24, 1, 3, 2, 4),        # a map smaller than one tile
    (1, 300, 32, 1, 5, 6, 2),       # C over one pass of the products (CBB channels)
]
ACTS = {ACT_NONE: (0.0, 0.0), ACT_RELU: (0.0, 0.0), ACT_CLIP: (-0.5, 0.7)}


def _want(x, w, b, pad, res, act):
    """The reference output, and the largest magnitude before the activation: Winograd's
    rounding error scales with the sum, not with what a clip leaves of it."""
    conv = run_op("Conv", [x, w, b], {"pads": [pad] * 4})
    y = conv + res if res is not None else conv
    lo, hi = ACTS[act]
    return (np.maximum(y, 0) if act == ACT_RELU else np.clip(y, lo, hi)
            if act == ACT_CLIP else y), float(np.abs(y).max())


def _check(got, want, what=""):
    ref, scale = want
    err = float(np.abs(got - ref).max())
    assert err <= 1e-4 * max(1.0, scale), f"{what}: max abs err {err:.3g} (sum up to {scale:.3g})"


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("with_res", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_winograd_blocked_matches_reference(case, with_res, act):
    n, c, m_out, pad, h, w, m = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x, wt, b = rand(rng, n, c, h, w), rand(rng, m_out, c, 3, 3, scale=0.3), rand(rng, m_out)
    oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
    res = rand(rng, n, m_out, oh, ow) if with_res else None
    out = np.full(blocked_shape((n, m_out, oh, ow)), np.nan, np.float32)
    scratch = np.full(winograd_blocked_scratch_floats(c, m_out, oh, ow, m), np.nan,
                      np.float32)
    lo, hi = ACTS[act]
    conv2d_winograd_blocked(blocked(x), pack_winograd_blocked(wt, m), m, wt.shape, b,
                            None if res is None else blocked(res), out, scratch, pad, pad,
                            act, lo, hi)
    _check(unblocked(out, m_out), _want(x, wt, b, pad, res, act), what=str(case))
    assert np.isfinite(out).all(), "padding channels must be written (finite)"


def test_residual_may_be_the_output():
    rng = np.random.default_rng(3)
    x, wt, b = rand(rng, 1, 32, 10, 10), rand(rng, 32, 32, 3, 3, scale=0.3), rand(rng, 32)
    res = rand(rng, 1, 32, 10, 10)
    out = blocked(res)
    scratch = np.empty(winograd_blocked_scratch_floats(32, 32, 10, 10, 4), np.float32)
    conv2d_winograd_blocked(blocked(x), pack_winograd_blocked(wt, 4), 4, wt.shape, b, out,
                            out, scratch, 1, 1, ACT_NONE, 0.0, 0.0)
    _check(unblocked(out, 32), _want(x, wt, b, 1, res, ACT_NONE))


@pytest.mark.parametrize("m", [2, 4])
def test_weights_unpack(m):
    rng = np.random.default_rng(m)
    w = rand(rng, 40, 24, 3, 3)
    assert np.abs(unpack_winograd_blocked(pack_winograd_blocked(w, m), m, w.shape) - w).max() \
        < 1e-5
    for shape, ci in (((70, 20, 3, 3), 16), ((33, 3, 7, 7), 1), ((128, 64, 1, 1), 16)):
        w = rand(rng, *shape)
        assert np.array_equal(unpack_blocked(pack_blocked(w, ci), shape, ci), w)


def test_kernel_errors_name_the_mismatch():
    rng = np.random.default_rng(4)
    x, wt, b = blocked(rand(rng, 1, 16, 8, 8)), rand(rng, 16, 16, 3, 3), rand(rng, 16)
    out = np.empty(blocked_shape((1, 16, 8, 8)), np.float32)
    U = pack_winograd_blocked(wt, 4)
    need = winograd_blocked_scratch_floats(16, 16, 8, 8, 4)
    with pytest.raises(ValueError, match="scratch"):
        conv2d_winograd_blocked(x, U, 4, wt.shape, b, None, out, np.empty(need - 1, np.float32),
                                1, 1, ACT_NONE, 0.0, 0.0)
    with pytest.raises(ValueError, match="packed weights"):
        conv2d_winograd_blocked(x, U, 2, wt.shape, b, None, out, np.empty(need, np.float32),
                                1, 1, ACT_NONE, 0.0, 0.0)
    with pytest.raises(ValueError, match="F\\(3, 3\\)"):
        conv2d_winograd_blocked(x, U, 3, wt.shape, b, None, out, np.empty(need, np.float32),
                                1, 1, ACT_NONE, 0.0, 0.0)


def test_cost_model_prefers_big_maps():
    """Large maps with few channels gain most; a 7x7 map with 512 channels streams U
    (4x the weights) for four tiles and stays direct."""
    for threads in (1, 2):
        assert winograd_blocked_cost(64, 64, 56, 56, 4, threads) < 0.85
        assert winograd_blocked_cost(512, 512, 7, 7, 4, threads) > 1.0
    assert winograd_blocked_cost(64, 64, 0, 56, 4, 2) == 1.0


def _chain(size, dynamic=False):
    rng = np.random.default_rng(5)
    g = jc.GraphBuilder()
    x = g.input("x", (1, 64, size, size), dynamic_axes=(2, 3) if dynamic else ())
    a = g.conv2d(x, rand(rng, 64, 64, 3, 3, scale=0.1), rand(rng, 64), padding=1,
                 activation="relu", name="a")
    b = g.conv2d(a, rand(rng, 64, 64, 3, 3, scale=0.1), rand(rng, 64), padding=1, name="b")
    g.output(g.relu(g.add(b, a)), "y")
    return g.build()


def _kernels(sess):
    return {o.name: (o.kernel, o.reason) for o in sess.info().ops}


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
def test_session_chooses_winograd_where_allowed():
    g = _chain(40)
    x = rand(np.random.default_rng(6), 1, 64, 40, 40)
    want = evaluate(g, {"x": x})["y"]
    sess = jc.Session(g, jc.Config(threads=2, progress=False))
    kernel, reason = _kernels(sess)["b"]
    assert kernel == "conv2d_winograd_blocked" and "Winograd F(" in reason, reason
    assert_close(sess.run({"x": x})["y"], want)
    for cfg in (dict(precision="high"), dict(memory="low")):
        other = jc.Session(g, jc.Config(threads=2, progress=False, **cfg))
        assert "winograd" not in _kernels(other)["b"][0], cfg
        assert_close(other.run({"x": x})["y"], want, what=str(cfg))


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
def test_session_resizes_between_winograd_and_direct():
    """A map too small for Winograd runs the direct kernel, repacked from U; a larger one
    goes back to Winograd."""
    g = _chain(40, dynamic=True)
    sess = jc.Session(g, jc.Config(threads=2, progress=False))
    seen = set()
    for size in (40, 3, 33):
        x = rand(np.random.default_rng(size), 1, 64, size, size)
        assert_close(sess.run({"x": x})["y"], evaluate(g, {"x": x})["y"], what=str(size))
        seen.add(_kernels(sess)["b"][0])
    assert seen == {"conv2d_winograd_blocked", "conv2d_blocked"}, seen


# ----------------------------------------------------------------------------- memory=low

@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("weights,block,symmetric", [("int8", None, True),
                                                     ("int8", 16, False), ("fp16", None, True),
                                                     ("int4", None, True)])
@pytest.mark.parametrize("M,C", [(40, 24), (80, 64)])
def test_u_made_from_stored_weights_matches_packed_u(M, C, weights, block, symmetric, m):
    """U made at each call from weights kept as stored equals pack_winograd_blocked of the
    weights they decode to (float32 sums against float64: a few ulps)."""
    from jitconv.kernels.blocked_weights import pack_stored_blocked
    from jitconv.kernels.winograd_stored import u_floats, u_from_stored
    rng = np.random.default_rng(M + C)
    g = jc.GraphBuilder()
    x = g.input("x", (1, C, 6, 6))
    g.output(g.conv2d(x, rand(rng, M, C, 3, 3), None, padding=1, name="c"), "y")
    q = jc.quantize(g.build(), weights, block=block, symmetric=symmetric)
    const = next(c for c in q.constants.values() if len(c.shape) == 4)
    U = np.full(u_floats(const.shape, m), np.nan, np.float32)
    u_from_stored(pack_stored_blocked(const, 16, pack_blocked), const.shape, m, U)
    want = pack_winograd_blocked(const.as_float32(), m)
    assert np.abs(U - want).max() <= 1e-6 * np.abs(want).max()


def _stored_kernels(weights, size=40, channels=64):
    from helpers import stored
    rng = np.random.default_rng(7)
    g = jc.GraphBuilder()
    x = g.input("x", (1, channels, size, size))
    a = g.conv2d(x, rand(rng, channels, channels, 3, 3, scale=0.1), rand(rng, channels),
                 padding=1, activation="relu", name="a")
    b = g.conv2d(a, rand(rng, channels, channels, 3, 3, scale=0.1), None, padding=1, name="b")
    g.output(g.add(b, a), "y")
    graph = stored(g.build(), weights)
    sess = jc.Session(graph, jc.Config(threads=2, progress=False, memory="low"))
    x = rand(rng, 1, channels, size, size)
    assert_close(sess.run({"x": x})["y"], evaluate(graph, {"x": x})["y"], what=weights)
    return _kernels(sess), sess.info()


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("weights", ["fp16", "int8", "int4"])
def test_memory_low_runs_winograd_from_stored_weights(weights):
    kernels, info = _stored_kernels(weights)
    kernel, reason = kernels["b"]
    assert kernel == f"conv2d_winograd_blocked_{weights}w", kernels
    assert "made from the stored weights" in reason and f"{weights} weights kept" in reason
    # the session holds the stored bytes only (U lives in the scratch)
    fp32 = 2 * 64 * 64 * 9 * 4
    assert info.weight_bytes < fp32 / 1.9
    assert info.scratch_bytes >= 4 * 36 * 64 * 64      # U of F(4,3)


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
def test_memory_low_keeps_direct_where_u_would_be_big():
    """256 -> 256 channels: U takes 4 MiB at F(2,3), over WINOGRAD_LOW_U."""
    kernels, _ = _stored_kernels("int8", size=14, channels=256)
    assert kernels["b"][0] == "conv2d_blocked_int8w", kernels
