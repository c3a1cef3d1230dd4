"""Sizes from user-given shapes are checked before anything is allocated."""
import numpy as np
import pytest

import jitconv as jc
from jitconv.runtime import limits
from jitconv.runtime.reference import evaluate

from helpers import assert_close, rand

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _graph(rng, shape=(1, 3, 8, 8), dynamic=(0,)):
    g = jc.GraphBuilder("small")
    x = g.input("x", shape, dynamic_axes=dynamic)
    g.output(g.conv2d(x, rand(rng, 4, 3, 3, 3), padding=1, activation="relu"), "y")
    return g.build()


def test_resize_beyond_memory_is_named_and_the_session_still_runs(rng):
    graph = _graph(rng)
    sess = jc.Session(graph, jc.Config(threads=1))
    with pytest.raises(jc.OutOfMemoryError, match=r"Session.resize at input shapes "
                       r"\{'x': \(100000000, 3, 8, 8\)\}.* needs [\d,]+ bytes") as e:
        sess.resize({"x": (10**8, 3, 8, 8)})
    assert isinstance(e.value, MemoryError) and isinstance(e.value, jc.JitconvError)
    x = rand(rng, 1, 3, 8, 8)
    assert_close(sess.run(x)["y"], evaluate(graph, {"x": x})["y"])
    assert sess.input_shapes == {"x": (1, 3, 8, 8)}


def test_a_dynamic_batch_over_the_limit_is_refused_before_allocating(rng, monkeypatch):
    graph = _graph(rng)
    sess = jc.Session(graph, jc.Config(threads=1))
    monkeypatch.setenv("JITCONV_MEMORY_LIMIT", "64K")
    x = rand(rng, 200, 3, 8, 8)            # 154 KB in, 205 KB of output
    with pytest.raises(jc.OutOfMemoryError, match=r"Session.run at input shapes "
                       r"\{'x': \(200, 3, 8, 8\)\}.*64.0 KiB available \(JITCONV_MEMORY_LIMIT"):
        sess.run(x)
    small = rand(rng, 2, 3, 8, 8)
    assert_close(sess.run(small)["y"], evaluate(graph, {"x": small})["y"])
    monkeypatch.delenv("JITCONV_MEMORY_LIMIT")
    assert_close(sess.run(x)["y"], evaluate(graph, {"x": x})["y"])


def test_a_model_declaring_a_giant_input_fails_at_session(rng):
    graph = _graph(rng, shape=(10**6, 3, 1000, 1000), dynamic=())
    with pytest.raises(jc.OutOfMemoryError, match=r"Session\(\) at input shapes"):
        jc.Session(graph, jc.Config(threads=1))


@pytest.mark.parametrize("text,want", [("123", 123), ("4K", 4096), ("1.5M", 3 * 2**19),
                                       ("2GiB", 2 * 2**30), ("1t", 2**40)])
def test_memory_limit_parsing(monkeypatch, text, want):
    monkeypatch.setenv("JITCONV_MEMORY_LIMIT", text)
    assert limits.available_bytes() == (want, "JITCONV_MEMORY_LIMIT")


@pytest.mark.parametrize("text", ["lots", "-5", "4X", "nan"])
def test_a_bad_memory_limit_is_named(monkeypatch, text):
    monkeypatch.setenv("JITCONV_MEMORY_LIMIT", text)
    with pytest.raises(jc.OutOfMemoryError, match="JITCONV_MEMORY_LIMIT="):
        limits.check_bytes(1, "x")


def test_the_machine_limit_is_real(monkeypatch):
    monkeypatch.delenv("JITCONV_MEMORY_LIMIT", raising=False)
    got, source = limits.available_bytes()
    assert got is not None and 2**20 < got < 2**50 and source


def _onnx_model(tmp_path, inits, nodes, out="y", out_shape=(1, 4)):
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [1, 4])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def _raw(name, dims, data):
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
    t.raw_data = data
    return t


@pytest.mark.parametrize("dims,match", [
    ([10**6, 10**6], r"OutOfMemoryError|needs [\d,]+ bytes"),
    ([4, 1000], r"initializer 'b' of dims \[4, 1000\].*cannot be read"),
])
def test_hostile_initializers_are_named(tmp_path, dims, match):
    path = _onnx_model(tmp_path, [_raw("b", dims, b"\0" * 16)],
                       [helper.make_node("Add", ["x", "b"], ["y"])])
    with pytest.raises(jc.JitconvError, match=match) as e:
        jc.load(path)
    assert "'b'" in str(e.value)


def test_a_giant_constant_of_shape_is_refused(tmp_path):
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [10**7, 10**7])
    path = _onnx_model(tmp_path, [shape], [
        helper.make_node("ConstantOfShape", ["s"], ["c"]),
        helper.make_node("Add", ["x", "c"], ["y"])], out_shape=(10**7, 10**7))
    with pytest.raises(jc.OutOfMemoryError, match=r"ConstantOfShape.*shape \[10000000, "
                       r"10000000\]"):
        jc.load(path)
