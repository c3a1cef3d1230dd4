"""runtime/target.py: Numba's codegen built for 512-bit vectors on AVX-512 CPUs, and when not."""
from __future__ import annotations

import os
import subprocess
import sys

from numba.core.codegen import get_host_cpu_features
from numba.core.registry import cpu_target

import jitconv as jc
from jitconv.runtime import target

FLAG = "-prefer-256-bit"


def _user_chose_cpu():
    return bool(os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"))


def test_codegen_features_follow_the_host():
    features = cpu_target.target_context.codegen()._tm_features
    avx512 = "+avx512f" in get_host_cpu_features().split(",")
    if _user_chose_cpu():
        assert target.describe().startswith("as set by")
    elif avx512:
        assert features.endswith("," + FLAG)
        assert target.describe() == "AVX-512, 512-bit vectors"
    else:
        assert FLAG not in features
        assert target.describe() == "LLVM's default (no AVX-512)"


def test_info_names_the_vector_width():
    g = jc.GraphBuilder("t")
    x = g.input("x", (1, 2, 4, 4))
    g.output(g.relu(x), "y")
    info = jc.Session(g.build(), jc.Config(threads=1)).info()
    assert info.vectors == target.describe() != ""
    assert f"vectors: {info.vectors}" in info.summary()


def _describe_in_child(code, env):
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_a_users_cpu_choice_is_left_alone():
    env = dict(os.environ, NUMBA_CPU_FEATURES=get_host_cpu_features())
    env.pop("NUMBA_CPU_NAME", None)
    code = ("import jitconv; from jitconv.runtime import target; "
            "from numba.core.registry import cpu_target; print(target.describe()); "
            f"print({FLAG!r} in cpu_target.target_context.codegen()._tm_features)")
    assert _describe_in_child(code, env) == [
        "as set by NUMBA_CPU_NAME / NUMBA_CPU_FEATURES", "False"]


def test_numba_used_before_jitconv_keeps_its_codegen():
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    code = ("import numba; f = numba.njit(lambda a: a + 1); f(1); import jitconv; "
            "from jitconv.runtime import target; print(target.describe())")
    assert _describe_in_child(code, env) == [
        "LLVM's default (Numba compiled before jitconv was imported)"]
    # and the kernels still run right in such a process
    code = ("import numba, numpy as np; numba.njit(lambda a: a)(1); import jitconv as jc; "
            "g = jc.GraphBuilder('t'); x = g.input('x', (1, 2, 3, 3)); g.output(g.relu(x), 'y'); "
            "y = jc.Session(g.build()).run(np.arange(-9, 9, dtype=np.float32)"
            ".reshape(1, 2, 3, 3))['y']; print(float(y.min()), float(y.sum()))")
    assert _describe_in_child(code, env) == ["0.0 36.0"]
