"""Real exporter output: ResNet-50- and MobileNetV2-shaped nets (torch.nn, random weights
and BatchNorm statistics) exported by torch 2.13's TorchScript exporter (dynamo=False),
imported with jc.load and checked against onnxruntime in every memory mode, and after
fp16 / int8 weight quantization against the dequantized NumPy reference. A small net of
the other CNN ops is exported at several opsets.

Accuracy: max abs error <= 1e-4 * max |reference| on the logits.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import jitconv as jc  # noqa: E402
from jitconv.runtime.reference import evaluate  # noqa: E402

MEMORY_MODES = ("normal", "high", "low")
SIZE = 64


class Bottleneck(nn.Module):
    def __init__(s, cin, width, stride):
        super().__init__()
        cout = width * 4
        s.c1 = nn.Conv2d(cin, width, 1, bias=False); s.b1 = nn.BatchNorm2d(width)
        s.c2 = nn.Conv2d(width, width, 3, stride, 1, bias=False); s.b2 = nn.BatchNorm2d(width)
        s.c3 = nn.Conv2d(width, cout, 1, bias=False); s.b3 = nn.BatchNorm2d(cout)
        s.down = None
        if stride != 1 or cin != cout:
            s.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        s.relu = nn.ReLU(inplace=True)
    def forward(s, x):
        y = s.relu(s.b1(s.c1(x)))
        y = s.relu(s.b2(s.c2(y)))
        y = s.b3(s.c3(y))
        return s.relu(y + (x if s.down is None else s.down(x)))

class ResNet50(nn.Module):
    def __init__(s, base=16, classes=100):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], base
        for i, (n, stride) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2))):
            w = base * 2 ** i
            for j in range(n):
                layers.append(Bottleneck(cin, w, stride if j == 0 else 1)); cin = w * 4
        s.layers = nn.Sequential(*layers)
        s.pool = nn.AdaptiveAvgPool2d(1)
        s.fc = nn.Linear(cin, classes)
    def forward(s, x):
        return s.fc(torch.flatten(s.pool(s.layers(s.stem(x))), 1))

class InvRes(nn.Module):
    def __init__(s, cin, cout, stride, t):
        super().__init__()
        h = cin * t
        layers = []
        if t != 1:
            layers += [nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True),
                   nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        s.conv = nn.Sequential(*layers)
        s.res = stride == 1 and cin == cout
    def forward(s, x):
        return x + s.conv(x) if s.res else s.conv(x)

class MobileNetV2(nn.Module):
    def __init__(s, classes=100, width=1.0):
        super().__init__()
        c = lambda v: max(8, int(v * width + 4) // 8 * 8)
        cin = c(32)
        feats = [nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True)]
        for t, ch, n, st in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                feats.append(InvRes(cin, c(ch), st if i == 0 else 1, t)); cin = c(ch)
        feats += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True)]
        s.features = nn.Sequential(*feats)
        s.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))
    def forward(s, x):
        x = nn.functional.adaptive_avg_pool2d(s.features(x), 1)
        return s.classifier(torch.flatten(x, 1))


class Misc(nn.Module):
    """The other ops of CNN exports: chunk (Split), pad, slice, hardswish, prelu, nearest
    upsampling, mean, x.view(x.size(0), -1) (shape arithmetic), softmax."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pr = nn.PReLU(8)
        self.c2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        y = self.pr(self.bn(self.c1(x)))
        a, b = torch.chunk(y, 2, dim=1)
        y = torch.cat([F.leaky_relu(a, 0.1), torch.sigmoid(b)], 1)
        y = F.hardswish(y) + F.hardsigmoid(y) - y / 3
        y = F.pad(y, (1, 1, 2, 0))
        y = y[:, :4, 1:-1, 1:-1]
        y = self.c2(y)
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = y.mean(dim=(2, 3), keepdim=True) * y
        y = F.max_pool2d(y, 2)
        y = y.mean(dim=1)
        y = y.reshape(y.size(0), -1)
        return torch.softmax(self.fc(y), dim=1)


