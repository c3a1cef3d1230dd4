"""runtime/resident.py: after Session() the model file's pages are not resident any more."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import jitconv as jc
from jitconv.runtime import resident

from helpers import assert_close


def _graph(rng):
    g = jc.GraphBuilder("resident")
    x = g.input("x", (1, 64, 8, 8))
    y = g.conv2d(x, (rng.standard_normal((256, 64, 3, 3)) * 0.05).astype(np.float32),
                 padding=1, activation="relu")
    y = g.conv2d(y, (rng.standard_normal((128, 256, 3, 3)) * 0.05).astype(np.float32),
                 padding=1)
    g.output(y, "y")
    return g.build()


def _mapped_kib(path):
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:       # a mapping's first line
                inside = len(head) >= 6 and head[5] == str(path)
            elif inside and line.startswith("Rss:"):
                total += int(head[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
@pytest.mark.parametrize("storage,memory", [("fp32", "normal"), ("int8", "low"),
                                            ("fp16", "high")])
def test_the_file_pages_go_after_session(tmp_path, storage, memory):
    rng = np.random.default_rng(0)
    graph = _graph(rng)
    path = os.path.realpath(tmp_path / "m.jcm")
    jc.save(graph if storage == "fp32" else jc.quantize(graph, storage), path)
    g = jc.load(path)
    for c in g.constants.values():        # page the whole file in, as packing would
        np.asarray(c.data).sum()
    assert _mapped_kib(path) * 1024 > 0.5 * os.path.getsize(path)
    sess = jc.Session(g, jc.Config(threads=1, memory=memory))
    assert _mapped_kib(path) * 1024 < 0.05 * os.path.getsize(path)
    # the mapping still serves whatever reads it later, and the answers are right
    x = rng.standard_normal((1, 64, 8, 8)).astype(np.float32)
    assert_close(sess.run(x)["y"], jc.Session(g, jc.Config(threads=1)).run(x)["y"], rtol=1e-4)


def test_release_pages_counts_only_mappings(tmp_path):
    graph = _graph(np.random.default_rng(1))
    assert resident.release_pages(graph) == 0                # arrays in memory
    jc.save(graph, tmp_path / "m.jcm")
    assert resident.release_pages(jc.load(tmp_path / "m.jcm", mmap=False)) == 0
    expected = 1 if hasattr(__import__("mmap"), "MADV_DONTNEED") else 0
    assert resident.release_pages(jc.load(tmp_path / "m.jcm")) == expected


def test_trim_heap_says_whether_it_ran():
    assert resident.trim_heap() in (True, False)
    if sys.platform.startswith("linux") and os.path.exists("/usr/lib/x86_64-linux-gnu/libc.so.6"):
        assert resident.trim_heap() is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_info_reports_the_process_rss_at_prepare():
    before = resident.rss_bytes()
    info = jc.Session(_graph(np.random.default_rng(3)), jc.Config(threads=1)).info()
    assert info.rss_at_prepare >= before > 0
    assert "process RSS at prepare" in info.summary()


def _library_kib(prefix):
    """Resident KiB of this process's mappings of shared libraries named ``prefix``*."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                inside = len(head) >= 6 and os.path.basename(head[5]).startswith(prefix)
            elif inside and line.startswith("Rss:"):
                total += int(head[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_compiler_pages_go_and_llvm_still_works():
    """Session() and a session's first run give LLVM's pages back; Numba compiles as
    before afterwards, reading them again from the file."""
    from numba import njit

    def compile_one(c):
        @njit(cache=False)
        def poly(a):
            return a * a + c * a - 1.0
        v = np.arange(5.0)
        assert np.array_equal(poly(v), v * v + c * v - 1.0)

    compile_one(3.0)
    touched = _library_kib("libllvmlite")
    rng = np.random.default_rng(2)
    sess = jc.Session(_graph(rng), jc.Config(threads=1, progress=False))
    assert _library_kib("libllvmlite") < 0.5 * touched
    x = rng.standard_normal((1, 64, 8, 8)).astype(np.float32)
    y = sess.run(x)["y"]
    assert _library_kib("libllvmlite") < 0.5 * touched
    compile_one(4.0)                                        # LLVM runs again
    touched = _library_kib("libllvmlite")
    assert resident.release_compiler_pages() > 0
    assert _library_kib("libllvmlite") < 0.5 * touched
    assert np.array_equal(sess.run(x)["y"], y)
    compile_one(5.0)


def test_compiler_page_watch_releases_as_rss_grows(monkeypatch):
    """CompilerPageWatch releases LLVM's pages only once RSS grew by its step since the
    last release (a first run calls it after every step)."""
    rss = iter([100, 104, 109, 111, 100, 130, 90]).__next__
    monkeypatch.setattr(resident, "rss_bytes", lambda: rss() * 2 ** 20)
    released = []
    monkeypatch.setattr(resident, "release_compiler_pages", lambda: released.append(1))
    watch = resident.CompilerPageWatch(step=8 * 2 ** 20)    # mark: 100
    watch()                     # 104: +4, no
    watch()                     # 109: +9, released; mark 111
    watch()                     # 100: no
    watch()                     # 130: +19, released; mark 90
    assert len(released) == watch.released == 2


def test_first_run_and_packing_call_the_watch(monkeypatch):
    calls = []
    real = resident.CompilerPageWatch.__call__
    monkeypatch.setattr(resident.CompilerPageWatch, "__call__",
                        lambda self: (calls.append(1), real(self)))
    rng = np.random.default_rng(3)
    graph = _graph(rng)
    sess = jc.Session(graph, jc.Config(threads=1, progress=False))
    assert len(calls) == len(sess.info().ops)       # once per step while packing
    x = rng.standard_normal((1, 64, 8, 8)).astype(np.float32)
    sess.run(x)
    assert len(calls) == 2 * len(sess.info().ops)   # and once per step of the first run
    sess.run(x)
    assert len(calls) == 2 * len(sess.info().ops)   # later runs: not at all
