"""A sweep stopped by a signal: no process of it survives, the points that finished are in the
store, SIGINT and SIGTERM end with one line and 130 / 143, and a rerun completes the sweep.

The sweep runs as `tessel sweep` in a session of its own; its process tree (workers, the
forkserver, the resource tracker, Dask's worker processes) is read from /proc while it runs,
since the orphans of a killed process are no longer its descendants.
"""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tessel.sweep import load_spec
from tessel.sweep.executors import local_pool
from tessel.sweep.points import tasks
from tests.tessel.test_sweep_run import PINNED_CLI, stack_graph

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")]

POINTS = 16
SURVIVAL_WAIT_S = 10
EXECUTORS = {"pool": ["--workers", "2"], "dask": ["--dask", "local:2"]}


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> set[tuple[int, int]]:
    """(pid, start time) of every process below `root`: the start time tells a reused pid."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append((int(entry), stat[2]))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def survivors(processes: set[tuple[int, int]]) -> list[int]:
    """The pids of `processes` still running (a zombie has ended)."""
    return [pid for pid, started in processes
            if (stat := _stat(pid)) is not None and stat[2] == started and stat[1] not in "ZX"]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode()
    except OSError:
        return "(gone)"


def assert_none_survives(processes: set[tuple[int, int]]) -> None:
    deadline = time.monotonic() + SURVIVAL_WAIT_S
    while (alive := survivors(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"alive {SURVIVAL_WAIT_S} s after the sweep ended: {[_command(p) for p in alive]}"


def stored(db: Path) -> list[str]:
    try:
        return [k for (k,) in sqlite3.connect(db).execute("SELECT key FROM results")]
    except sqlite3.OperationalError:            # not created yet
        return []


class Sweep:
    """`tessel sweep` in its own session, stdout and stderr in files (no pipe the workers hold)."""

    def __init__(self, tmp_path: Path, spec: Path, executor: list[str]):
        self.out, self.db = tmp_path / "out", tmp_path / "out" / "results.sqlite"
        self.stderr = tmp_path / "stderr.txt"
        self.argv = [sys.executable, "-c", PINNED_CLI, "sweep", str(spec), "--out", str(self.out)]
        with open(tmp_path / "stdout.txt", "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(self.argv + executor, stdout=out, stderr=err,
                                         start_new_session=True)
        self.tree: set[tuple[int, int]] = set()

    def run_until_stored(self, points: int) -> int:
        """Follow the process tree until `points` results are stored; how many are."""
        deadline = time.monotonic() + 90
        while len(stored(self.db)) < points:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.stderr.read_text()
            self.tree |= descendants(self.proc.pid)
            time.sleep(0.02)
        self.tree |= descendants(self.proc.pid)
        return len(stored(self.db))

    def stop(self, signum: int, *, group: bool = False, wait_s: float = 60) -> int:
        (os.killpg if group else os.kill)(self.proc.pid, signum)
        return self.proc.wait(timeout=wait_s)

    def resume(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv + ["--workers", "2"], capture_output=True, text=True, timeout=120)


@pytest.fixture
def start_sweep(tmp_path):
    """Starts sweeps; after the test, kills whatever of them a failure left running."""
    started: list[Sweep] = []

    def start(spec: Path, executor: str) -> Sweep:
        started.append(Sweep(tmp_path, spec, EXECUTORS[executor]))
        return started[-1]
    yield start
    for sweep in started:
        if sweep.proc.poll() is None:
            sweep.proc.kill()
            sweep.proc.wait()
        for pid in survivors(sweep.tree):
            os.kill(pid, signal.SIGKILL)


def stack_spec(tmp_path: Path) -> Path:
    """16 points of about 0.15 s each: a few finish, the rest are pending or in flight."""
    (tmp_path / "stack.graph").write_text(stack_graph(16))
    spec = tmp_path / "stack.toml"
    spec.write_text('base = "systolic-32"\nmodels = ["stack.graph"]\n'
                    '[parameters]\nrows = [8, 16, 32, 64]\ncols = [8, 16]\ndataflow = ["ws", "os"]\n')
    return spec


def assert_resumes(sweep: Sweep, kept: int) -> None:
    resumed = sweep.resume()
    assert resumed.returncode == 0, resumed.stderr
    assert f"{POINTS} points ({kept} already in the store, {POINTS - kept} evaluated" in resumed.stdout
    keys = stored(sweep.db)
    assert len(keys) == len(set(keys)) == POINTS


@pytest.mark.parametrize("executor", EXECUTORS)
def test_sigkill_of_the_sweep_ends_every_process_of_it(tmp_path, start_sweep, executor):
    sweep = start_sweep(stack_spec(tmp_path), executor)
    sweep.run_until_stored(3)
    assert sweep.tree, "the sweep started no process"
    assert sweep.stop(signal.SIGKILL) == -signal.SIGKILL
    assert_none_survives(sweep.tree)
    assert_resumes(sweep, len(stored(sweep.db)))


@pytest.mark.parametrize("signum, executor", [(signal.SIGTERM, "pool"), (signal.SIGINT, "pool"),
                                              (signal.SIGTERM, "dask"), (signal.SIGINT, "dask")],
                         ids=["sigterm-pool", "sigint-pool", "sigterm-dask", "sigint-dask"])
def test_sigterm_and_sigint_store_what_finished_and_end_with_one_line(tmp_path, start_sweep, signum,
                                                                     executor):
    sweep = start_sweep(stack_spec(tmp_path), executor)
    before = sweep.run_until_stored(3)
    # SIGINT as Ctrl-C sends it, to the whole process group; SIGTERM as `kill PID` does
    status = sweep.stop(signum, group=signum == signal.SIGINT)
    assert status == 128 + signum
    stderr = sweep.stderr.read_text()
    assert "Traceback" not in stderr, stderr       # no worker may print one (they ignore SIGINT)
    last = stderr.splitlines()[-1]
    message = re.fullmatch(rf"error: interrupted \({signal.Signals(signum).name}\): (\d+) of {POINTS} "
                           rf"points stored in {re.escape(str(sweep.db))}; run again to resume", last)
    assert message, last
    kept = len(stored(sweep.db))
    assert int(message[1]) == kept and before <= kept < POINTS
    assert_none_survives(sweep.tree)
    assert_resumes(sweep, kept)


def test_an_interrupt_kills_the_points_in_flight_instead_of_waiting(tmp_path, start_sweep):
    """One quick point and one of about 30 s: SIGTERM once the quick one is stored ends the
    sweep well before the slow one could finish, and the slow one is not stored."""
    (tmp_path / "quick.graph").write_text(stack_graph(2))
    (tmp_path / "slow.graph").write_text(stack_graph(64, width=2048, tokens=512))
    spec = tmp_path / "two.toml"
    spec.write_text('base = "systolic-32"\nmodels = ["quick.graph", "slow.graph"]\n'
                    "[parameters]\nrows = [8]\ncols = [8]\n")
    sweep = start_sweep(spec, "pool")
    sweep.run_until_stored(1)
    assert sweep.stop(signal.SIGTERM, wait_s=SURVIVAL_WAIT_S) == 128 + signal.SIGTERM
    assert sweep.stderr.read_text().splitlines()[-1].startswith(
        "error: interrupted (SIGTERM): 1 of 2 points stored in ")
    assert len(stored(sweep.db)) == 1
    assert_none_survives(sweep.tree)


def test_an_interrupted_pool_records_every_result_that_arrived(tmp_path, monkeypatch):
    """The pool is interrupted after handing over one result while the others have arrived
    too: it records them all before it lets the interrupt go on."""
    from concurrent.futures import wait

    def interrupted_after_the_first(futures):
        futures = list(futures)
        wait(futures)
        yield futures[0]
        raise KeyboardInterrupt

    (tmp_path / "quick.graph").write_text(stack_graph(2))
    spec = tmp_path / "quick.toml"
    spec.write_text('base = "systolic-32"\nmodels = ["quick.graph"]\n[parameters]\nrows = [8, 16, 32, 64]\n')
    monkeypatch.setattr("tessel.sweep.executors.as_completed", interrupted_after_the_first)
    everything = tasks(load_spec(spec))
    recorded = []
    with pytest.raises(KeyboardInterrupt), local_pool(2) as evaluate:
        evaluate(everything, lambda task, outcome: recorded.append(outcome.key))
    assert sorted(recorded) == sorted(t.key for t in everything)
