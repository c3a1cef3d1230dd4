"""Shared test helpers: seeded data and the graph-level NumPy reference."""
import numpy as np

import jitconv as jc
from jitconv.runtime.reference import evaluate


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run_and_reference(graph, feeds, config=None):
    """(jitconv outputs, reference outputs) for one graph and feeds."""
    sess = jc.Session(graph, config or jc.Config(threads=2))
    return sess.run(feeds), evaluate(graph, feeds)


def assert_close(got, ref, rtol=1e-4, what=""):
    """Float32 accumulation error: relative to the reference's magnitude."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    assert err <= rtol * scale, f"{what}: max abs err {err:.3g} > {rtol} x {scale:.3g}"
