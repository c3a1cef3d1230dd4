"""Import and first-inference time, each in a fresh process: with Numba's cache warm (the
warm start a user meets every time) and with an empty cache (the first run after install,
or on a new CPU), compiling in one process or with jc.precompile over the usable cores."""
import os
import subprocess
import sys
import tempfile
import time

FIRST_RUN = """
import numpy as np, jitconv as jc
from jitconv.models import mobilenet_v2
s = jc.Session(mobilenet_v2(), jc.Config(threads=2, progress=False))
s.run(np.zeros((1, 3, 224, 224), np.float32))
"""

PRECOMPILED_RUN = """
import numpy as np, jitconv as jc
from jitconv.models import mobilenet_v2
g, cfg = mobilenet_v2(), jc.Config(threads=2, progress=False)
jc.precompile(g, cfg)
jc.Session(g, cfg).run(np.zeros((1, 3, 224, 224), np.float32))
"""


ONNX_RUN = """
import sys, numpy as np, jitconv as jc
s = jc.Session(jc.load(sys.argv[1]), jc.Config(threads=2, progress=False))
s.run(np.zeros((1, 3, 224, 224), np.float32))
"""


def _wall(code, cache_dir=None, args=()):
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=env)
    return time.perf_counter() - t0


def _cold(code):
    with tempfile.TemporaryDirectory(prefix="jitconv-asv-cache-") as empty:
        return _wall(code, empty)


class FreshProcess:
    timeout = 300
    repeat = 3
    number = 1

    def setup(self):
        _wall(FIRST_RUN)        # fill the Numba cache

    def track_import_seconds(self):
        return _wall("import jitconv")
    track_import_seconds.unit = "seconds"

    def track_first_inference_seconds(self):
        return _wall(FIRST_RUN)
    track_first_inference_seconds.unit = "seconds"


class WarmOnnxStart:
    """The warm start as a user meets it with an ONNX file: a fresh process imports
    jitconv, loads ResNet-50's .onnx, prepares a Session and runs once, the Numba cache
    already filled (issue 12's goal: under 1 s)."""
    timeout = 300
    repeat = 3
    number = 1

    def setup(self):
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
        from onnx_export import to_onnx
        from jitconv.models import resnet50
        self.tmp = tempfile.TemporaryDirectory(prefix="jitconv-asv-onnx-")
        self.path = os.path.join(self.tmp.name, "resnet50.onnx")
        with open(self.path, "wb") as f:
            f.write(to_onnx(resnet50()).SerializeToString())
        _wall(ONNX_RUN, args=(self.path,))      # fill the Numba cache

    def teardown(self):
        self.tmp.cleanup()

    def track_resnet50_onnx_whole_process_seconds(self):
        return _wall(ONNX_RUN, args=(self.path,))
    track_resnet50_onnx_whole_process_seconds.unit = "seconds"


class ColdCache:
    """An empty NUMBA_CACHE_DIR for every sample: everything the model needs compiles."""
    timeout = 900
    repeat = 1
    number = 1

    def track_cold_first_inference_seconds(self):
        return _cold(FIRST_RUN)
    track_cold_first_inference_seconds.unit = "seconds"

    def track_cold_precompiled_first_inference_seconds(self):
        return _cold(PRECOMPILED_RUN)
    track_cold_precompiled_first_inference_seconds.unit = "seconds"
