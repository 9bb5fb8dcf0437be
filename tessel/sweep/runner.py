"""Run a sweep: expand the spec, skip what the store has, evaluate the rest, write the outputs.

    spec -> tasks -> store (resume) -> executor (process pool | Dask) -> store -> CSV + PNG

Outputs in the out directory (default out/sweeps/<spec stem>/): results.sqlite,
results.csv and pareto.png.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

from tqdm import tqdm

from tessel.files import check_output, check_output_dir
from tessel.interrupt import interrupted_by
from tessel.targets import TARGETS
from tessel.sweep.evaluate import Outcome
from tessel.sweep.executors import Evaluate, dask_cluster, local_pool, parse_dask_address
from tessel.sweep.params import SweepError
from tessel.sweep.pareto import plot_fronts
from tessel.sweep.points import Task, tasks as expand_tasks
from tessel.sweep.spec import SweepSpec
from tessel.sweep.store import Store
from tessel.sweep.table import records, write_csv

__all__ = ["run_sweep", "Summary", "default_out_dir", "default_workers"]


@dataclass(frozen=True, slots=True)
class Summary:
    points: int                          # tasks: point x model x phase ([serve]: point x model)
    reused: int                          # found in the store, not evaluated again
    evaluated: int                       # evaluated by this run
    failed: tuple[tuple[str, int], ...]  # (reason, how many points), most frequent first
    wall_s: float                        # of the evaluation (not the set-up or the outputs)
    out_dir: Path

    @property
    def points_per_s(self) -> float:
        return self.evaluated / self.wall_s if self.wall_s > 0 else 0.0

    def lines(self) -> list[str]:
        rate = f" in {self.wall_s:.1f} s, {self.points_per_s:.2f} points/s" if self.evaluated else ""
        lines = [f"sweep: {self.points} points ({self.reused} already in the store, "
                 f"{self.evaluated} evaluated{rate})"]
        failed = sum(n for _, n in self.failed)
        if failed:
            lines.append(f"failed: {failed} points")
            lines += [f"  {n} x {reason}" for reason, n in self.failed]
        lines += [f"wrote {self.out_dir / name}" for name in ("results.sqlite", "results.csv", "pareto.png")]
        return lines


def default_out_dir(spec: SweepSpec) -> Path:
    return Path("out") / "sweeps" / spec.path.stem


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_sweep(spec: SweepSpec, out_dir: Path, *, workers: int | None = None, dask: str | None = None,
              progress: bool = True) -> Summary:
    """Evaluate every point not yet in out_dir's store, then write the CSV and the plot."""
    if spec.target not in TARGETS:
        raise SweepError(f"{spec.path}: base: target '{spec.target}' has no compiler yet "
                         f"(targets: {', '.join(TARGETS)})")
    if dask is not None:
        parse_dask_address(dask)                 # a malformed address fails before anything runs
    check_output_dir(out_dir, "--out")
    everything = expand_tasks(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "pareto.png"):   # found before the points run, not after
        check_output(out_dir / name, "--out")
    with Store(out_dir / "results.sqlite") as store:
        done = store.done(t.key for t in everything)
        pending = [t for t in everything if t.key not in done]
        start = time.perf_counter()
        if pending:
            executor = (dask_cluster(dask) if dask is not None
                        else local_pool(min(workers or default_workers(), len(pending))))
            with tqdm(total=len(everything), initial=len(done), unit="pt", desc=spec.path.stem,
                      disable=not progress, file=sys.stderr, smoothing=0.1) as bar:
                _evaluate(executor, pending, store, everything, bar)
        wall_s = time.perf_counter() - start
        rows = store.rows(t.key for t in everything)
    table = records(everything, rows, spec.metrics, spec.pareto_axes)
    write_csv(out_dir / "results.csv", table)
    plot_fronts(out_dir / "pareto.png", table, (spec.pareto_axes, *spec.plot_axes),
                f"{spec.path.name}: {spec.target} from {Path(spec.base).stem}")
    failures = Counter(r.error for r in rows.values() if not r.ok)
    return Summary(len(everything), len(done), len(pending), tuple(failures.most_common()), wall_s, out_dir)


def _evaluate(executor: ContextManager[Evaluate], pending: list[Task], store: Store,
              everything: list[Task], bar: tqdm) -> None:
    """Store each outcome as it arrives. Interrupted, the executor has stored every point that
    finished and stopped the rest: say how many points of the spec the store now holds."""
    def record(task: Task, outcome: Outcome) -> None:
        store.put(task, outcome)
        bar.update()
    try:
        with executor as evaluate:
            evaluate(pending, record)
    except KeyboardInterrupt as interrupt:
        kept = len(store.done(t.key for t in everything))
        raise interrupted_by(interrupt, f"{kept} of {len(everything)} points stored in {store.path}; "
                                        "run again to resume") from None
