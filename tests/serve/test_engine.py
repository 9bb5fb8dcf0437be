"""tessel/serve/engine.py: arrivals, the cost model's use, checks at the boundary and the progress bar."""
import io
import sys

import pytest

from tessel import progress
from tessel.progress import QUIET
from tessel.serve import KVConfig, Memo, Request, Scheduler, ServeError, serve, synthetic

from tests.serve.toy import Linear, requests, run


def test_a_request_arriving_during_a_step_joins_the_next_one():
    result = run(requests((0.0, 4, 2), (0.005, 4, 1)), "continuous")
    assert result.steps[0].batch == 1 and result.steps[1].batch == 2
    assert result.requests[1].first_token_s == result.steps[1].end_s


def test_requests_may_come_in_any_order_and_are_recorded_by_id():
    reqs = [Request(5, 1.0, 4, 2), Request(2, 0.0, 4, 2)]
    result = run(reqs, "continuous")
    assert [r.id for r in result.requests] == [2, 5] and result.first_arrival_s == 0.0
    assert result.steps[0].start_s == 0.0


def test_a_memo_given_is_used_and_bucketing_shares_shapes():
    reqs = synthetic(20, 50.0, "uniform:1,100", "uniform:1,20", seed=2)
    memo = Memo(Linear())
    exact = run(reqs, "sarathi", cost=memo)
    assert (exact.cost_calls, exact.cost_hits) == (memo.calls, memo.hits)
    assert exact.cost_calls + exact.cost_hits == len(exact.steps)
    bucketed = run(reqs, "sarathi", kv_bucket=64)
    assert bucketed.cost_calls < exact.cost_calls and bucketed.kv_bucket == 64


@pytest.mark.parametrize("reqs, kv_bucket, message", [
    ([Request(1, 0.0, 1, 1), Request(1, 1.0, 1, 1)], None, r"request id 1 appears twice"),
    ([Request(1, 0.0, 1, 1)], 0, r"kv_bucket must be an integer >= 1 or None, got 0"),
])
def test_bad_engine_inputs_are_refused(reqs, kv_bucket, message):
    with pytest.raises(ServeError, match=message):
        serve(reqs, Linear(), scheduler=Scheduler("static"), kv=KVConfig(10), kv_bucket=kv_bucket)


def test_an_empty_trace_serves_nothing():
    result = serve([], Linear(), scheduler=Scheduler("static"), kv=KVConfig(10))
    assert result.requests == result.rejected == result.steps == ()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_counts_finished_requests_on_a_terminal_once_the_delay_has_passed(monkeypatch):
    monkeypatch.setattr(progress, "DELAY_S", 0)
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    run(requests((0.0, 4, 2), (0.0, 4, 3)), "continuous")
    assert "serve: continuous" in err.getvalue() and "req" in err.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    serve(requests((0.0, 4, 2)), Linear(), scheduler=Scheduler("static"), kv=KVConfig(10), progress=QUIET)
    assert quiet.getvalue() == ""
