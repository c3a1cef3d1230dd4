"""A small YOLO-style detection head exported by torch 2.13 (TorchScript exporter,
dynamo=False, opset 17): convs, then the box decoding of two scales, one YOLOv5-style
(sigmoid, xy = (2 s - 0.5 + grid) * stride, wh = (2 s) ** 2 * anchor: Mul/Sub/Add/Pow) and
one YOLOv3-style (xy = sigmoid + grid, wh = exp(t) * anchor), the class score and id
(ReduceMax / ArgMax), Concat and Reshape. jc.load must match onnxruntime in every memory
mode, and after fp16 / int8 weight quantization the dequantized NumPy reference.

Accuracy: max abs error <= 1e-4 * max |reference| on the boxes; the class ids equal
wherever the two best class scores differ by more than 1e-4 (a near tie may swap)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import torch.nn as nn  # noqa: E402

import jitconv as jc  # noqa: E402
from jitconv.runtime.reference import evaluate  # noqa: E402

SIZE = 64
NA, NC = 3, 4                  # anchors per cell, classes
NO = 5 + NC                    # x, y, w, h, objectness, classes


def _grid(ny, nx, anchors, stride):
    yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
    grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).float()
    anchor = torch.tensor(anchors, dtype=torch.float32).view(1, NA, 1, 1, 2)
    return grid, anchor * (stride if anchor.max() < 16 else 1)


class YoloHead(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(),
                               nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU())     # stride 4
        s.down = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), nn.SiLU())       # stride 8
        s.det4 = nn.Conv2d(32, NA * NO, 1)
        s.det8 = nn.Conv2d(32, NA * NO, 1)
        g4, a4 = _grid(SIZE // 4, SIZE // 4, [[1.25, 1.6], [2, 3.75], [4.1, 2.9]], 4)
        g8, a8 = _grid(SIZE // 8, SIZE // 8, [[30, 61], [62, 45], [59, 119]], 8)
        for k, v in (("grid4", g4), ("anchor4", a4), ("grid8", g8), ("anchor8", a8)):
            s.register_buffer(k, v)

    @staticmethod
    def _cells(p):
        bs, _, ny, nx = p.shape
        return p.view(bs, NA, NO, ny, nx).permute(0, 1, 3, 4, 2)

    def forward(s, x):
        f4 = s.stem(x)
        f8 = s.down(f4)
        # YOLOv5 decoding
        y = s._cells(s.det4(f4)).sigmoid()
        xy = (y[..., 0:2] * 2 - 0.5 + s.grid4) * 4
        wh = (y[..., 2:4] * 2) ** 2 * s.anchor4
        out4 = torch.cat((xy, wh, y[..., 4:]), -1).reshape(x.shape[0], -1, NO)
        # YOLOv3 decoding
        t = s._cells(s.det8(f8))
        xy8 = (t[..., 0:2].sigmoid() + s.grid8) * 8
        wh8 = torch.exp(t[..., 2:4]) * s.anchor8
        out8 = torch.cat((xy8, wh8, t[..., 4:].sigmoid()), -1).reshape(x.shape[0], -1, NO)
        det = torch.cat((out4, out8), 1)
        score, cls = det[..., 5:].max(-1, keepdim=True)
        return torch.cat((det[..., :4], det[..., 4:5] * score), -1), cls.float(), det


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    torch.manual_seed(0)
    m = YoloHead().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(0.5)                      # keep exp() of the v3 head moderate
    path = tmp_path_factory.mktemp("yolo") / "yolo_head.onnx"
    x = torch.randn(1, 3, SIZE, SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), str(path), opset_version=17, dynamo=False,
                          input_names=["images"], output_names=["boxes", "cls", "det"])
    xs = np.random.default_rng(2).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return path, xs, dict(zip(["boxes", "cls", "det"], sess.run(None, {"images": xs})))


def assert_rel(got, ref, what, rtol=1e-4):
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    err = float(np.max(np.abs(got - ref)))
    bound = rtol * float(np.max(np.abs(ref)))
    assert err <= bound, f"{what}: max abs err {err:.3g} > {bound:.3g}"


def assert_ids(got, ref_ids, det, what):
    scores = np.sort(det[..., 5:], -1)
    clear = (scores[..., -1] - scores[..., -2]) > 1e-4
    assert clear.mean() > 0.9, "too many near ties to check the class ids"
    assert np.array_equal(got[..., 0][clear], ref_ids[..., 0][clear]), what


def check(outs, ref, what):
    assert_rel(outs["boxes"], ref["boxes"], f"{what} boxes")
    assert_rel(outs["det"], ref["det"], f"{what} det")
    assert_ids(outs["cls"], ref["cls"], ref["det"], f"{what} class ids")


def test_yolo_head_graph_uses_the_new_ops(head):
    path, _, _ = head
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Sigmoid", "Exp", "Pow", "Mul", "Add", "Sub", "Concat", "Reshape", "ReduceMax",
            "ArgMax"} <= ops, ops
    graph = jc.load(path)
    runtime = {n.op_type for n in graph.nodes}
    assert {"Pow", "Exp", "ReduceMax", "ArgMax", "Sigmoid", "Concat"} <= runtime, runtime


@pytest.mark.parametrize("memory", ["normal", "high", "low"])
def test_yolo_head_matches_onnxruntime(head, memory):
    path, x, want = head
    sess = jc.Session(jc.load(path), jc.Config(threads=2, memory=memory))
    check(sess.run(x), want, f"memory={memory}")


@pytest.mark.parametrize("weights", ["fp16", "int8"])
def test_yolo_head_quantized_matches_dequantized_reference(head, weights):
    path, x, _ = head
    qgraph = jc.quantize(jc.load(path), weights)
    assert qgraph.storages()[weights] == sum(n.op_type == "Conv" for n in qgraph.nodes)
    ref = evaluate(qgraph, {"images": x})
    for memory in ("normal", "high", "low"):
        sess = jc.Session(qgraph, jc.Config(threads=2, memory=memory))
        check(sess.run(x), ref, f"{weights} memory={memory}")
