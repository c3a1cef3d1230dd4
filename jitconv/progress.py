"""A dependency-free progress line for long steps (kernel compilation)."""
import sys
import time


class ProgressLine:
    """Prints ``label [####....] i/n detail`` in place on a terminal, one line otherwise."""

    def __init__(self, label, stream=None, width=24):
        self.label, self.width = label, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last = ""

    def __call__(self, i, n, op=None):
        filled = self.width * i // max(n, 1)
        bar = "#" * filled + "." * (self.width - filled)
        detail = f"{op.kernel} ({op.name})" if op is not None else "done"
        line = f"{self.label} [{bar}] {i}/{n} {detail} {time.perf_counter() - self.start:.1f}s"
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last)))
            if op is None:
                self.stream.write("\n")
        elif op is None or i == 0:
            self.stream.write(line + "\n")
        self._last = line
        self.stream.flush()
