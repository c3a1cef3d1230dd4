"""Backend registry: duplicates, unknown names, declined ops, third-party backends."""
import numpy as np
import pytest

import jitconv as jc
from helpers import assert_close, rand
from jitconv.runtime.reference import evaluate, run_op


class NegateRelu(jc.Kernel):
    """A toy Relu that a third party might register (computes -relu(-x) = min(x, 0))."""
    name = "toy_min0"
    reason = "toy backend's own kernel"

    def run(self, inputs, outputs, scratch):
        np.minimum(inputs[0], 0, out=outputs[0])


def _graph(rng, relu_output=False):
    g = jc.GraphBuilder()
    x = g.input("x", (1, 2, 6, 6))
    y = g.conv2d(x, rand(rng, 3, 2, 3, 3), padding=1)
    r = g.relu(g.add(y, y))
    if relu_output:
        g.output(r, "r")      # every value the Relu kernel wrote
    g.output(g.max_pool(r, 2), "y")
    return g.build()


def _reference_with(graph, feeds, op_type, fn):
    """evaluate(), with the reference of ``op_type`` replaced by ``fn(x)``."""
    values = {name: c.as_float32() for name, c in graph.constants.items()}
    values.update(feeds)
    for node in graph.nodes:
        args = [values[t] for t in node.inputs if t]
        values[node.outputs[0]] = fn(*args) if node.op_type == op_type else \
            run_op(node.op_type, args, node.attrs)
    return {o.name: values[o.name] for o in graph.outputs}


@pytest.fixture
def toy():
    backend = jc.Backend("toy", "test backend")
    jc.register_backend(backend)
    yield backend
    jc.unregister_backend("toy")


def test_duplicate_backend_and_kernel_are_rejected(toy):
    with pytest.raises(jc.RegistryError, match="'toy' is already registered"):
        jc.register_backend(jc.Backend("toy"))
    jc.register_kernel("toy", "Relu", lambda ctx: NegateRelu())
    with pytest.raises(jc.RegistryError, match="already has a kernel creator for op 'Relu'"):
        jc.register_kernel("toy", "Relu", lambda ctx: NegateRelu())
    with pytest.raises(jc.RegistryError, match="already has a kernel creator for op 'Conv'"):
        jc.register_kernel("cpu", "Conv", lambda ctx: None)


def test_unknown_backend_lists_known_ones():
    with pytest.raises(jc.RegistryError, match="unknown backend 'nope'; registered backends: .*cpu"):
        jc.register_kernel("nope", "Relu", lambda ctx: None)
    with pytest.raises(jc.ConfigError, match="Config.backend=.cuda.: unknown backend .cuda."):
        jc.Session(_graph(np.random.default_rng(0)), jc.Config(backend="cuda"))


def test_toy_backend_runs_its_op_and_cpu_runs_the_rest(rng, toy):
    jc.register_kernel("toy", "Relu", lambda ctx: NegateRelu())
    graph = _graph(rng, relu_output=True)
    sess = jc.Session(graph, jc.Config(backend="toy"))
    ops = {op.op_type: op for op in sess.info().ops}
    assert ops["Relu"].backend == "toy" and ops["Relu"].kernel == "toy_min0"
    assert "toy backend's own kernel" in ops["Relu"].reason
    for op in ("Conv", "Add", "MaxPool"):
        assert ops[op].backend == "cpu" and f"toy has no {op} kernel; ran on cpu" in ops[op].reason
    x = rand(rng, 1, 2, 6, 6)
    got = sess.run({"x": x})
    # the toy relu is min(x, 0) everywhere, and the cpu ops around it are exact
    want = _reference_with(graph, {"x": x}, "Relu", lambda v: np.minimum(v, 0))
    relu = evaluate(graph, {"x": x})
    assert np.any(relu["r"] > 0) and np.any(want["r"] < 0)  # the two relus tell apart here
    assert_close(got["r"], want["r"], rtol=1e-5, what="toy Relu output")
    assert_close(got["y"], want["y"], rtol=1e-5, what="max pool of the toy Relu")


def test_declining_creator_falls_back_to_cpu(rng, toy):
    seen = []

    def declines(ctx):
        seen.append(ctx.node.op_type)
        return None
    for op in ("Conv", "Add", "Relu", "MaxPool"):
        jc.register_kernel("toy", op, declines)
    graph = _graph(rng)
    sess = jc.Session(graph, jc.Config(backend="toy"))
    assert sorted(seen) == ["Add", "Conv", "MaxPool", "Relu"]
    assert all(op.backend == "cpu" and "toy declined; ran on cpu" in op.reason
               for op in sess.info().ops)
    x = rand(rng, 1, 2, 6, 6)
    assert_close(sess.run(x)["y"], evaluate(graph, {"x": x})["y"])


def test_private_registry_and_missing_op(rng):
    reg = jc.Registry()
    reg.register_backend(jc.Backend("cpu"))
    with pytest.raises(jc.GraphError, match="no registered backend runs op 'Conv'"):
        jc.Session(_graph(rng), registry=reg)


def test_zero_byte_scratch_is_an_internal_error_naming_the_op(rng, toy):
    class Broken(jc.Kernel):
        name = "broken_hybrid"

        def resize(self, in_shapes, out_shapes):
            return 0            # sized from the wrong metadata, as MNN's hybrid conv was

        def needs_scratch(self):
            return True
    jc.register_kernel("toy", "Relu", lambda ctx: Broken())
    with pytest.raises(jc.InternalError, match="Relu node 'relu'.*broken_hybrid.*0 bytes"):
        jc.Session(_graph(rng), jc.Config(backend="toy"))


def test_creator_crash_becomes_a_named_error(rng, toy):
    def crashes(ctx):
        raise ZeroDivisionError("boom")
    jc.register_kernel("toy", "Add", crashes)
    with pytest.raises(jc.InternalError, match="Add node 'add'.*'toy'.*ZeroDivisionError: boom"):
        jc.Session(_graph(rng), jc.Config(backend="toy"))
