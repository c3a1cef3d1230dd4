"""jitconv.dask.predict on a distributed LocalCluster (2 worker processes x 1 thread):
results equal a single-process Session run, the model is loaded once per worker, and a
worker killed mid-run has its tasks rerun by Dask with the result still complete."""
from __future__ import annotations

import gc
import os
import signal
import time

import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import jitconv as jc
import jitconv.dask as jd
from helpers import assert_close, rand
from jitconv.models import conv_chain


def _classifier(rng, size=16):
    g = jc.GraphBuilder("dask_cls")
    x = g.input("x", (1, 3, size, size))
    y = g.conv2d(x, rand(rng, 8, 3, 3, 3, scale=0.3), padding=1, activation="relu")
    y = g.conv2d(y, rand(rng, 8, 8, 3, 3, scale=0.3), stride=2, padding=1, activation="relu")
    y = g.flatten(g.global_average_pool(y))
    logits = g.dense(y, rand(rng, 5, 8), rand(rng, 5))
    g.output(logits, "logits")
    g.output(g.softmax(logits), "probs")
    return g.build()


def _reference(graph, x):
    sess = jc.Session(graph, jc.Config(threads=1))
    sess.resize({"x": x.shape})
    return sess.run(x)


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(3)
    graph = _classifier(rng)
    path = tmp_path_factory.mktemp("dask") / "cls.jcm"
    jc.save(graph, path)
    return path, graph


def test_predict_on_a_local_cluster_equals_one_process(client, model_file, rng):
    path, graph = model_file
    x = rand(rng, 29, 3, 16, 16)
    images = da.from_array(x, chunks=(4, 3, 16, 16))     # 8 chunks, the last of 1
    out = jd.predict(path, images, batch=3)
    assert set(out) == {"logits", "probs"} and out["probs"].chunks[0] == images.chunks[0]
    got = client.compute(out, sync=True)
    want = _reference(graph, x)
    for k in ("logits", "probs"):
        assert_close(got[k], want[k], rtol=1e-5, what=k)
    loads = client.run(jd.loads)
    assert max(loads.values()) == 1 and sum(loads.values()) >= 1, loads
    again = client.compute(jd.predict(path, images)["probs"], sync=True)   # cache reused
    assert_close(again, want["probs"], rtol=1e-5)
    assert max(client.run(jd.loads).values()) == 1


def test_predict_on_a_persisted_array_keeps_its_data(client, model_file, rng):
    """The images may live only on the workers (persisted, the caller's handle dropped)."""
    path, graph = model_file
    x = rand(rng, 6, 3, 16, 16)
    out = jd.predict(path, client.persist(da.from_array(x, chunks=2)))["logits"]
    gc.collect()
    assert_close(client.compute(out, sync=True), _reference(graph, x)["logits"], rtol=1e-5)


def test_sessions_take_the_worker_thread_count(client, model_file):
    path, _ = model_file

    def threads_of_cached_sessions():
        return sorted({s.config.threads for s, _ in jd._SESSIONS.values()})
    jd.predict(path, da.zeros((4, 3, 16, 16), chunks=2))["probs"].compute()
    per_worker = client.run(threads_of_cached_sessions)
    assert all(v in ([], [1]) for v in per_worker.values()), per_worker


def test_a_killed_worker_is_retried_and_the_result_is_complete(client, tmp_path):
    graph = conv_chain(layers=6, channels=32, size=48)
    path = tmp_path / "chain.jcm"
    jc.save(graph, path)
    images = da.random.default_rng(5).standard_normal((48, 32, 48, 48), chunks=(2, 32, 48, 48),
                                                      dtype=np.float32)   # made on workers
    x = images.compute()                                    # 24 tasks below
    future = client.compute(jd.predict(path, images))
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline and not future.done():
        busy = [w for w, tasks in client.processing().items() if tasks]
        victim = busy[0] if busy else None
        time.sleep(0.05)
    assert victim is not None, "no worker was ever busy"
    os.kill(pids[victim], signal.SIGKILL)
    got = future.result(timeout=300)
    want = _reference(graph, x)
    name = graph.outputs[0].name
    assert_close(got, want[name], rtol=1e-5)
    client.wait_for_workers(2, timeout=120)
    assert set(client.run(os.getpid).values()) != set(pids.values()), "no worker died"


def test_predict_without_a_cluster_uses_the_local_scheduler(model_file, rng):
    path, graph = model_file
    x = rand(rng, 7, 3, 16, 16)
    got = jd.predict(path, da.from_array(x, chunks=3))["probs"].compute(scheduler="threads")
    assert_close(got, _reference(graph, x)["probs"], rtol=1e-5)


def test_predict_on_a_symbolic_batch_onnx_model(tmp_path, rng):
    from onnx import TensorProto, helper, numpy_helper
    w = rand(rng, 4, 3, 3, 3)
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w")]),
        opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "conv.onnx"
    path.write_bytes(m.SerializeToString())
    x = rand(rng, 10, 3, 8, 8)
    got = jd.predict(path, da.from_array(x, chunks=4)).compute(scheduler="threads")
    want = _reference(jc.load(path), x)["y"]
    assert_close(got, want, rtol=1e-5)


def test_predict_errors_name_the_problem(model_file, tmp_path):
    path, _ = model_file
    with pytest.raises(jc.InputError, match="dask.array.Array"):
        jd.predict(path, np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(jc.InputError, match="no such file"):
        jd.predict(tmp_path / "none.jcm", da.zeros((2, 3, 16, 16)))
    with pytest.raises(jc.InputError, match=r"\.onnx and \.jcm"):
        jd.predict(tmp_path / "m.pt", da.zeros((2, 3, 16, 16)))
    with pytest.raises(jc.InputError, match=r"\(2, 3, 15, 16\).*'x'"):
        jd.predict(path, da.zeros((2, 3, 15, 16)))
    with pytest.raises(jc.ConfigError, match="batch=0"):
        jd.predict(path, da.zeros((2, 3, 16, 16)), batch=0)
    with pytest.raises(jc.ConfigError, match="jitconv.Config"):
        jd.predict(path, da.zeros((2, 3, 16, 16)), config={"threads": 1})
