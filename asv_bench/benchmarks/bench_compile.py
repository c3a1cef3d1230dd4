"""Import and first-inference time, each in a fresh process (Numba cache warm)."""
import subprocess
import sys
import time

FIRST_RUN = """
import numpy as np, jitconv as jc
from jitconv.models import mobilenet_v2
s = jc.Session(mobilenet_v2(), jc.Config(threads=2))
s.run(np.zeros((1, 3, 224, 224), np.float32))
"""


def _wall(code):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


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
