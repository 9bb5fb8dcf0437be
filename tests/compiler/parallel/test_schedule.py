"""The forward-only pipeline schedule: dependencies, makespan and the GPipe bubble share."""
from fractions import Fraction

import pytest

from compiler.parallel.plan import PlanError
from compiler.parallel.schedule import pipeline_schedule


@pytest.mark.parametrize("stages", [1, 2, 4, 8])
@pytest.mark.parametrize("microbatches", [1, 3, 4, 32])
@pytest.mark.parametrize("t", [3, Fraction(7, 3)])
def test_equal_stages_leave_a_bubble_of_p_minus_1_over_m_plus_p_minus_1(stages, microbatches, t):
    schedule = pipeline_schedule([t] * stages, microbatches)
    assert schedule.makespan_s == (microbatches + stages - 1) * t
    expected = Fraction(stages - 1, microbatches + stages - 1)
    # exact: a Fraction for Fraction times, the correctly rounded float for integer times
    assert schedule.bubble_share == (expected if isinstance(t, Fraction) else float(expected))


def test_a_stage_waits_for_the_stage_before_and_for_itself():
    schedule = pipeline_schedule([1, 3, 2], 3)
    assert schedule.start_s == ((0, 1, 2), (1, 4, 7), (4, 7, 10))
    assert schedule.end_s == ((1, 2, 3), (4, 7, 10), (6, 9, 12))
    assert schedule.makespan_s == 12
    assert schedule.busy_s == 18                            # 3 x (1 + 3 + 2)
    assert schedule.bubble_share == Fraction(36 - 18, 36)   # 3 stages x 12 s, half idle


@pytest.mark.parametrize("stage_s, microbatches, message", [
    ([], 2, r"stage times \[\]: need at least one, each positive and finite"),
    ([1, 0], 2, r"stage times \[1, 0\]"),
    ([1, float("inf")], 2, r"stage times \[1, inf\]"),
    ([1, "2"], 2, r"stage times \[1, '2'\]"),
    ([1], 0, "microbatches 0: must be a positive integer"),
    ([1], 2.0, "microbatches 2.0: must be a positive integer"),
])
def test_bad_schedules_are_refused(stage_s, microbatches, message):
    with pytest.raises(PlanError, match=message):
        pipeline_schedule(stage_s, microbatches)
