"""tessel/serve/scheduler.py on hand-made cases: which requests run in each step, with how
many tokens at which context (request id, kind, tokens, context), under each policy."""
import pytest

from tessel.serve import Recompute, Scheduler, ServeError, Swap

from tests.serve.toy import Steps, requests, run

P, D = "prefill", "decode"


def parts(reqs, policy, **settings):
    steps = Steps()
    result = run(reqs, policy, observer=steps, **settings)
    return steps.parts(), result


def test_static_admits_a_batch_and_decodes_until_all_of_it_has_finished():
    # C arrives during the first step; a slot is free, yet it waits for the whole batch.
    got, result = parts(requests((0, 4, 2), (0, 4, 4), (0.001, 4, 1)), "static", max_batch=3)
    assert got == [[(0, P, 4, 0), (1, P, 4, 0)], [(0, D, 1, 4), (1, D, 1, 4)], [(1, D, 1, 5)],
                   [(1, D, 1, 6)], [(2, P, 4, 0)]]
    assert result.requests[2].first_token_s == result.steps[4].end_s > result.requests[1].finish_s


def test_continuous_admits_between_steps_and_mixes_prefills_with_decodes():
    got, _ = parts(requests((0, 4, 2), (0, 4, 4), (0.001, 4, 1)), "continuous", max_batch=3)
    assert got == [[(0, P, 4, 0), (1, P, 4, 0)], [(0, D, 1, 4), (1, D, 1, 4), (2, P, 4, 0)],
                   [(1, D, 1, 5)], [(1, D, 1, 6)]]


def test_continuous_prefills_first_and_a_decode_that_does_not_fit_pauses():
    # (swap: under recompute a prefill could reach prompt + output - 1 = 5 tokens, over the budget)
    got, result = parts(requests((0, 2, 4), (0.001, 4, 2)), "continuous", max_batch=2, token_budget=4,
                        preemption=Swap(1, 1))
    assert got == [[(0, P, 2, 0)], [(1, P, 4, 0)], [(0, D, 1, 2), (1, D, 1, 4)], [(0, D, 1, 3)], [(0, D, 1, 4)]]
    ends = [s.end_s for s in result.steps]
    assert result.requests[0].token_times_s == (ends[0], ends[2], ends[3], ends[4])   # a stall at step 1


def test_sarathi_runs_decodes_first_and_chunks_new_prefills_into_what_is_left():
    got, result = parts(requests((0, 2, 4), (0.001, 4, 2)), "sarathi", max_batch=2, token_budget=4, chunk=4)
    assert got == [[(0, P, 2, 0)], [(0, D, 1, 2), (1, P, 3, 0)], [(0, D, 1, 3), (1, P, 1, 3)],
                   [(0, D, 1, 4), (1, D, 1, 4)]]
    assert result.requests[0].token_times_s == tuple(s.end_s for s in result.steps)   # never paused


def test_continuous_admits_first_come_first_served_within_the_token_budget():
    # B does not fit what A left of the budget, so C (which would) waits behind it.
    got, _ = parts(requests((0, 6, 2), (0, 6, 2), (0, 1, 1)), "continuous", max_batch=4, token_budget=8)
    assert got == [[(0, P, 6, 0)], [(0, D, 1, 6), (1, P, 6, 0), (2, P, 1, 0)], [(1, D, 1, 6)]]


def test_max_batch_bounds_the_requests_of_a_step():
    got, _ = parts(requests((0, 3, 2), (0, 3, 3), (0, 3, 1)), "continuous", max_batch=2)
    assert got == [[(0, P, 3, 0), (1, P, 3, 0)], [(0, D, 1, 3), (1, D, 1, 3)], [(1, D, 1, 4), (2, P, 3, 0)]]


def test_sarathi_chunks_a_prefill_and_its_first_token_ends_the_last_chunk():
    got, result = parts(requests((0, 10, 2)), "sarathi", chunk=4)
    assert got == [[(0, P, 4, 0)], [(0, P, 4, 4)], [(0, P, 2, 8)], [(0, D, 1, 10)]]
    assert result.requests[0].first_token_s == result.steps[2].end_s


def test_sarathi_continues_partial_prefills_before_new_ones_within_the_budget():
    got, _ = parts(requests((0, 10, 1), (0, 10, 1)), "sarathi", max_batch=2, token_budget=6, chunk=4)
    assert got == [[(0, P, 4, 0), (1, P, 2, 0)], [(0, P, 4, 4), (1, P, 2, 2)], [(0, P, 2, 8), (1, P, 4, 4)],
                   [(1, P, 2, 8)]]


TWO = ((0, 3, 4), (0, 3, 4))    # each holds up to 6 tokens of KV; 8 one-token blocks hold one and a bit


