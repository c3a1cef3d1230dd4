"""Matplotlib charts of the reports: ``Profile.plot()`` and ``CompareReport.plot()``.

matplotlib is optional (``pip install "jitconv[plot]"``); it is imported only when a chart
is drawn, and its absence is reported with the command that installs it.
"""
from __future__ import annotations

PLOT_EXTRA = 'pip install "jitconv[plot]"'


def pyplot():
    """matplotlib.pyplot, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(f"plotting needs matplotlib, which is not installed; install it "
                          f"with {PLOT_EXTRA} (or pip install matplotlib)") from exc
    return plt


def _axes(ax, height):
    if ax is not None:
        return ax
    _, ax = pyplot().subplots(figsize=(7, height))
    return ax


def kernel_colours(kernels) -> dict:
    """One colour of matplotlib's tab20 cycle per kernel name, in first-seen order."""
    cmap = pyplot().get_cmap("tab20")
    order = list(dict.fromkeys(kernels))
    return {k: cmap(i % 20) for i, k in enumerate(order)}


def plot_profile(profile, ax=None):
    """Horizontal bars: each op's median ms, in run order from the top, coloured by kernel."""
    ops = profile.ops
    ax = _axes(ax, max(2.5, 0.22 * len(ops) + 1))
    colours = kernel_colours(op.kernel for op in ops)
    ypos = list(range(len(ops)))
    ax.barh(ypos, [op.median_ms for op in ops], color=[colours[op.kernel] for op in ops])
    ax.set_yticks(ypos, [op.name for op in ops], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("median time per run (ms)")
    ax.set_title(f"{profile.label}: {profile.runs} runs, median run {profile.total_ms:.3f} ms")
    from matplotlib.patches import Patch  # noqa: PLC0415
    ax.legend([Patch(color=c) for c in colours.values()], list(colours), title="kernel",
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # beside the bars
    return ax


def plot_compare(report, ax=None, metric="max_rel"):
    """One point per layer in graph order: the chosen error column, log scale."""
    if metric not in ("max_abs", "mean_abs", "max_rel"):
        raise ValueError(f"metric must be max_abs, mean_abs or max_rel, got {metric!r}")
    rows = report.rows
    ax = _axes(ax, 3.5)
    xpos = list(range(len(rows)))
    ax.plot(xpos, [getattr(r, metric) for r in rows], marker="o", linestyle="-")
    ax.set_xticks(xpos, [r.name for r in rows], rotation=90, fontsize=7)
    if any(getattr(r, metric) > 0 for r in rows):
        ax.set_yscale("log")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"error per layer ({metric})")
    return ax
