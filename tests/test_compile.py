"""jc.precompile / `jitconv compile`: a session's kernels compiled in several processes."""
from __future__ import annotations

import numpy as np
import pytest

import jitconv as jc
from jitconv.cli import main
from jitconv.runtime.compile import COST, shares
from jitconv.runtime.reference import evaluate

from helpers import assert_close


def _net(rng):
    """conv (tiled) -> max pool -> GAP -> flatten -> dense: four kernel families."""
    g = jc.GraphBuilder("compile_net")
    x = g.input("x", (1, 8, 16, 16))
    y = g.conv2d(x, (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32), padding=1,
                 activation="relu")
    y = g.max_pool(y, 2, stride=2)
    y = g.flatten(g.global_average_pool(y))
    g.output(g.dense(y, (rng.standard_normal((5, 16)) * 0.3).astype(np.float32)), "y")
    return g.build()


def test_shares_balance_the_cost_and_keep_every_kernel_once():
    names = ["conv2d_tiled", "conv2d_winograd", "conv2d_tiled", "relu", "gemm_nt",
             "conv2d_chanvec", "max_pool2d", "add"]
    parts = shares(names, 2)
    assert sorted(k for p in parts for k in p) == sorted(set(names))
    cost = [sum(COST.get(k, 1.0) for k in p) for p in parts]
    assert cost == sorted(cost, reverse=True)
    # longest-first greedy: the two heaviest kernels land in different shares
    assert not {"conv2d_winograd", "conv2d_tiled"} <= set(parts[0])
    assert cost[0] - cost[1] <= max(COST.values())
    assert shares(names, 1) == [sorted(set(names), key=lambda k: (-COST.get(k, 1.0), k))]
    assert len(shares(["relu"], 4)) == 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_precompile_runs_every_kernel_of_the_session(jobs, tmp_path):
    rng = np.random.default_rng(0)
    graph = _net(rng)
    cfg = jc.Config(threads=1)
    times = jc.precompile(graph, cfg, jobs=jobs)
    sess = jc.Session(graph, cfg)
    assert set(times) == {op.kernel for op in sess.info().ops}
    assert all(t >= 0 for t in times.values())
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    assert_close(sess.run(x)["y"], evaluate(graph, {"x": x})["y"], rtol=1e-4)


def test_cli_compile_prints_the_kernels(tmp_path, capsys):
    graph = _net(np.random.default_rng(1))
    path = tmp_path / "net.jcm"
    jc.save(graph, path)
    assert main(["compile", str(path), "--jobs", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for kernel in {op.kernel for op in jc.Session(graph).info().ops}:
        assert kernel in out
    assert "NUMBA_CACHE_DIR" in out


def test_cli_compile_names_a_missing_file_and_bad_jobs(tmp_path, capsys):
    assert main(["compile", str(tmp_path / "none.onnx")]) == 2
    assert "none.onnx: no such file" in capsys.readouterr().err
    path = tmp_path / "net.jcm"
    jc.save(_net(np.random.default_rng(2)), path)
    assert main(["compile", str(path), "--jobs", "-1"]) == 2
    assert "--jobs -1" in capsys.readouterr().err
    assert main(["compile", str(path), "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err


def test_precompile_many_compiles_each_kernel_and_storage_once():
    rng = np.random.default_rng(4)
    graph = _net(rng)
    items = [(graph, jc.Config(threads=1)), (graph, jc.Config(threads=1, memory="high")),
             (jc.quantize(graph, "int8"), jc.Config(threads=1, memory="low"))]
    from jitconv.runtime.compile import precompile_many
    times = precompile_many(items, jobs=2)
    want = set()
    for g, cfg in items:
        for op in jc.Session(g, cfg).info().ops:
            want.add((op.kernel, str(op.storage).split(" ")[0]))
    assert set(times) == want
    assert ("conv2d_tiled", "fp32") in want and any(s == "int8" for _, s in want)
