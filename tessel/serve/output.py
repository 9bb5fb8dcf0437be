"""A run's files in one folder, each written whole or not at all (tessel/files.py):

    requests.csv    one row per finished request (metrics.request_rows)
    summary.json    metrics.summarize
    trace.json      Chrome / Perfetto trace: one complete event per step on each device's
                    track, and counters of the batch size and the KV blocks in use
    latency_cdf.png, timeline.png  (plots.py; with plots=True)
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from tessel.files import atomic_write, check_output_dir
from tessel.serve.engine import ServeResult
from tessel.serve.errors import ServeError
from tessel.serve.metrics import request_rows, summarize

__all__ = ["write_outputs", "chrome_trace", "REQUEST_COLUMNS"]

REQUEST_COLUMNS = ("id", "arrival_s", "first_token_s", "finish_s", "ttft_s", "mean_tpot_s", "e2e_s",
                   "prompt_tokens", "output_tokens", "preemptions")


def write_outputs(result: ServeResult, out_dir: str | Path, *, summary: dict[str, Any] | None = None,
                  devices: int = 1, plots: bool = True) -> list[Path]:
    """Write the run's files into `out_dir` (made if missing); the paths written. `summary`
    defaults to summarize(result) (no SLOs); `devices` is the number of trace tracks."""
    out = Path(out_dir)
    check_output_dir(out, "serve output")
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result) if summary is None else summary
    files = {"requests.csv": _csv(request_rows(result)),
             "summary.json": _json(summary),
             "trace.json": _json(chrome_trace(result, devices=devices))}
    for name, data in files.items():
        atomic_write(out / name, data)
    written = [out / name for name in files]
    if plots:
        from tessel.serve.plots import plot_latency_cdfs, plot_timeline
        plot_latency_cdfs(result, out / "latency_cdf.png")
        plot_timeline(result, out / "timeline.png")
        written += [out / "latency_cdf.png", out / "timeline.png"]
    return written


def chrome_trace(result: ServeResult, *, devices: int = 1) -> dict[str, Any]:
    """The steps as a Chrome trace (times in microseconds): one "X" event per step per device."""
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ServeError(f"devices must be an integer >= 1, got {devices!r}")
    events: list[dict[str, Any]] = [{"ph": "M", "pid": 0, "name": "process_name",
                                     "args": {"name": f"serve: {result.scheduler.policy}"}}]
    events += [{"ph": "M", "pid": 0, "tid": d, "name": "thread_name", "args": {"name": f"device {d}"}}
               for d in range(devices)]
    for i, step in enumerate(result.steps):
        args = {"step": i, "batch": step.batch, "tokens": step.tokens, "prefill_tokens": step.prefill_tokens,
                "decodes": step.decodes, "kv_blocks": step.kv_blocks, "swap_s": step.swap_s,
                "preemptions": step.preemptions}
        name = "prefill+decode" if step.prefill_tokens and step.decodes else (
            "prefill" if step.prefill_tokens else "decode")
        start_us, dur_us = step.start_s * 1e6, (step.end_s - step.start_s) * 1e6
        events += [{"ph": "X", "pid": 0, "tid": d, "name": name, "cat": "step", "ts": start_us, "dur": dur_us,
                    "args": args} for d in range(devices)]
        events.append({"ph": "C", "pid": 0, "name": "batch", "ts": start_us, "args": {"requests": step.batch}})
        events.append({"ph": "C", "pid": 0, "name": "kv_blocks", "ts": start_us,
                       "args": {"blocks": step.kv_blocks}})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"scheduler": result.scheduler.describe(), "devices": devices}}


def _csv(rows: list[dict[str, Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(REQUEST_COLUMNS)
    writer.writerows([("" if row[c] is None else row[c]) for c in REQUEST_COLUMNS] for row in rows)
    return text.getvalue().encode()


def _json(data: Any) -> bytes:
    return (json.dumps(_finite(data), indent=2) + "\n").encode()


def _finite(data: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data
