"""Concat without copies: the session writes each input of a channel Concat (batch 1)
straight into its slice of the output, nested Concats into the outermost one."""
from __future__ import annotations

import numpy as np
import pytest

import jitconv as jc
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
