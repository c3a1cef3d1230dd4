"""One suite per conv kernel family, on the CPU-speed issue's layers A-I.

Each benchmark is a one-conv session whose config makes the kernel choice land on the
family named in the class (the setup asserts it did, so a changed cost model cannot
silently time another kernel). ``track_gflops`` reports the throughput of the same run.
"""
import time

import numpy as np

import jitconv as jc
from jitconv.models import conv_layer


class _KernelSuite:
    """Subclasses set ``layers``, ``kernel`` and optionally ``weights`` / ``config``."""
    layers = ()
    kernel = ""
    weights = "fp32"
    config = {}
    timeout = 300

    def setup(self, layer, threads):
        graph = conv_layer(layer, activation="relu")
        if self.weights != "fp32":
            graph = jc.quantize(graph, self.weights)
        self.sess = jc.Session(graph, jc.Config(threads=threads, **self.config))
        chosen = self.sess.info().ops[0].kernel
        if chosen != self.kernel:
            raise NotImplementedError(f"layer {layer} runs {chosen}, not {self.kernel}")
        self.x = np.random.default_rng(1).standard_normal(
            self.sess.input_shapes["x"]).astype(np.float32)
        self.sess.warmup()
        self.flops = self.sess.info().flops

    def time_conv(self, layer, threads):
        self.sess.run(self.x)

    def track_gflops(self, layer, threads):
        runs = []
        for _ in range(20):
            t0 = time.perf_counter()
            self.sess.run(self.x)
            runs.append(time.perf_counter() - t0)
        return self.flops / np.median(runs) / 1e9
    track_gflops.unit = "GFLOP/s"


def _suite(name, layers, kernel, weights="fp32", **config):
    cls = type(name, (_KernelSuite,), dict(layers=layers, kernel=kernel, weights=weights,
                                           config=config, params=(list(layers), [1, 2]),
                                           param_names=["layer", "threads"]))
    cls.__doc__ = f"{kernel} on layers {', '.join(layers)}"
    return cls


# precision=high rules Winograd out, so A and C time the tiled kernel as well
TiledSuite = _suite("TiledSuite", ("A", "B", "C", "E", "F", "G", "I"), "conv2d_tiled",
                    precision="high")
WinogradSuite = _suite("WinogradSuite", ("A", "C"), "conv2d_winograd")
DepthwiseSuite = _suite("DepthwiseSuite", ("D", "H"), "conv2d_depthwise")
TiledFp16Suite = _suite("TiledFp16Suite", ("A", "B", "G"), "conv2d_tiled_fp16w", "fp16",
                        memory="low")
TiledInt8Suite = _suite("TiledInt8Suite", ("A", "B", "G"), "conv2d_tiled_int8w", "int8",
                        memory="low")
TiledInt4Suite = _suite("TiledInt4Suite", ("A", "B", "G"), "conv2d_tiled_int4w", "int4",
                        memory="low")
DepthwiseInt8Suite = _suite("DepthwiseInt8Suite", ("D", "H"), "conv2d_depthwise_int8w", "int8",
                            memory="low")
Int8DotSuite = _suite("Int8DotSuite", ("A", "B", "C"), "conv2d_int8dot", "int8", memory="low",
                      precision="low")
