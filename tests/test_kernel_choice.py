"""The kernel-choice table of docs/kernel_choice.md, row by row, on the pure functions."""
import numpy as np
import pytest

import jitconv as jc
from jitconv.backends.choice import choose_conv, choose_gemm, keep_weights
from jitconv.backends.conv_family import ConvGeometry
from jitconv.runtime.ir import Constant


def _geom(x, w, out, stride=1, groups=1):
    return ConvGeometry(tuple(x), tuple(w), tuple(out), (stride, stride), (0, 0, 0, 0),
                        (1, 1), groups)


def _const(storage, m=64, c=64, k=3, sym=True):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((m, c, k, k)).astype(np.float32)
    if storage == "fp32":
        return Constant("w", w)
    if storage == "fp16":
        return Constant("w", w.astype(np.float16), "fp16")
    g = jc.GraphBuilder()
    x = g.input("x", (1, c, 8, 8))
    g.output(g.conv2d(x, w, name="conv"), "y")
    q = jc.quantize(g.build(), storage, symmetric=sym)
    return q.constants[q.nodes[0].inputs[1]]


def _choose(storage, memory="normal", precision="normal", m=64, c=64, k=3, stride=1,
            groups=1, hw=28, sym=True, vnni=True):
    const = _const(storage, m, c // groups, k, sym)
    kept = keep_weights(const, memory)
    attrs = {"strides": [stride, stride], "group": groups}
    oh = (hw + 2 * (k // 2) - k) // stride + 1
    geom = _geom((1, c, hw, hw), kept.shape, (1, m, oh, oh), stride, groups)
    return kept, choose_conv("Conv node 'c'", attrs, kept, decoded_from=storage,
                             precision=precision, memory=memory, geom=geom,
                             target=jc.Target(vnni=vnni))


@pytest.mark.parametrize("storage", ["fp16", "int8", "int4"])
def test_loader_decodes_in_normal_and_high_and_keeps_in_low(storage):
    const = _const(storage)
    for memory in ("normal", "high"):
        kept = keep_weights(const, memory)
        assert kept.storage == "fp32" and kept.data.dtype == np.float32
    assert keep_weights(const, "low") is const


@pytest.mark.parametrize("storage,kernel", [("fp16", "fp16w"), ("int8", "int8w"),
                                            ("int4", "int4w")])
def test_low_memory_keeps_storage_and_picks_its_kernel(storage, kernel):
    kept, choice = _choose(storage, memory="low")
    assert kept.storage == storage and choice.kernel == "conv2d_tiled_" + kernel
    assert "kept as stored" in choice.reason and "register-tiled" in choice.reason
    # the same families as fp32: tiled for 1x1 and strided convs, depthwise for depthwise,
    # direct where the fp32 model would not tile either (few channels per group)
    assert _choose(storage, memory="low", k=1)[1].kernel == "conv2d_tiled_" + kernel
    assert _choose(storage, memory="low", stride=2)[1].kernel == "conv2d_tiled_" + kernel
    dw = _choose(storage, memory="low", m=32, c=32, groups=32)[1]
    assert dw.kernel == "conv2d_depthwise_" + kernel and "depthwise" in dw.reason
    assert _choose(storage, memory="low", m=32, c=32, groups=16)[1].kernel == "conv2d_" + kernel


def test_fp16_low_memory_never_goes_to_a_quantized_kernel():
    # MNN's bug: fp16 carried quant metadata and went down the hybrid int8 path
    for precision in ("normal", "high", "low"):
        _, choice = _choose("fp16", memory="low", precision=precision)
        assert choice.kernel == "conv2d_tiled_fp16w"


def test_fp32_cost_model_rows():
    assert _choose("fp32", m=32, c=32, groups=32)[1].kernel == "conv2d_depthwise"
    # groups 1: channel-vectorized (32 channels x 7 pixels) unless its tile padding costs
    # more than the tiled kernel's (8 channels x 32 pixels)
    one = _choose("fp32", k=1, c=128)[1]   # 28x28 = 112 tiles of 7; 24.5 tiles of 32
    assert one.kernel == "conv2d_chanvec" and "channel-vectorized" in one.reason
    assert _choose("fp32", stride=2)[1].kernel == "conv2d_chanvec"
    few = _choose("fp32", m=8, c=128, k=1)[1]  # 8 output channels: a chunk is 3/4 padding
    assert few.kernel == "conv2d_tiled" and "channel-vectorized would compute" in few.reason
    wide = _choose("fp32", m=64, c=128, k=1, hw=32)[1]  # 1024 pixels: 32 whole tiles of 32
    assert wide.kernel == "conv2d_tiled"
    short = _choose("fp32", m=64, c=64, k=1)[1]   # K = 64: the transposed store dominates
    assert short.kernel == "conv2d_tiled" and "too short" in short.reason
    assert _choose("fp32", m=32, c=32, groups=16)[1].kernel == "conv2d_direct"   # 2 per group
    assert _choose("fp32", m=64, c=64, groups=2)[1].kernel == "conv2d_tiled"    # grouped
    big = _choose("fp32", m=64, c=64, hw=56)[1]
    assert big.kernel == "conv2d_winograd" and big.option in (2, 4)
    for precision, memory in (("high", "normal"), ("normal", "low")):
        choice = _choose("fp32", hw=56, precision=precision, memory=memory)[1]
        assert choice.kernel == "conv2d_chanvec" and "Winograd ruled out" in choice.reason


@pytest.mark.parametrize("memory", ["normal", "high"])
def test_precision_low_keeps_int8_for_the_dot_kernel_in_every_memory_mode(memory):
    from jitconv.backends.choice import int8_dot_fits
    const = _const("int8")
    attrs = {"group": 1}
    assert int8_dot_fits(const, attrs, "low", vnni=True)
    kept = keep_weights(const, memory, int8_dot=True)
    assert kept is const
    choice = choose_conv("Conv node 'c'", attrs, kept, decoded_from="int8", precision="low",
                         memory=memory, geom=_geom((1, 64, 28, 28), kept.shape,
                                                   (1, 64, 26, 26)),
                         target=jc.Target(vnni=True))
    assert choice.kernel == "conv2d_int8dot"
    assert f"kept as stored for the int8 dot kernel (precision=low, memory={memory}" \
        in choice.reason
    # no dot kernel (another precision, no VNNI, asymmetric, grouped): decoded as before
    for fits in (int8_dot_fits(const, attrs, "normal", vnni=True),
                 int8_dot_fits(const, attrs, "low", vnni=False),
                 int8_dot_fits(_const("int8", sym=False), attrs, "low", vnni=True),
                 int8_dot_fits(const, {"group": 2}, "low", vnni=True),
                 int8_dot_fits(_const("fp16"), attrs, "low", vnni=True)):
        assert not fits
    assert keep_weights(const, memory).storage == "fp32"


def test_session_precision_low_runs_int8_dot_in_memory_normal():
    from jitconv.kernels.vnni import has_vnni
    rng = np.random.default_rng(2)
    g = jc.GraphBuilder()
    x = g.input("x", (1, 32, 12, 12))
    g.output(g.conv2d(x, rng.standard_normal((48, 32, 3, 3)).astype(np.float32), padding=1,
                      name="conv"), "y")
    q = jc.quantize(g.build(), "int8")
    op = jc.Session(q, jc.Config(threads=1, precision="low")).info().ops[0]
    if has_vnni():
        assert op.kernel == "conv2d_int8dot" and op.storage == "int8"
    else:
        assert op.storage == "fp32 (from int8)"


def test_precision_low_int8_dot_only_for_symmetric_per_channel():
    assert _choose("int8", memory="low", precision="low")[1].kernel == "conv2d_int8dot"
    asym = _choose("int8", memory="low", precision="low", sym=False)[1]
    assert asym.kernel == "conv2d_tiled_int8w"
    assert _choose("int8", memory="low", precision="normal")[1].kernel == "conv2d_tiled_int8w"
    no_vnni = _choose("int8", memory="low", precision="low", vnni=False)[1]
    assert no_vnni.kernel == "conv2d_tiled_int8w" and "AVX512-VNNI" in no_vnni.reason


def test_gemm_choice_follows_the_kept_storage():
    rng = np.random.default_rng(0)
    w = Constant("w", rng.standard_normal((10, 32)).astype(np.float32))
    assert choose_gemm("Gemm node 'g'", w, decoded_from="fp32", precision="normal",
                       memory="low").kernel == "gemm_nt"
    h = Constant("w", w.data.astype(np.float16), "fp16")
    assert choose_gemm("Gemm node 'g'", keep_weights(h, "low"), decoded_from="fp16",
                       precision="normal", memory="low").kernel == "gemm_nt_fp16w"
