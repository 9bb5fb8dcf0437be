"""The results table of a sweep, one record per task in spec order, and its CSV file.

Columns: the swept fields, model, phase, quant (with a `quant` list), ok, the two Pareto axes
(time_s and energy_j; with `[serve]`, output tokens/s and p99 TTFT), the spec's metrics,
`pareto` (on the front of its model, phase and recipe on those axes: a narrower recipe buys its
time with accuracy, which is not an axis) and error.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from tessel.files import atomic_write
from tessel.sweep.metrics import PASS_AXES, columns, higher_is_better
from tessel.sweep.pareto import pareto_front
from tessel.sweep.points import Task
from tessel.sweep.store import Row

__all__ = ["records", "write_csv"]


def records(tasks: Sequence[Task], rows: Mapping[str, Row], metrics: tuple[str, ...],
            axes: tuple[str, str] = PASS_AXES) -> list[dict[str, Any]]:
    """One dict per task that has a row (every task, after a finished sweep)."""
    names = tuple(dict.fromkeys(axes + metrics))
    out = []
    for task in tasks:
        row = rows.get(task.key)
        if row is None:
            continue
        figures = columns(names, row.metrics) if row.ok else {}
        quant = {} if task.quant_label is None else {"quant": task.quant_label}
        out.append({**dict(task.point), "model": task.model_label, "phase": task.phase_label,
                    **quant, "ok": row.ok, **figures, "error": row.error or ""})
    _mark_front(out, axes)
    return out


def _mark_front(table: list[dict[str, Any]], axes: tuple[str, str]) -> None:
    """A point without a figure on an axis (no request finished: no TTFT) is on no front."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in table:
        record["pareto"] = False
        if record["ok"] and all(record.get(a) is not None for a in axes):
            groups[record["model"], record["phase"], record.get("quant")].append(record)
    for group in groups.values():
        front = pareto_front([[r[a] for a in axes] for r in group], tuple(map(higher_is_better, axes)))
        for record, on in zip(group, front):
            record["pareto"] = on


def write_csv(path: Path, table: list[dict[str, Any]]) -> None:
    tail = ("pareto", "error")
    header = [*dict.fromkeys(k for record in table for k in record if k not in tail), *tail]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write(path, buffer.getvalue().encode())
