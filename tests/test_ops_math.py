"""The math ops of issue 20 (runtime/ops/elementwise.py, broadcast.py, reduce.py, linalg.py's
Einsum, loadtime.py's run-time Cast): CPU kernels against the float64 NumPy reference and
against onnxruntime, ONNX import forms, and the errors for what is not supported.

Tolerances are float32 ones: a kernel computing in float32 (the unary scalars) is within a
few ulp of the reference rounded to float32; sums are accumulated in float64."""
from __future__ import annotations

import math

import numpy as np
import pytest

import jitconv as jc
from helpers import rand
from jitconv.runtime.reference import evaluate

UNARY = ["log", "erf", "softplus", "mish", "sqrt", "reciprocal", "neg", "abs"]
SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 88.0, -88.0, 100.0, -100.0,
                    1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)


def build(fn, *shapes, dynamic=()):
    g = jc.GraphBuilder()
    xs = [g.input(f"x{i}", s) for i, s in enumerate(shapes)]
    g.output(fn(g, *xs), "y")
    return g.build()


def run(graph, *arrays, threads=2):
    feeds = {f"x{i}": a for i, a in enumerate(arrays)}
    sess = jc.Session(graph, jc.Config(threads=threads))
    return sess.run(feeds)["y"], evaluate(graph, feeds)["y"], sess


def close(got, want, rtol=2e-6, atol=1e-6):
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=rtol, atol=atol,
                               equal_nan=True)


# -- unary ------------------------------------------------------------------------------

@pytest.mark.parametrize("op", UNARY)
def test_unary_kernel_matches_reference(rng, op):
    a = np.concatenate([rand(rng, 3 * 97 - SPECIAL.size, scale=4.0), SPECIAL]).reshape(3, 97)
    with np.errstate(all="ignore"):
        got, want, sess = run(build(lambda g, x: getattr(g, op)(x), a.shape), a)
    close(got, want)
    assert sess.info().ops[0].kernel == f"unary_{op}"
    assert np.array_equal(np.isnan(got), np.isnan(want))


def test_unary_references_follow_onnx():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0, 40.0])
    from jitconv.runtime.reference import run_op
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(run_op("Softplus", [x]), np.log(np.exp(x) + 1), rtol=1e-6)
        np.testing.assert_allclose(run_op("Mish", [x]), x * np.tanh(np.log1p(np.exp(x))),
                                   rtol=1e-6)
        np.testing.assert_allclose(run_op("Erf", [x]), [math.erf(v) for v in x], rtol=1e-6)
        np.testing.assert_allclose(run_op("Reciprocal", [x[x != 0]]), 1 / x[x != 0])
    assert run_op("Neg", [np.array([3, -4], np.int64)]).dtype == np.int64
    assert run_op("Abs", [np.array([3, -4], np.int32)]).tolist() == [3, 4]


@pytest.mark.parametrize("mode", ["none", "tanh"])
def test_gelu_modes(rng, mode):
    a = np.concatenate([rand(rng, 200, scale=4.0), SPECIAL[:-3]])
    got, want, sess = run(build(lambda g, x: g.gelu(x, approximate=mode), a.shape), a)
    close(got, want)
    assert sess.info().ops[0].kernel == f"unary_gelu_{mode}"
    x = a.astype(np.float64)
    exact = 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    if mode == "none":
        close(got, exact)
    else:                                     # the tanh form is within 1e-3 of erf's
        assert np.max(np.abs(got - exact)) < 1e-3


def test_gelu_unknown_mode_is_named():
    with pytest.raises(jc.GraphError, match=r"Gelu node .*approximate='fast' must be one of"):
        build(lambda g, x: g.gelu(x, approximate="fast"), (2, 3))


# -- broadcasting binary / variadic -----------------------------------------------------

SHAPES = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (3, 1)), ((1,), (5, 2, 1, 3)),
          ((4, 1, 3), (1, 5, 1)), ((), (3, 2))]


COMPARISONS = {"equal": np.equal, "less": np.less, "greater": np.greater,
               "less_or_equal": np.less_equal, "greater_or_equal": np.greater_equal}


@pytest.mark.parametrize("op", ["pow", "max", "min", *COMPARISONS])
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_binary_kernel_matches_reference(rng, op, shapes):
    a = np.asarray(rand(rng, *shapes[0], scale=2.0))
    b = np.asarray(rand(rng, *shapes[1], scale=2.0))
    if op == "pow":
        a = np.asarray(np.abs(a) + np.float32(0.1))
    if op in COMPARISONS and a.size and b.size:
        b.reshape(-1)[0] = a.reshape(-1)[0]              # at least one tie
    got, want, sess = run(build(lambda g, x, y: getattr(g, op)(x, y), *shapes), a, b)
    close(got, want, rtol=1e-6, atol=0)
    assert got.dtype == np.float32
    if op in COMPARISONS:
        assert set(np.unique(got)) <= {0.0, 1.0} and want.dtype == bool
        assert np.array_equal(got, COMPARISONS[op](a, b))
        assert sess.info().ops[0].kernel == f"{op}_broadcast"


