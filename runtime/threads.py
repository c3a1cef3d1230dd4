"""Numba's threading layer for jitconv: TBB when the ``tbb`` wheel is there; thread counts;
the fork guard.

Why TBB (measured on 2 cores; the numbers are in docs/design.md, "Threads"): a GNU OpenMP
parallel region ends only when every worker has run its share, so a worker the OS has not
scheduled (another process on its core) stalls every op. Under TBB the calling thread
takes the shares no worker has started, so a busy core costs a share of the speed instead
of the whole op. The kernels pull their work from shared counters in small chunks
(kernels/atomics.py), so whoever is running does the remaining work.

The ``tbb`` wheel (a dependency on the platforms it is built for) puts libtbb.so.12 in the
environment's lib/ folder, which the loader does not search, and Numba looks the library up
by bare name: ``select_layer`` loads it by its full path first (``RTLD_GLOBAL``), so
Numba's own lookup finds it. This must happen before Numba starts its thread pool, which is
why jitconv does it at import.

A user's choice wins: ``NUMBA_THREADING_LAYER`` in the environment, or
``Config(threading_layer=...)`` for the first session of the process (the layer is fixed
for the process once the pool starts; a later different request is a ConfigError).

GNU OpenMP (the fallback when TBB cannot load) cannot run parallel regions in a child
forked after the parent started its thread pool: Numba then kills the child with SIGTERM.
A session run in such a child raises a ``JitconvError`` instead (``check_fork``). TBB and
workqueue children run.
"""
import ctypes
import os
import sys
import threading
from contextlib import contextmanager, nullcontext

import numba

from jitconv.errors import ConfigError, JitconvError

from .config import THREADING_LAYERS as LAYERS

_TBB_NAMES = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}

_state = {"unsafe_child": False, "tbb_path": None, "tbb_error": None}


# ----------------------------------------------------------------------------- choosing

def _tbb_candidates():
    """Full paths where the tbb wheel may have put its library, best first."""
    name = _TBB_NAMES.get(sys.platform, "libtbb.so.12")
    seen = []
    try:
        from importlib import metadata
        dist = metadata.distribution("tbb")
        for f in dist.files or ():
            if os.path.basename(str(f)) == name:
                seen.append(os.path.normpath(str(dist.locate_file(f))))
    except Exception:   # tbb not installed as a wheel (conda, system package, none)
        pass
    sub = ("Library", "bin") if sys.platform == "win32" else ("lib",)
    for prefix in (sys.prefix, sys.base_prefix):
        seen.append(os.path.join(prefix, *sub, name))
    return [p for i, p in enumerate(seen) if p not in seen[:i] and os.path.exists(p)]


def _preload_tbb() -> bool:
    """Load libtbb by full path so Numba's bare-name lookup finds it; True when loaded."""
    if _state["tbb_path"]:
        return True
    errors = []
    for path in _tbb_candidates():
        try:
            lib = ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            lib.TBB_runtime_interface_version.restype = ctypes.c_int
            if lib.TBB_runtime_interface_version() < 12060:
                errors.append(f"{path} is older than TBB 2021.6")
                continue
        except (OSError, AttributeError) as e:
            errors.append(f"{path}: {e}")
            continue
        _state["tbb_path"] = path
        return True
    _state["tbb_error"] = "; ".join(errors) or "the tbb package is not installed"
    return False


def started() -> bool:
    """True once Numba has started its thread pool (the layer is then fixed)."""
    from numba.np.ufunc import parallel
    return bool(parallel._is_initialized)


