"""Batch throughput: images per second on MobileNetV2 (224 px, fp32) at batch 8 and 32,
jitconv and onnxruntime each at default options. asv runs every benchmark in a process
of its own, so the two engines never share a process."""
import statistics
import time

import jitconv as jc

from .common import feeds_for


def _images_per_second(run, batch, runs=5):
    run()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


class ThroughputSuite:
    params = ([8, 32], [1, 2])
    param_names = ["batch", "threads"]
    timeout = 600

    def setup(self, batch, threads):
        from jitconv.models import mobilenet_v2
        self.graph = mobilenet_v2(batch=batch)
        self.feeds = feeds_for(self.graph)

    def track_jitconv_images_per_second(self, batch, threads):
        sess = jc.Session(self.graph, jc.Config(threads=threads))
        return _images_per_second(lambda: sess.run(self.feeds), batch)
    track_jitconv_images_per_second.unit = "images/s"

    def track_onnxruntime_images_per_second(self, batch, threads):
        import os
        import sys
        import onnxruntime as ort
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
        from onnx_export import to_onnx
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(to_onnx(self.graph).SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        return _images_per_second(lambda: sess.run(None, self.feeds), batch)
    track_onnxruntime_images_per_second.unit = "images/s"
