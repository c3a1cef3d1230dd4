"""The threading layer: TBB found from the tbb wheel with no environment variables, the
user's choice honoured, a late conflicting choice refused by name, thread counts restored."""
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import jitconv as jc
from jitconv.models import conv_chain
from jitconv.runtime import threads


def _child(code, **env_changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "LD_LIBRARY_PATH")}
    env.update(env_changes)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()


_RUN = """
    import numba, numpy as np
    import jitconv as jc
    from jitconv.models import conv_chain
    sess = jc.Session(conv_chain(layers=1, channels=8, size=8), jc.Config(threads=2, **{cfg}))
    sess.run(np.ones((1, 8, 8, 8), np.float32))
    print(numba.threading_layer())
    print(sess.info().threading)
"""


@pytest.mark.skipif(not threads._tbb_candidates(), reason="the tbb wheel is not installed")
def test_default_layer_is_tbb_from_the_wheel_without_environment_variables():
    layer, line = _child(_RUN.format(cfg="{}"))
    assert layer == "tbb"
    assert line.startswith("tbb, libtbb from ") and "libtbb" in line


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_environment_variable_wins(layer):
    got, line = _child(_RUN.format(cfg="{}"), NUMBA_THREADING_LAYER=layer)
    assert got == layer and line.startswith(layer)


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_config_picks_the_layer_of_the_first_session(layer):
    got, line = _child(_RUN.format(cfg=f"{{'threading_layer': {layer!r}}}"))
    assert got == layer and line.startswith(layer)


def test_gnu_openmp_gets_a_short_spin_unless_the_user_set_one():
    code = """
        import os, jitconv as jc
        from jitconv.models import conv_chain
        jc.Session(conv_chain(layers=1, channels=8, size=8), jc.Config(threading_layer="omp"))
        print(os.environ.get("GOMP_SPINCOUNT"))
    """
    assert _child(code) == ["30000"]
    assert _child(code, GOMP_SPINCOUNT="5") == ["5"]
    assert _child(code, OMP_WAIT_POLICY="passive") == ["None"]


def test_a_different_layer_after_the_pool_started_is_a_named_error():
    sess = jc.Session(conv_chain(layers=1, channels=8, size=8), jc.Config(threads=1))
    sess.run(np.ones((1, 8, 8, 8), np.float32))
    running = numba.threading_layer()
    other = next(layer for layer in ("tbb", "omp", "workqueue") if layer != running)
    with pytest.raises(jc.ConfigError, match=f"threading_layer='{other}'.*'{running}'"):
        jc.Session(conv_chain(layers=1), jc.Config(threading_layer=other))
    # asking for the running one is fine
    jc.Session(conv_chain(layers=1), jc.Config(threading_layer=running))


def test_unknown_layer_is_a_config_error():
    with pytest.raises(jc.ConfigError, match="threading_layer='openmp'"):
        jc.Config(threading_layer="openmp")


def test_run_restores_the_callers_thread_count():
    sess = jc.Session(conv_chain(layers=2, channels=8, size=8), jc.Config(threads=1))
    before = numba.get_num_threads()
    sess.run(np.ones((1, 8, 8, 8), np.float32))
    assert numba.get_num_threads() == before


def test_describe_names_the_running_layer():
    jc.Session(conv_chain(layers=1, channels=8, size=8)).run(np.ones((1, 8, 8, 8), np.float32))
    assert threads.describe().split(",")[0].split(" ")[0] == numba.threading_layer()


def test_a_blank_environment_variable_means_the_default():
    got, _ = _child(_RUN.format(cfg="{}"), NUMBA_THREADING_LAYER="")
    assert got in ("tbb", "omp")
