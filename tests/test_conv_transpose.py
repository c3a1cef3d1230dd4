"""ConvTranspose: the reference against torch, the sub-pixel phase kernel against the
reference (every storage and memory mode: tests/test_storage_matrix.py), ONNX import
against onnxruntime, and a torch-exported U-Net-style decoder."""
import io

import numpy as np
import pytest

import jitconv as jc
from helpers import assert_close, rand
from jitconv.runtime.ir import Constant, Graph, Node, TensorSpec
from jitconv.runtime.reference import evaluate

torch = pytest.importorskip("torch")

# (C, M, k, stride, padding, output_padding, dilation, groups)
CASES = [
    (8, 16, 2, 2, 0, 0, 1, 1),       # U-Net's upsampling: kernel = stride
    (8, 16, 4, 2, 1, 0, 1, 1),       # DCGAN-style
    (8, 16, 3, 2, 1, 1, 1, 1),       # "same" x2 with output_padding
    (8, 16, 3, 1, 1, 0, 1, 1),       # stride 1: a flipped conv
    (8, 16, 3, 3, 2, 1, 2, 2),       # dilated, grouped, stride 3
    (8, 8, 3, 2, 1, 1, 1, 8),        # depthwise
    (8, 16, 1, 3, 0, 0, 1, 1),       # kernel < stride: phases with no taps (bias only)
    (8, 16, 3, 2, 3, 0, 1, 1),       # padding > kernel: phases read from inside the input
]


def _torch(x, w, b, c):
    _, _, _, s, p, op, d, g = c
    return torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=s, padding=p,
        output_padding=op, dilation=d, groups=g).numpy()


