"""The serving loop's invariants over random small traces, every scheduler, both preemption
modes and tiny KV caches: every request that can run finishes exactly once with exactly its
output tokens, the rest are rejected with a reason, token times strictly increase from after
the arrival, and no step exceeds the KV capacity, the token budget or max_batch."""
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tessel.serve import KVConfig, POLICIES, Recompute, Request, Scheduler, Swap

from tests.serve.toy import Linear, Steps, run

ARRIVAL = st.floats(0, 0.3, allow_nan=False).map(lambda s: round(s, 3))


@st.composite
def cases(draw, most_requests: int = 10):
    n = draw(st.integers(1, most_requests))
    arrivals = sorted(draw(st.lists(ARRIVAL, min_size=n, max_size=n)))
    reqs = [Request(i, a, draw(st.integers(1, 40)), draw(st.integers(1, 12))) for i, a in enumerate(arrivals)]
    max_batch = draw(st.integers(1, 4))
    scheduler = Scheduler(draw(st.sampled_from(sorted(POLICIES))), max_batch,
                          draw(st.integers(max_batch, max_batch + 40)), draw(st.integers(1, 16)))
    kv = KVConfig(draw(st.integers(1, 12)), draw(st.sampled_from([1, 2, 4, 16])))
    preemption = draw(st.sampled_from([Recompute(), Swap(bytes_per_token=64, bw_bytes_per_s=1e6)]))
    kv_bucket = draw(st.none() | st.integers(1, 8))
    return reqs, scheduler, kv, preemption, kv_bucket


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
@pytest.mark.slow      # over 0.5 s in the fast tier (make test runs it)
def test_every_request_is_served_exactly_once_or_rejected_with_a_reason(case):
    check(*case)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(most_requests=30))
def test_the_same_over_more_and_longer_traces(case):
    check(*case)


def check(reqs, scheduler, kv, preemption, kv_bucket) -> None:
    steps = Steps()
    result = run(reqs, scheduler.policy, capacity_blocks=kv.capacity_blocks, block_size=kv.block_size,
                 max_batch=scheduler.max_batch, token_budget=scheduler.token_budget, chunk=scheduler.chunk,
                 preemption=preemption, kv_bucket=kv_bucket, cost=Linear(per_context_s=1e-4), observer=steps)
    refused = {r.id for r in reqs if kv.refusal(r) or scheduler.refusal(r, preemption)}
    assert {r.request.id for r in result.rejected} == refused and all(r.reason for r in result.rejected)
    assert [r.id for r in result.requests] == [r.id for r in reqs if r.id not in refused]

    ends = [record.end_s for _, record in steps.seen]
    by_id = {r.id: r for r in reqs}
    for record in result.requests:
        times = record.token_times_s
        assert len(times) == by_id[record.id].output_tokens
        assert times[0] > record.arrival_s == by_id[record.id].arrival_s
        assert all(a < b for a, b in zip(times, times[1:]))

    # A reference replay of each request's tokens: a part continues where its last one ended
    # (only a recompute restarts a request, from context 0), never runs past its known
    # sequence, and emits a token exactly when it reaches the sequence's end.
    emitted, next_context, served = Counter(), {}, Counter()
    token_times = {r.id: r.token_times_s for r in result.requests}
    recomputes = isinstance(preemption, Recompute)
    previous_end = 0.0
    for step, record in steps.seen:
        assert record.kv_blocks <= kv.capacity_blocks
        assert record.tokens == step.tokens <= scheduler.token_budget
        assert record.batch == len(step.entries) <= scheduler.max_batch
        assert previous_end <= record.start_s < record.end_s
        previous_end = record.end_s
        for e in step.entries:
            i = e.request_id
            assert i not in refused and by_id[i].arrival_s <= record.start_s
            sequence = by_id[i].prompt_tokens + emitted[i]
            if e.context != next_context.get(i, 0):
                assert recomputes and e.kind == "prefill" and e.context == 0, (i, e)
            assert e.context + e.tokens <= sequence
            if e.kind == "decode":
                assert emitted[i] >= 1 and e.context == sequence - 1
            if e.context + e.tokens == sequence:
                assert token_times[i][emitted[i]] == record.end_s
                emitted[i] += 1
            next_context[i] = e.context + e.tokens
            served[i, e.kind] += e.tokens
    for record in result.requests:
        prompt, output = record.prompt_tokens, record.output_tokens
        assert emitted[record.id] == output
        if record.preemptions == 0 or not recomputes:
            assert (served[record.id, "prefill"], served[record.id, "decode"]) == (prompt, output - 1)
    if scheduler.policy == "static":
        assert sum(r.preemptions for r in result.requests) == 0
    if scheduler.policy == "sarathi":                                      # decodes never pause
        for record in result.requests:
            if record.preemptions == 0:
                first = ends.index(record.first_token_s)
                assert record.token_times_s == tuple(ends[first:first + record.output_tokens])
    if not isinstance(preemption, Swap):
        assert all(record.swap_s == 0 for _, record in steps.seen)
