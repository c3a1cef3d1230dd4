"""The architecture families of jitconv.models (DenseNet-, Inception-, ShuffleNetV2-,
SqueezeNet- and VGG-shaped graphs) against the NumPy reference, and against onnxruntime
on the same ONNX file where it is installed, in each memory mode."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import jitconv as jc
from jitconv.models import FAMILIES
from jitconv.runtime.reference import evaluate

from helpers import assert_close

SIZE = 64


def _small(name):
    kw = dict(input_size=SIZE, num_classes=10)
    if name == "vgg":
        kw.update(width=0.25, hidden=64)
    return FAMILIES[name](**kw)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_matches_reference_in_every_memory_mode(name):
    graph = _small(name)
    x = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    want = evaluate(graph, {"input": x})["logits"]
    for memory in ("normal", "high", "low"):
        sess = jc.Session(graph, jc.Config(threads=2, memory=memory, progress=False))
        assert_close(sess.run(x)["logits"], want, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_matches_onnxruntime(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
    from onnx_export import to_onnx
    graph = _small(name)
    model = to_onnx(graph).SerializeToString()
    x = np.random.default_rng(2).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model)
    got = jc.Session(jc.load(path), jc.Config(threads=2, progress=False)).run(x)["logits"]
    assert_close(got, want, rtol=1e-4)