@pytest.mark.parametrize("op", ["less_or_equal", "greater_or_equal"])
def test_or_equal_comparisons_on_ties_infinities_and_nan(op):
    # every pairing of these values, one along each axis: the output is (8, 8)
    v = np.array([-np.inf, -1.5, -0.0, 0.0, 2.0, 2.0000002, np.inf, np.nan], np.float32)
    a, b = v.reshape(8, 1), v.reshape(1, 8)
    got, want, _ = run(build(lambda g, x, y: getattr(g, op)(x, y), a.shape, b.shape), a, b)
    truth = COMPARISONS[op](a, b)
    assert got.shape == (8, 8) and np.array_equal(got, truth) and np.array_equal(want, truth)
    assert np.all(np.diag(got)[:-1] == 1.0)      # ties are true, -0.0 ties 0.0 ...
    assert got[2, 3] == got[3, 2] == 1.0
    assert not got[-1].any() and not got[:, -1].any()        # ... and NaN never is
    mirrored = {"less_or_equal": "greater_or_equal", "greater_or_equal": "less_or_equal"}[op]
    other, _, _ = run(build(lambda g, x, y: getattr(g, mirrored)(x, y), b.shape, a.shape),
                      b, a)
    assert np.array_equal(other, got)            # a <= b is b >= a


@pytest.mark.parametrize("op", ["less_or_equal", "greater_or_equal"])
def test_or_equal_comparisons_refuse_shapes_that_do_not_broadcast(op):
    name = {"less_or_equal": "LessOrEqual", "greater_or_equal": "GreaterOrEqual"}[op]
    with pytest.raises(jc.GraphError, match=rf"{name} node .*inputs of shapes \(2, 3\) and "
                                            r"\(4,\) do not broadcast"):
        build(lambda g, x, y: getattr(g, op)(x, y), (2, 3), (4,))
    with pytest.raises(jc.GraphError, match=rf"{name} node .*takes 2..2 inputs, got 1"):
        build(lambda g, x: getattr(g, op)(x), (2, 3))


def test_pow_special_values():
    a = np.array([-8.0, -2.0, 0.0, 0.0, 2.0, np.nan, 1.0, -1.0], np.float32)
    b = np.array([1 / 3, 3.0, -1.0, 0.0, 0.5, 0.0, np.nan, np.inf], np.float32)
    with np.errstate(all="ignore"):
        got, want, _ = run(build(lambda g, x, y: g.pow(x, y), (8,), (8,)), a, b)
        close(got, want)
        close(got, np.power(a.astype(np.float64), b))   # numpy's (C99) pow semantics


def test_max_min_variadic_and_nan(rng):
    a, b, c = rand(rng, 2, 3, 4), rand(rng, 3, 1), rand(rng, 4)
    a[0, 0, 0], b[1, 0] = np.nan, np.nan
    for op, fn in (("max", np.fmax), ("min", np.fmin)):
        got, want, _ = run(build(lambda g, x, y, z: getattr(g, op)(x, y, z),
                                 a.shape, b.shape, c.shape), a, b, c)
        close(got, want, rtol=0, atol=0)
        assert np.isnan(got[0, 0, 0]) and np.isnan(got[:, 1]).all()
        got1, want1, _ = run(build(lambda g, x: getattr(g, op)(x), a.shape), a)
        close(got1, a)


def test_where_on_a_comparison(rng):
    a, b = rand(rng, 2, 3, 5), rand(rng, 3, 1)
    got, want, sess = run(build(lambda g, x, y: g.where(g.less(x, y), x, g.neg(y)),
                                a.shape, b.shape), a, b)
    close(got, want, rtol=0, atol=0)
    close(got, np.where(a < b, a, -b), rtol=0, atol=0)
    assert [op.kernel for op in sess.info().ops] == ["less_broadcast", "unary_neg",
                                                     "where_broadcast"]


# -- reductions -------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max", "reduce_l2", "reduce_sum_square"])
@pytest.mark.parametrize("axes,keepdims", [(None, 1), ([1], 0), ([0, 2], 1), ([-1], 0),
                                           ([0, 1, 2, 3], 0), ([1, 3], 0)])
