"""Bad and unusual inputs at run time: a right answer or a jitconv error naming the culprit."""
import numpy as np
import pytest

import jitconv as jc
from jitconv import models
from jitconv.runtime.reference import evaluate

from helpers import assert_close, rand


@pytest.fixture(scope="module")
def mnv2():
    g = models.mobilenet_v2(input_size=32, width=0.35, num_classes=10)
    return g, jc.Session(g, jc.Config(threads=2))


def _two_inputs(rng):
    g = jc.GraphBuilder("two")
    a, b = g.input("a", (1, 3, 6, 6)), g.input("b", (1, 3, 6, 6), dynamic_axes=(0,))
    g.output(g.add(g.conv2d(a, rand(rng, 3, 3, 3, 3), padding=1), b), "y")
    return g.build()


@pytest.mark.parametrize("feeds,match", [
    (lambda a, b: {"a": a}, r"missing \['b'\]"),
    (lambda a, b: {"a": a, "b": b, "c": b}, r"unknown \['c'\]"),
    (lambda a, b: {"A": a, "b": b}, r"unknown \['A'\], missing \['a'\]"),
    (lambda a, b: a, "2 inputs .*pass a dict"),
    (lambda a, b: [a, b], "dict of input name"),
    (lambda a, b: {"a": a.tolist(), "b": b}, "input 'a' must be a numpy array, got list"),
    (lambda a, b: {"a": a.astype(np.float64), "b": b}, "'a' has dtype float64"),
    (lambda a, b: {"a": a.astype(np.int32), "b": b}, "'a' has dtype int32"),
    (lambda a, b: {"a": a.astype(np.float16), "b": b}, "'a' has dtype float16"),
    (lambda a, b: {"a": a[0], "b": b}, r"'a' has shape \(3, 6, 6\), expected \(1, 3, 6, 6\)"),
    (lambda a, b: {"a": a[..., :5], "b": b}, r"'a' has shape \(1, 3, 6, 5\).*resize"),
    (lambda a, b: {"a": np.float32(1.0), "b": b}, "'a' must be a numpy array, got float32"),
    (lambda a, b: {"a": np.array(1.0, np.float32), "b": b}, r"'a' has shape \(\)"),
    (lambda a, b: {"a": a, "b": b[:, :2]}, r"'b' has shape \(1, 2, 6, 6\).*only axis 0"),
])
def test_wrong_feeds_name_the_culprit(rng, feeds, match):
    sess = jc.Session(_two_inputs(rng), jc.Config(threads=1))
    a, b = rand(rng, 1, 3, 6, 6), rand(rng, 1, 3, 6, 6)
    with pytest.raises(jc.InputError, match=match):
        sess.run(feeds(a, b))
    sess.run({"a": a, "b": b})                 # and the session is still usable


def test_a_batch_mismatch_between_inputs_is_named_and_the_session_recovers(rng):
    graph = _two_inputs(rng)
    sess = jc.Session(graph, jc.Config(threads=1))
    for n in (4, 0):        # b's batch may change, a's may not: the fused residual says so
        with pytest.raises(jc.GraphError, match=rf"'conv': residual input shape \({n}, 3"):
            sess.run({"a": rand(rng, 1, 3, 6, 6), "b": rand(rng, n, 3, 6, 6)})
    a, b = rand(rng, 1, 3, 6, 6), rand(rng, 1, 3, 6, 6)
    assert_close(sess.run({"a": a, "b": b})["y"], evaluate(graph, {"a": a, "b": b})["y"])


@pytest.mark.parametrize("make", [
    lambda x: np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),  # NHWC view
    lambda x: np.repeat(x, 2, axis=3)[..., ::2],                                    # strided
    lambda x: np.asfortranarray(x),
    lambda x: _readonly(x),
    lambda x: _unaligned(x),
])
def test_non_contiguous_read_only_and_unaligned_inputs(mnv2, rng, make):
    g, sess = mnv2
    x = rand(rng, 1, 3, 32, 32)
    arg = make(x)
    np.testing.assert_array_equal(arg, x)
    before = arg.copy()
    got = sess.run(arg)["logits"]
    assert_close(got, evaluate(g, {"input": x})["logits"], rtol=1e-3)
    np.testing.assert_array_equal(arg, before)          # the input is never written


def _readonly(x):
    x = x.copy()
    x.flags.writeable = False
    return x


def _unaligned(x):
    raw = np.empty(x.nbytes + 1, np.uint8)[1:]
    y = raw.view(np.float32).reshape(x.shape)
    y[...] = x
    assert not y.flags.aligned
    return y


def test_nan_and_inf_propagate_as_in_the_reference(rng):
    g = jc.GraphBuilder("nan")
    x = g.input("x", (1, 3, 9, 9))
    y = g.conv2d(x, rand(rng, 5, 3, 3, 3), rand(rng, 5), padding=1)
    g.output(g.max_pool(g.relu(y), 2, stride=2), "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2))
    for bad in (np.nan, np.inf, -np.inf):
        x = rand(rng, 1, 3, 9, 9)
        x[0, 1, 4, 4] = bad
        got, want = sess.run(x)["y"], evaluate(graph, {"x": x})["y"]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        ok = np.isfinite(want)
        assert ok.any() and not ok.all()                # the bad value reached some outputs
        assert_close(got[ok], want[ok], what=f"{bad}")


@pytest.mark.parametrize("storage,precision,memory", [
    (None, "normal", "normal"), ("fp16", "normal", "low"), ("int8", "low", "low"),
    ("int4", "normal", "low"), ("int8", "high", "high")])
def test_a_zero_size_batch_runs_to_empty_outputs(storage, precision, memory):
    g = models.resnet50(input_size=32, num_classes=10)
    if storage:
        g = jc.quantize(g, storage)
    sess = jc.Session(g, jc.Config(threads=2, precision=precision, memory=memory))
    sess.resize({"input": (0, 3, 32, 32)})
    out = sess.run(np.zeros((0, 3, 32, 32), np.float32))
    assert {k: v.shape for k, v in out.items()} == {"logits": (0, 10)}
    sess.resize({"input": (2, 3, 32, 32)})             # and back to real work
    x = rand(np.random.default_rng(1), 2, 3, 32, 32)
    assert sess.run(x)["logits"].shape == (2, 10)


def test_a_zero_size_batch_on_a_dynamic_axis_needs_no_resize(rng):
    g = jc.GraphBuilder("dyn")
    x = g.input("x", (2, 3, 8, 8), dynamic_axes=(0,))
    y = g.flatten(g.global_average_pool(g.conv2d(x, rand(rng, 6, 3, 3, 3), padding=1)))
    g.output(g.softmax(g.dense(y, rand(rng, 5, 6), rand(rng, 5))), "p")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2))
    for n in (0, 3, 0):
        x = rand(rng, n, 3, 8, 8)
        got = sess.run(x)["p"]
        assert got.shape == (n, 5)
        assert_close(got, evaluate(graph, {"x": x})["p"])
