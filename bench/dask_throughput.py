"""Images per second through jitconv.dask.predict on LocalClusters of this machine, against
a plain single-process loop over the same images.

    python bench/dask_throughput.py [--model mobilenet_v2] [--images 256] [--chunk 32]
        [--batch 16] [--rounds 3]

Configurations: "1x2" (one worker process, 2 threads: 2-thread sessions), "2x1" (two
worker processes, 1 thread each: 1-thread sessions), and "single" (this process, one
2-thread Session run over the images in slices of --batch). Every cluster is started and
warmed (one untimed pass, which loads the model on its workers) before the timed rounds,
which are interleaved; the table gives the median images/s and the spread (slowest /
fastest round).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)

    import dask.array as da
    from distributed import Client, LocalCluster

    import jitconv as jc
    import jitconv.dask as jd
    import jitconv.models as models

    graph = getattr(models, args.model)(batch=args.batch)
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, args.model + ".jcm")
    jc.save(graph, path)
    shape = (args.images,) + tuple(graph.inputs[0].shape[1:])
    name = graph.outputs[0].name
    del graph

    def images():
        return da.random.default_rng(0).standard_normal(
            shape, chunks=(args.chunk,) + shape[1:], dtype=np.float32)

    x = images().compute(scheduler="synchronous")
    sess = jc.Session(jc.load(path), jc.Config(threads=2))

    def single():
        for i in range(0, args.images, args.batch):
            sess.run(x[i:i + args.batch])

    runners = {"single": single}
    clusters = []
    for label, (workers, threads) in {"1x2": (1, 2), "2x1": (2, 1)}.items():
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads,
                               processes=True, dashboard_address=":0", silence_logs=40)
        client = Client(cluster, set_as_default=False)
        arr = client.persist(images())         # the images live on the workers
        clusters.append((client, cluster, arr))
        out = jd.predict(path, arr, batch=args.batch)
        out = out[name] if isinstance(out, dict) else out
        runners[label] = (lambda c, o: lambda: c.compute(o, sync=True))(client, out)

    for run in runners.values():          # warm: compile or load, and the model per worker
        run()
    speeds = {k: [] for k in runners}
    for _ in range(args.rounds):
        for label, run in runners.items():
            t0 = time.perf_counter()
            run()
            speeds[label].append(args.images / (time.perf_counter() - t0))
    print(f"{args.model}, {args.images} images, chunks of {args.chunk}, batch {args.batch}; "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'config':8} {'img/s':>8} {'spread':>7}")
    for label, v in speeds.items():
        print(f"{label:8} {statistics.median(v):8.1f} {max(v) / min(v):7.2f}")
    for client, _, _ in clusters:            # clients first: no worker talks to a gone one
        client.close()
    for _, cluster, _ in clusters:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