def test_reductions_match_reference(rng, op, axes, keepdims):
    a = rand(rng, 3, 4, 5, 6, scale=3.0)
    kw = {"keepdims": keepdims, **({} if axes is None else {"axes": axes})}
    got, want, sess = run(build(lambda g, x: getattr(g, op)(x, **kw), a.shape), a)
    close(got, want, rtol=1e-6, atol=1e-6)
    x = a.astype(np.float64)
    ax = None if axes is None else tuple(axes)
    truth = {"reduce_sum": np.sum(x, ax, keepdims=bool(keepdims)),
             "reduce_max": np.max(x, ax, keepdims=bool(keepdims)),
             "reduce_l2": np.sqrt(np.sum(x * x, ax, keepdims=bool(keepdims))),
             "reduce_sum_square": np.sum(x * x, ax, keepdims=bool(keepdims))}[op]
    close(got, truth, rtol=1e-6, atol=1e-6)
    assert sess.info().ops[0].kernel == op


def test_reductions_of_nothing_and_nan():
    empty = np.zeros((2, 0, 3), np.float32)
    for op, value in (("reduce_sum", 0.0), ("reduce_max", -np.inf), ("reduce_l2", 0.0),
                      ("reduce_sum_square", 0.0)):
        got, want, _ = run(build(lambda g, x: getattr(g, op)(x, axes=[1]), empty.shape), empty)
        assert got.shape == (2, 1, 3) and np.all(got == value) and np.all(want == value)
    a = np.array([[1.0, np.nan, 3.0], [np.inf, 2.0, -1.0]], np.float32)
    got, want, _ = run(build(lambda g, x: g.reduce_max(x, axes=[1], keepdims=0), a.shape), a)
    assert np.isnan(got[0]) and got[1] == np.inf and np.isnan(want[0])


ALONE = {"reduce_sum": lambda x: x, "reduce_max": lambda x: x, "reduce_mean": lambda x: x,
         "reduce_l2": np.abs, "reduce_sum_square": lambda x: x * x}


@pytest.mark.parametrize("op", list(ALONE))
def test_reductions_over_no_axes_reduce_each_element_alone(rng, op):
    a = rand(rng, 2, 3, 4, scale=3.0)              # negative values: L2 of one is |x|
    got, want, _ = run(build(lambda g, x: getattr(g, op)(x, axes=[], keepdims=0), a.shape), a)
    close(got, ALONE[op](a.astype(np.float64)), rtol=0, atol=0)
    close(want, got, rtol=0, atol=0)
    s = np.array(-2.5, np.float32)                 # a 0-D input has no axis to reduce
    got, want, _ = run(build(lambda g, x: getattr(g, op)(x), ()), s)
    assert got.shape == () and got == want == ALONE[op](-2.5)


@pytest.mark.parametrize("last", [0, 1])
@pytest.mark.parametrize("axis,keepdims", [(0, 1), (1, 0), (-1, 1), (2, 0)])
def test_argmax(rng, axis, keepdims, last):
    a = np.round(rand(rng, 4, 5, 6, scale=2.0))         # many ties
    a[1, 2, 3] = np.nan
    got, want, sess = run(build(lambda g, x: g.argmax(x, axis=axis, keepdims=keepdims,
                                                      select_last_index=last), a.shape), a)
    assert got.dtype == np.float32 and want.dtype == np.int64
    assert np.array_equal(got, want.astype(np.float32))
    ax = axis % 3
    flip = np.flip(a, ax)
    idx = a.shape[ax] - 1 - np.argmax(flip, ax) if last else np.argmax(a, ax)
    assert np.array_equal(got, (np.expand_dims(idx, ax) if keepdims else idx))


def test_argmax_of_an_empty_axis_is_named():
    with pytest.raises(jc.GraphError, match=r"ArgMax node .*axis 1 of the input of shape "
                                            r"\(2, 0, 3\) is empty"):
        build(lambda g, x: g.argmax(x, axis=1), (2, 0, 3))


# -- Einsum -----------------------------------------------------------------------------

EINSUM = [("bij,bjk->bik", (2, 3, 4), (2, 4, 5)), ("ij,kj->ik", (3, 4), (5, 4)),
          ("ji,jk->ki", (4, 3), (4, 5)), ("i,i", (7,), (7,)), ("ij,j->i", (3, 4), (4,)),
          ("bhqd,bhkd->bhqk", (2, 3, 5, 8), (2, 3, 6, 8)),
          ("...ij,...jk->...ik", (2, 2, 3, 4), (4, 5)), ("bij,jk->bki", (2, 3, 4), (4, 5)),
          ("ij,jk", (3, 4), (4, 5)), (" b i j , b j k -> b i k ", (1, 3, 4), (2, 4, 5))]


