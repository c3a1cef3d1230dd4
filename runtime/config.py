"""Session configuration: a frozen dataclass checked on construction."""
from __future__ import annotations

import os
from dataclasses import dataclass

from jitconv.errors import ConfigError

BACKENDS = ("cpu", "cuda", "auto")
PRECISIONS = ("normal", "high", "low")
MEMORY_MODES = ("normal", "high", "low")
THREADING_LAYERS = ("tbb", "omp", "workqueue")
LAYOUTS = ("auto", "nchw")


def _check_choice(field_name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"Config.{field_name}={value!r} is not allowed; "
                          f"choose one of: {', '.join(map(repr, allowed))}")


@dataclass(frozen=True)
class Config:
    """How a Session runs a graph.

    Parameters
    ----------
    backend : {"cpu", "cuda", "auto"} or a registered backend's name
        Backend that gets first pick of every op; "auto" takes the first available
        of cuda, cpu. Checked against the Session's registry when the Session is made.
    backup : str
        Registered backend that runs the ops the main backend declines. Default "cpu".
    threads : int or None
        Worker threads for parallel kernels; None uses all cores. The caller's global
        Numba thread count is restored after every run.
    precision : {"normal", "high", "low"}
        high: no reduced-precision algorithms; normal: fastest fp32-accurate kernel;
        low: may trade accuracy for speed.
    memory : {"normal", "high", "low"}
        What weights stay resident as (see docs/kernel_choice.md).
    threading_layer : {"tbb", "omp", "workqueue"} or None
        Numba's threading layer. None: TBB when it loads, else GNU OpenMP (or what
        NUMBA_THREADING_LAYER says). One layer runs per process, from the first parallel
        kernel on: a session asking for another one after that is a ConfigError.
    layout : {"auto", "nchw"}
        auto: the backend may carry activations in a layout of its own between its
        kernels (the CPU backend: channel-blocked NCHW16c between convs, converted back
        at the edges; see info()); nchw: every tensor stays NCHW. Inputs and outputs are
        NCHW either way.
    progress : bool
        Show a progress bar (tqdm) when a session's first run takes over a second, which is
        when it compiles kernels; False (or JITCONV_PROGRESS=0) keeps it quiet.

    Examples
    --------
    >>> import jitconv as jc
    >>> jc.Config(threads=1, memory="low").memory
    'low'
    """
    backend: str = "cpu"
    backup: str = "cpu"
    threads: int | None = None
    precision: str = "normal"
    memory: str = "normal"
    threading_layer: str | None = None
    progress: bool = True
    layout: str = "auto"

    def __post_init__(self):
        # backend names are checked against the registry the Session is given
        # (Session.__init__), not here: a private registry may hold other backends
        for name in ("backend", "backup"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or \
                    (name == "backup" and value == "auto"):
                raise ConfigError(f"Config.{name}={value!r} must name a registered backend"
                                  + ("" if name == "backup" else " or be 'auto'"))
        if self.threads is not None:
            if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
                raise ConfigError(f"Config.threads={self.threads!r} must be a positive int or None")
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("memory", self.memory, MEMORY_MODES)
        if self.threading_layer is not None:
            _check_choice("threading_layer", self.threading_layer, THREADING_LAYERS)
        _check_choice("layout", self.layout, LAYOUTS)
        if not isinstance(self.progress, bool):
            raise ConfigError(f"Config.progress={self.progress!r} must be True or False")

    def resolved_threads(self) -> int:
        """The thread count a run will use, capped at what Numba allows."""
        import numba
        limit = numba.config.NUMBA_NUM_THREADS
        want = self.threads if self.threads is not None else (os.cpu_count() or 1)
        return max(1, min(want, limit))

    def label(self) -> str:
        return (f"{self.backend} t={self.threads or 'all'} precision={self.precision} "
                f"memory={self.memory}")
