"""Backend-owned memory: a device backend's tensors live in its own arena, and the session
copies between memories exactly where an op runs on the other side; host backends share
tensors with no copy at all."""
import numpy as np
import pytest

import jitconv as jc
from helpers import assert_close, rand
from jitconv.backends.base import DeviceMemory
from jitconv.runtime.reference import evaluate


class DevBuf:
    """A buffer of the fake device: host code that forgets to copy cannot read it."""
    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    @property
    def nbytes(self):
        return self.data.nbytes


class FakeDevice(DeviceMemory):
    def __init__(self):
        self.allocated, self.copies = [], []

    def allocate(self, nbytes):
        self.allocated.append(nbytes)
        return DevBuf(np.zeros(nbytes, np.uint8))

    def view(self, buffer, offset, nbytes, shape):
        return DevBuf(buffer.data[offset:offset + nbytes].view(np.float32).reshape(shape))

    def to_device(self, src, dst):
        assert isinstance(src, np.ndarray) and isinstance(dst, DevBuf)
        dst.data[...] = src
        self.copies.append("to_device")

    def to_host(self, src, dst):
        assert isinstance(src, DevBuf) and isinstance(dst, np.ndarray)
        dst[...] = src.data
        self.copies.append("to_host")


class DevRelu(jc.Kernel):
    name, reason = "dev_relu", "fake device"

    def run(self, inputs, outputs, scratch):
        np.maximum(inputs[0].data, 0, out=outputs[0].data)


class DevAdd(jc.Kernel):
    name, reason = "dev_add", "fake device"

    def run(self, inputs, outputs, scratch):
        np.add(inputs[0].data, inputs[1].data, out=outputs[0].data)


@pytest.fixture
def device():
    mem = FakeDevice()
    entered = []

    def context(config, what):
        from contextlib import contextmanager

        @contextmanager
        def run():
            entered.append(what)
            yield
        return run()
    backend = jc.Backend("fakedev", "a device simulated with wrapped arrays", memory=mem,
                         run_context=context)
    backend.register("Relu", lambda ctx: DevRelu())
    backend.register("Add", lambda ctx: DevAdd())
    jc.register_backend(backend)
    yield mem, entered
    jc.unregister_backend("fakedev")


def _graph(rng):
    g = jc.GraphBuilder("dev")
    x = g.input("x", (1, 4, 8, 8), dynamic_axes=(0,))
    r = g.relu(g.max_pool(x, 2))                 # max pool on the cpu, relu on the device
    g.output(r, "r")                             # a graph output written on the device
    s = g.add(r, r)                              # device -> device: no copy
    g.output(g.conv2d(s, rand(rng, 6, 4, 3, 3), padding=1, name="conv"), "y")   # cpu
    return g.build()


def test_device_tensors_live_in_its_arena_and_are_copied_where_needed(rng, device):
    mem, entered = device
    graph = _graph(rng)
    sess = jc.Session(graph, jc.Config(backend="fakedev", threads=1))
    ops = sess.info().ops
    kinds = [(op.op_type, op.backend, op.kernel) for op in ops]
    assert kinds == [
        ("MaxPool", "cpu", "max_pool2d"),
        ("Copy", "fakedev", "copy_to_fakedev"),   # pooled -> device
        ("Relu", "fakedev", "dev_relu"),
        ("Copy", "fakedev", "copy_to_host"),      # r is a graph output
        ("Add", "fakedev", "dev_add"),
        ("Copy", "fakedev", "copy_to_host"),      # the sum feeds the cpu conv
        ("Conv", "cpu", ops[-1].kernel)]
    assert mem.allocated and any(n > 0 for n in mem.allocated)
    for batch in (1, 3):
        x = rand(rng, batch, 4, 8, 8)
        mem.copies.clear()
        got = sess.run({"x": x})
        want = evaluate(graph, {"x": x})
        assert_close(got["r"], want["r"], what="relu on the device")
        assert_close(got["y"], want["y"], what="conv after the device ops")
        assert mem.copies == ["to_device", "to_host", "to_host"]
    assert entered and all("Session('dev').run" in w for w in entered)
    # the device arena is counted with the host one
    host_only = jc.Session(graph, jc.Config(threads=1)).info()
    assert sess.info().arena_bytes > host_only.arena_bytes


def test_host_backends_share_tensors_without_copies(rng):
    sess = jc.Session(_graph(rng), jc.Config(threads=1))
    assert not [op for op in sess.info().ops if op.op_type == "Copy"]