@pytest.mark.parametrize("eq,sa,sb", EINSUM, ids=[e[0] for e in EINSUM])
def test_einsum_matmul_forms(rng, eq, sa, sb):
    a, b = rand(rng, *sa), rand(rng, *sb)
    got, want, sess = run(build(lambda g, x, y: g.einsum(x, y, equation=eq), sa, sb), a, b)
    close(got, want, rtol=1e-5, atol=1e-5)
    close(got, np.einsum(eq.replace(" ", ""), a.astype(np.float64), b), rtol=1e-5, atol=1e-5)
    assert sess.info().ops[0].kernel == "einsum_matmul"
    k = sa[-1] if eq != "ji,jk->ki" else sa[0]
    assert sess.info().flops == 2 * got.size * k


@pytest.mark.parametrize("eq,shapes", [("ij->ji", [(3, 4)]), ("ii,ij->j", [(3, 3), (3, 4)]),
                                       ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
                                       ("bij,bjk->ik", [(2, 3, 4), (2, 4, 5)]),
                                       ("ijk,jk->i", [(2, 3, 4), (3, 4)]),
                                       ("i,j->ij", [(3,), (4,)])])
def test_einsum_other_equations_are_refused_by_name(eq, shapes):
    with pytest.raises(jc.GraphError, match=rf"Einsum node .*equation '{re_escape(eq)}'"):
        build(lambda g, *xs: g.einsum(*xs, equation=eq), *shapes)


def re_escape(s):
    import re
    return re.escape(s)


# -- copies -----------------------------------------------------------------------------

def test_cast_to_float16_rounds(rng):
    a = np.concatenate([rand(rng, 60, scale=100.0), np.float32([1e-8, 7e4, -1e5, np.nan])])
    got, want, sess = run(build(lambda g, x: g.cast(x, to=10), a.shape), a)
    assert got.dtype == np.float32 and sess.info().ops[0].kernel == "cast_float16"
    with np.errstate(over="ignore"):
        close(got, a.astype(np.float16).astype(np.float32), rtol=0, atol=0)
    assert got[-2] == -np.inf
    with pytest.raises(jc.GraphError, match=r"Cast node .*to=7: a run-time Cast goes to a "
                                            r"float type only"):
        build(lambda g, x: g.cast(x, to=7), (2, 3))


def test_expand_and_tile(rng):
    a = rand(rng, 3, 1, 4)
    got, want, _ = run(build(lambda g, x: g.expand(x, shape=[2, 1, 5, 1]), a.shape), a)
    close(got, np.broadcast_to(a, (2, 3, 5, 4)), rtol=0, atol=0)
    got, want, _ = run(build(lambda g, x: g.tile(x, repeats=[2, 3, 1]), a.shape), a)
    close(got, np.tile(a, (2, 3, 1)), rtol=0, atol=0)
    with pytest.raises(jc.GraphError, match=r"Tile node .*repeats \[2, 3\] must hold 3 "
                                            r"non-negative ints .*\(3, 1, 4\)"):
        build(lambda g, x: g.tile(x, repeats=[2, 3]), (3, 1, 4))
    with pytest.raises(jc.GraphError, match=r"Expand node .*\(3, 1, 4\) does not broadcast "
                                            r"to shape \[2, 5\]"):
        build(lambda g, x: g.expand(x, shape=[2, 5]), (3, 1, 4))


