"""Seeded models and inputs shared by the suites (append only: keep old names working)."""
import numpy as np

import jitconv as jc


def model_m(seed=0):
    """4 x (3x3 conv 128->128 + ReLU) at 56x56: the weight-storage issue's model M."""
    rng = np.random.default_rng(seed)
    g = jc.GraphBuilder("model_m")
    x = g.input("x", (1, 128, 56, 56))
    for i in range(4):
        w = (rng.standard_normal((128, 128, 3, 3)) * 0.03).astype(np.float32)
        x = g.conv2d(x, w, np.zeros(128, np.float32), padding=1, activation="relu",
                     name=f"conv{i}")
    g.output(x, "y")
    return g.build()


def stored(graph, weights):
    return graph if weights == "fp32" else jc.quantize(graph, weights)


def feeds_for(graph, seed=1):
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal(s.shape).astype(np.float32) for s in graph.inputs}
