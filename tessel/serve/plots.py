"""The run's two figures, drawn with matplotlib's Agg canvas (no display, no pyplot state),
imported only here so that `import tessel.serve` stays light; written atomically.

- latency_cdf.png: the CDFs of TTFT, TPOT and E2E over the finished requests;
- timeline.png: the batch size and the KV cache in use, step by step, over time.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tessel.files import atomic_write
from tessel.serve.engine import ServeResult

__all__ = ["plot_latency_cdfs", "plot_timeline"]


def _figure(panels: int, title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.0 * panels, 4.0) if panels > 1 else (10.0, 6.0), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    return fig


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write(path, buffer.getvalue())


def _title(result: ServeResult) -> str:
    settings = ", ".join(f"{k} {v}" for k, v in result.scheduler.describe().items() if k != "policy")
    return f"{result.scheduler.policy} ({settings}), {result.preemption.name} preemption"


def plot_latency_cdfs(result: ServeResult, path: Path) -> None:
    fig = _figure(3, _title(result))
    columns = (("TTFT", [r.ttft_s for r in result.requests]),
               ("TPOT", [r.tpot_s for r in result.requests if r.tpot_s is not None]),
               ("E2E", [r.e2e_s for r in result.requests]))
    for ax, (name, values) in zip(fig.subplots(1, 3), columns):
        if values:
            data = np.sort(np.asarray(values, dtype=float))
            ax.step(data, np.arange(1, len(data) + 1) / len(data), where="post")
        else:
            ax.text(0.5, 0.5, "no requests", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"{name} (s)")
        ax.set_ylabel("share of requests")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
    _save(fig, path)


def _levels(result: ServeResult) -> tuple[list[float], list[int], list[float]]:
    """Step-wise levels over time: each step's from its start, and 0 from the end of a step
    that the next does not follow at once (the engine idles until an arrival)."""
    times: list[float] = []
    batch: list[int] = []
    kv_percent: list[float] = []
    steps = result.steps
    for step, after in zip(steps, [*steps[1:], None]):
        times.append(step.start_s)
        batch.append(step.batch)
        kv_percent.append(100.0 * step.kv_blocks / result.kv.capacity_blocks)
        if after is None or after.start_s > step.end_s:
            times.append(step.end_s)
            batch.append(0)
            kv_percent.append(0.0)
    return times, batch, kv_percent


def plot_timeline(result: ServeResult, path: Path) -> None:
    fig = _figure(1, _title(result))
    batch_ax, kv_ax = fig.subplots(2, 1, sharex=True)
    times, batch, kv_percent = _levels(result)
    batch_ax.step(times, batch, where="post")
    batch_ax.set_ylabel("requests in the step")
    kv_ax.step(times, kv_percent, where="post")
    kv_ax.set_ylabel("KV cache in use (%)")
    kv_ax.set_ylim(0, 105)
    kv_ax.set_xlabel("time (s)")
    for ax in (batch_ax, kv_ax):
        ax.grid(True, alpha=0.3)
    _save(fig, path)