def test_resize_replans_the_new_ops(rng):
    g = jc.GraphBuilder()
    x = g.input("x", (1, 3, 4, 4), dynamic_axes=(0,))
    y = g.where(g.greater(x, g.constant(np.float32(0.5))), g.softplus(x), g.gelu(x))
    g.output(g.reduce_sum(g.pow(g.abs(y), g.constant(np.float32(1.5))), axes=[1, 3]), "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2))
    for n in (1, 3):
        a = rand(rng, n, 3, 4, 4)
        close(sess.run(a)["y"], evaluate(graph, {"x": a})["y"], rtol=1e-5, atol=1e-5)


# -- ONNX import and onnxruntime ---------------------------------------------------------

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from jitconv.runtime.onnx_import import import_model  # noqa: E402


def model_of(nodes, inputs, outputs, inits=(), opset=17):
    vi = lambda n, s, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, s)  # noqa: E731
    m = helper.make_model(
        helper.make_graph(nodes, "m", [vi(*i) for i in inputs], [vi(*o) for o in outputs],
                          [numpy_helper.from_array(v, k) for k, v in dict(inits).items()]),
        opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    onnx.checker.check_model(m)
    return m


def ort_run(model, feeds):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def jc_run(model, feeds):
    res = import_model(model)
    return jc.Session(res.graph, jc.Config(threads=2)).run(feeds), res.graph


ORT_UNARY = [("Log", 13), ("Erf", 13), ("Softplus", 17), ("Mish", 18), ("Sqrt", 13),
             ("Reciprocal", 13), ("Neg", 13), ("Abs", 13)]


@pytest.mark.parametrize("op,opset", ORT_UNARY)
def test_unary_matches_onnxruntime(rng, op, opset):
    a = rand(rng, 2, 5, 9, scale=3.0)
    if op in ("Log", "Sqrt"):
        a = np.abs(a) + 1e-3
    m = model_of([helper.make_node(op, ["x"], ["y"])], [("x", [2, 5, 9])], [("y", [2, 5, 9])],
                 opset=opset)
    got, _ = jc_run(m, {"x": a})
    close(got["y"], ort_run(m, {"x": a})[0], rtol=4e-6, atol=2e-6)


@pytest.mark.parametrize("mode", ["none", "tanh"])
def test_gelu_matches_onnxruntime(rng, mode):
    a = rand(rng, 3, 40, scale=3.0)
    m = model_of([helper.make_node("Gelu", ["x"], ["y"], approximate=mode)],
                 [("x", [3, 40])], [("y", [3, 40])], opset=20)
    got, _ = jc_run(m, {"x": a})
    close(got["y"], ort_run(m, {"x": a})[0], rtol=4e-6, atol=2e-6)


def test_reductions_argmax_einsum_match_onnxruntime(rng):
    a = rand(rng, 2, 3, 4, 5)
    b = rand(rng, 2, 5, 6)
    nodes = [helper.make_node("ReduceSum", ["x", "ax"], ["s"], keepdims=0),
             helper.make_node("ReduceMax", ["x", "ax2"], ["m"]),
             helper.make_node("ReduceL2", ["x"], ["l"], keepdims=1),
             helper.make_node("ArgMax", ["x"], ["i"], axis=2, select_last_index=1),
             helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Einsum", ["x", "b"], ["e"], equation="nchw,nwk->nckh")]
    m = model_of(nodes, [("x", [2, 3, 4, 5]), ("b", [2, 5, 6])],
                 [("s", [2, 4]), ("m", [2, 3, 4, 1]), ("l", [1, 1, 1, 1]), ("f", [2, 3, 1, 5]),
                  ("e", [2, 3, 6, 4])],
                 inits={"ax": np.array([1, 3], np.int64), "ax2": np.array([-1], np.int64)},
                 opset=18)
    got, graph = jc_run(m, {"x": a, "b": b})
    want = ort_run(m, {"x": a, "b": b})
    for name, w in zip("smlfe", want):
        close(got[name], w, rtol=2e-5, atol=2e-5)
    assert {n.op_type for n in graph.nodes} == {"ReduceSum", "ReduceMax", "ReduceL2",
                                                "ArgMax", "Einsum", "Identity"}


def test_or_equal_comparisons_match_onnxruntime(rng):
    from jitconv.runtime.onnx_backend import JitconvBackend
    a, b = np.round(rand(rng, 2, 3, 4, scale=2.0)), np.round(rand(rng, 3, 1, scale=2.0))
    a[0, 0, 0], b[2, 0] = np.nan, np.nan
    nodes = [helper.make_node("LessOrEqual", ["x", "y"], ["le"]),
             helper.make_node("GreaterOrEqual", ["x", "y"], ["ge"]),
             helper.make_node("GreaterOrEqual", ["x", "k"], ["gk"]),   # int constant operand
             helper.make_node("Where", ["le", "x", "y"], ["w"])]
    m = model_of(nodes, [("x", [2, 3, 4]), ("y", [3, 1])],
                 [("le", [2, 3, 4], TensorProto.BOOL), ("ge", [2, 3, 4], TensorProto.BOOL),
                  ("gk", [2, 3, 4], TensorProto.BOOL), ("w", [2, 3, 4])],
                 inits={"k": np.array([1], np.int64)}, opset=16)
    # onnxruntime wants both operands of one type, so its model leaves out the int one
    m_ort = model_of(nodes[:2] + nodes[3:], [("x", [2, 3, 4]), ("y", [3, 1])],
                     [("le", [2, 3, 4], TensorProto.BOOL), ("ge", [2, 3, 4], TensorProto.BOOL),
                      ("w", [2, 3, 4])], opset=16)
    le, ge, w = ort_run(m_ort, {"x": a, "y": b})
    got, graph = jc_run(m, {"x": a, "y": b})
    assert {n.op_type for n in graph.nodes} == {"LessOrEqual", "GreaterOrEqual", "Where"}
    assert np.array_equal(got["le"], le) and np.array_equal(got["ge"], ge)
    assert np.array_equal(got["gk"], a >= 1) and got["le"].dtype == np.float32
    close(got["w"], w, rtol=0, atol=0)
    out = JitconvBackend.prepare(m).run([a, b])          # the declared bool comes back
    assert out[0].dtype == bool and np.array_equal(out[0], le)
    assert out[1].dtype == bool and np.array_equal(out[1], ge)


def test_or_equal_comparisons_before_opset_12_are_named():
    m = model_of([helper.make_node("Less", ["x", "y"], ["l"])], [("x", [2]), ("y", [2])],
                 [("l", [2], TensorProto.BOOL)], opset=11)
    m.graph.node[0].op_type = "LessOrEqual"          # not defined at opset 11
    with pytest.raises(jc.GraphError, match=r"LessOrEqual node .*\(opset 11\): ONNX defines "
                                            r"no LessOrEqual at this opset"):
        import_model(m)
    big = model_of([helper.make_node("GreaterOrEqual", ["x", "k"], ["g"])], [("x", [2])],
                   [("g", [2], TensorProto.BOOL)], inits={"k": np.array([2 ** 25], np.int64)},
                   opset=16)
    with pytest.raises(jc.GraphError, match=r"GreaterOrEqual node .*input 1 'k' holds "
                                            r"integers beyond 2\*\*24"):
        import_model(big)


NOOP = {"ReduceSum": None, "ReduceMax": None, "ReduceL2": np.abs,
        "ReduceSumSquare": lambda x: x * x}


@pytest.mark.parametrize("op", list(NOOP))
def test_reduce_noop_with_empty_axes_matches_onnxruntime(rng, op):
    # no axes and noop_with_empty_axes=1: nothing is reduced, yet ReduceL2 still takes
    # sqrt(x * x) of each element (|x|) and ReduceSumSquare x * x, where the others give
    # x back
    a = rand(rng, 3, 4, scale=3.0)
    m = model_of([helper.make_node(op, ["x"], ["y"], noop_with_empty_axes=1)],
                 [("x", [3, 4])], [("y", [3, 4])], opset=18)
    want = ort_run(m, {"x": a})[0]
    got, graph = jc_run(m, {"x": a})
    close(got["y"], want, rtol=0, atol=0)
    kept = [n.op_type for n in graph.nodes]
    assert kept == (["Identity"] if NOOP[op] is None else [op])
    if NOOP[op] is not None:
        close(want, NOOP[op](a), rtol=0, atol=0)
        assert graph.nodes[0].attrs["axes"] == []


@pytest.mark.parametrize("opset,axes,keepdims", [(13, None, 1), (13, [1, -1], 0),
                                                 (18, None, 0), (18, [0, 2], 1),
                                                 (18, [-2], 0)])
def test_reduce_sum_square_matches_onnxruntime(rng, opset, axes, keepdims):
    # opsets 1-13 take axes as an attribute, 18 as an optional input
    a = rand(rng, 2, 3, 4, scale=3.0)
    kw, inits, ins = {"keepdims": keepdims}, {}, ["x"]
    if axes is not None and opset < 18:
        kw["axes"] = axes
    elif axes is not None:
        inits, ins = {"ax": np.array(axes, np.int64)}, ["x", "ax"]
    want_shape = np.sum(a, axis=None if axes is None else tuple(axes),
                        keepdims=bool(keepdims)).shape
    m = model_of([helper.make_node("ReduceSumSquare", ins, ["y"], **kw)],
                 [("x", [2, 3, 4])], [("y", list(want_shape))], inits=inits, opset=opset)
    want = ort_run(m, {"x": a})[0]
    got, graph = jc_run(m, {"x": a})
    assert [n.op_type for n in graph.nodes] == ["ReduceSumSquare"]
    assert got["y"].shape == want.shape == want_shape
    close(got["y"], want, rtol=2e-6, atol=1e-6)
    ax = None if axes is None else tuple(axes)
    close(got["y"], np.sum(a.astype(np.float64) ** 2, ax, keepdims=bool(keepdims)),
          rtol=1e-6, atol=1e-6)


def test_reduce_sum_square_bad_axes_are_named():
    with pytest.raises(jc.GraphError, match=r"ReduceSumSquare node .*axes entry=3 is out of "
                                            r"range for a 3-D input"):
        build(lambda g, x: g.reduce_sum_square(x, axes=[0, 3]), (2, 3, 4))
    with pytest.raises(jc.GraphError, match=r"ReduceSumSquare node .*axes \[1, -2\] repeat "
                                            r"an axis"):
        build(lambda g, x: g.reduce_sum_square(x, axes=[1, -2]), (2, 3, 4))
    m = model_of([helper.make_node("ReduceSumSquare", ["x", "ax"], ["y"])],
                 [("x", [2, 3]), ("ax", [1], TensorProto.INT64)], [("y", [2, 1])], opset=18)
    with pytest.raises(jc.GraphError, match=r"graph input 'ax' has element type int64; .*bind"):
        import_model(m)                    # axes known only at run time are refused
    got = jc.Session(import_model(m, bind={"ax": np.array([1])}).graph).run(
        np.array([[1, -2, 3], [0, 4, -1]], np.float32))["y"]
    assert got.tolist() == [[14.0], [17.0]]


def test_where_bool_constant_and_pow_int_exponent_import(rng):
    a, b = rand(rng, 3, 4), rand(rng, 3, 4)
    cond = rng.random((3, 4)) > 0.5
    nodes = [helper.make_node("Where", ["c", "x", "y"], ["w"]),
             helper.make_node("Pow", ["w", "e"], ["p"]),
             helper.make_node("Equal", ["x", "y"], ["q"]),
             helper.make_node("Where", ["q", "p", "x"], ["o"])]
    m = model_of(nodes, [("x", [3, 4]), ("y", [3, 4])], [("o", [3, 4])],
                 inits={"c": cond, "e": np.array(3, np.int64)})
    got, graph = jc_run(m, {"x": a, "y": b})
    close(got["o"], ort_run(m, {"x": a, "y": b})[0], rtol=2e-6, atol=1e-6)
    consts = {k: c for k, c in graph.constants.items()}
    assert all(c.as_float32().dtype == np.float32 for c in consts.values())


def test_expand_tile_import_and_runtime_shape_input_is_named(rng):
    a = rand(rng, 3, 1)
    nodes = [helper.make_node("Expand", ["x", "shape"], ["e"]),
             helper.make_node("Tile", ["e", "reps"], ["t"])]
    m = model_of(nodes, [("x", [3, 1])], [("t", [2, 6, 4])],
                 inits={"shape": np.array([2, 1, 4], np.int64),
                        "reps": np.array([1, 2, 1], np.int64)}, opset=13)
    got, _ = jc_run(m, {"x": a})
    close(got["t"], ort_run(m, {"x": a})[0], rtol=0, atol=0)
    m2 = model_of([helper.make_node("Expand", ["x", "s"], ["e"])],
                  [("x", [3, 1]), ("s", [2], TensorProto.INT64)], [("e", [3, 1])])
    with pytest.raises(jc.GraphError, match=r"graph input 's' has element type int64; .*bind"):
        import_model(m2)                   # a shape known only at run time is refused
    m3 = model_of([helper.make_node("Tile", ["x", "r"], ["t"])],
                  [("x", [3, 1]), ("r", [2], TensorProto.INT64)], [("t", [3, 2])])
    got = jc.Session(import_model(m3, bind={"r": np.array([1, 2])}).graph).run(a)["t"]
    close(got, np.tile(a, (1, 2)), rtol=0, atol=0)


def test_run_time_cast_to_an_integer_is_named():
    m = model_of([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)],
                 [("x", [2])], [("y", [2], TensorProto.INT64)])
    with pytest.raises(jc.GraphError, match=r"Cast node .*casts a run-time tensor to ONNX "
                                            r"type 7"):
        import_model(m)


def test_cast_like_reference_takes_the_dtype_of_input_1():
    from jitconv.runtime.reference import run_op
    x = np.array([1.7, -2.2, 70000.0], np.float32)
    for like in (np.zeros(0, np.float16), np.ones((2, 2), np.float64), np.array(3, np.int32)):
        got = run_op("CastLike", [x, like])
        assert got.dtype == like.dtype and got.shape == x.shape
        with np.errstate(over="ignore"):
            assert np.array_equal(got, x.astype(like.dtype))     # like's values unread
    with pytest.raises(ValueError, match="CastLike to complex64 is not supported"):
        run_op("CastLike", [x, np.zeros(1, np.complex64)])


def test_cast_like_matches_onnxruntime(rng):
    from jitconv.runtime.onnx_backend import JitconvBackend
    a = np.concatenate([rand(rng, 11, scale=100.0), np.float32([1e-8, 7e4, np.nan])])
    f16 = TensorProto.FLOAT16
    nodes = [helper.make_node("CastLike", ["x", "h"], ["to_h"]),      # like: an initializer
             helper.make_node("CastLike", ["x", "d"], ["to_d"]),
             helper.make_node("Cast", ["x"], ["xh"], to=f16),
             helper.make_node("Relu", ["xh"], ["rh"]),                 # float16 by inference
             helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("CastLike", ["sq", "rh"], ["sq_h"]),    # like: run-time float16
             helper.make_node("CastLike", ["k", "x"], ["k_f"]),       # folded: x's type only
             helper.make_node("Add", ["x", "k_f"], ["plus"])]
    m = model_of(nodes, [("x", [14])],
                 [("to_h", [14], f16), ("to_d", [14], TensorProto.DOUBLE), ("sq_h", [14], f16),
                  ("plus", [14])],
                 inits={"h": np.zeros(1, np.float16), "d": np.zeros(1, np.float64),
                        "k": np.array([0.1], np.float64)}, opset=19)
    want = ort_run(m, {"x": a})
    assert [w.dtype for w in want] == [np.float16, np.float64, np.float16, np.float32]
    got, graph = jc_run(m, {"x": a})
    # to_h and sq_h are run-time Casts to float16, to_d is removed, k_f folded; the Cast
    # and Relu making rh are dropped: only rh's type was read
    assert sorted(n.op_type for n in graph.nodes) == ["Add", "Cast", "Cast", "Identity", "Mul"]
    assert [n.attrs["to"] for n in graph.nodes if n.op_type == "Cast"] == [10, 10]
    sess = jc.Session(graph, jc.Config(threads=2))
    sess.run({"x": a})
    assert {op.kernel for op in sess.info().ops if op.op_type == "Cast"} == {"cast_float16"}
    for name, w in zip(["to_h", "to_d", "sq_h", "plus"], want):
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name].astype(w.dtype), w)
    with np.errstate(over="ignore"):          # the float32 values are already rounded
        np.testing.assert_array_equal(got["to_h"], a.astype(np.float16).astype(np.float32))
    assert got["to_h"][-2] == np.inf
    out = JitconvBackend.prepare(m).run([a])               # the declared dtypes come back
    assert [o.dtype for o in out] == [w.dtype for w in want]


