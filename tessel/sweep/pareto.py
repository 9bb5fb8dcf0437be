"""Pareto fronts and the sweep's plot: latency against energy, plus the spec's extra axes.

One panel per pair of axes; in each, one colour per (model, phase), every measured point
faint and the non-dominated ones joined. Drawn with matplotlib's Agg canvas (no display,
no global pyplot state) and written atomically.
"""
from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tessel.files import atomic_write
from tessel.sweep.metrics import higher_is_better

__all__ = ["pareto_front", "plot_fronts"]

_LOG_SPAN = 20.0        # an axis whose values span more than this factor is drawn log-scaled


def pareto_front(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[bool]:
    """True for each point that no other point dominates (as good on every axis, better on one)."""
    if not len(points):
        return []
    values = np.asarray(points, dtype=float) * np.where(maximize, -1.0, 1.0)   # all minimised
    front = []
    for v in values:
        no_worse = np.all(values <= v, axis=1)
        better = np.any(values < v, axis=1)
        front.append(not bool(np.any(no_worse & better)))
    return front


def plot_fronts(path: Path, table: list[dict[str, Any]], axes: Sequence[tuple[str, str]], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in table:
        if record["ok"]:
            recipe = f", {record['quant']}" if "quant" in record else ""   # a front per recipe
            groups[f"{record['model']}, {record['phase']}{recipe}"].append(record)
    fig = Figure(figsize=(6.0 * len(axes), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (x, y) in zip(fig.subplots(1, len(axes), squeeze=False)[0], axes):
        for i, (label, group) in enumerate(sorted(groups.items())):
            pts = [(r[x], r[y]) for r in group if r.get(x) is not None and r.get(y) is not None]
            if not pts:
                continue
            colour = f"C{i % 10}"
            on = pareto_front(pts, (higher_is_better(x), higher_is_better(y)))
            xs, ys = np.array(pts, dtype=float).T
            ax.scatter(xs, ys, s=14, color=colour, alpha=0.35, linewidths=0)
            order = sorted((px, py) for (px, py), f in zip(pts, on) if f)
            ax.plot(*zip(*order), marker="o", markersize=5, color=colour, label=f"{label} (front)")
        for name, setter in ((x, ax.set_xscale), (y, ax.set_yscale)):
            data = [r[name] for g in groups.values() for r in g if isinstance(r.get(name), (int, float))]
            if data and min(data) > 0 and max(data) / min(data) > _LOG_SPAN:
                setter("log")
        ax.set_xlabel(x + (" (higher is better)" if higher_is_better(x) else ""))
        ax.set_ylabel(y + (" (higher is better)" if higher_is_better(y) else ""))
        ax.grid(True, alpha=0.3)
        if groups:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no measured points", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write(path, buffer.getvalue())
