"""Progress for steps that may compile kernels: a tqdm bar, shown only when the step is slow.

A session's first run compiles the kernels it has not compiled before (tens of seconds for
a model with an empty cache, a fraction of a second with a warm one). ``CompileProgress``
is the ``progress(i, n, op)`` callback Session calls before each op: when the run is
still going after ``show_after`` seconds it opens a bar (``tqdm.auto``: a widget in
Jupyter, a line on a terminal) naming the kernel running now, which during a compile is
the one being compiled, and refreshes it every second so the clock moves while Numba
works. A run that ends sooner prints nothing.

Quiet: ``Config(progress=False)``, or ``JITCONV_PROGRESS=0`` in the environment.
"""
from __future__ import annotations

import os
import threading

SHOW_AFTER = 1.0   # seconds before a bar appears


def wanted(config=None) -> bool:
    """False when the config or JITCONV_PROGRESS asks for quiet."""
    if config is not None and not getattr(config, "progress", True):
        return False
    return os.environ.get("JITCONV_PROGRESS", "1").strip().lower() not in ("0", "false",
                                                                           "no", "off")


class CompileProgress:
    """``progress(i, n, op)`` before op i of n (op None when the run has ended)."""

    def __init__(self, label: str, show_after: float = SHOW_AFTER, file=None):
        self.label, self.show_after, self.file = label, show_after, file
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._thread = None
        self._bar = None
        self._at = (0, 0, "")

    def __call__(self, i, n, op=None):
        what = "" if op is None else f"{op.kernel} ({op.name})"
        with self._lock:
            self._at = (i, n, what)
            if self._bar is not None:
                self._bar.set_postfix_str(what, refresh=False)
                self._bar.update(i - self._bar.n)
            if op is None:
                self._ended.set()
                if self._bar is not None:
                    self._bar.close()
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, daemon=True,
                                                name="jitconv-progress")
                self._thread.start()

    def close(self):
        """End the bar (if one opened) and its refreshing; harmless after the end."""
        with self._lock:
            self._ended.set()
            if self._bar is not None:
                self._bar.close()

    def _watch(self):
        """After show_after seconds open the bar; then refresh it every second."""
        if self._ended.wait(self.show_after):
            return
        from tqdm.auto import tqdm
        with self._lock:
            if self._ended.is_set():
                return
            i, n, what = self._at
            self._bar = tqdm(total=n, initial=i, desc=self.label, unit="op", file=self.file,
                             dynamic_ncols=True)
            self._bar.set_postfix_str(what)
        while not self._ended.wait(1.0):
            with self._lock:
                if not self._ended.is_set():
                    self._bar.refresh()
