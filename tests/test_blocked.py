"""The channel-blocked layout: conv2d_blocked and the reorders against the references, and
the CPU layout pass (which convs it blocks, what it converts, and that sessions with and
without it agree)."""
import numpy as np
import pytest

import jitconv as jc
from jitconv.backends.base import Target
from jitconv.backends.cpu_layout import block_layout
from jitconv.kernels.conv_blocked import conv2d_blocked, pack_blocked
from jitconv.kernels.depthwise_blocked import depthwise_blocked, pack_depthwise_blocked
from jitconv.kernels.epilogue import ACT_CLIP, ACT_NONE, ACT_RELU
from jitconv.kernels.reorder import blocked_shape
from jitconv.kernels.vnni import has_avx512
from jitconv.runtime.ops.blocked import from_blocked as ref_from_blocked
from jitconv.runtime.ops.blocked import to_blocked as ref_to_blocked
from jitconv.runtime.passes import optimize
from jitconv.runtime.reference import evaluate, run_op

from helpers import assert_close, blocked, rand, unblocked

ACTS = {ACT_NONE: {}, ACT_RELU: {"activation": "relu"},
        ACT_CLIP: {"activation": "clip", "activation_min": -0.5, "activation_max": 0.7}}

# (N, C, M, k, stride, pad, dilation, H, W, input blocked)
CASES = [
    (1, 16, 32, 3, 1, 1, 1, 9, 9, True),
    (2, 32, 48, 3, 2, 1, 1, 13, 11, True),     # batch 2, M % 64 = 48 (a 3-block chunk)
    (1, 3, 64, 7, 2, 3, 1, 30, 30, False),     # a stem: NCHW input, 3 channels
    (1, 64, 80, 1, 1, 0, 1, 7, 7, True),       # M % 64 = 16 (a 1-block chunk)
    (1, 24, 40, 3, 1, 2, 2, 10, 12, True),     # channels not whole blocks, dilation 2
    (1, 20, 24, 5, 3, 0, 1, 11, 9, False),     # stride 3, no padding
    (1, 5, 16, 1, 1, 0, 1, 1, 1, True),        # one pixel: a tile of 1 real pixel
    (1, 300, 96, 3, 1, 1, 1, 5, 6, True),      # C over one pass of input channels (CBB)
    (1, 600, 40, 1, 1, 0, 1, 6, 7, True),      # 1x1 over ONEPASS channels: passes
    (1, 1100, 24, 1, 1, 0, 1, 3, 5, True),     # ... of CBB, and a last shorter one
    (1, 17, 160, 2, 2, 0, 1, 8, 8, False),     # even kernel, NCHW input of 17 channels
    (1, 32, 64, 1, 2, 0, 1, 9, 9, True),       # 1x1 stride 2 (a downsample), one pass
    (1, 16, 32, 1, 1, 1, 1, 5, 5, True),       # 1x1 padded: one pass with masked taps
    # 1x1 stride 1 unpadded (contiguous tiles of 24 / nb pixels) with a partial last tile:
    (1, 48, 96, 1, 1, 0, 1, 10, 9, True),      # a 2-block tail chunk: 12-pixel tiles
    (2, 40, 48, 1, 1, 0, 1, 5, 11, True),      # 3 blocks: 8-pixel tiles, batch 2
    (1, 24, 16, 1, 1, 0, 1, 7, 8, True),       # 1 block: 24-pixel tiles
    # NCHW inputs on row tiles of 24 / nb pixels:
    (1, 3, 32, 3, 2, 1, 1, 33, 31, False),     # a 3x3 stride-2 stem: 12-pixel tiles
    (2, 5, 16, 3, 1, 1, 2, 12, 13, False),     # 24-pixel tiles wider than a row, dilated
    (1, 4, 48, 3, 1, 1, 1, 20, 40, False),     # stride 1, 8-pixel tiles
    # blocked inputs of one block (C <= 16): whole windows in one call
    (1, 16, 64, 3, 1, 1, 1, 13, 12, True),
    (2, 12, 40, 3, 2, 1, 1, 11, 9, True),      # stride 2, a partial block, batch 2
    (1, 8, 16, 5, 1, 2, 2, 12, 12, True),      # dilation 2: tap by tap
]


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:9])))
def test_conv_blocked_matches_reference(case, act):
    n, c, m, k, s, p, d, h, w, x_blocked = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x, wt, b = rand(rng, n, c, h, w), rand(rng, m, c, k, k, scale=0.3), rand(rng, m)
    attrs = {"strides": [s, s], "pads": [p, p, p, p], "dilations": [d, d], **ACTS[act]}
    conv = run_op("Conv", [x, wt, b], {k_: v for k_, v in attrs.items()
                                       if not k_.startswith("activation")})
    res = rand(rng, *conv.shape)
    want = run_op("Relu", [conv + res]) if act == ACT_RELU else \
        np.clip(conv + res, -0.5, 0.7) if act == ACT_CLIP else conv + res
    out = np.full(blocked_shape(conv.shape), np.nan, np.float32)
    lo, hi = (-0.5, 0.7) if act == ACT_CLIP else (0.0, 0.0)
    conv2d_blocked(blocked(x) if x_blocked else x, pack_blocked(wt, 16 if x_blocked else 1),
                   wt.shape, b, blocked(res), out, s, s, p, p, d, d, act, lo, hi)
    assert_close(unblocked(out, m), want, what=f"{case} act {act}")
    assert np.isfinite(out).all(), "padding channels must be written (finite)"


