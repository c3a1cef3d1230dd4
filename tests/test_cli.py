"""The command line: `jitconv run | quantize | info | demo` on small ONNX and .jcm models."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import jitconv as jc
from jitconv.cli import build_parser, main
from jitconv.runtime.reference import evaluate

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """A small conv net (Conv-Relu-Conv-GAP-Flatten-Gemm), opset 13, seeded weights."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32)
    fc = (rng.standard_normal((10, 32)) * 0.2).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], name="conv2"),
             helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1, name="fc")]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(a, n) for n, a in
                     (("w1", w1), ("w2", w2), ("fc", fc))])
    path = tmp_path_factory.mktemp("cli") / "small.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("command", [[], ["demo"], ["run"], ["quantize"], ["info"]])
def test_help_on_every_command(capsys, command):
    with pytest.raises(SystemExit) as e:
        main(command + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: jitconv" in out
    want = {"run": "--repeat", "quantize": "--weights", "info": "MODEL", "demo": "--size"}
    if command:
        assert want[command[0]] in out


def test_parser_knows_every_command():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {"demo", "run", "quantize", "info", "compile"}


def test_run_with_input_file_and_output(onnx_model, tmp_path, capsys):
    x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    rc = main(["run", str(onnx_model), "--threads", "1", "--repeat", "2", "--memory", "low",
               "--input", f"x={tmp_path / 'x.npy'}", "--output", str(out)])
    assert rc == 0
    text = capsys.readouterr()
    assert "latency over 2 runs: median" in text.out and "min" in text.out
    assert "memory: weights" in text.out and "arena" in text.out and "scratch" in text.out
    assert "conv2d_" in text.out and "memory=low" in text.out    # Session.info() table
    if sys.platform.startswith("linux"):
        assert "process RSS (what top shows)" in text.out and "after import" in text.out
    got = np.load(out)["y"]
    ref = evaluate(jc.load(onnx_model), {"x": x})["y"]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_run_random_inputs_are_seeded(onnx_model, tmp_path, capsys):
    outs = []
    for k in range(2):
        path = tmp_path / f"o{k}.npz"
        assert main(["run", str(onnx_model), "--repeat", "1", "--seed", "3", "--output",
                     str(path)]) == 0
        outs.append(np.load(path)["y"])
    assert "random, seed 3" in capsys.readouterr().out
    np.testing.assert_array_equal(outs[0], outs[1])


def test_run_resizes_to_a_given_input_shape(onnx_model, tmp_path, capsys):
    x = np.ones((2, 3, 20, 20), np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(onnx_model), "--repeat", "1", "--input",
                 str(tmp_path / "x.npy")]) == 0
    assert "output y: (2, 10)" in capsys.readouterr().out


@pytest.mark.parametrize("weights", ["fp16", "int8"])
def test_quantize_writes_a_jcm_matching_the_dequantized_reference(onnx_model, tmp_path,
                                                                  capsys, weights):
    out = tmp_path / f"small_{weights}.jcm"
    assert main(["quantize", str(onnx_model), "-o", str(out), "--weights", weights]) == 0
    text = capsys.readouterr().out
    assert "weight bytes:" in text and "->" in text and "max weight error:" in text
    qgraph = jc.load(out)
    assert qgraph.storages()[weights] == 3
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    ref = evaluate(qgraph, {"x": x})["y"]
    for memory in ("normal", "low"):
        got = jc.Session(qgraph, jc.Config(threads=1, memory=memory)).run(x)["y"]
        assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_quantize_int4_blocks_asymmetric(onnx_model, tmp_path, capsys):
    out = tmp_path / "q4.jcm"
    assert main(["quantize", str(onnx_model), "-o", str(out), "--weights", "int4",
                 "--block", "16", "--asymmetric", "-v"]) == 0
    text = capsys.readouterr().out
    assert "symmetric=False" in text and "fell back to per-channel" in text
    assert jc.load(out).storages()["int4"] == 3


def test_info_shows_graph_and_weights_per_memory_mode(onnx_model, tmp_path, capsys):
    assert main(["info", str(onnx_model)]) == 0
    text = capsys.readouterr().out
    assert "nodes: 6" in text and "conv2" in text and "(1, 32, 7, 7)" in text
    for mode in ("normal", "high", "low"):
        assert f"  {mode}  " in text
    q = tmp_path / "q.jcm"
    main(["quantize", str(onnx_model), "-o", str(q), "--weights", "int8"])
    capsys.readouterr()
    assert main(["info", str(q), "--brief"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()
             if ln.startswith("  ") and ln.split()[0] in ("normal", "low")}
    assert "int8 x3" in lines["low"] and "fp32 (from int8) x3" in lines["normal"]


@pytest.mark.parametrize("argv,message", [
    (["run", "missing.onnx"], "missing.onnx: no such file"),
    (["run", "{model}", "--input", "nope=x.npy"], "no such file"),
    (["run", "{model}", "--repeat", "0"], "--repeat 0"),
    (["run", "{model}", "--threads", "0"], "threads"),
    (["quantize", "{model}", "-o", "out.onnx", "--weights", "fp16"], "must be a .jcm"),
    (["info", "model.txt"], "no such file"),
])
def test_errors_exit_2_with_a_message(onnx_model, capsys, argv, message):
    argv = [a.replace("{model}", str(onnx_model)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "jitconv: error:" in err and message in err


def test_unknown_input_name_is_an_error(onnx_model, tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros((1, 3, 16, 16), np.float32))
    assert main(["run", str(onnx_model), "--input", f"nope={tmp_path / 'a.npy'}"]) == 2
    assert "not" in capsys.readouterr().err


def test_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "jitconv", "quantize", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--asymmetric" in res.stdout
