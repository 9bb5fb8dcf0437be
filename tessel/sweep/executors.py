"""Where points run: a local process pool (default) or a dask.distributed cluster.

Each executor is a context manager that sets its workers up (so a scheduler that cannot be
reached fails before any progress is shown) and gives a function mapping the same pure
`evaluate_point` over tasks, yielding (task, outcome) pairs in completion order.
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from tessel.sweep.evaluate import Outcome, evaluate_point
from tessel.sweep.params import SweepError
from tessel.sweep.points import Task

__all__ = ["Evaluate", "local_pool", "dask_cluster", "parse_dask_address"]

Evaluate = Callable[[Sequence[Task]], Iterator[tuple[Task, Outcome]]]
_CONNECT_TIMEOUT_S = 30


@contextmanager
def local_pool(workers: int) -> Iterator[Evaluate]:
    """`workers` processes forked from a server that has Tessel imported once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tessel.sweep.evaluate"])
    # Ctrl-C reaches the whole process group: the workers ignore it and the sweep's process
    # stops submitting, lets the points in flight finish and keeps what it has.
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=signal.signal,
                             initargs=(signal.SIGINT, signal.SIG_IGN)) as pool:
        def evaluate(tasks: Sequence[Task]) -> Iterator[tuple[Task, Outcome]]:
            futures = {pool.submit(evaluate_point, task): task for task in tasks}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BrokenProcessPool:
                raise SweepError("a worker process died (out of memory?); finished points are "
                                 "saved: run the sweep again to resume") from None
            finally:
                for future in futures:
                    future.cancel()
        yield evaluate


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
                                   host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster or where, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        raise SweepError(f"--dask {address}: cannot reach the scheduler ({e})") from None
    try:
        yield lambda tasks: _dask_map(client, tasks)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask_map(client, tasks: Sequence[Task]) -> Iterator[tuple[Task, Outcome]]:
    from distributed import as_completed as dask_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker
    futures = client.map(evaluate_point, tasks, key=[f"tessel-sweep-{t.key}" for t in tasks])
    by_key = {f.key: t for f, t in zip(futures, tasks)}
    for future in dask_completed(futures):
        task = by_key[future.key]
        try:
            outcome = future.result()
        except (KilledWorker, FutureCancelledError) as e:
            outcome = Outcome(task.key, False, {}, f"dask: {type(e).__name__}: the workers that "
                              "ran this point died", 0.0)
        yield task, outcome
