"""tessel/serve/step.py: shapes ignore request ids and order, bucketing rounds contexts up,
Memo asks the model once per distinct shape, and costs and entries are checked."""
import pytest

from tessel.serve import Memo, ServeError, Step, StepCost, StepEntry, StepShape

from tests.serve.toy import Linear


def step(*parts: tuple[int, str, int, int]) -> Step:
    return Step(tuple(StepEntry(*p) for p in parts))


def test_a_shape_is_the_sorted_entries_without_request_ids():
    one = StepShape.of(step((1, "decode", 1, 40), (2, "prefill", 16, 0), (3, "decode", 1, 7)))
    other = StepShape.of(step((9, "decode", 1, 7), (5, "decode", 1, 40), (4, "prefill", 16, 0)))
    assert one == other and hash(one) == hash(other)
    assert one.entries == (("decode", 1, 7), ("decode", 1, 40), ("prefill", 16, 0))
    assert (one.batch, one.tokens, one.prefill_tokens, one.decodes) == (3, 18, 16, 2)


def test_bucketing_rounds_contexts_up_to_a_multiple():
    shape = StepShape.of(step((1, "decode", 1, 17), (2, "decode", 1, 32), (3, "prefill", 8, 0),
                              (4, "prefill", 8, 1)), kv_bucket=16)
    assert shape.entries == (("decode", 1, 32), ("decode", 1, 32), ("prefill", 8, 0), ("prefill", 8, 16))
    assert StepShape.of(step((1, "decode", 1, 17)), kv_bucket=1).entries == (("decode", 1, 17),)


class Counting:
    """The toy cost, remembering every shape it was asked for."""

    def __init__(self) -> None:
        self.asked: list[StepShape] = []

    def cost(self, shape: StepShape) -> StepCost:
        self.asked.append(shape)
        return Linear().cost(shape)


def test_memo_asks_the_model_once_per_distinct_shape():
    model = Counting()
    memo = Memo(model)
    shapes = [StepShape.of(step((i, "decode", 1, c))) for i, c in enumerate([5, 6, 5, 5, 6, 7])]
    costs = [memo.cost(s) for s in shapes]
    assert model.asked == [shapes[0], shapes[1], shapes[5]]
    assert (memo.calls, memo.hits) == (3, 3)
    assert costs[0] is costs[2] and costs[0] == Linear().cost(shapes[0])


def test_memo_refuses_a_model_that_returns_no_step_cost():
    class Bad:
        def cost(self, shape):
            return 1.0
    with pytest.raises(TypeError, match="Bad.cost returned float, expected StepCost"):
        Memo(Bad()).cost(StepShape.of(step((0, "decode", 1, 1))))


@pytest.mark.parametrize("make, message", [
    (lambda: StepCost(0.0), r"step cost: seconds must be a finite number > 0, got 0.0"),
    (lambda: StepCost(float("inf")), r"step cost: seconds must be a finite number > 0, got inf"),
    (lambda: StepCost(1.0, -1.0), r"step cost: energy_j must be a finite number >= 0, got -1.0"),
    (lambda: StepEntry(3, "decode", 2, 5), r"step entry of request 3: a decode of 2 tokens at context 5"),
    (lambda: StepEntry(3, "prefill", 0, 0), r"step entry of request 3: a prefill of 0 tokens"),
    (lambda: StepEntry(3, "verify", 1, 0), r"step entry of request 3: kind must be prefill or decode"),
    (lambda: step((1, "decode", 1, 5), (1, "decode", 1, 5)), r"a step holds a request twice: \[1, 1\]"),
])
def test_costs_entries_and_steps_are_checked(make, message):
    with pytest.raises(ServeError, match=message):
        make()
