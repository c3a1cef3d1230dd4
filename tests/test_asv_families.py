"""Every registered conv kernel family (backends/conv_family.FAMILIES) has an asv suite in
asv_bench/benchmarks that declares it (``family = "<key>"``), and the suites that build a
session land on the family they declare."""
import importlib
import inspect
import os
import pkgutil
import sys

import pytest

import jitconv  # noqa: F401  registers the built-in families
from jitconv.backends import conv_family

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "asv_bench")


def _suites():
    sys.path.insert(0, BENCH)
    try:
        pkg = importlib.import_module("benchmarks")
        out = []
        for info in pkgutil.iter_modules(pkg.__path__):
            mod = importlib.import_module(f"benchmarks.{info.name}")
            out += [cls for _, cls in inspect.getmembers(mod, inspect.isclass)
                    if cls.__module__ == mod.__name__ and getattr(cls, "family", "")]
        return out
    finally:
        sys.path.remove(BENCH)


SUITES = _suites()


def test_every_conv_family_has_an_asv_suite():
    declared = {cls.family for cls in SUITES}
    assert declared <= set(conv_family.FAMILIES), f"unknown families: {declared - set(conv_family.FAMILIES)}"
    missing = sorted(set(conv_family.FAMILIES) - declared)
    assert not missing, (f"conv families without an asv benchmark: {missing}; add a suite "
                         f"with family = '<key>' to asv_bench/benchmarks/bench_kernels.py")


def test_a_new_family_is_caught(monkeypatch):
    monkeypatch.setitem(conv_family.FAMILIES, "no_benchmark_yet", object)
    with pytest.raises(AssertionError, match="no_benchmark_yet"):
        test_every_conv_family_has_an_asv_suite()


@pytest.mark.parametrize("suite", [c for c in SUITES if hasattr(c, "graph")],
                         ids=lambda c: c.__name__)
def test_suite_lands_on_its_family(suite):
    """The suite's session (first layer, 1 thread, prepared but not run) chose a kernel of
    the family the suite declares, on this CPU's target (as asv would run it) with VNNI
    added, as the int8 dot suite's machines must have (elsewhere that suite skips itself)."""
    import dataclasses
    import jitconv as jc
    s = suite()
    graph = s.graph(suite.params[0][0])
    if s.weights != "fp32":
        graph = jc.quantize(graph, s.weights)
    sess = jc.Session(graph, jc.Config(threads=1, **s.config),
                      target=dataclasses.replace(jc.Target.host(1), vnni=True))
    conv = [step.kernel for step in sess._steps if step.node.op_type == "Conv"]
    assert [k.family.key for k in conv] == [suite.family]
    assert [op.kernel for op in sess.info().ops if op.op_type == "Conv"] == [suite.kernel]