def _graph(rng, c, hw=(5, 6), dynamic=()):
    cin, m, k, s, p, op, d, g = c
    w = rand(rng, cin, m // g, k, k, scale=0.3)
    b = rand(rng, m)
    gb = jc.GraphBuilder("convt")
    x = gb.input("x", (2, cin) + hw, dynamic_axes=dynamic)
    gb.output(gb.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op,
                                  dilation=d, groups=g, name="up"), "y")
    return gb.build(), w, b


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reference_and_kernel_match_torch(rng, case):
    graph, w, b = _graph(rng, case)
    x = rand(rng, 2, case[0], 5, 6)
    want = _torch(x, w, b, case)
    ref = evaluate(graph, {"x": x})["y"]
    assert_close(ref, want, rtol=1e-5, what="reference vs torch")
    for threads in (1, 2):
        sess = jc.Session(graph, jc.Config(threads=threads))
        assert_close(sess.run(x)["y"], ref, what=f"kernel, {threads} threads")
        op = sess.info().ops[0]
        assert op.kernel.startswith("conv_transpose(") and "sub-pixel phases" in op.reason
        assert op.flops == 2 * x.size * (case[1] // case[7]) * case[2] ** 2


def test_resize_replans_every_phase(rng):
    case = (8, 16, 3, 2, 1, 1, 1, 1)
    graph, w, b = _graph(rng, case, dynamic=(0, 2, 3))
    sess = jc.Session(graph, jc.Config(threads=2))
    for shape in ((2, 8, 5, 6), (1, 8, 9, 4), (3, 8, 5, 6)):
        x = rand(rng, *shape)
        assert_close(sess.run({"x": x})["y"], _torch(x, w, b, case), what=f"at {shape}")


def test_block_scales_that_cut_a_channels_taps_are_decoded_and_said(rng):
    """A hand-made int8 weight whose blocks (6 values) split 3x3 channels: the phase
    weights are decoded to fp32, and the reason says why."""
    m, cg, k = 4, 2, 3
    q = rng.integers(-127, 128, size=(m, cg * k * k)).astype(np.int8)
    scale = (rng.random((m, 3)) * 0.01 + 0.01).astype(np.float32)
    w = Constant("w", q, "int8", scale=scale, logical_shape=(m, cg, k, k))
    node = Node("ConvTranspose", ["x", "w"], ["y"], {"strides": [2, 2], "pads": [1, 1, 1, 1]},
                "up")
    graph = Graph([TensorSpec("x", (1, cg, 5, 5))], [TensorSpec("y", (1, m, 9, 9))], [node],
                  {"w": w})
    sess = jc.Session(graph, jc.Config(threads=1, memory="low"))
    op = sess.info().ops[0]
    assert "blocks of 6 values cut a channel's 9 taps" in op.reason
    x = rand(rng, 1, cg, 5, 5)
    assert_close(sess.run(x)["y"], evaluate(graph, {"x": x})["y"], what="decoded phases")


def test_bad_attributes_and_computed_weights_are_named_errors(rng):
    g = jc.GraphBuilder()
    x = g.input("x", (1, 4, 5, 5))
    with pytest.raises(jc.GraphError, match="ConvTranspose node 'up'.*output_padding"):
        g.conv_transpose2d(x, rand(rng, 4, 4, 3, 3), stride=2, output_padding=2, name="up")
    with pytest.raises(jc.GraphError, match="conv_transpose2d: w must be a numpy array"):
        g.conv_transpose2d(x, x)
    node = Node("ConvTranspose", ["x", "w"], ["y"], {}, "up")
    graph = Graph([TensorSpec("x", (1, 4, 5, 5)), TensorSpec("w", (4, 4, 3, 3))],
                  [TensorSpec("y", (1, 4, 7, 7))], [node], {})
    with pytest.raises(jc.GraphError, match="'up'.*weights must be constants"):
        jc.Session(graph)


onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("attrs", [
    {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    {"strides": [2, 2], "output_shape": [10, 12]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"strides": [2, 2], "auto_pad": "SAME_LOWER", "group": 2},
], ids=str)
def test_onnx_import_matches_onnxruntime(rng, attrs):
    from onnx import TensorProto, helper, numpy_helper
    g = attrs.get("group", 1)
    w = rand(rng, 8, 6 // g, 3, 3, scale=0.3)
    b = rand(rng, 6)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    model = helper.make_model(helper.make_graph(
        [node], "convt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]),
        opset_imports=[helper.make_opsetid("", 17)])
    x = rand(rng, 1, 8, 5, 6)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    from jitconv.runtime.onnx_import import import_model
    graph = import_model(model).graph
    assert_close(evaluate(graph, {"x": x})["y"], want, rtol=1e-5, what="reference vs ort")
    assert_close(jc.Session(graph, jc.Config(threads=2)).run(x)["y"], want, what="vs ort")


class TinyUNet(torch.nn.Module):
    """Two levels: conv + pool down, ConvTranspose 2x2/2 up, skip concat, conv."""

    def __init__(self):
        super().__init__()
        self.enc1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.enc2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = torch.nn.Conv2d(16, 8, 3, padding=1)
        self.head = torch.nn.ConvTranspose2d(8, 2, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        a = torch.relu(self.enc1(x))
        b = torch.relu(self.enc2(torch.nn.functional.max_pool2d(a, 2)))
        u = torch.relu(self.up(b))
        d = torch.relu(self.dec(torch.cat([u, a], dim=1)))
        return self.head(d)


def test_torch_unet_decoder_matches_in_every_memory_mode(tmp_path):
    torch.manual_seed(0)
    model = TinyUNet().eval()
    x = torch.randn(1, 3, 16, 16)
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    path = tmp_path / "unet.onnx"
    path.write_bytes(buf.getvalue())
    feeds = {"x": x.numpy()}
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, feeds)[0]
    graph = jc.load(str(path))
    assert sum(n.op_type == "ConvTranspose" for n in graph.nodes) == 2
    for memory in ("normal", "high", "low"):
        got = jc.Session(graph, jc.Config(threads=2, memory=memory)).run(feeds)["y"]
        assert_close(got, want, what=f"fp32 memory={memory}")
    for storage in ("fp16", "int8"):
        q = jc.quantize(graph, storage)
        ref = evaluate(q, feeds)["y"]
        for memory in ("normal", "low"):
            sess = jc.Session(q, jc.Config(threads=2, memory=memory))
            assert_close(sess.run(feeds)["y"], ref, what=f"{storage} memory={memory}")
            ups = [op for op in sess.info().ops if op.op_type == "ConvTranspose"]
            assert all(op.storage == (storage if memory == "low" else f"fp32 (from {storage})")
                       for op in ups)


def test_builtin_unet_matches_the_reference(rng):
    from jitconv.models import unet
    graph = unet(input_size=32, base=8)
    x = rand(rng, 1, 3, 32, 32)
    sess = jc.Session(graph, jc.Config(threads=2))
    assert_close(sess.run(x)["logits"], evaluate(graph, {"input": x})["logits"],
                 what="models.unet")
    assert [op.op_type for op in sess.info().ops].count("ConvTranspose") == 3


def test_the_stored_weight_is_released_once_split_into_phases(rng):
    """The phases hold the weights between them: nothing keeps the whole stored weight."""
    import gc
    import weakref
    graph, _, _ = _graph(rng, CASES[1])
    w = next(c for c in graph.constants.values() if c.data.ndim == 4)
    ref = weakref.ref(w.data)
    sess = jc.Session(graph, jc.Config(threads=1))
    del graph, w
    gc.collect()
    assert ref() is None
    assert sess.info().weight_bytes == 8 * 16 * 4 * 4 * 4 + 16 * 4