# (N, C, k, stride, pad, dilation, H, W)
DW_CASES = [(1, 16, 3, 1, 1, 1, 9, 9), (2, 24, 3, 2, 1, 1, 13, 11), (1, 40, 5, 1, 2, 1, 7, 8),
            (1, 33, 3, 1, 2, 2, 10, 6), (1, 16, 3, 2, 0, 1, 5, 5), (1, 8, 7, 3, 3, 1, 4, 9)]


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("case", DW_CASES, ids=lambda c: "x".join(map(str, c)))
def test_depthwise_blocked_matches_reference(case, act):
    n, c, k, s, p, d, h, w = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x, wt, b = rand(rng, n, c, h, w), rand(rng, c, 1, k, k), rand(rng, c)
    conv = run_op("Conv", [x, wt, b], {"strides": [s, s], "pads": [p, p, p, p],
                                       "dilations": [d, d], "group": c})
    res = rand(rng, *conv.shape)
    want = np.maximum(conv + res, 0) if act == ACT_RELU else \
        np.clip(conv + res, -0.5, 0.7) if act == ACT_CLIP else conv + res
    out = np.full(blocked_shape(conv.shape), np.nan, np.float32)
    lo, hi = (-0.5, 0.7) if act == ACT_CLIP else (0.0, 0.0)
    depthwise_blocked(blocked(x), pack_depthwise_blocked(wt), wt.shape, b, blocked(res),
                      out, s, s, p, p, d, d, act, lo, hi)
    assert_close(unblocked(out, c), want, what=f"{case} act {act}")
    assert np.isfinite(out).all()


def test_residual_may_be_the_output_and_threads_agree():
    rng = np.random.default_rng(3)
    x, wt, b = rand(rng, 1, 32, 14, 14), rand(rng, 64, 32, 3, 3, scale=0.2), rand(rng, 64)
    conv = run_op("Conv", [x, wt, b], {"pads": [1, 1, 1, 1]})
    res = rand(rng, *conv.shape)
    wp = pack_blocked(wt, 16)
    outs = []
    import numba
    before = numba.get_num_threads()
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            out = blocked(res)          # in place: the residual is read before the write
            conv2d_blocked(blocked(x), wp, wt.shape, b, out, out, 1, 1, 1, 1, 1, 1,
                           ACT_NONE, 0.0, 0.0)
            outs.append(unblocked(out, 64))
    finally:
        numba.set_num_threads(before)
    assert_close(outs[0], conv + res)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("c", [1, 5, 16, 33])
