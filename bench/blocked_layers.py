"""conv2d_blocked alone on yardstick layers A-I (and two more ResNet-50 shapes), called
directly on blocked tensors: best-of-rounds median time per layer, one line.

    python bench/blocked_layers.py THREADS [LAYERS] [--rounds 5] [--runs 20]
    python bench/blocked_layers.py 1 ACFG

Depthwise layers (D, H) run depthwise_blocked. In a session a lone conv keeps NCHW (the
layout pass blocks chains), so layer_times.py never shows these kernels; this script is
their A/B tool (bench/ab_kernels.sh takes it as SCRIPT=bench/blocked_layers.py).
"""
import argparse
import statistics
import time

import numba
import numpy as np

from jitconv.kernels.conv_blocked import conv2d_blocked, pack_blocked
from jitconv.kernels.depthwise_blocked import depthwise_blocked, pack_depthwise_blocked
from jitconv.models import CONV_LAYERS

# R, S: ResNet-50 3x3 shapes; J-O: MobileNetV2's 1x1 convs on small maps (project and
# expand), where the blocked kernel was furthest behind onnxruntime (bench/model_convs.py);
# Q, T, U: ResNet-50's 1x1 reductions with K > 256 (several passes)
LAYERS = dict(CONV_LAYERS, R=(128, 128, 3, 1, 1, 28, 1), S=(512, 512, 3, 1, 1, 7, 1),
              J=(384, 64, 1, 1, 0, 14, 1), K=(160, 960, 1, 1, 0, 7, 1),
              L=(960, 160, 1, 1, 0, 7, 1), M=(576, 96, 1, 1, 0, 14, 1),
              N=(192, 32, 1, 1, 0, 28, 1), O=(64, 384, 1, 1, 0, 14, 1),
              Q=(512, 128, 1, 1, 0, 28, 1), T=(1024, 256, 1, 1, 0, 14, 1),
              U=(2048, 512, 1, 1, 0, 7, 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("threads", type=int)
    ap.add_argument("layers", nargs="?", default="ABCDEFGHIRSJKLMNOQTU")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    cells = []
    for name in args.layers:
        c, m, k, s, p, h, groups = LAYERS[name]
        oh = (h + 2 * p - k) // s + 1
        cb, mb = -(-c // 16), -(-m // 16)
        x = rng.standard_normal((1, cb, h, h, 16)).astype(np.float32)
        w = (rng.standard_normal((m, c // groups, k, k)) * 0.1).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        out = np.empty((1, mb, oh, oh, 16), np.float32)
        if groups == 1:
            wp = pack_blocked(w, 16)
            run = lambda: conv2d_blocked(x, wp, w.shape, b, None, out, s, s, p, p, 1, 1, 1, 0, 0)
        else:
            wp = pack_depthwise_blocked(w)
            run = lambda: depthwise_blocked(x, wp, w.shape, b, None, out, s, s, p, p, 1, 1, 1, 0, 0)
        for _ in range(3):
            run()
        best = float("inf")
        for _ in range(args.rounds):
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            best = min(best, statistics.median(times))
        flops = 2 * m * (c // groups) * k * k * oh * oh
        cells.append(f"{name} {best * 1e3:.3f}ms {flops / best / 1e9:.0f}GF/s")
    print(f"t={args.threads}: " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
