"""Sweep results in SQLite, one row per task key, each written in its own transaction.

WAL journal: a sweep killed at any instant (SIGKILL included) keeps every row it wrote and
loses at most the points in flight; a rerun skips the keys already present, failed ones too.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tessel.sweep.evaluate import Outcome
from tessel.sweep.params import SweepError
from tessel.sweep.points import Task

__all__ = ["Store", "Row"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key         TEXT PRIMARY KEY,      -- sha256 of point, model, phase, tool version
    point       TEXT NOT NULL,         -- JSON {field: value}
    model       TEXT NOT NULL,
    phase       TEXT NOT NULL,
    ok          INTEGER NOT NULL,      -- 1 measured, 0 failed
    metrics     TEXT NOT NULL,         -- JSON {metric: value}
    error       TEXT,                  -- the one-line reason of a failed point
    wall_s      REAL NOT NULL,         -- evaluation time of the point
    finished_at REAL NOT NULL          -- Unix time
)"""


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    ok: bool
    metrics: dict[str, float | int]
    error: str | None
    wall_s: float


class Store:
    """One results.sqlite; the sweep's process is its only writer."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")     # durable across process kills
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise SweepError(f"{self.path}: results written by another Tessel (schema {version}, "
                                 f"this one reads {SCHEMA_VERSION}); use another --out")
            self._db.execute(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise SweepError(f"{self.path}: not a results database ({e})") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def done(self, keys: Iterable[str]) -> set[str]:
        """The keys among `keys` that have a row."""
        present = {k for (k,) in self._db.execute("SELECT key FROM results")}
        return present & set(keys)

    def put(self, task: Task, outcome: Outcome) -> None:
        """Record one outcome in its own transaction; a key already present is left as it is."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (task.key, json.dumps(dict(task.point)), task.model_label, task.phase_label,
                 int(outcome.ok), json.dumps(outcome.metrics), outcome.error, outcome.wall_s, time.time()))

    def rows(self, keys: Iterable[str]) -> dict[str, Row]:
        wanted = set(keys)
        out = {}
        for key, ok, metrics, error, wall_s in self._db.execute(
                "SELECT key, ok, metrics, error, wall_s FROM results"):
            if key in wanted:
                out[key] = Row(key, bool(ok), json.loads(metrics), error, wall_s)
        return out
