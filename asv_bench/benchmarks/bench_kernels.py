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
    """Subclasses set ``layers``, ``kernel``, ``family`` (the key in
    backends/conv_family.FAMILIES that runs ``kernel``: tests/test_asv_families.py checks
    every registered family has a suite) and optionally ``weights`` / ``config``."""
    layers = ()
    kernel = ""
    family = ""
    weights = "fp32"
    config = {}
    timeout = 300

    def graph(self, layer):
        return conv_layer(layer, activation="relu")

    def setup(self, layer, threads):
        graph = self.graph(layer)
        if self.weights != "fp32":
            graph = jc.quantize(graph, self.weights)
        self.sess = jc.Session(graph, jc.Config(threads=threads, **self.config))
        chosen = [op.kernel for op in self.sess.info().ops if op.op_type == "Conv"][0]
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


def _suite(name, layers, kernel, family, weights="fp32", **config):
    config.setdefault("layout", "nchw")    # the NCHW families; BlockedSuite passes "auto"
    cls = type(name, (_KernelSuite,), dict(layers=layers, kernel=kernel, family=family,
                                           weights=weights, config=config,
                                           params=(list(layers), [1, 2]),
                                           param_names=["layer", "threads"]))
    cls.__doc__ = f"{kernel} on layers {', '.join(layers)}"
    return cls


# precision=high rules Winograd out, so A and C time the channel-vectorized kernel as well
ChanvecSuite = _suite("ChanvecSuite", ("A", "B", "C", "F", "G"), "conv2d_chanvec", "chanvec",
                      precision="high")
WinogradSuite = _suite("WinogradSuite", ("A", "C"), "conv2d_winograd", "winograd")
DepthwiseSuite = _suite("DepthwiseSuite", ("D", "H"), "conv2d_depthwise", "depthwise")
TiledFp16Suite = _suite("TiledFp16Suite", ("A", "B", "G"), "conv2d_tiled_fp16w", "tiled",
                        "fp16", memory="low")
TiledInt8Suite = _suite("TiledInt8Suite", ("A", "B", "G"), "conv2d_tiled_int8w", "tiled",
                        "int8", memory="low")
TiledInt4Suite = _suite("TiledInt4Suite", ("A", "B", "G"), "conv2d_tiled_int4w", "tiled",
                        "int4", memory="low")
DepthwiseInt8Suite = _suite("DepthwiseInt8Suite", ("D", "H"), "conv2d_depthwise_int8w",
                            "depthwise_stored", "int8", memory="low")
Int8DotSuite = _suite("Int8DotSuite", ("A", "B", "C"), "conv2d_int8dot", "int8dot", "int8",
                      memory="low", precision="low")
# a lone conv with K >= 128 runs blocked (layout pass): its conversions are in the time;
# precision=high keeps A and C on the direct blocked kernel (no Winograd)
BlockedSuite = _suite("BlockedSuite", ("A", "B", "C", "F", "G"), "conv2d_blocked", "blocked",
                      layout="auto", precision="high")
WinogradBlockedSuite = _suite("WinogradBlockedSuite", ("A", "C"), "conv2d_winograd_blocked",
                              "winograd_blocked", layout="auto")


class DirectSuite(_KernelSuite):
    """conv2d_direct on a grouped 3x3 conv 64->64 in 16 groups at 56x56: 4 input channels a
    group is too few for the tiled kernel's panels, so the choice table ends on direct."""
    layers = ("G16",)
    kernel = "conv2d_direct"
    family = "direct"
    config = {"layout": "nchw"}
    params = (list(layers), [1, 2])
    param_names = ["layer", "threads"]

    def graph(self, layer):
        rng = np.random.default_rng(0)
        g = jc.GraphBuilder("grouped_conv")
        x = g.input("x", (1, 64, 56, 56))
        w = (rng.standard_normal((64, 4, 3, 3)) * 0.1).astype(np.float32)
        g.output(g.conv2d(x, w, np.zeros(64, np.float32), padding=1, groups=16,
                          activation="relu"), "y")
        return g.build()


class TiledSuite:
    """conv2d_tiled (fp32 panels) called directly on layers A, B, C, E, F, G, I: the cost
    model now gives these groups-1 layers to conv2d_chanvec, and the tiled kernel is still
    the one for grouped convs and the structure of the fp16 / int8 / int4 kernels."""
    params = (["A", "B", "C", "E", "F", "G", "I"], [1, 2])
    param_names = ["layer", "threads"]
    family = "tiled"
    timeout = 300

    def setup(self, layer, threads):
        import numba
        from jitconv.kernels import conv_tiled
        from jitconv.models import CONV_LAYERS
        from jitconv.runtime.planner import allocate
        c, m, k, s, p, h, _ = CONV_LAYERS[layer]
        rng = np.random.default_rng(1)
        self.x = rng.standard_normal((1, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((m, c, k, k)) * 0.1).astype(np.float32)
        oh = (h + 2 * p - k) // s + 1
        self.out = np.empty((1, m, oh, oh), np.float32)
        self.args = (conv_tiled.pack_weights(w), w.shape, np.zeros(m, np.float32), None,
                     self.out)
        self.geom = (s, s, p, p, 1, 1, 1, 1, 0.0, 0.0)
        self.threads = numba.get_num_threads()
        numba.set_num_threads(threads)
        self.scratch = allocate(conv_tiled.tiled_scratch_bytes(
            self.x.shape, w.shape, self.out.shape, s, s, p, p, 1, 1, 1, threads))
        self.flops = 2 * m * c * k * k * oh * oh
        self.time_conv(layer, threads)

    def teardown(self, layer, threads):
        import numba
        numba.set_num_threads(self.threads)

    def time_conv(self, layer, threads):
        from jitconv.kernels import conv_tiled
        conv_tiled.conv2d_tiled(self.x, *self.args, self.scratch, *self.geom)

    def track_gflops(self, layer, threads):
        runs = []
        for _ in range(20):
            t0 = time.perf_counter()
            self.time_conv(layer, threads)
            runs.append(time.perf_counter() - t0)
        return self.flops / np.median(runs) / 1e9
    track_gflops.unit = "GFLOP/s"
