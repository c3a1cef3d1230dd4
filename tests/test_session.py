"""Session behaviour: resize, memory plan, info, config and input errors, threads."""
import math

import numba
import numpy as np
import pytest

import jitconv as jc
from helpers import assert_close, rand
from jitconv.models import conv_chain, mobilenet_v2
from jitconv.runtime.reference import evaluate
from jitconv.runtime.shapes import infer_shapes


def _small_net(rng):
    g = jc.GraphBuilder("small")
    x = g.input("x", (1, 3, 12, 12))
    y = g.conv2d(x, rand(rng, 8, 3, 3, 3), rand(rng, 8), stride=2, padding=1, activation="relu")
    y = g.max_pool(y, 2)
    y = g.flatten(g.global_average_pool(y))
    g.output(g.dense(y, rand(rng, 5, 8), rand(rng, 5)), "y")
    return g.build()


def test_resize_replans_and_stays_correct(rng):
    graph = _small_net(rng)
    sess = jc.Session(graph, jc.Config(threads=2))
    arena_before = sess.info().arena_bytes
    sess.resize({"x": (4, 3, 20, 17)})
    x = rand(rng, 4, 3, 20, 17)
    ref = evaluate(graph, {"x": x})["y"]
    assert_close(sess.run({"x": x})["y"], ref)
    assert sess.info().arena_bytes > arena_before
    assert sess.input_shapes == {"x": (4, 3, 20, 17)}
    with pytest.raises(jc.InputError, match="expected \\(4, 3, 20, 17\\)"):
        sess.run(rand(rng, 1, 3, 12, 12))


def test_resize_errors_name_the_input(rng):
    sess = jc.Session(_small_net(rng))
    with pytest.raises(jc.InputError, match="unknown input 'z'"):
        sess.resize({"z": (1, 3, 8, 8)})
    with pytest.raises(jc.InputError, match="'x' needs a 4-D shape"):
        sess.resize({"x": (3, 8, 8)})
    with pytest.raises(jc.GraphError, match="Conv node"):
        sess.resize({"x": (1, 3, 0, 0)})


def test_planner_reuses_memory_on_a_chain():
    graph = conv_chain(layers=20, channels=16, size=32)
    sess = jc.Session(graph, jc.Config(threads=2))
    shapes = infer_shapes(sess.graph, sess.input_shapes)
    total = sum(4 * math.prod(shapes[n.outputs[0]]) for n in sess.graph.nodes[:-1])
    assert sess.info().arena_bytes < total / 2
    x = np.random.default_rng(1).standard_normal((1, 16, 32, 32)).astype(np.float32)
    assert_close(sess.run(x)["y"], evaluate(graph, {"x": x})["y"])


def test_planner_never_overlaps_live_tensors():
    from jitconv.runtime.planner import Interval, plan
    rng = np.random.default_rng(3)
    ivs = []
    for i in range(60):
        first = int(rng.integers(0, 40))
        ivs.append(Interval(f"t{i}", int(rng.integers(0, 5000)), first,
                            first + int(rng.integers(0, 6))))
    offsets, total = plan(ivs)
    for a in ivs:
        assert offsets[a.name] + a.nbytes <= total
        for b in ivs:
            if a.name < b.name and a.nbytes and b.nbytes and a.first <= b.last and b.first <= a.last:
                assert (offsets[a.name] + a.nbytes <= offsets[b.name]
                        or offsets[b.name] + b.nbytes <= offsets[a.name]), (a, b)


def test_outputs_are_fresh_arrays(rng):
    sess = jc.Session(_small_net(rng))
    x = rand(rng, 1, 3, 12, 12)
    first = sess.run(x)["y"]
    keep = first.copy()
    sess.run(2 * x)
    np.testing.assert_array_equal(first, keep)


def test_zero_element_batch(rng):
    graph = _small_net(rng)
    sess = jc.Session(graph)
    sess.resize({"x": (0, 3, 12, 12)})
    assert sess.run(np.zeros((0, 3, 12, 12), np.float32))["y"].shape == (0, 5)


def test_info_reports_real_bytes_and_kernels(rng):
    graph = _small_net(rng)
    sess = jc.Session(graph)
    info = sess.info()
    # the arrays the kernels keep (packed weights, biases), counted from the arrays
    held = {id(a): a.nbytes for step in sess._steps for a in step.kernel.held_arrays()}
    assert sum(held.values()) == sum(op.weight_bytes for op in info.ops)
    # plus constants passed at run time (here Gemm's C, which no kernel packs)
    runtime_consts = sum(a.nbytes for a in sess._held.values())
    assert runtime_consts == 5 * 4
    assert info.weight_bytes == sum(held.values()) + runtime_consts
    assert info.weight_bytes >= sum(c.data.nbytes for c in graph.constants.values())
    assert [op.op_type for op in info.ops] == ["Conv", "MaxPool", "GlobalAveragePool",
                                               "Flatten", "Gemm"]
    assert all(op.backend == "cpu" and op.kernel and op.reason for op in info.ops)
    assert info.flops == 2 * 8 * 6 * 6 * 27 + 8 * 3 * 3 * 4 + 8 * 9 + 2 * 5 * 8
    text, page = str(info), info._repr_html_()
    conv = info.ops[0].kernel
    assert conv in text and "<table>" in page and conv in page


