"""The CPU Numba compiles jitconv's kernels for: full 512-bit vectors wherever AVX-512 is.

LLVM tunes Intel's AVX-512 server cores (Skylake-X through Sapphire and Emerald Rapids) with
its "prefer-256-bit" flag: the loop vectorizer then emits 256-bit ymm code although zmm is
there. jitconv's register tiles are laid out for 16-float vectors (conv_chanvec keeps 32
channels x 7 pixels in 14 zmm accumulators); in ymm the same tile needs twice the registers
and half of each FMA's width is lost. Measured on a 2-core Emerald Rapids Xeon, 1 thread,
``bench/compare_onnxruntime.py --layers F`` (1x1 1024->1024 at 14x14): 18.8 ms with LLVM's
tuning, 5.1 ms without it. AMD's Zen 4 and Zen 5 are not tuned that way, so nothing changes
there.

``prefer_full_vectors`` drops the flag from the features Numba's CPU codegen is built with.
Numba builds that codegen once per process, when the first function is decorated, and keys
its on-disk cache on the features, so this must run before any ``@njit`` of jitconv's (it
is the first thing ``import jitconv`` does) and the cached kernels stay valid. It affects
every function Numba compiles in this process afterwards, the user's too: they get 512-bit
vectors as on AMD. It steps aside when the user chose the CPU (``NUMBA_CPU_NAME`` or
``NUMBA_CPU_FEATURES``) or when Numba's codegen already exists (something compiled before
jitconv was imported); ``describe()`` says which of these happened.
"""
import os

_FLAG = "-prefer-256-bit"
_state = {"how": "not set up"}


def _codegen_built() -> bool:
    from numba.core.registry import cpu_target
    return "_toplevel_target_context" in vars(cpu_target)


def prefer_full_vectors() -> str:
    """Build Numba's CPU codegen without LLVM's 256-bit preference; returns what happened."""
    import numba
    from numba.core.codegen import get_host_cpu_features
    from numba.core.registry import cpu_target

    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        how = "as set by NUMBA_CPU_NAME / NUMBA_CPU_FEATURES"
    elif _codegen_built():
        how = "LLVM's default (Numba compiled before jitconv was imported)"
    else:
        features = get_host_cpu_features()
        if "+avx512f" not in features.split(","):
            how = "LLVM's default (no AVX-512)"
        else:
            numba.config.CPU_FEATURES = f"{features},{_FLAG}"
            try:
                cpu_target.target_context   # builds the codegen, which reads the features now
            finally:
                numba.config.CPU_FEATURES = None   # Numba re-reads the environment anyway
            how = "AVX-512, 512-bit vectors"
    _state["how"] = how
    return how


def describe() -> str:
    """One line for info(): the vector width the kernels were compiled for and why."""
    return _state["how"]
