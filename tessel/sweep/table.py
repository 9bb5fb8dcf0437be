"""The results table of a sweep, one record per task in spec order, and its CSV file.

Columns: the swept fields, model, phase, ok, time_s and energy_j (the Pareto axes), the
spec's metrics, `pareto` (on the latency-energy front of its model and phase) and error.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from tessel.files import atomic_write
from tessel.sweep.metrics import columns
from tessel.sweep.pareto import pareto_front
from tessel.sweep.points import Task
from tessel.sweep.store import Row

__all__ = ["records", "write_csv", "PARETO_AXES"]

PARETO_AXES = ("time_s", "energy_j")


def records(tasks: Sequence[Task], rows: Mapping[str, Row], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """One dict per task that has a row (every task, after a finished sweep)."""
    names = tuple(dict.fromkeys(PARETO_AXES + metrics))
    out = []
    for task in tasks:
        row = rows.get(task.key)
        if row is None:
            continue
        figures = columns(names, row.metrics) if row.ok else {}
        out.append({**dict(task.point), "model": task.model_label, "phase": task.phase_label,
                    "ok": row.ok, **figures, "error": row.error or ""})
    _mark_front(out)
    return out


def _mark_front(table: list[dict[str, Any]]) -> None:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in table:
        record["pareto"] = False
        if record["ok"]:
            groups[record["model"], record["phase"]].append(record)
    for group in groups.values():
        front = pareto_front([[r[a] for a in PARETO_AXES] for r in group], (False, False))
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