def test_reorders_round_trip_and_match_reference(c):
    x = rand(np.random.default_rng(c), 2, c, 3, 37)     # two 16-pixel runs and a tail
    y = blocked(x)
    np.testing.assert_array_equal(y, ref_to_blocked(x))
    assert not y[:, -1, :, :, c % 16 or 16:].any(), "padding channels are zero"
    np.testing.assert_array_equal(unblocked(y, c), x)
    np.testing.assert_array_equal(ref_from_blocked(y, c), x)


def test_kernel_errors_name_the_mismatch():
    wt = np.zeros((32, 20, 3, 3), np.float32)
    x = np.zeros((1, 2, 8, 8, 16), np.float32)
    out = np.zeros((1, 2, 8, 8, 16), np.float32)
    with pytest.raises(ValueError, match="packed weights"):
        conv2d_blocked(x, pack_blocked(wt, 1), wt.shape, np.zeros(32, np.float32), None,
                       out, 1, 1, 1, 1, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="not blocked"):
        conv2d_blocked(x, pack_blocked(wt, 16), wt.shape, np.zeros(32, np.float32), None,
                       out[:, :1], 1, 1, 1, 1, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="does not match"):
        conv2d_blocked(np.zeros((1, 3, 8, 8, 16), np.float32), pack_blocked(wt, 16),
                       wt.shape, np.zeros(32, np.float32), None, out, 1, 1, 1, 1, 1, 1, 0, 0, 0)


# ----------------------------------------------------------------------------- the pass

