"""Per-op timing of a prepared session: ``Session.profile()``.

Each op is timed around its kernel call (``time.perf_counter``) on every run; the table
shows the median per op over the runs, its GFLOP/s and its share of the summed medians.
The first run is a warm-up and is not counted. Timing adds ~1 us per op.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .tables import html_table, text_table


@dataclass(frozen=True)
class OpTime:
    """One op's median time over the profiled runs."""
    name: str
    op_type: str
    kernel: str
    out_shape: tuple
    flops: int
    median_ms: float

    @property
    def gflops(self) -> float:
        return self.flops / (self.median_ms * 1e6) if self.median_ms > 0 else 0.0


@dataclass(frozen=True)
class Profile:
    """Per-op medians (text via str(), a table in Jupyter); ``by_kernel()`` sums per kernel."""
    label: str
    runs: int
    total_ms: float                 # median wall time of a whole run
    ops: tuple = field(default_factory=tuple)

    _COLUMNS = ("name", "op_type", "kernel", "out_shape", "median ms", "GFLOP/s", "share")

    @classmethod
    def from_samples(cls, label, infos, samples, totals):
        ops = tuple(OpTime(o.name, o.op_type, o.kernel, o.out_shape, o.flops,
                           1e3 * statistics.median(s)) for o, s in zip(infos, samples))
        return cls(label, len(totals), 1e3 * statistics.median(totals), ops)

    def by_kernel(self) -> dict:
        """{kernel: (op count, summed median ms)}, slowest first."""
        acc = {}
        for op in self.ops:
            n, ms = acc.get(op.kernel, (0, 0.0))
            acc[op.kernel] = (n + 1, ms + op.median_ms)
        return dict(sorted(acc.items(), key=lambda kv: -kv[1][1]))

    def plot(self, ax=None):
        """Bar chart of each op's median time, in run order, coloured by kernel.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure when omitted.

        Returns
        -------
        matplotlib.axes.Axes
            The axes drawn on (``ax.figure`` is the figure).

        Raises
        ------
        ImportError
            When matplotlib is not installed (``pip install "jitconv[plot]"``).
        """
        from .plots import plot_profile
        return plot_profile(self, ax)

    def summary(self) -> str:
        summed = sum(op.median_ms for op in self.ops)
        return (f"{self.label}: {self.runs} runs, median run {self.total_ms:.3f} ms, "
                f"sum of op medians {summed:.3f} ms, {len(self.ops)} ops")

    def _rows(self):
        summed = sum(op.median_ms for op in self.ops) or 1.0
        return [[op.name, op.op_type, op.kernel, str(op.out_shape), f"{op.median_ms:.3f}",
                 f"{op.gflops:.1f}", f"{100 * op.median_ms / summed:.1f}%"] for op in self.ops]

    def __str__(self) -> str:
        return text_table(self._COLUMNS, self._rows(), self.summary())

    def _repr_html_(self) -> str:
        return html_table(self._COLUMNS, self._rows(), self.summary())
