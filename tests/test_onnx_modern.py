"""Torch-exported blocks of newer CNNs, through jc.load, against onnxruntime.

- ConvNeXt-style block: depthwise 7x7 conv, LayerNorm over channels written as
  permute -> F.layer_norm -> permute back (ConvNeXt's channels-first LayerNorm), a
  pointwise MLP (1x1 convs) with GELU (exported at opset 17 as Div, Erf, Add, Mul) and a
  residual add; a SiLU block too (Sigmoid and Mul). The Transpose -> LayerNormalization
  -> Transpose chain must run as one channel-wise LayerNorm (runtime/passes.py), with no
  Transpose left.
- FPN-style neck: lateral 1x1 convs, F.interpolate(scale_factor=2) bilinear
  (align_corners=False) and nearest, adds, a 3x3 output conv; a GroupNorm head.

torch 2.13's TorchScript exporter (dynamo=False), opset 17. Accuracy: max abs error <=
1e-4 * max |reference| in memory modes normal/high/low, and after fp16 / int8 weight
quantization against the dequantized NumPy reference.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import jitconv as jc  # noqa: E402
from test_onnx_torch import (MEMORY_MODES, assert_quantized_matches, assert_rel,  # noqa: E402
                             export, ort_logits)

SIZE = 32


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map, as ConvNeXt writes it."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c, act=nn.GELU):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = LayerNorm2d(c, eps=1e-6)
        self.pw1 = nn.Conv2d(c, 4 * c, 1)
        self.act = act()
        self.pw2 = nn.Conv2d(4 * c, c, 1)
        self.gamma = nn.Parameter(0.5 + torch.rand(c, 1, 1))

    def forward(self, x):
        return x + self.gamma * self.pw2(self.act(self.pw1(self.norm(self.dw(x)))))


class ConvNeXtNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.stem_norm = LayerNorm2d(16, eps=1e-6)
        self.blocks = nn.Sequential(ConvNeXtBlock(16), ConvNeXtBlock(16, nn.SiLU))

    def forward(self, x):
        return self.blocks(self.stem_norm(self.stem(x)))


class FPNNeck(nn.Module):
    def __init__(self, w=16):
        super().__init__()
        self.c3 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c4 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c5 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.l3, self.l4, self.l5 = nn.Conv2d(8, w, 1), nn.Conv2d(16, w, 1), nn.Conv2d(32, w, 1)
        self.out = nn.Conv2d(w, w, 3, padding=1)
        self.gn = nn.GroupNorm(4, w)

    def forward(self, x):
        c3 = F.relu(self.c3(x))
        c4 = F.relu(self.c4(c3))
        c5 = F.relu(self.c5(c4))
        p5 = self.l5(c5)
        p4 = self.l4(c4) + F.interpolate(p5, scale_factor=2, mode="bilinear",
                                         align_corners=False)
        p3 = self.l3(c3) + F.interpolate(p4, scale_factor=2, mode="nearest")
        return self.gn(self.out(p3))


def _randomize(m, seed):
    torch.manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
            mod.weight.data = 0.5 + torch.rand_like(mod.weight)
            mod.bias.data = 0.1 * torch.randn_like(mod.bias)
    return m.eval()


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("modern")
    x = np.random.default_rng(2).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    out = {}
    for name, module in (("convnext", ConvNeXtNet()), ("fpn", FPNNeck())):
        path = export(_randomize(module, 1), d / f"{name}.onnx", 17, size=SIZE)
        out[name] = (path, x, ort_logits(path, x))
    return out


@pytest.mark.parametrize("name", ["convnext", "fpn"])
def test_matches_onnxruntime_in_every_memory_mode(nets, name):
    path, x, want = nets[name]
    graph = jc.load(path)
    ops = {n.op_type for n in graph.nodes}
    if name == "convnext":
        assert {"LayerNormalization", "Transpose"} <= ops, ops
    else:
        # torch exports GroupNorm at opset 17 as Reshape -> InstanceNormalization ->
        # Reshape -> Mul -> Add
        assert "Resize" in ops and "InstanceNormalization" in ops, ops
        modes = sorted(n.attr("mode") for n in graph.nodes if n.op_type == "Resize")
        assert modes == ["linear", "nearest"], modes
    for memory in MEMORY_MODES:
        sess = jc.Session(graph, jc.Config(threads=2, memory=memory))
        assert_rel(sess.run(x)["logits"], want, f"{name} memory={memory}")
    kernels = [(op.op_type, op.kernel) for op in sess.info().ops]
    if name == "convnext":       # the permutes around each LayerNorm are fused away
        assert not any(t == "Transpose" for t, _ in kernels), kernels
        assert sum(k == "layer_norm_channels" for _, k in kernels) == 3, kernels
        # GELU (Div -> Erf -> Add -> Mul -> Mul) and SiLU (Sigmoid -> Mul) run inside
        # the 1x1 convs before them
        assert not {"Erf", "Gelu", "Sigmoid"} & {t for t, _ in kernels}, kernels
        acts = sorted(op.reason.split("; fused ")[1].split(":")[0]
                      for op in sess.info().ops if "; fused " in op.reason)
        assert acts == ["gelu", "silu"], acts
    else:
        assert ("Resize", "resize_linear") in kernels, kernels


@pytest.mark.parametrize("weights", ["fp16", "int8"])
@pytest.mark.parametrize("name", ["convnext", "fpn"])
def test_quantized_matches_dequantized_reference(nets, name, weights):
    path, x, _ = nets[name]
    assert_quantized_matches(path, x, name, weights)
