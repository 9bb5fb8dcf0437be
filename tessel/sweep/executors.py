"""Where points run: a local process pool (default) or a dask.distributed cluster.

Each executor is a context manager that sets its workers up (so a scheduler that cannot be
reached fails before any progress is shown) and gives a function that runs the same pure
`evaluate_point` over tasks and hands each (task, outcome) to `record` as it arrives.

Interrupted (Ctrl-C, SIGTERM as tessel/interrupt.py raises it, or any error), an executor
records every point whose result has arrived and stops the rest without waiting for the
points in flight (the local pool kills its workers; Dask cancels the futures), then lets
the exception go on.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import Callable, Iterator, Sequence

from tessel.sweep.evaluate import Outcome, evaluate_point
from tessel.sweep.params import SweepError
from tessel.sweep.points import Task

__all__ = ["Evaluate", "Record", "local_pool", "dask_cluster", "dask_setup", "parse_dask_address"]

Record = Callable[[Task, Outcome], None]
Evaluate = Callable[[Sequence[Task], Record], None]
_CONNECT_TIMEOUT_S = 30


@contextmanager
def local_pool(workers: int) -> Iterator[Evaluate]:
    """`workers` processes forked from a server that has Tessel imported once.

    Every worker ends when the sweep's process ends, however it ends (SIGKILL included): a
    thread in the worker waits on `multiprocessing.parent_process().sentinel`, a pipe whose
    other end only the sweep's process holds, so the kernel closes it when that process
    dies, and the thread then exits the worker. Once no worker is left the forkserver exits
    too (it stays only while a process holds its "alive" pipe, which the workers inherit).
    Not PR_SET_PDEATHSIG: it fires when the worker's parent dies, and that parent is the
    forkserver, which outlives the sweep as long as a worker holds its "alive" pipe — the
    signal would never come. Not a process group: after SIGKILL no process is left to
    signal the group. Not polling os.getppid(): the parent is the forkserver again.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tessel.sweep.executors"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_setup) as pool:
        yield lambda tasks, record: _pool_map(pool, tasks, record)


def _pool_map(pool: ProcessPoolExecutor, tasks: Sequence[Task], record: Record) -> None:
    """Record each outcome as it arrives; on any exception, record those that have arrived,
    then kill the workers this call started (the pool would wait for their points) and let
    the pool fail the rest. No future is cancelled here: Python 3.11's pool, finding its
    workers dead, sets an exception on every unfinished future and fails on a cancelled one."""
    before = set(multiprocessing.active_children())
    futures: dict[Future, Task] = {}
    recorded: set[Future] = set()
    try:
        for task in tasks:
            futures[pool.submit(evaluate_point, task)] = task
        for future in as_completed(futures):
            record(futures[future], future.result())
            recorded.add(future)
    except BaseException as error:
        try:
            for future, task in futures.items():
                if future not in recorded and _has_result(future):
                    record(task, future.result())
        finally:
            for process in set(multiprocessing.active_children()) - before:
                process.kill()
        if isinstance(error, BrokenProcessPool):
            raise SweepError("a worker process died (out of memory?); finished points are "
                             "saved: run the sweep again to resume") from None
        raise


def _has_result(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _worker_setup() -> None:
    """In each worker: leave SIGINT and SIGTERM to the sweep's process, and end with it.

    A Ctrl-C reaches the whole process group; the sweep's process decides (it stores what
    finished and kills the workers), so the workers ignore both signals.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sentinel = multiprocessing.parent_process().sentinel
    threading.Thread(target=_exit_when_closed, args=(sentinel,), name="tessel-parent-watch",
                     daemon=True).start()


def _exit_when_closed(sentinel: int) -> None:
    wait([sentinel])                    # readable (EOF) once the sweep's process has ended
    os._exit(1)


def parse_dask_address(text: str) -> tuple[str, int | None]:
    """'local:N' -> ('local', N); anything else is a scheduler address -> (address, None)."""
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise SweepError(f"--dask {text}: expected local:N with N a positive number of workers")
        return "local", int(count)
    if not text or text.startswith("local"):
        raise SweepError(f"--dask {text!r}: expected a scheduler address (tcp://host:port) or local:N")
    return text, None


@contextmanager
def dask_cluster(address: str) -> Iterator[Evaluate]:
    """The scheduler at `address`, or for `local:N` a LocalCluster of N processes on loopback."""
    from distributed import Client, LocalCluster
    where, count = parse_dask_address(address)
    cluster = None
    try:
        if count is not None:
            cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None, silence_logs=logging.CRITICAL,
                                   preload=[__name__])      # runs dask_setup in each worker
        client = Client(cluster or where, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        raise SweepError(f"--dask {address}: cannot reach the scheduler ({e})") from None
    # The local cluster's own processes log at CRITICAL only: a task's failure reaches the
    # sweep through its future, and a worker that loses the scheduler while an interrupt
    # shuts both down logs a heartbeat traceback (distributed/worker.py `heartbeat`) that
    # would break the one-line interrupt message.
    # An interrupt that lands while the client waits makes distributed's `sync` cancel its
    # wait on the event-loop thread, where some releases fail on a free variable they never
    # bound and tornado logs the traceback (distributed/utils.py `cancel`). Results come from
    # the futures, never from that log, so the client's event-loop errors are not shown.
    loop_log = logging.getLogger("tornado.application")
    level = loop_log.level
    loop_log.setLevel(logging.CRITICAL)
    try:
        yield lambda tasks, record: _dask_map(client, tasks, record)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        loop_log.setLevel(level)


def dask_setup(worker) -> None:
    """Dask's preload hook, run in each worker process of a `local:N` cluster: Ctrl-C reaches
    the whole process group, and the sweep's process decides (as in the local pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dask_map(client, tasks: Sequence[Task], record: Record) -> None:
    from distributed import as_completed as dask_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker
    futures = client.map(evaluate_point, tasks, key=[f"tessel-sweep-{t.key}" for t in tasks])
    by_key = {f.key: t for f, t in zip(futures, tasks)}
    recorded: set[str] = set()
    try:
        for future in dask_completed(futures):
            task = by_key[future.key]
            try:
                outcome = future.result()
            except (KilledWorker, FutureCancelledError) as e:
                outcome = Outcome(task.key, False, {}, f"dask: {type(e).__name__}: the workers that "
                                  "ran this point died", 0.0)
            record(task, outcome)
            recorded.add(future.key)
    except BaseException:
        try:
            for future in futures:
                if future.key not in recorded and future.status == "finished":
                    record(by_key[future.key], future.result())
        finally:
            client.cancel([f for f in futures if not f.done()])
        raise
