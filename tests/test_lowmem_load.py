"""Loading a .jcm and preparing with memory=low never materialises fp32 weights."""
import tracemalloc

import numpy as np
import pytest

import jitconv as jc
from helpers import assert_close
from jitconv.models import conv_chain
from jitconv.runtime.ir import Constant
from jitconv.runtime.reference import evaluate


@pytest.mark.parametrize("weights", ["fp16", "int8", "int4"])
def test_load_and_prepare_low_memory_holds_no_fp32_copy(tmp_path, weights):
    graph = jc.quantize(conv_chain(layers=6, channels=256, size=8), weights)
    path = tmp_path / f"chain_{weights}.jcm"
    jc.save(graph, path)
    fp32_bytes = sum(4 * int(np.prod(c.shape)) for c in graph.constants.values())
    x = np.random.default_rng(0).standard_normal((1, 256, 8, 8)).astype(np.float32)
    # compile outside tracing (memory-mapped weights are read-only arrays: their own types)
    jc.Session(jc.load(path), jc.Config(memory="low", threads=1)).run(x)
    tracemalloc.start()
    try:
        sess = jc.Session(jc.load(path), jc.Config(memory="low", threads=1))
        got = sess.run(x)["y"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the session keeps the stored weights repacked into the tiled kernel's panels (the
    # bytes its info() reports); beyond those, the largest single layer in fp32 (1/6 of
    # the fp32 weights) never appears, not even for a moment
    kept = sess.info().weight_bytes
    assert kept < 0.55 * fp32_bytes
    assert peak < kept + fp32_bytes / 12, (peak, kept, fp32_bytes)
    assert_close(got, evaluate(graph, {"x": x})["y"])


def test_low_memory_session_never_calls_as_float32_on_weights(tmp_path, monkeypatch):
    graph = jc.quantize(conv_chain(layers=2, channels=32, size=8), "int8")
    path = tmp_path / "chain.jcm"
    jc.save(graph, path)
    loaded = jc.load(path)
    real = Constant.as_float32

    def guarded(self):
        if self.storage != "fp32":
            raise AssertionError(f"{self.name}: decoded to fp32 in memory=low")
        return real(self)
    monkeypatch.setattr(Constant, "as_float32", guarded)
    sess = jc.Session(loaded, jc.Config(memory="low", threads=1))
    assert {op.storage for op in sess.info().ops if op.op_type == "Conv"} == {"int8"}
