"""tessel/serve/workload.py: the Request record's checks, length specs and seeded synthetic workloads."""
import numpy as np
import pytest

from tessel.serve import Lengths, Request, ServeError, parse_lengths, synthetic


@pytest.mark.parametrize("fields, message", [
    ((-1.0, 4, 4), r"request 0: arrival_s must be a finite number >= 0, got -1.0"),
    ((float("nan"), 4, 4), r"request 0: arrival_s must be a finite number >= 0, got nan"),
    ((0.0, 0, 4), r"request 0: prompt_tokens must be an integer >= 1, got 0"),
    ((0.0, 4, 2.0), r"request 0: output_tokens must be an integer >= 1, got 2.0"),
    ((0.0, True, 4), r"request 0: prompt_tokens must be an integer >= 1, got True"),
])
def test_a_request_is_checked_when_built(fields, message):
    with pytest.raises(ServeError, match=message):
        Request(0, *fields)


def test_a_request_id_is_a_non_negative_integer():
    with pytest.raises(ServeError, match=r"request id must be an integer >= 0, got '7'"):
        Request("7", 0.0, 1, 1)


def test_a_request_holds_at_most_prompt_plus_output_minus_one_tokens_of_kv():
    assert Request(0, 0.0, 10, 5).kv_tokens_max == 14


def test_length_specs_parse():
    assert parse_lengths("fixed:128") == Lengths("fixed", (128.0,))
    assert parse_lengths("uniform:64, 512") == Lengths("uniform", (64.0, 512.0))
    assert parse_lengths("lognormal:512,0.8") == Lengths("lognormal", (512.0, 0.8))
    assert parse_lengths("lognormal:512,0.8,4096") == parse_lengths("lognormal:512,0.8,max=4096")
    assert str(parse_lengths("lognormal:512,0.8,max=4096")) == "lognormal:512,0.8,max=4096"


@pytest.mark.parametrize("spec, why", [
    ("normal:5,1", r"unknown distribution 'normal'"),
    ("fixed", r"fixed takes 1 value, got 0"),
    ("fixed:1,2", r"fixed takes 1 value, got 2"),
    ("fixed:0", r"N '0' is not an integer >= 1"),
    ("fixed:2.5", r"N '2.5' is not an integer >= 1"),
    ("uniform:9,3", r"the low end 9 is above the high end 3"),
    ("uniform:1", r"uniform takes 2 values, got 1"),
    ("lognormal:0,1", r"the median '0' is not a finite number > 0"),
    ("lognormal:100,inf", r"sigma 'inf' is not a finite number >= 0"),
    ("lognormal:100,1,max=0", r"the max '0' is not an integer >= 1"),
    ("lognormal:1,2,3,4", r"lognormal takes 2 or 3 values, got 4"),
])
def test_a_bad_length_spec_is_refused_in_one_line_naming_it(spec, why):
    with pytest.raises(ServeError, match=f"^prompt lengths '{spec}': {why} \\(expected fixed:N") as error:
        parse_lengths(spec, what="prompt lengths")
    assert "\n" not in str(error.value)


def test_synthetic_is_reproducible_and_seeded():
    one = synthetic(50, 4.0, "lognormal:512,0.8,max=4096", "uniform:1,64", seed=3)
    assert one == synthetic(50, 4.0, "lognormal:512,0.8,max=4096", "uniform:1,64", seed=3)
    assert one != synthetic(50, 4.0, "lognormal:512,0.8,max=4096", "uniform:1,64", seed=4)
    assert [r.id for r in one] == list(range(50))


def test_synthetic_lengths_stay_in_their_ranges_and_arrivals_are_poisson_at_the_rate():
    requests = synthetic(4000, 8.0, "lognormal:100,1.5,max=300", "uniform:2,5", seed=0)
    prompts = np.array([r.prompt_tokens for r in requests])
    outputs = np.array([r.output_tokens for r in requests])
    arrivals = np.array([r.arrival_s for r in requests])
    assert prompts.min() >= 1 and prompts.max() == 300 and abs(np.median(prompts) - 100) < 10
    assert set(outputs) == {2, 3, 4, 5}
    gaps = np.diff(arrivals)
    assert (gaps >= 0).all() and abs(gaps.mean() - 1 / 8.0) < 0.01
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05        # exponential gaps: CV 1
    assert all(round(a, 6) == a for a in arrivals)            # microseconds: a written trace reads back


def test_fixed_lengths_and_bad_arguments():
    assert {r.prompt_tokens for r in synthetic(5, 1.0, "fixed:7", "fixed:1")} == {7}
    with pytest.raises(ServeError, match=r"synthetic: rate must be a finite number of requests/s > 0, got 0"):
        synthetic(5, 0, "fixed:7", "fixed:1")
    with pytest.raises(ServeError, match=r"synthetic: n must be an integer >= 1, got 0"):
        synthetic(0, 1.0, "fixed:7", "fixed:1")
    with pytest.raises(ServeError, match=r"^output lengths 'fixed:x'"):
        synthetic(5, 1.0, "fixed:7", "fixed:x")
