"""A forked child never hangs or dies silently: it runs, or it gets a clear JitconvError."""
import os
import subprocess
import sys
import textwrap

import pytest

from jitconv.runtime import threads

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# the child reports what happened through its exit code: 0 ran and matched, 3 got the
# JitconvError about forking, anything else (or a timeout) is a failure
_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import jitconv as jc
    from jitconv.models import conv_chain

    graph = conv_chain(layers=2, channels=16, size=8)
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    if sys.argv[1] == "run_first":
        sess = jc.Session(graph, jc.Config(threads=2))
        want = sess.run(x)["y"]
    pid = os.fork()
    if pid == 0:
        try:
            if sys.argv[1] == "fork_first":
                sess = jc.Session(graph, jc.Config(threads=2))
            got = sess.run(x)["y"]
            code = 0 if sys.argv[1] == "fork_first" or np.array_equal(got, want) else 5
        except jc.JitconvError as e:
            code = 3 if "forked" in str(e) and "spawn" in str(e) else 4
        except BaseException:
            code = 6
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
    # the parent is unaffected either way
    if sys.argv[1] == "fork_first":
        sess = jc.Session(graph, jc.Config(threads=2))
        want = sess.run(x)["y"]
    assert np.array_equal(sess.run(x)["y"], want)
    print("parent ok")
""")


def _run(mode, layer=None):
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_child_forked_before_any_run_works():
    assert _run("fork_first") == ["child", "0", "parent", "ok"]


def test_child_forked_after_a_run_gets_a_clear_error_not_a_hang_under_gnu_openmp():
    # GNU OpenMP cannot run in the child: a JitconvError (code 3) instead of Numba's SIGTERM
    assert _run("run_first", "omp") == ["child", "3", "parent", "ok"]


@pytest.mark.skipif(not threads._tbb_candidates(), reason="the tbb wheel is not installed")
def test_child_forked_after_a_run_runs_under_tbb():
    # TBB (jitconv's default when the wheel is there) shuts its pool down around fork:
    # the child runs and gets the parent's answer (code 0)
    assert _run("run_first") == ["child", "0", "parent", "ok"]
    assert _run("run_first", "tbb") == ["child", "0", "parent", "ok"]
