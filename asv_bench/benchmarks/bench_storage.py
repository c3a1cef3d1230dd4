"""Model M under every weight storage x memory mode: time, peak memory, weight bytes."""
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
