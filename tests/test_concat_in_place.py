"""Concat without copies: the session writes each input of a channel Concat (batch 1)
straight into its slice of the output, nested Concats into the outermost one."""
from __future__ import annotations

import numpy as np
import pytest

import jitconv as jc
from jitconv.kernels.vnni import has_avx512
from jitconv.runtime.reference import evaluate

from helpers import assert_close, rand


def _dense_block(rng, batch=1, also_output=False, layout_channels=16):
    """Three DenseNet layers (each concatenates its output to its input) and a side
    Concat on the batch axis (never in place)."""
    g = jc.GraphBuilder()
    x = g.input("x", (batch, layout_channels, 8, 8))
    c = layout_channels
    first = None
    for i in range(3):
        y = g.conv2d(x, rand(rng, 16, c, 3, 3, scale=0.2), rand(rng, 16), padding=1,
                     activation="relu", name=f"l{i}")
        first = first or y
        x = g.concat([x, y], axis=1, name=f"cat{i}")
        c += 16
    g.output(g.conv2d(x, rand(rng, 8, c, 1, 1, scale=0.2), None, name="head"), "y")
    if also_output:
        g.output(first, "first")
    g.output(g.concat([first, first], axis=0, name="batch_cat"), "z")
    return g.build()


def _skipped(sess):
    return {sess._steps[i].node.name for i in sess._current.skip}


@pytest.mark.parametrize("layout", ["auto", "nchw"])
def test_nested_concats_are_written_in_place(layout):
    rng = np.random.default_rng(3)
    graph = _dense_block(rng)
    x = rand(rng, 1, 16, 8, 8)
    sess = jc.Session(graph, jc.Config(threads=2, layout=layout, progress=False))
    # cat1 and cat2 nest into cat2's output; cat0 holds the graph input x, so it stays a
    # copy in NCHW (in the blocked layout x's ToBlocked writes into its slice); the batch
    # Concat always copies
    skipped = _skipped(sess)
    assert {"cat1", "cat2"} <= skipped and "batch_cat" not in skipped
    if layout == "nchw":
        assert "cat0" not in skipped
    want = evaluate(graph, {"x": x})
    for _ in range(2):
        got = sess.run(x)
        for k in ("y", "z"):
            assert_close(got[k], want[k])
    reasons = {o.name: o.reason for o in sess.info().ops}
    assert "in place" in reasons["cat2"] and "in place" not in reasons["batch_cat"]
    prof = sess.profile(x, runs=2)
    assert {o.name for o in prof.ops if o.median_ms == 0} >= {"cat1", "cat2"}


def test_a_concat_input_that_is_a_graph_output_is_copied():
    rng = np.random.default_rng(4)
    graph = _dense_block(rng, also_output=True)
    sess = jc.Session(graph, jc.Config(threads=2, layout="nchw", progress=False))
    assert "cat0" not in _skipped(sess) and "batch_cat" not in _skipped(sess)
    x = rand(rng, 1, 16, 8, 8)
    got, want = sess.run(x), evaluate(graph, {"x": x})
    for k in ("y", "z", "first"):
        assert_close(got[k], want[k])


def test_batch_two_concats_copy():
    rng = np.random.default_rng(5)
    graph = _dense_block(rng, batch=2)
    sess = jc.Session(graph, jc.Config(threads=2, progress=False))
    assert not _skipped(sess)
    x = rand(rng, 2, 16, 8, 8)
    got, want = sess.run(x), evaluate(graph, {"x": x})
    assert_close(got["y"], want["y"])


def test_reshapes_are_views_of_their_input():
    """A Reshape of an arena tensor is planned on its input's bytes (no copy); one of a
    graph input, or one whose output is a graph output, still copies."""
    rng = np.random.default_rng(6)
    g = jc.GraphBuilder()
    x = g.input("x", (1, 8, 6, 6))
    y = g.conv2d(x, rand(rng, 8, 8, 3, 3, scale=0.3), None, padding=1, name="conv")
    r = g.reshape(y, [1, 2, 4, 6, 6], name="r1")                 # a view
    t = g.transpose(r, [0, 2, 1, 3, 4], name="shuffle")            # a real copy
    z = g.reshape(t, [1, 8, 6, 6], name="r2")                      # a view
    a = g.concat([z, y], axis=1, name="cat")                       # y is viewed by r1 too
    g.output(g.flatten(g.conv2d(a, rand(rng, 4, 16, 1, 1, scale=0.3), None, name="head"),
                       name="flat"), "out")
    g.output(g.reshape(x, [1, 288], name="rx"), "xr")               # of a graph input
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2, progress=False, layout="nchw"))
    skipped = _skipped(sess)
    assert {"r1", "r2"} <= skipped
    assert not {"shuffle", "flat", "rx"} & skipped
    feeds = {"x": rand(rng, 1, 8, 6, 6)}
    got, want = sess.run(feeds), evaluate(graph, feeds)
    for k in ("out", "xr"):
        assert_close(got[k], want[k])
    reasons = {o.name: o.reason for o in sess.info().ops}
    assert "a view of its input" in reasons["r1"]


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
def test_blocked_conv_writes_over_a_residual_read_last():
    """A blocked conv's output is planned in its residual's bytes when no later step
    reads the residual; a residual read again later keeps its own bytes."""
    rng = np.random.default_rng(7)
    g = jc.GraphBuilder()
    x = g.input("x", (1, 16, 9, 9))

    def conv(t, name, k=1):
        return g.conv2d(t, rand(rng, 16, 16, k, k, scale=0.3), rand(rng, 16),
                        padding=k // 2, name=name)

    a = g.relu(conv(x, "a", 3))
    a2 = g.relu(conv(a, "a2"))
    b = g.relu(g.add(conv(a2, "b"), a))          # a is read last here: b over a
    c = g.add(conv(b, "c"), a2)                  # a2 is read again by d: c keeps its bytes
    d = g.relu(g.add(conv(c, "d", 3), a2))       # d over a2
    e = g.add(conv(d, "e"), d)                   # the residual is X itself: own bytes
    g.output(e, "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2, progress=False))
    plan = sess._current
    out = {sess._steps[i].node.name: sess._steps[i].outputs[0]
           for i in range(len(sess._steps))}
    inside = {t: root for t, (root, _, _) in plan.inside.items()}
    assert inside.get(out["b"]) == out["a"] and inside.get(out["d"]) == out["a2"], inside
    assert out["c"] not in inside and out["e"] not in inside, inside
    feeds = {"x": rand(rng, 1, 16, 9, 9)}
    assert_close(sess.run(feeds)["y"], evaluate(graph, feeds)["y"])