def test_threads_restore_the_callers_setting(rng):
    sess = jc.Session(_small_net(rng), jc.Config(threads=1))
    before = numba.get_num_threads()
    sess.run(rand(rng, 1, 3, 12, 12))
    assert numba.get_num_threads() == before


@pytest.mark.parametrize("field,value", [("backend", ""), ("backend", 3), ("precision", "fp16"),
                                         ("memory", "LOW"), ("memory", 1), ("threads", 0),
                                         ("threads", "2"), ("backup", ""), ("backup", "auto")])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(jc.ConfigError, match=f"Config.{field}"):
        jc.Config(**{field: value})


@pytest.mark.parametrize("field", ["backend", "backup"])
def test_backend_names_are_checked_against_the_sessions_registry(rng, field):
    """A name is fine for a Config; the Session checks it against the registry it is
    given, so a backend known only to a private registry works there and nowhere else."""
    cfg = jc.Config(**{field: "gpu"})
    with pytest.raises(jc.ConfigError, match=f"Config.{field}='gpu': unknown backend 'gpu'; "
                                             f"registered backends: .*cpu"):
        jc.Session(_small_net(rng), cfg)
    reg = jc.Registry()
    reg.register_backend(jc.default_registry.get("cpu"))
    reg.register_backend(jc.Backend("gpu", creators=dict(jc.default_registry.get("cpu").creators)))
    sess = jc.Session(_small_net(rng), cfg, registry=reg)
    assert sess.run(rand(rng, 1, 3, 12, 12))


def test_config_is_frozen():
    with pytest.raises(Exception):
        jc.Config().memory = "low"


def test_bad_inputs_name_the_input(rng):
    sess = jc.Session(_small_net(rng))
    with pytest.raises(jc.InputError, match="'x' has shape \\(1, 3, 12, 11\\), expected"):
        sess.run({"x": rand(rng, 1, 3, 12, 11)})
    with pytest.raises(jc.InputError, match="'x' has dtype float64"):
        sess.run({"x": np.zeros((1, 3, 12, 12))})
    with pytest.raises(jc.InputError, match="unknown \\['y'\\], missing \\['x'\\]"):
        sess.run({"y": rand(rng, 1, 3, 12, 12)})
    with pytest.raises(jc.InputError, match="'x' must be a numpy array"):
        sess.run({"x": [[1.0]]})


def test_builder_errors_name_the_op_and_shape(rng):
    g = jc.GraphBuilder()
    x = g.input("x", (1, 3, 8, 8))
    with pytest.raises(jc.GraphError, match="weight W shape \\(4, 2, 3, 3\\) expects 2 input"):
        g.conv2d(x, rand(rng, 4, 2, 3, 3))
    with pytest.raises(jc.GraphError, match="do not broadcast"):
        g.add(x, rand(rng, 5))
    with pytest.raises(jc.GraphError, match="larger than the padded input"):
        g.conv2d(x, rand(rng, 4, 3, 9, 9))
    with pytest.raises(jc.GraphError, match="activation='gelu'"):
        g.conv2d(x, rand(rng, 4, 3, 3, 3), activation="gelu")
    with pytest.raises(jc.GraphError, match="not supported"):
        g.node("Cos", [x])
    with pytest.raises(jc.GraphError, match="no outputs"):
        g.build()


def test_non_contiguous_input_is_accepted(rng):
    graph = _small_net(rng)
    x = rand(rng, 1, 3, 12, 24)[..., ::2]
    got = jc.Session(graph).run(x)["y"]
    assert_close(got, evaluate(graph, {"x": np.ascontiguousarray(x)})["y"])


def test_mobilenet_v2_matches_reference():
    graph = mobilenet_v2(input_size=64, num_classes=10)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref = evaluate(graph, {"input": x})["probs"]
    for memory in ("normal", "low"):
        got = jc.Session(graph, jc.Config(threads=2, memory=memory)).run(x)["probs"]
        assert_close(got, ref, rtol=1e-5)


def test_profile_times_every_op_and_does_not_change_results():
    graph = conv_chain(layers=3, channels=8, size=8)
    sess = jc.Session(graph, jc.Config(threads=1))
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 8)).astype(np.float32)
    want = sess.run(x)["y"]
    prof = sess.profile(x, runs=3)
    assert prof.runs == 3 and [o.name for o in prof.ops] == [o.name for o in sess.info().ops]
    assert all(o.median_ms > 0 for o in prof.ops) and prof.total_ms > 0
    assert all(o.flops == i.flops for o, i in zip(prof.ops, sess.info().ops))
    counts = {k: n for k, (n, _) in prof.by_kernel().items()}
    assert sum(counts.values()) == len(prof.ops)
    text = str(prof)
    assert "median ms" in text and all(o.name in text for o in prof.ops)
    assert "<table>" in prof._repr_html_()
    np.testing.assert_array_equal(sess.run(x)["y"], want)
    with pytest.raises(jc.ConfigError, match="runs"):
        sess.profile(x, runs=0)
    with pytest.raises(jc.InputError):
        sess.profile(np.zeros((1, 3, 8, 8), np.float32))


def test_session_threads_differ_from_the_callers_numba_setting():
    # scratch is sized for the session's threads, not for the caller's current setting
    graph = conv_chain(layers=2, channels=16, size=8)
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    want = evaluate(graph, {"x": x})["y"]
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        for threads in (1, 2):
            sess = jc.Session(graph, jc.Config(threads=threads))
            assert_close(sess.run(x)["y"], want)
            assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
