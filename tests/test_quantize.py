"""Weight quantization (runtime/quantize.py): stored arrays follow the rules exactly,
dequantization error is within half a step, block-wise fallback, bytes, overrides,
MatMul/Gemm rewrites, and the input graph stays untouched."""
import copy

import numpy as np
import pytest

import jitconv as jc
from jitconv.runtime.quantize import quantize, quantize_with_report
from jitconv.runtime.reference import evaluate

from helpers import rand

LAYERS = ("conv1", "conv2", "dw", "grp", "fc")


def cnn(rng):
    """conv1 3->32 (C/g=3), conv2 32->32 3x3, dw depthwise (C/g=1, K=9), grp 32->16 g=2
    (C/g=16), fc dense 16->10 (K=16)."""
    g = jc.GraphBuilder("cnn")
    x = g.input("x", (1, 3, 8, 8))
    y = g.conv2d(x, g.constant(rand(rng, 32, 3, 3, 3), "w_conv1"), rand(rng, 32), padding=1,
                 activation="relu", name="conv1")
    y = g.conv2d(y, g.constant(rand(rng, 32, 32, 3, 3), "w_conv2"), padding=1, name="conv2")
    y = g.conv2d(y, g.constant(rand(rng, 32, 1, 3, 3), "w_dw"), groups=32, padding=1,
                 activation="relu6", name="dw")
    y = g.conv2d(y, g.constant(rand(rng, 16, 16, 1, 1), "w_grp"), groups=2, name="grp")
    y = g.flatten(g.global_average_pool(y, name="gap"), name="flat")
    g.output(g.dense(y, g.constant(rand(rng, 10, 16), "w_fc"), rand(rng, 10), name="fc"), "y")
    return g.build()


def weight(graph, node_name):
    node = next(n for n in graph.nodes if n.name == node_name)
    return graph.constants[node.inputs[1]]


def rows_of(c):
    return c.as_float32().reshape(c.shape[0], -1).astype(np.float64)