def test_recompute_preempts_the_newest_which_later_prefills_prompt_and_generated_tokens():
    got, result = parts(requests(*TWO), "continuous", capacity_blocks=8, block_size=1)
    assert got == [[(0, P, 3, 0), (1, P, 3, 0)], [(0, D, 1, 3), (1, D, 1, 3)], [(0, D, 1, 4)], [(0, D, 1, 5)],
                   [(1, P, 5, 0)], [(1, D, 1, 5)]]
    assert [s.preemptions for s in result.steps] == [0, 0, 1, 0, 0, 0]
    assert [r.preemptions for r in result.requests] == [0, 1]
    assert [s.kv_blocks for s in result.steps] == [6, 8, 5, 6, 5, 6]


def test_swap_copies_the_newest_out_and_back_in_at_bytes_over_bandwidth():
    swap = Swap(bytes_per_token=10, bw_bytes_per_s=1000)
    got, result = parts(requests(*TWO), "continuous", capacity_blocks=8, block_size=1, preemption=swap)
    assert got == [[(0, P, 3, 0), (1, P, 3, 0)], [(0, D, 1, 3), (1, D, 1, 3)], [(0, D, 1, 4)], [(0, D, 1, 5)],
                   [(1, D, 1, 4)], [(1, D, 1, 5)]]
    assert [s.swap_s for s in result.steps] == [0, 0, 0.04, 0, 0.04, 0]      # 4 blocks x 10 B / 1000 B/s
    step = result.steps[2]
    assert step.end_s - step.start_s == pytest.approx(0.04 + 0.01 + 0.001)   # the copy lengthens the step


def test_sarathi_recomputes_in_chunks():
    got, _ = parts(requests(*TWO), "sarathi", capacity_blocks=8, block_size=1, chunk=2)
    assert got == [[(0, P, 2, 0), (1, P, 2, 0)], [(0, P, 1, 2), (1, P, 1, 2)], [(0, D, 1, 3), (1, D, 1, 3)],
                   [(0, D, 1, 4)], [(0, D, 1, 5)], [(1, P, 2, 0)], [(1, P, 2, 2)], [(1, P, 1, 4)], [(1, D, 1, 5)]]


def test_static_reserves_its_whole_kv_and_never_preempts():
    got, result = parts(requests(*TWO), "static", capacity_blocks=8, block_size=1)
    assert [[p[0] for p in step] for step in got] == [[0]] * 4 + [[1]] * 4
    assert sum(s.preemptions for s in result.steps) == 0


def test_requests_that_can_never_run_are_rejected_with_the_reason():
    reqs = requests((0, 100, 10), (0, 8, 2), (0, 30, 20))
    limits = dict(capacity_blocks=4, max_batch=4, token_budget=40)
    result = run(reqs, "continuous", **limits)
    assert [r.id for r in result.requests] == [1]
    assert [(r.request.id, r.reason) for r in result.rejected] == [
        (0, "needs 7 KV blocks (109 tokens) but the cache holds 4 blocks of 16 tokens"),
        (2, "its prefill after a recompute preemption can reach 49 tokens, above the token budget of 40 "
            "(continuous prefills whole)")]
    swapped = run(reqs, "continuous", **limits, preemption=Swap(1, 1))
    assert [r.id for r in swapped.requests] == [1, 2]                          # a swap never re-prefills
    static = run(requests((0, 50, 1)), "static", max_batch=4, token_budget=40)
    assert static.rejected[0].reason == "its prompt is 50 tokens, above the token budget of 40 (static prefills whole)"
    assert [r.id for r in run(reqs, "sarathi", **limits).requests] == [1, 2]


def test_time_jumps_to_the_next_arrival_when_nothing_can_run():
    result = run(requests((0, 2, 1), (10.0, 2, 1)), "continuous")
    assert [s.start_s for s in result.steps] == [0.0, 10.0]


@pytest.mark.parametrize("settings, message", [
    (dict(policy="fcfs"), r"scheduler 'fcfs': unknown \(schedulers: static, continuous, sarathi\)"),
    (dict(policy="static", max_batch=0), r"scheduler static: max_batch must be an integer >= 1, got 0"),
    (dict(policy="sarathi", chunk=1.5), r"scheduler sarathi: chunk must be an integer >= 1, got 1.5"),
    (dict(policy="continuous", max_batch=64, token_budget=32),
     r"scheduler continuous: token_budget 32 is below max_batch 64"),
])
def test_bad_scheduler_settings_are_refused(settings, message):
    with pytest.raises(ServeError, match=message):
        Scheduler(**settings)


def test_settings_are_echoed():
    assert Scheduler("sarathi", 8, 64, 16).describe() == {"policy": "sarathi", "max_batch": 8, "token_budget": 64,
                                                          "chunk": 16}
    assert Scheduler("static").describe() == {"policy": "static", "max_batch": 128, "token_budget": 2048}
    assert Recompute().describe() == {"mode": "recompute"}