def _resnetish(size=12, dynamic=False):
    """stem conv -> pool -> two bottleneck-like blocks (one with a conv shortcut) -> head."""
    rng = np.random.default_rng(0)
    g = jc.GraphBuilder("resnetish")
    x = g.input("x", (1, 3, size, size), dynamic_axes=(0, 2, 3) if dynamic else ())

    def conv(t, c, m, k, s=1, act="relu", name=None):
        return g.conv2d(t, rand(rng, m, c, k, k, scale=0.3), rand(rng, m), stride=s,
                        padding=k // 2, activation=act, name=name)
    t = g.max_pool(conv(x, 3, 24, 3, name="stem"), 3, stride=2, padding=1, name="pool")
    a = conv(conv(t, 24, 16, 1, name="b1a"), 16, 40, 3, 2, act=None, name="b1b")
    short = conv(t, 24, 40, 1, 2, act=None, name="b1s")
    t = g.relu(g.add(a, short))
    a = conv(conv(t, 40, 32, 1, name="b2a"), 32, 40, 3, act=None, name="b2b")
    t = g.relu(g.add(a, t))
    g.output(g.global_average_pool(t), "y")
    return g.build()


def _kernels(sess):
    return {o.name: o.kernel for o in sess.info().ops}


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
def test_pass_blocks_conv_chains_and_sessions_agree():
    g = _resnetish()
    x = rand(np.random.default_rng(1), 1, 3, 12, 12)
    auto = jc.Session(g, jc.Config(threads=2, progress=False))
    plain = jc.Session(g, jc.Config(threads=2, progress=False, layout="nchw"))
    kernels = _kernels(auto)
    assert kernels["stem"] == "conv2d_blocked", "blocked through the MaxPool to b1a, b1s"
    assert kernels["pool"] == "max_pool_blocked"
    assert {kernels[n] for n in ("b1a", "b1b", "b1s", "b2a", "b2b")} == {"conv2d_blocked"}
    ops = [o.op_type for o in auto.info().ops]
    # the head's GlobalAveragePool reads the last blocks itself: no conversion at all
    assert "FromBlocked" not in ops and "ToBlocked" not in ops
    assert "conv2d_blocked" not in _kernels(plain).values()
    assert "NCHW16c" in next(o.reason for o in auto.info().ops if o.name == "b2b")
    got, want = auto.run(x)["y"], plain.run(x)["y"]
    assert_close(got, want)
    assert_close(got, evaluate(g, {"x": x})["y"])


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
def test_pass_converts_an_nchw_residual_and_graph_outputs():
    rng = np.random.default_rng(2)
    g = jc.GraphBuilder()
    x = g.input("x", (2, 16, 9, 9))
    a = g.conv2d(x, rand(rng, 16, 16, 3, 3, scale=0.3), rand(rng, 16), padding=1,
                 activation="relu", name="a")
    b = g.conv2d(a, rand(rng, 16, 16, 3, 3, scale=0.3), None, padding=1, name="b")
    g.output(a, "mid")                      # a blocked conv's output is a graph output too
    g.output(g.add(b, x), "y")              # fused into b: an NCHW residual (the input)
    graph = g.build()
    feeds = {"x": rand(rng, 2, 16, 9, 9)}
    sess = jc.Session(graph, jc.Config(threads=2, progress=False))
    ops = [o.op_type for o in sess.info().ops]
    assert ops.count("ToBlocked") == 1 and ops.count("FromBlocked") == 2
    got, want = sess.run(feeds), evaluate(graph, feeds)
    for name in ("mid", "y"):
        assert_close(got[name], want[name], what=name)
    assert jc.compare(graph, graph, feeds).worst().max_abs == 0.0


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
def test_blocked_session_resizes():
    g = _resnetish(dynamic=True)
    sess = jc.Session(g, jc.Config(threads=2, progress=False))
    for n, size in ((1, 12), (2, 17), (1, 8)):
        x = rand(np.random.default_rng(size), n, 3, size, size)
        assert_close(sess.run({"x": x})["y"], evaluate(g, {"x": x})["y"], what=f"{n}x{size}")
    assert "conv2d_blocked" in _kernels(sess).values()


def test_pass_follows_what_is_kept():
    """Pure function of the kept weights, config and target: no AVX-512, int8 weights read
    by the int8 dot kernel and grouped (not depthwise) convs keep NCHW; fp16 and int4 in
    either mode (kept as stored, or decoded) are blocked."""
    g = optimize(_resnetish())
    cfg = jc.Config()
    host = Target(avx512=True, threads=2)

    def blocked(graph, config=cfg, target=host):
        return sum(n.attr("_layout") == "nchw16c" for n in block_layout(graph, config, target).nodes)
    assert blocked(g) == 8          # 6 convs, the max pool and the global average pool
    assert blocked(g, target=Target(avx512=False)) == 0
    half = optimize(jc.quantize(_resnetish(), "fp16"))
    assert blocked(half, jc.Config(memory="low")) == 8          # decoded pass by pass
    assert blocked(half, jc.Config(memory="normal")) == 8
    int4 = optimize(jc.quantize(_resnetish(), "int4"))
    assert blocked(int4, jc.Config(memory="low")) == 8          # decoded pass by pass
    assert blocked(int4, jc.Config(memory="normal")) == 8       # decoded to fp32 at load
    int8 = optimize(jc.quantize(_resnetish(), "int8"))
    vnni = Target(avx512=True, vnni=True, threads=2)
    assert blocked(int8, jc.Config(memory="low"), vnni) == 8
    assert blocked(int8, jc.Config(memory="low", precision="low"), vnni) == 0   # int8 dot
    rng = np.random.default_rng(4)
    b = jc.GraphBuilder()
    t = b.input("x", (1, 32, 8, 8))
    for name, groups, k in (("short", 1, 1), ("grouped", 4, 3), ("lone", 1, 3),
                            ("grouped2", 4, 3), ("dw", 32, 3), ("dense", 1, 3)):
        t = b.conv2d(t, rand(rng, 32, 32 // groups, k, k), None, padding=k // 2,
                     groups=groups, name=name)
    b.output(t, "y")
    nodes = {n.name: n for n in block_layout(optimize(b.build()), cfg, host).nodes}
    assert nodes["grouped"].attr("_layout") is None
    assert [nodes[k].attr("_layout") for k in ("dw", "dense")] == ["nchw16c"] * 2
    assert nodes["short"].attr("_layout") is None, "alone, K = 32 < LONE_K"
    assert nodes["lone"].attr("_layout") == "nchw16c", "alone, but K = 288 >= LONE_K"


def test_config_layout_is_checked():
    with pytest.raises(jc.ConfigError, match="layout"):
        jc.Config(layout="nhwc")


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("ceil", [False, True])
def test_blocked_max_pool_as_graph_output(ceil):
    rng = np.random.default_rng(5)
    g = jc.GraphBuilder()
    x = g.input("x", (1, 20, 11, 11))
    a = g.conv2d(x, rand(rng, 24, 20, 3, 3, scale=0.3), rand(rng, 24), padding=1, name="a")
    b = g.conv2d(a, rand(rng, 24, 24, 1, 1, scale=0.3), None, name="b")
    g.output(g.max_pool(b, 3, stride=2, padding=1, ceil_mode=ceil, name="pool"), "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2, progress=False))
    assert _kernels(sess)["pool"] == "max_pool_blocked"
    feeds = {"x": rand(rng, 1, 20, 11, 11)}
    assert_close(sess.run(feeds)["y"],
                 jc.Session(graph, jc.Config(layout="nchw")).run(feeds)["y"])
    assert_close(sess.run(feeds)["y"], evaluate(graph, feeds)["y"])


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("weights,block,symmetric", [("fp16", None, True), ("int8", None, True),
                                                     ("int8", None, False), ("int8", 16, False),
                                                     ("int4", None, True), ("int4", 16, False)])
def test_blocked_reads_stored_weights_in_memory_low(weights, block, symmetric):
    """memory=low keeps fp16 / int8 / int4 as stored: conv2d_blocked_<w>w decodes them pass by pass
    (kernels/blocked_weights.py); the session holds the stored bytes, not fp32."""
    g = jc.quantize(_resnetish(size=14), weights, block=block, symmetric=symmetric)
    x = rand(np.random.default_rng(6), 1, 3, 14, 14)
    sess = jc.Session(g, jc.Config(threads=2, memory="low", progress=False))
    kernels = _kernels(sess)
    assert kernels["b2b"] == f"conv2d_blocked_{weights}w"
    assert kernels["b1b"] == f"conv2d_blocked_{weights}w"
    fp32 = jc.Session(g, jc.Config(threads=2, memory="normal", progress=False))
    assert sess.info().weight_bytes < 0.6 * fp32.info().weight_bytes
    assert_close(sess.run(x)["y"], evaluate(g, {"x": x})["y"])      # stored values, decoded


def _inverted_residual(rng, c=24, e=40):
    g = jc.GraphBuilder()
    x = g.input("x", (1, c, 9, 9))
    t = g.conv2d(x, rand(rng, e, c, 1, 1, scale=0.3), rand(rng, e), activation="relu",
                 name="expand")
    t = g.conv2d(t, rand(rng, e, 1, 3, 3, scale=0.3), rand(rng, e), padding=1, groups=e,
                 activation="relu", name="dw1")
    t = g.conv2d(t, rand(rng, e, 1, 3, 3, scale=0.3), rand(rng, e), stride=2, padding=1,
                 groups=e, name="dw2")
    g.output(g.conv2d(t, rand(rng, c, e, 1, 1, scale=0.3), None, name="project"), "y")
    return g.build()


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("weights", ["fp16", "int8", "int4"])
def test_blocked_depthwise_reads_stored_weights_in_memory_low(weights):
    """memory=low keeps a depthwise weight as stored: depthwise_blocked_<w>w decodes it
    into the scratch on each call; the chain is blocked end to end."""
    rng = np.random.default_rng(8)
    g = jc.quantize(_inverted_residual(rng), weights)
    x = rand(rng, 1, 24, 9, 9)
    sess = jc.Session(g, jc.Config(threads=2, memory="low", progress=False))
    kernels = _kernels(sess)
    assert kernels["dw1"] == kernels["dw2"] == f"depthwise_blocked_{weights}w"
    assert kernels["expand"] == kernels["project"] == f"conv2d_blocked_{weights}w"
    info = sess.info()
    assert info.scratch_bytes >= 4 * 2 * 40 * 9, "decoded rows and blocks of dw1 / dw2"
    fp32 = jc.Session(g, jc.Config(threads=2, memory="normal", progress=False))
    assert info.weight_bytes < 0.6 * fp32.info().weight_bytes
    for _ in range(2):      # the scratch is reused: the second call decodes again
        assert_close(sess.run(x)["y"], evaluate(g, {"x": x})["y"])


def _fire_graph(rng, squeeze=16, expand=32, tail_channels=None, axis=1):
    """Two fire modules (squeeze 1x1, expand 1x1 and 3x3 concatenated) and, with
    tail_channels, a third branch concatenated from an NCHW average pool."""
    g = jc.GraphBuilder()
    x = g.input("x", (1, 32, 10, 10))
    c = 32
    for i in range(2):
        s = g.conv2d(x, rand(rng, squeeze, c, 1, 1, scale=0.3), rand(rng, squeeze),
                     activation="relu", name=f"f{i}_sq")
        e1 = g.conv2d(s, rand(rng, expand, squeeze, 1, 1, scale=0.3), rand(rng, expand),
                      activation="relu", name=f"f{i}_e1")
        e3 = g.conv2d(s, rand(rng, expand, squeeze, 3, 3, scale=0.3), rand(rng, expand),
                      padding=1, activation="relu", name=f"f{i}_e3")
        parts = [e1, e3]
        if tail_channels and i == 1:
            pooled = g.average_pool(g.conv2d(x, rand(rng, tail_channels, c, 1, 1, scale=0.3),
                                             None, name="side"), 3, stride=1, padding=1,
                                    name="side_pool")
            parts.append(pooled)
        x = g.concat(parts, axis=axis, name=f"f{i}_cat")
        c = 2 * expand + (tail_channels or 0) * (i == 1)
    g.output(g.max_pool(x, 2, stride=2, name="pool"), "y")
    return g.build()


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("case", ["whole blocks", "an NCHW input", "ragged", "axis -3"])
def test_concat_of_channels_runs_blocked(case):
    """A Concat of channels follows its blocked inputs when every input holds whole
    16-channel blocks (an NCHW one goes through ToBlocked); otherwise it stays NCHW."""
    rng = np.random.default_rng(9)
    graph = _fire_graph(rng, expand=24 if case == "ragged" else 32,
                        tail_channels=16 if case == "an NCHW input" else None,
                        axis=-3 if case == "axis -3" else 1)
    sess = jc.Session(graph, jc.Config(threads=2, progress=False))
    ops = {o.name: o for o in sess.info().ops}
    kinds = [o.kernel for o in ops.values()]
    if case == "ragged":
        assert ops["f0_cat"].out_shape == (1, 48, 10, 10)
        assert "from_blocked" in {ops[n].kernel for n in ops if n.startswith("f0_e1/")}
    else:
        assert len(ops["f1_cat"].out_shape) == 5, "the concat output stays blocked"
        assert ops["pool"].kernel == "max_pool_blocked"
        # once at the graph output (and for the NCHW average pool of the side branch);
        # the graph input once (and the pool's output, concatenated)
        side = case == "an NCHW input"
        assert kinds.count("from_blocked") == 1 + side
        assert kinds.count("to_blocked") == 1 + side
    x = rand(rng, 1, 32, 10, 10)
    want = evaluate(graph, {"x": x})["y"]
    assert_close(sess.run(x)["y"], want)
    assert_close(jc.Session(graph, jc.Config(layout="nchw")).run(x)["y"], want)


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("pool,blocked", [
    (dict(kernel=2, stride=2), True),                                   # DenseNet's transition
    (dict(kernel=3, stride=1, padding=1, count_include_pad=True), True),    # pads counted
    (dict(kernel=3, stride=2, padding=1), False),                       # pads not counted
    (dict(kernel=3, stride=2, ceil_mode=True), False)])                 # ceil overhang
def test_average_pool_follows_blocked_convs_where_exact(pool, blocked):
    rng = np.random.default_rng(10)
    g = jc.GraphBuilder()
    x = g.input("x", (1, 20, 11, 11))
    a = g.conv2d(x, rand(rng, 32, 20, 3, 3, scale=0.3), rand(rng, 32), padding=1, name="a")
    p = g.average_pool(a, pool.pop("kernel"), name="pool", **pool)
    b = g.conv2d(p, rand(rng, 16, 32, 1, 1, scale=0.3), None, name="b")
    g.output(b, "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2, progress=False))
    kernels = _kernels(sess)
    assert (kernels["pool"] == "avg_pool_blocked") == blocked, kernels
    feeds = {"x": rand(rng, 1, 20, 11, 11)}
    assert_close(sess.run(feeds)["y"], evaluate(graph, feeds)["y"])


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("channels", [40, 64])
def test_global_average_pool_reads_blocks(channels):
    """A blocked conv chain's GlobalAveragePool reads the blocks and writes NCHW: no
    FromBlocked; channels past C (a partial block) are not written."""
    rng = np.random.default_rng(channels)
    g = jc.GraphBuilder()
    x = g.input("x", (2, 16, 7, 9))
    a = g.conv2d(x, rand(rng, 32, 16, 3, 3, scale=0.3), rand(rng, 32), padding=1,
                 activation="relu", name="a")
    b = g.conv2d(a, rand(rng, channels, 32, 1, 1, scale=0.3), rand(rng, channels), name="b")
    g.output(g.global_average_pool(b, name="gap"), "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2, progress=False))
    ops = {o.name: o for o in sess.info().ops}
    assert ops["gap"].kernel == "global_avg_pool_blocked"
    assert "FromBlocked" not in [o.op_type for o in ops.values()]
    feeds = {"x": rand(rng, 2, 16, 7, 9)}
    got = sess.run(feeds)["y"]
    assert got.shape == (2, channels, 1, 1)
    assert_close(got, evaluate(graph, feeds)["y"])


def test_blocked_max_pool_propagates_nan_and_ignores_padding():
    """A NaN anywhere in a window wins (as MaxPool's reference, np.max); taps outside the
    image are left out, so an all-negative border window keeps its own maximum."""
    from jitconv.kernels.pool_blocked import max_pool_blocked
    rng = np.random.default_rng(11)
    x = -np.abs(rand(rng, 1, 20, 9, 10)) - 1.0       # all negative: padding must not win
    x[0, 3, 4, 4] = np.nan
    x[0, 17, 0, 0] = np.nan
    want = run_op("MaxPool", [x], {"kernel_shape": [3, 3], "strides": [2, 2],
                                   "pads": [1, 1, 1, 1]})
    out = np.full(blocked_shape(want.shape), 7.0, np.float32)
    max_pool_blocked(blocked(x), out, 3, 3, 2, 2, 1, 1, 1, 1)
    got = unblocked(out, 20)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(want).sum() >= 2
    ok = ~np.isnan(want)
    assert np.array_equal(got[ok], want[ok])
