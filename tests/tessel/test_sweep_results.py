"""The sweep store (one row per key, WAL, resumable), Pareto fronts, and the CSV table."""
import csv
import sqlite3

import pytest

from compiler.phase import decode
from tessel.sweep import SweepError
from tessel.sweep.evaluate import Outcome
from tessel.sweep.pareto import pareto_front, plot_fronts
from tessel.sweep.points import Task
from tessel.sweep.store import Store
from tessel.sweep.table import records, write_csv


def task(key: str, rows: int = 8) -> Task:
    return Task(key, "systolic", "systolic-32", (("rows", rows),), "gpt2", "gpt2", decode(16))


def test_store_keeps_the_first_row_of_a_key_and_survives_reopening(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store(path) as store:
        store.put(task("a"), Outcome("a", True, {"time_s": 1.0, "energy_j": 2.0}, None, 0.5))
        store.put(task("a"), Outcome("a", True, {"time_s": 9.0, "energy_j": 9.0}, None, 0.5))
        store.put(task("b"), Outcome("b", False, {}, "op 'x': does not fit", 0.1))
    with Store(path) as store:
        assert store.done(["a", "b", "c"]) == {"a", "b"}
        rows = store.rows(["a", "b"])
    assert rows["a"].metrics == {"time_s": 1.0, "energy_j": 2.0} and rows["a"].ok
    assert not rows["b"].ok and rows["b"].error == "op 'x': does not fit"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    bad = tmp_path / "r.sqlite"
    bad.write_text("not a database, just text that is long enough to be read as a header " * 4)
    with pytest.raises(SweepError, match=r"r\.sqlite: not a results database"):
        Store(bad)


@pytest.mark.parametrize("points, maximize, front", [
    ([(1, 5), (2, 3), (3, 4), (4, 1)], (False, False), [True, True, False, True]),
    ([(1, 1), (1, 1), (2, 2)], (False, False), [True, True, False]),           # equal points: both stay
    ([(1, 1), (2, 1)], (False, False), [True, False]),                         # better on one, equal on the other
    ([(1, 0.2), (2, 0.9), (3, 0.5)], (False, True), [True, True, False]),      # utilization: higher is better
    ([], (False, False), []),
])
def test_pareto_front(points, maximize, front):
    assert pareto_front(points, maximize) == front


@pytest.mark.slow      # about 1 s: the fast tier stays under 30 s
def test_csv_marks_the_front_per_model_and_phase_and_keeps_failures(tmp_path):
    tasks = [task("a", 8), task("b", 16), task("c", 32), task("d", 64)]
    rows = {}
    with Store(tmp_path / "r.sqlite") as store:
        for t, (time_s, energy_j) in zip(tasks[:3], [(1.0, 3.0), (2.0, 1.0), (3.0, 2.0)]):
            store.put(t, Outcome(t.key, True, {"time_s": time_s, "energy_j": energy_j, "bytes.dram": 7}, None, 0.1))
        store.put(tasks[3], Outcome("d", False, {}, "does not fit", 0.1))
        rows = store.rows(t.key for t in tasks)
    table = records(tasks, rows, ("bytes", "cycles"))
    write_csv(tmp_path / "r.csv", table)
    lines = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert list(lines[0]) == ["rows", "model", "phase", "ok", "time_s", "energy_j", "bytes.dram", "cycles",
                              "pareto", "error"]
    assert [line["pareto"] for line in lines] == ["True", "True", "False", "False"]
    assert lines[3]["ok"] == "False" and lines[3]["error"] == "does not fit" and lines[3]["time_s"] == ""
    assert lines[0]["cycles"] == ""          # not reported: empty, not invented
    plot_fronts(tmp_path / "p.png", table, [("time_s", "energy_j"), ("rows", "time_s")], "t")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