def select_layer(requested=None) -> None:
    """Arrange for Numba to start ``requested`` (or, by default, TBB when it loads).

    Called at jitconv import with no argument, and by every Session with its
    ``Config.threading_layer`` (already checked by Config). Without a request the user's
    NUMBA_THREADING_LAYER stands; a request wins while the pool has not started.
    """
    if started():
        running = numba.threading_layer()
        if requested is not None and requested != running:
            raise ConfigError(
                f"Config.threading_layer={requested!r}, but Numba's {running!r} threading "
                f"layer already runs in this process and cannot be changed; choose the layer "
                f"in the first session, or set NUMBA_THREADING_LAYER before starting Python")
        return
    env = os.environ.get("NUMBA_THREADING_LAYER")
    if env is not None and not env.strip():
        # set but blank: Numba would refuse '' at the first parallel call
        del os.environ["NUMBA_THREADING_LAYER"]
        numba.config.THREADING_LAYER = env = "default"
    want = requested or (env or "default").strip().lower()
    if want in ("tbb", "default"):
        # Numba's default priority (tbb, omp, workqueue) takes TBB once it can load it
        if _preload_tbb():
            pass
        elif requested == "tbb":
            raise ConfigError(f"Config.threading_layer='tbb' but TBB cannot be loaded "
                              f"({_state['tbb_error']}); pip install tbb")
        else:
            _short_gomp_spin()   # OpenMP is what will start
    elif want == "omp":
        _short_gomp_spin()
    if requested is not None:
        numba.config.THREADING_LAYER = requested
        os.environ["NUMBA_THREADING_LAYER"] = requested   # numba re-reads its config here


def _short_gomp_spin():
    """GNU OpenMP only: spin ~0.3 ms, not libgomp's ~3 ms, after each parallel region.

    NOTE: on 2 cores a 3 ms spin starves the caller and other runtimes' threads between
    kernels; no spin (OMP_WAIT_POLICY=passive) pays a futex wake-up per region. Measured
    at main 8eb22a9 (2 threads, ResNet-50 / MobileNetV2): 85.6 / 14.0 ms passive, 62-65 /
    8.4-9.0 ms at 30000, 86-95 / 15-17 ms at 300000. libgomp reads this when Numba loads it
    (when the pool starts); a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "30000"


def describe() -> str:
    """One line: which layer runs (or will run) and why."""
    if started():
        layer = numba.threading_layer()
    else:
        env = str(numba.config.THREADING_LAYER).lower()
        layer = env if env in LAYERS else ("tbb" if _state["tbb_path"] else "omp")
        layer += " (not started yet)"
    if layer.startswith("tbb") and _state["tbb_path"]:
        return f"{layer}, libtbb from {_state['tbb_path']}"
    if layer.startswith("omp") and _state["tbb_error"]:
        return f"{layer} (TBB not loaded: {_state['tbb_error']})"
    return layer


# ----------------------------------------------------------------------------- fork guard

def _after_fork_in_child():
    if _gnu_openmp():
        _state["unsafe_child"] = True


def _gnu_openmp() -> bool:
    try:
        if numba.threading_layer() != "omp":
            return False
        from numba.np.ufunc import omppool
        return getattr(omppool, "openmp_vendor", "GNU") == "GNU"
    except (ValueError, ImportError):   # no pool started yet in the parent
        return False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_fork(what: str) -> None:
    """Raise instead of letting Numba SIGTERM this process (see the module docstring)."""
    if _state["unsafe_child"]:
        raise JitconvError(
            f"{what}: this process was forked from one that had already started Numba's GNU "
            f"OpenMP threads (by preparing or running a session), and they cannot run in a "
            f"forked child. Use multiprocessing.get_context('spawn') or 'forkserver', fork "
            f"before the first Session is made, or use the TBB threading layer "
            f"(pip install tbb; jitconv then picks it)")


_WORKQUEUE = threading.Lock()


def _one_at_a_time() -> bool:
    """True under Numba's workqueue layer, which aborts the process when two threads run
    parallel regions at once (TBB and OpenMP allow it)."""
    try:
        layer = numba.threading_layer()
    except ValueError:              # the pool has not started: go by what will start
        layer = str(numba.config.THREADING_LAYER).lower()
    return layer == "workqueue"


@contextmanager
def numba_threads(n: int):
    """Run the block with ``n`` Numba threads (a per-thread setting in Numba), serialized
    process-wide under the workqueue layer."""
    with _WORKQUEUE if _one_at_a_time() else nullcontext():
        previous = numba.get_num_threads()
        if n != previous:
            numba.set_num_threads(n)
        try:
            yield
        finally:
            if n != previous:
                numba.set_num_threads(previous)
