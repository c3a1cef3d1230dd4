"""Compile progress: a tqdm bar only when a first run is slow, naming the op's kernel."""
from __future__ import annotations

import io
import time
from types import SimpleNamespace

import numpy as np
import pytest

import jitconv as jc
from jitconv import progress
from jitconv.errors import ConfigError


def _op(kernel, name):
    return SimpleNamespace(kernel=kernel, name=name)


def test_a_slow_step_shows_a_bar_naming_the_kernel_running():
    out = io.StringIO()
    p = progress.CompileProgress("first run", show_after=0.05, file=out)
    p(0, 2, _op("conv2d_tiled", "conv1"))
    time.sleep(0.3)                       # "compiling" conv1's kernel
    assert "first run" in out.getvalue() and "conv2d_tiled (conv1)" in out.getvalue()
    p(1, 2, _op("gemm_nt", "fc"))
    p(2, 2, None)
    assert "2/2" in out.getvalue()


def test_a_fast_run_prints_nothing():
    out = io.StringIO()
    p = progress.CompileProgress("first run", show_after=0.5, file=out)
    for i in range(3):
        p(i, 3, _op("relu", f"r{i}"))
    p(3, 3, None)
    time.sleep(0.7)                       # the watcher must not open a bar after the end
    assert out.getvalue() == ""


def test_quiet_by_config_or_environment(monkeypatch):
    assert progress.wanted(jc.Config())
    assert not progress.wanted(jc.Config(progress=False))
    monkeypatch.setenv("JITCONV_PROGRESS", "0")
    assert not progress.wanted(jc.Config())
    with pytest.raises(ConfigError, match="progress"):
        jc.Config(progress="yes")


def test_a_sessions_first_run_reports_and_later_runs_do_not(monkeypatch):
    made = []

    class Spy(progress.CompileProgress):
        def __init__(self, label, **kw):
            made.append(label)
            super().__init__(label, **kw)

    monkeypatch.setattr("jitconv.runtime.session.CompileProgress", Spy)
    g = jc.GraphBuilder("tiny")
    x = g.input("x", (1, 2, 3, 3))
    g.output(g.relu(x), "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=1))
    x = np.ones((1, 2, 3, 3), np.float32)
    sess.run(x)
    sess.run(x)
    assert made == ["jitconv tiny: first run"]
    jc.Session(graph, jc.Config(threads=1, progress=False)).run(x)
    assert len(made) == 1


def test_a_failed_run_stops_the_bar():
    out = io.StringIO()
    p = progress.CompileProgress("first run", show_after=0.05, file=out)
    p(0, 3, _op("conv2d_tiled", "conv1"))
    time.sleep(0.2)
    p.close()                             # the run raised before op None arrived
    seen = out.getvalue()
    time.sleep(1.3)                       # the watcher refreshes each second while alive
    assert out.getvalue() == seen and "conv2d_tiled (conv1)" in seen
    p.close()
