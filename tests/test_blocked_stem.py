"""Stems that write NCHW themselves: conv2d_blocked on an NCHW input with an NCHW output
(the row tiles transposed as they are stored), and the layout pass that runs a lone
stride-2 stem that way instead of converting its output back."""
import numba
import numpy as np
import pytest

import jitconv as jc
from jitconv.kernels.conv_blocked import conv2d_blocked, pack_blocked
from jitconv.kernels.epilogue import ACT_CLIP, ACT_NONE, ACT_RELU
from jitconv.kernels.vnni import has_avx512
from jitconv.runtime.reference import evaluate, run_op

from helpers import assert_close, rand

ACTS = {ACT_NONE: {}, ACT_RELU: {"activation": "relu"},
        ACT_CLIP: {"activation": "clip", "activation_min": -0.5, "activation_max": 0.7}}

# (N, C, M, k, stride, pad, dilation, H, W): NCHW input and output, row tiles
CASES = [
    (1, 3, 32, 3, 2, 1, 1, 33, 31),     # 2 blocks: 12-pixel tiles, a partial last one
    (2, 3, 40, 3, 2, 1, 1, 17, 23),     # M % 16 = 8: the padding channels not stored
    (1, 1, 16, 5, 2, 2, 1, 9, 30),      # 1 block: 24-pixel tiles (two transposes)
    (1, 5, 20, 3, 2, 0, 2, 12, 13),     # dilated, unpadded, a 2-block chunk of 20
    (1, 3, 64, 7, 2, 3, 1, 40, 41),     # a ResNet stem: 4 blocks, 6-pixel tiles
    (1, 3, 24, 3, 1, 1, 1, 10, 50),     # stride 1
    (1, 4, 80, 3, 2, 1, 1, 8, 8),       # a full chunk of 4 blocks and a 1-block one
]


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_nchw_output_matches_reference(case, act):
    n, c, m, k, s, p, d, h, w = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x, wt, b = rand(rng, n, c, h, w), rand(rng, m, c, k, k, scale=0.3), rand(rng, m)
    conv = run_op("Conv", [x, wt, b], {"strides": [s, s], "pads": [p] * 4,
                                       "dilations": [d, d]})
    res = rand(rng, *conv.shape)
    want = conv + res
    want = np.maximum(want, 0) if act == ACT_RELU else \
        np.clip(want, -0.5, 0.7) if act == ACT_CLIP else want
    lo, hi = (-0.5, 0.7) if act == ACT_CLIP else (0.0, 0.0)
    # a guard row on each side: nothing outside the output may be written
    buf = np.full((n * m * conv.shape[2] * conv.shape[3] + 32,), np.nan, np.float32)
    out = buf[16:-16].reshape(conv.shape)
    conv2d_blocked(x, pack_blocked(wt, 1), wt.shape, b, res, out, s, s, p, p, d, d, act,
                   lo, hi)
    assert_close(out, want, what=f"{case} act {act}")
    assert np.isnan(buf[:16]).all() and np.isnan(buf[-16:]).all()