def test_cast_like_that_cannot_run_is_named(monkeypatch):
    m = model_of([helper.make_node("CastLike", ["x", "i"], ["y"], name="to_int")],
                 [("x", [2])], [("y", [2], TensorProto.INT64)],
                 inits={"i": np.zeros(1, np.int64)}, opset=15)
    with pytest.raises(jc.GraphError, match=r"CastLike node 'to_int' \(opset 15\): casts a "
                                            r"run-time tensor to ONNX type 7 \(the type of "
                                            r"input 1, 'i'\); .*float types only"):
        import_model(m)
    one = helper.make_model(
        helper.make_graph([helper.make_node("CastLike", ["x"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 15)])
    with pytest.raises(jc.GraphError, match=r"CastLike node .*input 1 \(like\) is required"):
        import_model(one)
    old = model_of([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
                   [("x", [2])], [("y", [2])], opset=13)
    old.graph.node[0].op_type, old.graph.node[0].input[:] = "CastLike", ["x", "x"]
    del old.graph.node[0].attribute[:]
    with pytest.raises(jc.GraphError, match=r"CastLike node .*\(opset 13\): ONNX defines no "
                                            r"CastLike at this opset"):
        import_model(old)
    # a run-time like whose type neither the model nor ONNX's type inference gives
    hidden = model_of([helper.make_node("Relu", ["x"], ["r"]),
                       helper.make_node("CastLike", ["x", "r"], ["y"])],
                      [("x", [2])], [("y", [2])], opset=15)

    def no_inference(model, *args, **kwargs):
        raise RuntimeError("no type inference here")
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", no_inference)
    with pytest.raises(jc.GraphError, match=r"CastLike node .*the element type of input 1 "
                                            r"\(like\) 'r' is unknown"):
        import_model(hidden)
    hidden.graph.value_info.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [2]))
    assert [n.op_type for n in import_model(hidden).graph.nodes] == ["Identity"]


def test_onnx_backend_casts_run_time_outputs_to_the_declared_dtype(rng):
    from jitconv.runtime.onnx_backend import JitconvBackend
    a, b = rand(rng, 4), rand(rng, 4)
    m = model_of([helper.make_node("Less", ["x", "y"], ["l"]),
                  helper.make_node("ArgMax", ["x"], ["i"], keepdims=0)],
                 [("x", [4]), ("y", [4])],
                 [("l", [4], TensorProto.BOOL), ("i", [], TensorProto.INT64)])
    less, idx = JitconvBackend.prepare(m).run([a, b])
    assert less.dtype == bool and less.tolist() == (a < b).tolist()
    assert idx.dtype == np.int64 and int(idx) == int(np.argmax(a))


# -- coverage --------------------------------------------------------------------------

def test_coverage_table_lists_every_op_and_docs_keep_it(capsys):
    import pathlib
    from jitconv.runtime import coverage
    from jitconv.runtime.opdef import OPDEFS
    coverage.main(["--supported"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    onnx_ops = {op: d for op, d in OPDEFS.items() if not d.internal}   # not session-only ops
    assert set(onnx_ops) <= set(rows) and not {"ToBlocked", "FromBlocked"} & set(rows)
    assert rows["Gelu"][1:4] == ["runtime", "20", "8"]      # 4 of them function-expanded
    assert rows["CastLike"][1:5] == ["load", "15,", "19,", "21,"]
    coverage.main([])
    everything = capsys.readouterr().out
    assert "\nOr " in everything and " no " in everything
    docs = (pathlib.Path(__file__).parents[1] / "docs" / "ops.md").read_text()
    table = docs[docs.index("## Coverage and conformance per op"):]
    for op, d in onnx_ops.items():
        assert f"\n| {op} | {'runtime' if d.runtime else 'load'} |" in table, op
