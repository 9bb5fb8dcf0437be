"""tessel/serve/metrics.py on a run small enough to compute by hand.

Continuous batching, one-token blocks, steps costing 0.5 s + 0.25 s per token and 1 J per
token. A (arrives 0, prompt 4, 3 tokens), B (arrives 0.5, prompt 2, 2 tokens):
    step 0  [0, 1.5]      A prefills 4                  A's token 1
    step 1  [1.5, 2.75]   B prefills 2, A decodes       A's token 2, B's token 1
    step 2  [2.75, 3.75]  A decodes, B decodes          A's token 3, B's token 2
"""
import pytest

from tessel.serve import request_rows, summarize, ServeError

from tests.serve.toy import Linear, requests, run

TOY = Linear(fixed_s=0.5, per_token_s=0.25, energy_per_token_j=1.0)


@pytest.fixture(scope="module")
def result():
    return run(requests((0.0, 4, 3), (0.5, 2, 2)), "continuous", capacity_blocks=10, block_size=1, cost=TOY)


def test_the_steps_and_token_times_are_as_computed_by_hand(result):
    assert [(s.start_s, s.end_s) for s in result.steps] == [(0.0, 1.5), (1.5, 2.75), (2.75, 3.75)]
    a, b = result.requests
    assert a.token_times_s == (1.5, 2.75, 3.75) and b.token_times_s == (2.75, 3.75)


def test_per_request_rows(result):
    a, b = request_rows(result)
    assert a == {"id": 0, "arrival_s": 0.0, "first_token_s": 1.5, "finish_s": 3.75, "ttft_s": 1.5,
                 "mean_tpot_s": 1.125, "e2e_s": 3.75, "prompt_tokens": 4, "output_tokens": 3, "preemptions": 0}
    assert (b["ttft_s"], b["mean_tpot_s"], b["e2e_s"]) == (2.25, 1.0, 3.25)


def test_the_summary_percentiles_throughput_energy_and_kv(result):
    s = summarize(result)
    assert s["ttft_s"] == pytest.approx({"mean": 1.875, "p50": 1.875, "p90": 2.175, "p99": 2.2425, "max": 2.25})
    assert s["tpot_s"] == pytest.approx({"mean": 1.0625, "p50": 1.0625, "p90": 1.1125, "p99": 1.12375,
                                         "max": 1.125})
    assert s["e2e_s"] == pytest.approx({"mean": 3.5, "p50": 3.5, "p90": 3.7, "p99": 3.745, "max": 3.75})
    # TBT: A's gaps 1.25 and 1.0, B's 1.0; p90 between the ranks 1.0 and 1.25: 1.0 + 0.8 x 0.25
    assert s["tbt_s"] == pytest.approx({"mean": 3.25 / 3, "p50": 1.0, "p90": 1.2, "p99": 1.245, "max": 1.25})
    assert s["duration_s"] == 3.75
    assert s["throughput"] == pytest.approx({"output_tokens_per_s": 5 / 3.75, "requests_per_s": 2 / 3.75})
    assert s["energy"] == pytest.approx({"total_j": 9.0, "per_output_token_j": 9.0 / 5})
    # KV blocks: A 4 then B 2 + A 5 = 7 (B's table is its prompt), then A 6 + B 3 = 9
    assert [st.kv_blocks for st in result.steps] == [4, 7, 9]
    assert s["kv_cache"] == pytest.approx({"capacity_blocks": 10, "peak_blocks": 9,
                                           "mean_blocks": (4 * 1.5 + 7 * 1.25 + 9 * 1.0) / 3.75,
                                           "peak_fraction": 0.9, "mean_fraction": (6 + 8.75 + 9) / 37.5})
    assert s["requests"] == {"total": 2, "finished": 2, "rejected": 0} and s["rejected"] == []
    assert s["steps"] == {"count": 3, "mean_batch": 5 / 3, "preemptions": 0, "swap_s": 0.0}
    assert s["cost_model"] == {"distinct_shapes": 3, "memo_hits": 0}
    assert s["settings"]["kv_bucket"] is None and s["slo"] is None


def test_slo_attainment_and_goodput(result):
    both = summarize(result, slo_ttft_s=2.0, slo_tpot_s=1.1)["slo"]      # A misses TPOT, B misses TTFT
    assert both == {"ttft_s": 2.0, "tpot_s": 1.1, "met": 0, "attainment": 0.0, "goodput_requests_per_s": 0.0}
    ttft = summarize(result, slo_ttft_s=2.0)["slo"]
    assert (ttft["met"], ttft["attainment"], ttft["goodput_requests_per_s"]) == (1, 0.5, 1 / 3.75)
    with pytest.raises(ServeError, match=r"slo_tpot_s must be a finite number of seconds > 0, got -1"):
        summarize(result, slo_tpot_s=-1)


def test_a_single_token_request_has_no_tpot_and_rejected_requests_miss_every_slo():
    result = run(requests((0.0, 4, 1), (0.0, 400, 1)), "continuous", capacity_blocks=4, block_size=16, cost=TOY)
    s = summarize(result, slo_ttft_s=10.0)
    assert s["tpot_s"] is None and s["tbt_s"] is None and request_rows(result)[0]["mean_tpot_s"] is None
    assert s["slo"]["attainment"] == 0.5
    assert s["rejected"] == [{"id": 1, "reason": "needs 25 KV blocks (400 tokens) but the cache holds 4 blocks "
                                                 "of 16 tokens"}]