def test_nchw_output_in_place_over_its_residual_and_threads_agree():
    rng = np.random.default_rng(5)
    x, wt, b = rand(rng, 1, 3, 37, 45), rand(rng, 48, 3, 3, 3, scale=0.3), rand(rng, 48)
    conv = run_op("Conv", [x, wt, b], {"strides": [2, 2], "pads": [1, 1, 1, 1]})
    res = rand(rng, *conv.shape)
    wp = pack_blocked(wt, 1)
    before = numba.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            out = res.copy()        # each element read before the tile writes it
            conv2d_blocked(x, wp, wt.shape, b, out, out, 2, 2, 1, 1, 1, 1, ACT_NONE, 0, 0)
            outs.append(out)
    finally:
        numba.set_num_threads(before)
    assert_close(outs[0], conv + res)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_nchw_output_needs_an_nchw_input_on_row_tiles():
    wt = np.zeros((32, 16, 3, 3), np.float32)
    b = np.zeros(32, np.float32)
    with pytest.raises(ValueError, match="NCHW out"):     # a blocked input
        conv2d_blocked(np.zeros((1, 1, 8, 8, 16), np.float32), pack_blocked(wt, 16),
                       wt.shape, b, None, np.zeros((1, 32, 8, 8), np.float32),
                       1, 1, 1, 1, 1, 1, 0, 0, 0)
    w3 = np.zeros((32, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="column stride"):  # stride 3: flattened tiles
        conv2d_blocked(np.zeros((1, 3, 9, 9), np.float32), pack_blocked(w3, 1), w3.shape,
                       b, None, np.zeros((1, 32, 3, 3), np.float32), 3, 3, 0, 0, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="NCHW out"):     # the wrong channel count
        conv2d_blocked(np.zeros((1, 3, 8, 8), np.float32), pack_blocked(w3, 1), w3.shape,
                       b, None, np.zeros((1, 16, 8, 8), np.float32), 1, 1, 1, 1, 1, 1, 0, 0, 0)


# ----------------------------------------------------------------------------- the pass

def _lone(c, m, k, stride, residual=False, size=20):
    rng = np.random.default_rng(c * 100 + m + stride)
    g = jc.GraphBuilder("lone")
    x = g.input("x", (1, c, size, size))
    y = g.conv2d(x, rand(rng, m, c, k, k, scale=0.3), rand(rng, m), stride=stride,
                 padding=k // 2, activation=None if residual else "relu", name="conv")
    if residual:
        o = -(-size // stride)
        r = g.input("r", (1, m, o, o))
        y = g.relu(g.add(y, r))      # fused into the conv: an NCHW residual
    g.output(y, "y")
    return g.build()


def _feeds(graph):
    rng = np.random.default_rng(9)
    return {t.name: rand(rng, *t.shape) for t in graph.inputs}


def _ops(sess):
    return {o.name: o for o in sess.info().ops}


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("residual", [False, True])
def test_lone_stride2_stem_writes_nchw_without_conversions(residual):
    g = _lone(3, 40, 3, 2, residual)
    feeds = _feeds(g)
    sess = jc.Session(g, jc.Config(threads=2, progress=False))
    ops = _ops(sess)
    assert ops["conv"].kernel == "conv2d_blocked"
    assert "output NCHW" in ops["conv"].reason
    assert not {"ToBlocked", "FromBlocked"} & {o.op_type for o in ops.values()}
    assert tuple(ops["conv"].out_shape) == (1, 40, 10, 10)
    assert_close(sess.run(feeds)["y"], evaluate(g, feeds)["y"])


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("case", [(3, 32, 3, 1), (3, 8, 3, 2), (16, 32, 3, 2)],
                         ids=["stride1", "under-one-block", "16-channels"])
def test_other_lone_convs_write_no_nchw(case):
    """Stride 1 or fewer than 16 outputs: conv2d_tiled stays faster. 16 input channels
    (K = 144 >= LONE_K) run blocked but convert their output after (a blocked input)."""
    g = _lone(*case)
    sess = jc.Session(g, jc.Config(threads=2, progress=False))
    conv = _ops(sess)["conv"]
    assert "output NCHW" not in conv.reason
    assert (conv.kernel == "conv2d_blocked") == (case[0] == 16)
    feeds = _feeds(g)
    assert_close(sess.run(feeds)["y"], evaluate(g, feeds)["y"])


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
def test_stem_read_blocked_keeps_blocked_output():
    """A stem whose reader runs blocked writes blocks; with an NCHW reader too, one
    FromBlocked serves that reader."""
    rng = np.random.default_rng(2)
    g = jc.GraphBuilder()
    x = g.input("x", (1, 3, 24, 24))
    s = g.conv2d(x, rand(rng, 32, 3, 3, 3, scale=0.3), None, stride=2, padding=1,
                 activation="relu", name="stem")
    t = g.conv2d(s, rand(rng, 32, 32, 3, 3, scale=0.3), None, padding=1, name="next")
    g.output(t, "y")
    g.output(g.sigmoid(s), "side")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2, progress=False))
    ops = _ops(sess)
    assert "output NCHW" not in ops["stem"].reason
    assert [o.op_type for o in ops.values()].count("FromBlocked") == 2
    feeds = _feeds(graph)
    got, want = sess.run(feeds), evaluate(graph, feeds)
    for name in ("y", "side"):
        assert_close(got[name], want[name], what=name)


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("weights", ["fp16", "int8"])
def test_lone_stem_reads_stored_weights_in_memory_low(weights):
    g = jc.quantize(_lone(3, 32, 3, 2), weights)
    feeds = _feeds(g)
    sess = jc.Session(g, jc.Config(threads=2, progress=False, memory="low"))
    conv = _ops(sess)["conv"]
    assert conv.kernel.startswith("conv2d_blocked_") and "output NCHW" in conv.reason
    assert_close(sess.run(feeds)["y"], evaluate(g, feeds)["y"])
