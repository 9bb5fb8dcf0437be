"""The serving loop: requests arrive, a scheduler forms each step, a cost model times it.

    arrivals -> [reject what can never run] -> scheduler.plan -> StepShape -> Memo(cost model)
             -> tokens emitted at the step's end -> finished requests leave -> next step

A discrete-event loop over steps. A request joins the waiting queue at the first step that
starts at or after its arrival; when nothing can run, time jumps to the next arrival. A
step's duration is its cost plus any swap copies planned with it. Every token is stamped
with the end of the step that emits it, so a request's first token is the end of the step
that finishes its prefill. At the end every request is either finished, with exactly its
output tokens, or rejected with a reason (asserted): none is lost or served twice.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

from tessel.progress import Progress
from tessel.serve.errors import ServeError
from tessel.serve.kv import KVConfig
from tessel.serve.pool import Live, Pool
from tessel.serve.preemption import Preemption, Recompute
from tessel.serve.scheduler import Scheduler
from tessel.serve.step import CostModel, Memo, Step, StepShape
from tessel.serve.workload import Request

__all__ = ["serve", "ServeResult", "RequestRecord", "StepRecord", "Rejection"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A finished request: when it arrived and when each of its output tokens came out."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    token_times_s: tuple[float, ...]   # one per output token, strictly increasing
    preemptions: int

    @property
    def first_token_s(self) -> float:
        return self.token_times_s[0]

    @property
    def finish_s(self) -> float:
        return self.token_times_s[-1]

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1); None for a single output token."""
        if self.output_tokens == 1:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request that can never run under these settings, and why."""

    request: Request
    reason: str


@dataclass(frozen=True, slots=True)
class StepRecord:
    start_s: float
    end_s: float                 # start + cost + swap copies
    batch: int                   # requests in the step
    tokens: int
    prefill_tokens: int
    decodes: int
    kv_blocks: int               # in use on the device during the step
    energy_j: float
    swap_s: float                # of the duration: copying preempted KV to or from the host
    preemptions: int             # requests preempted to make room for this step


@dataclass(frozen=True, slots=True)
class ServeResult:
    """One run: its settings, every request's record or rejection, every step."""

    scheduler: Scheduler
    kv: KVConfig
    preemption: Preemption
    kv_bucket: int | None
    requests: tuple[RequestRecord, ...]    # finished, by id
    rejected: tuple[Rejection, ...]
    steps: tuple[StepRecord, ...]
    first_arrival_s: float
    cost_calls: int                        # distinct step shapes the cost model priced
    cost_hits: int                         # steps priced from memory


def serve(requests: Sequence[Request], cost_model: CostModel, *, scheduler: Scheduler, kv: KVConfig,
          preemption: Preemption | None = None, kv_bucket: int | None = None,
          progress: Progress | None = None,
          on_step: Callable[[Step, StepRecord], None] | None = None,
          context_tokens: int | None = None) -> ServeResult:
    """Serve `requests` (any order) on a target whose steps `cost_model` prices.

    `preemption` defaults to Recompute(); `kv_bucket` rounds step contexts up for the cost
    model (None: exact); `progress` defaults to a bar on a terminal once the run takes
    tessel.progress.DELAY_S seconds (QUIET: none); `on_step` sees every step with its
    requests (the result keeps only each step's record); `context_tokens`: the model's
    context, which a request's prompt and output must fit together (else it is rejected)."""
    preemption = Recompute() if preemption is None else preemption
    _check(requests, kv_bucket)
    memo = cost_model if isinstance(cost_model, Memo) else Memo(cost_model)
    calls, hits = memo.calls, memo.hits
    pool = Pool(kv, preemption)
    arrivals = deque(sorted(requests, key=lambda r: (r.arrival_s, r.id)))
    rejected: list[Rejection] = []
    steps: list[StepRecord] = []
    now_s = 0.0
    with (progress or Progress()).phase(f"serve: {scheduler.policy}", len(requests), "req") as bar:
        while True:
            while arrivals and arrivals[0].arrival_s <= now_s:
                request = arrivals.popleft()
                reason = (_beyond(request, context_tokens) or kv.refusal(request)
                          or scheduler.refusal(request, preemption))
                if reason is None:
                    pool.arrive(request)
                else:
                    rejected.append(Rejection(request, reason))
            plan = scheduler.plan(pool)
            if not plan:
                assert pool.idle, "a scheduler planned nothing while requests wait"
                if not arrivals:
                    break
                now_s = arrivals[0].arrival_s
                continue
            step = pool.start(plan)
            cost = memo.cost(StepShape.of(step, kv_bucket))
            swap_s = preemption.seconds(pool.moved_blocks, kv.block_size)
            end_s = now_s + cost.seconds + swap_s
            record = StepRecord(now_s, end_s, len(step.entries), step.tokens,
                                sum(e.tokens for e in step.entries if e.kind == "prefill"),
                                sum(1 for e in step.entries if e.kind == "decode"),
                                pool.blocks.used_blocks, cost.energy_j, swap_s, pool.preempted)
            steps.append(record)
            if on_step is not None:
                on_step(step, record)
            if pool.finish(step, end_s) and bar is not None:
                bar("", len(pool.finished) + len(rejected))
            now_s = end_s
    records = tuple(_record(pool.finished[i]) for i in sorted(pool.finished))
    _check_conservation(requests, records, rejected)
    return ServeResult(scheduler, kv, preemption, kv_bucket, records, tuple(rejected), tuple(steps),
                       min((r.arrival_s for r in requests), default=0.0),
                       memo.calls - calls, memo.hits - hits)


def _check(requests: Sequence[Request], kv_bucket: int | None) -> None:
    if kv_bucket is not None and (not isinstance(kv_bucket, int) or isinstance(kv_bucket, bool) or kv_bucket < 1):
        raise ServeError(f"kv_bucket must be an integer >= 1 or None, got {kv_bucket!r}")
    seen: set[int] = set()
    for request in requests:
        if request.id in seen:
            raise ServeError(f"request id {request.id} appears twice")
        seen.add(request.id)


def _record(live: Live) -> RequestRecord:
    r = live.request
    return RequestRecord(r.id, r.arrival_s, r.prompt_tokens, r.output_tokens, tuple(live.token_times_s),
                         live.preemptions)


def _check_conservation(requests: Sequence[Request], records: tuple[RequestRecord, ...],
                        rejected: list[Rejection]) -> None:
    """Every request finished exactly once with exactly its output tokens, or rejected."""
    served = [r.id for r in records]
    refused = [r.request.id for r in rejected]
    assert sorted(served + refused) == sorted(r.id for r in requests), "a request was lost or served twice"
    for record in records:
        times = record.token_times_s
        assert len(times) == record.output_tokens, f"request {record.id}: {len(times)} tokens"
        assert times[0] > record.arrival_s and all(a < b for a, b in zip(times, times[1:])), record.id
        assert all(math.isfinite(t) for t in times), record.id


def _beyond(request: Request, context_tokens: int | None) -> str | None:
    """Why the model cannot run `request` at all: the positions its last step reaches (its
    prompt and all but its last output token) exceed the model's context."""
    positions = request.kv_tokens_max
    if context_tokens is None or positions <= context_tokens:
        return None
    return f"needs {positions} positions but the model's context is {context_tokens}"