def unpack_int4(c):
    """Independent nibble decoding: value k of row r is nibble k%2 of byte k//2."""
    rows, k = c.rows_k
    q = np.empty((rows, k), np.int64)
    for j in range(k):
        nib = (c.data[:, j // 2].astype(np.int64) >> (4 * (j % 2))) & 0xF
        q[:, j] = np.where(nib >= 8, nib - 16, nib)
    return q


def ints(c):
    return unpack_int4(c) if c.storage == "int4" else c.data.astype(np.int64)


def per_value(arr, c):
    """Expand a (rows, nblocks) array to (rows, K)."""
    return np.repeat(arr.astype(np.float64), c.block_k, axis=1)


def test_int8_symmetric_per_channel_scale_is_absmax_over_127(rng):
    g = cnn(rng)
    q = quantize(g, "int8")
    for name in LAYERS:
        w, c = rows_of(weight(g, name)), weight(q, name)
        assert c.storage == "int8" and c.data.dtype == np.int8 and c.zero is None
        assert c.data.shape == w.shape and c.scale.shape == (w.shape[0], 1)
        np.testing.assert_array_equal(c.scale[:, 0],
                                      (np.abs(w).max(axis=1) / 127).astype(np.float32))
        assert np.all(np.abs(c.data.astype(int)).max(axis=1) == 127)
        np.testing.assert_array_equal(c.data, np.rint(w / c.scale.astype(np.float64)))


@pytest.mark.parametrize("storage,bits", [("int8", 8), ("int4", 4)])
@pytest.mark.parametrize("block", [None, 16])
def test_asymmetric_min_and_max_land_on_grid_ends(rng, storage, bits, block):
    g = cnn(rng)
    q = quantize(g, storage, block=block, symmetric=False)
    for name in LAYERS:
        c = weight(q, name)
        w = rows_of(weight(g, name))
        bk = c.block_k
        wb = w.reshape(w.shape[0], -1, bk)
        qb = ints(c).reshape(wb.shape)
        lo, hi = wb.min(axis=2), wb.max(axis=2)
        idx_lo = wb.argmin(axis=2)[..., None]
        idx_hi = wb.argmax(axis=2)[..., None]
        assert np.all(np.take_along_axis(qb, idx_lo, 2) == -2 ** (bits - 1))
        assert np.all(np.take_along_axis(qb, idx_hi, 2) == 2 ** (bits - 1) - 1)
        assert qb.min() >= -2 ** (bits - 1) and qb.max() <= 2 ** (bits - 1) - 1
        np.testing.assert_allclose(c.scale, (hi - lo) / (2 ** bits - 1), rtol=1e-6)
        np.testing.assert_allclose(c.zero, lo + 2 ** (bits - 1) * c.scale, rtol=1e-5,
                                   atol=1e-6)
        deq = rows_of(c).reshape(wb.shape)
        np.testing.assert_allclose(np.take_along_axis(deq, idx_lo, 2)[..., 0], lo, atol=1e-5)
        np.testing.assert_allclose(np.take_along_axis(deq, idx_hi, 2)[..., 0], hi, atol=1e-5)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("block", [None, 16])
def test_int4_packing_round_trips(rng, symmetric, block):
    g = cnn(rng)
    q = quantize(g, "int4", block=block, symmetric=symmetric)
    for name in LAYERS:
        c = weight(q, name)
        rows, k = c.rows_k
        assert c.data.dtype == np.uint8 and c.data.shape == (rows, (k + 1) // 2)
        if k % 2:                            # conv1 K=27, dw K=9: the pad nibble is 0
            assert np.all(c.data[:, -1] >> 4 == 0)
        qv = unpack_int4(c)
        assert qv.min() >= -8 and qv.max() <= 7
        mine = qv * per_value(c.scale, c)
        if c.zero is not None:
            mine = mine + per_value(c.zero, c)
        np.testing.assert_allclose(c.as_float32().reshape(rows, k), mine, rtol=1e-6, atol=1e-7)
        if symmetric:
            assert qv.min() >= -7


def test_fp16_clamps_and_keeps_shape(rng):
    g = cnn(rng)
    w = g.constants["w_conv2"].data.copy()
    w[0, 0, 0, 0], w[1, 2, 1, 1] = 1e6, -1e6
    g.constants["w_conv2"] = jc.Constant("w_conv2", w)
    q, rep = quantize_with_report(g, "fp16")
    c = weight(q, "conv2")
    assert c.storage == "fp16" and c.data.dtype == np.float16 and c.shape == w.shape
    assert c.data[0, 0, 0, 0] == 65504 and c.data[1, 2, 1, 1] == -65504
    assert np.all(np.isfinite(c.data)) and c.scale is None and c.zero is None
    assert "clamped" in rep.layer("conv2").reason
    rest = np.abs(w) < 1e5
    np.testing.assert_allclose(c.as_float32()[rest], w[rest], rtol=2 ** -11,
                               atol=2 ** -25)     # fp16 subnormals: absolute step 2^-24


@pytest.mark.parametrize("storage", ["int8", "int4"])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("block", [None, 16, 32])
def test_dequantized_error_within_half_a_step(rng, storage, symmetric, block):
    g = cnn(rng)
    q, rep = quantize_with_report(g, storage, block=block, symmetric=symmetric)
    for name in LAYERS:
        c, w = weight(q, name), rows_of(weight(g, name))
        err = np.abs(rows_of(c) - w)
        bound = per_value(c.scale, c) / 2 + 1e-6 * (1 + np.abs(w).max())
        assert np.all(err <= bound), name
        assert rep.layer(name).max_abs_error == pytest.approx(err.max(), rel=1e-5, abs=1e-7)


def test_blockwise_scale_shapes_and_fallback(rng):
    g = cnn(rng)
    q, rep = quantize_with_report(g, "int8", block=16)
    assert weight(q, "conv2").scale.shape == (32, 2)      # C/g = 32
    assert weight(q, "conv2").block_k == 16 * 9           # 16 channels x 3x3 window
    assert weight(q, "grp").scale.shape == (16, 1)        # C/g = 16: one block
    assert weight(q, "fc").scale.shape == (10, 1)         # K = 16
    for name in ("conv1", "dw"):                          # C/g = 3 and 1: per channel
        assert weight(q, name).scale.shape == (weight(q, name).shape[0], 1)
        assert rep.layer(name).fell_back_to_per_channel and rep.layer(name).block is None
        assert "not a multiple of block 16" in rep.layer(name).reason
    assert rep.fallbacks == ["conv1", "dw"]
    assert rep.layer("conv2").block == 16 and not rep.layer("conv2").fell_back_to_per_channel
    q32, rep32 = quantize_with_report(g, "int4", block=32)
    assert weight(q32, "conv2").scale.shape == (32, 1) and rep32.layer("conv2").block == 32
    assert set(rep32.fallbacks) == {"conv1", "dw", "grp", "fc"}
    assert "conv1" in str(rep32) and "fallback" in str(rep32)


@pytest.mark.parametrize("block", [24, 8, 0, -16, 16.0, True])
def test_bad_block_is_an_error(rng, block):
    with pytest.raises(jc.GraphError, match=f"block={block!r}"):
        quantize(cnn(rng), "int8", block=block)


def test_bad_weights_value_is_an_error(rng):
    with pytest.raises(jc.GraphError, match="weights='int2'.*'fp16'.*'int8'.*'int4'"):
        quantize(cnn(rng), "int2")


def test_weight_bytes(rng):
    g = cnn(rng)
    q8, q4, q16 = quantize(g, "int8"), quantize(g, "int4"), quantize(g, "fp16")
    for name in LAYERS:
        f32 = weight(g, name).data.nbytes
        rows, k = weight(g, name).rows_k
        c8, c4, c16 = weight(q8, name), weight(q4, name), weight(q16, name)
        assert c8.data.nbytes * 4 == f32
        assert c4.data.nbytes == rows * ((k + 1) // 2)
        if k % 2 == 0:
            assert c4.data.nbytes * 8 == f32
        assert c16.data.nbytes * 2 == f32 and c16.nbytes * 2 == f32
        assert c8.nbytes == c8.data.nbytes + c8.scale.nbytes == c8.data.nbytes + 4 * rows
    qa = weight(quantize(g, "int8", symmetric=False), "conv2")
    assert qa.nbytes == qa.data.nbytes + 2 * 4 * 32
    # biases are not touched
    assert q4.storages()["fp32"] == 2 and q4.storages()["int4"] == 5


def test_report_totals_and_display(rng, capsys):
    g = cnn(rng)
    q, rep = quantize_with_report(g, "int8", print_report=True)
    assert rep.bytes_before == sum(weight(g, n).nbytes for n in LAYERS)
    assert rep.bytes_after == sum(weight(q, n).nbytes for n in LAYERS)
    assert g.weight_bytes - q.weight_bytes == rep.bytes_before - rep.bytes_after
    out = capsys.readouterr().out
    assert out.strip() == str(rep).strip()
    for name in LAYERS:
        assert name in out and name in rep._repr_html_()
    assert "<table>" in rep._repr_html_()
    quantize(g, "int8")
    assert capsys.readouterr().out == ""


def test_overrides(rng):
    g = cnn(rng)
    q, rep = quantize_with_report(g, "int4", block=16,
                                  overrides={"conv1": "fp16", "fc": "fp32", "dw": "int8"})
    assert [weight(q, n).storage for n in LAYERS] == ["fp16", "int4", "int8", "int4", "fp32"]
    np.testing.assert_array_equal(weight(q, "fc").data, weight(g, "fc").data)
    assert "override" in rep.layer("conv1").reason and rep.layer("conv1").block is None
    with pytest.raises(jc.GraphError, match="'nope'.*'zzz'"):
        quantize(g, "int8", overrides={"zzz": "fp16", "conv1": "fp16", "nope": "int4"})
    with pytest.raises(jc.GraphError, match="'gap'"):
        quantize(g, "int8", overrides={"gap": "fp16"})
    with pytest.raises(jc.GraphError, match="int3"):
        quantize(g, "int8", overrides={"conv1": "int3"})


def test_matmul_and_gemm_transb0_become_gemm_transb1(rng):
    b = jc.GraphBuilder("mm")
    x = b.input("x", (4, 16))
    h = b.matmul(x, b.constant(rand(rng, 16, 24), "w_mm"), name="mm")
    h = b.gemm(h, b.constant(rand(rng, 24, 8), "w_g"), rand(rng, 8), alpha=0.5,
               trans_b=False, name="g")
    b.output(b.relu(h, name="r"), "y")
    g = b.build()
    feeds = {"x": rand(rng, 4, 16)}
    ref = evaluate(g, feeds)["y"]
    for storage, tol in [("fp32", 1e-5), ("fp16", 2e-3), ("int8", 3e-2)]:
        q = quantize(g, storage)
        mm, gg = q.nodes[0], q.nodes[1]
        assert mm.op_type == "Gemm" and mm.attrs["transB"] == 1 and mm.attrs["transA"] == 0
        assert gg.attrs["transB"] == 1 and gg.attrs["alpha"] == 0.5
        assert q.constants[mm.inputs[1]].shape == (24, 16)
        assert q.constants[gg.inputs[1]].shape == (8, 24)
        got = evaluate(q, feeds)["y"]
        assert np.max(np.abs(got - ref)) <= tol * np.max(np.abs(ref)), storage


def test_shared_constant_quantized_once_and_other_uses_keep_fp32(rng):
    b = jc.GraphBuilder("shared")
    x = b.input("x", (1, 16, 5, 5))
    w = b.constant(rand(rng, 16, 16, 1, 1), "w")
    y = b.conv2d(b.conv2d(x, w, name="c1"), w, name="c2")
    b.output(y, "y")
    m = b.constant(rand(rng, 16, 16), "m")           # a Gemm weight also read by an Add
    b.output(b.add(b.gemm(b.flatten(b.global_average_pool(y)), m, name="gm"), m,
                   name="plus"), "z")
    g = b.build()
    q, rep = quantize_with_report(g, "int8")
    assert q.nodes[0].inputs[1] == q.nodes[1].inputs[1] == "w"
    assert q.constants["w"].storage == "int8"
    assert rep.layer("c2").shared and not rep.layer("c1").shared
    assert rep.bytes_after == q.constants["w"].nbytes + q.constants[rep.layer("gm").weight].nbytes
    gm = next(n for n in q.nodes if n.name == "gm")
    assert gm.inputs[1] != "m" and q.constants[gm.inputs[1]].storage == "int8"
    assert q.constants["m"].storage == "fp32"
    feeds = {"x": rand(rng, 1, 16, 5, 5)}
    ref, got = evaluate(g, feeds)["z"], evaluate(q, feeds)["z"]
    assert np.max(np.abs(got - ref)) <= 5e-2 * np.max(np.abs(ref))


def test_all_constant_rows_get_scale_zero(rng):
    g = cnn(rng)
    w = g.constants["w_conv2"].data.copy()
    w[3] = 0.0
    w[5] = 0.25
    g.constants["w_conv2"] = jc.Constant("w_conv2", w)
    with np.errstate(all="raise"):
        for storage in ("int8", "int4"):
            for sym in (True, False):
                for block in (None, 16):
                    c = weight(quantize(g, storage, block=block, symmetric=sym), "conv2")
                    v = c.as_float32()
                    assert np.all(c.scale[3] == 0) and np.all(v[3] == 0)
                    assert np.all(np.isfinite(v))
                    if sym:
                        assert np.all(c.scale[5] > 0)
                    else:
                        assert np.all(c.scale[5] == 0) and np.all(c.zero[5] == 0.25)
                    np.testing.assert_array_equal(v[5], 0.25)


def test_input_graph_untouched_and_requantize(rng):
    g = cnn(rng)
    before = copy.deepcopy(g)
    q8 = quantize(g, "int8", block=16, symmetric=False, overrides={"conv1": "fp16"})
    assert q8 is not g and q8.name == g.name
    assert [(n.op_type, n.inputs, n.outputs, n.attrs) for n in g.nodes] == \
        [(n.op_type, n.inputs, n.outputs, n.attrs) for n in before.nodes]
    assert set(g.constants) == set(before.constants)
    for k, c in g.constants.items():
        assert c.storage == "fp32"
        np.testing.assert_array_equal(c.data, before.constants[k].data)
    # already-quantized weights are re-quantized from their decoded values
    q16 = quantize(q8, "fp16")
    for name in LAYERS:
        np.testing.assert_allclose(weight(q16, name).as_float32(),
                                   weight(q8, name).as_float32(), rtol=2 ** -10, atol=1e-7)


def test_quantized_cnn_outputs_stay_close(rng):
    g = cnn(rng)
    feeds = {"x": rand(rng, 1, 3, 8, 8)}
    ref = evaluate(g, feeds)["y"]
    for storage, tol in [("fp16", 2e-3), ("int8", 5e-2)]:
        got = evaluate(quantize(g, storage), feeds)["y"]
        assert np.max(np.abs(got - ref)) <= tol * np.max(np.abs(ref)), storage