def randomize(m, seed):
    """Random BatchNorm statistics so folding matters; eval mode."""
    torch.manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.weight.data = 0.5 + torch.rand(n)
            mod.bias.data = 0.1 * torch.randn(n)
            mod.running_mean.data = 0.1 * torch.randn(n)
            mod.running_var.data = 0.5 + torch.rand(n)
    return m.eval()


def export(module, path, opset, *, keep_bn=False, size=SIZE):
    x = torch.randn(1, 3, size, size)
    mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), opset_version=opset, dynamo=False,
                          training=mode, input_names=["input"], output_names=["logits"])
    return path


def ort_logits(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def assert_rel(got, ref, what, rtol=1e-4):
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    err = float(np.max(np.abs(got - ref)))
    bound = rtol * float(np.max(np.abs(ref)))
    assert err <= bound, f"{what}: max abs err {err:.3g} > {bound:.3g}"


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """name -> (onnx path, input, onnxruntime logits)."""
    d = tmp_path_factory.mktemp("torch_onnx")
    x = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    out = {}
    for name, module, opset, keep_bn in (
            ("resnet50", ResNet50(), 17, True),          # BatchNormalization nodes kept
            ("mobilenetv2", MobileNetV2(), 11, False)):  # BN folded by the exporter
        path = export(randomize(module, 0), d / f"{name}.onnx", opset, keep_bn=keep_bn)
        out[name] = (path, x, ort_logits(path, x))
    return out


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_matches_onnxruntime_in_every_memory_mode(nets, name):
    path, x, want = nets[name]
    graph = jc.load(path)
    ops = {n.op_type for n in graph.nodes}
    assert ops <= {"Conv", "BatchNormalization", "Relu", "Clip", "Add", "MaxPool",
                   "GlobalAveragePool", "Flatten", "Gemm"}, ops
    for memory in MEMORY_MODES:
        sess = jc.Session(graph, jc.Config(threads=2, memory=memory))
        assert_rel(sess.run(x)["logits"], want, f"{name} memory={memory}")
    if name == "resnet50":
        assert "BatchNormalization" in ops
        assert all(op.op_type != "BatchNormalization" for op in sess.info().ops)


@pytest.mark.parametrize("weights", ["fp16", "int8"])
@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_quantized_matches_dequantized_reference(nets, name, weights):
    path, x, _ = nets[name]
    assert_quantized_matches(path, x, name, weights)


def assert_quantized_matches(path, x, name, weights):
    """The model at ``path`` quantized to ``weights`` matches its dequantized NumPy reference
    in every memory mode (input "input", output "logits")."""
    qgraph = jc.quantize(jc.load(path), weights)
    assert qgraph.storages()[weights] == sum(n.op_type in ("Conv", "Gemm") for n in qgraph.nodes)
    ref = evaluate(qgraph, {"input": x})["logits"]
    for memory in MEMORY_MODES:
        sess = jc.Session(qgraph, jc.Config(threads=2, memory=memory))
        assert_rel(sess.run(x)["logits"], ref, f"{name} {weights} memory={memory}")


@pytest.mark.parametrize("opset", [9, 11, 13, 18])
def test_misc_ops_net_at_several_opsets(tmp_path, opset):
    path = export(randomize(Misc(), 3), tmp_path / "misc.onnx", opset, size=16)
    x = np.random.default_rng(opset).standard_normal((1, 3, 16, 16)).astype(np.float32)
    graph = jc.load(path)
    ops = [n.op_type for n in graph.nodes]
    assert not {"Shape", "Gather", "Constant", "ConstantOfShape", "Cast", "Unsqueeze"} & set(ops)
    want = ort_logits(path, x)
    for memory in ("normal", "low"):
        got = jc.Session(graph, jc.Config(threads=2, memory=memory)).run(x)["logits"]
        assert_rel(got, want, f"misc opset {opset} memory={memory}")
