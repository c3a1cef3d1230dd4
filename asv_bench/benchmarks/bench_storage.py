"""Model M under every weight storage x memory mode: time, weight bytes, and both as ratios
to fp32 weights in memory=low (the weight-storage issue's yardstick)."""
import statistics
import time

import jitconv as jc

from .common import feeds_for, model_m, stored


class StorageSuite:
    params = (["fp32", "fp16", "int8", "int4"], ["normal", "low"], [1, 2])
    param_names = ["weights", "memory", "threads"]
    timeout = 300

    def setup_cache(self):
        base = model_m()
        return {w: stored(base, w) for w in self.params[0]}

    def setup(self, graphs, weights, memory, threads):
        self.sess = jc.Session(graphs[weights], jc.Config(threads=threads, memory=memory))
        self.feeds = feeds_for(graphs[weights])
        self.sess.warmup()

    def time_run(self, graphs, weights, memory, threads):
        self.sess.run(self.feeds)

    def track_weight_bytes(self, graphs, weights, memory, threads):
        return self.sess.info().weight_bytes
    track_weight_bytes.unit = "bytes"

    def _fp32_low(self, graphs, threads):
        ref = jc.Session(graphs["fp32"], jc.Config(threads=threads, memory="low"))
        ref.warmup()
        return ref

    def track_bytes_vs_fp32_low(self, graphs, weights, memory, threads):
        return self.sess.info().weight_bytes / self._fp32_low(graphs, threads).info().weight_bytes
    track_bytes_vs_fp32_low.unit = "ratio"

    def track_time_vs_fp32_low(self, graphs, weights, memory, threads):
        """Median latency / fp32-in-memory=low median latency, runs interleaved."""
        ref = self._fp32_low(graphs, threads)
        mine, base = [], []
        for _ in range(5):
            for sess, acc in ((self.sess, mine), (ref, base)):
                runs = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    sess.run(self.feeds)
                    runs.append(time.perf_counter() - t0)
                acc.append(statistics.median(runs))
        return statistics.median(mine) / statistics.median(base)
    track_time_vs_fp32_low.unit = "ratio"


class MobileNetV2Suite:
    params = ([1, 2],)
    param_names = ["threads"]

    def setup(self, threads):
        from jitconv.models import mobilenet_v2
        graph = mobilenet_v2()
        self.sess = jc.Session(graph, jc.Config(threads=threads))
        self.feeds = feeds_for(graph)
        self.sess.warmup()

    def time_run(self, threads):
        self.sess.run(self.feeds)

    def peakmem_prepare(self, threads):
        from jitconv.models import mobilenet_v2
        jc.Session(mobilenet_v2(), jc.Config(threads=threads))


def peakmem_reference():
    """Baseline for the peakmem_* numbers: an empty function."""
