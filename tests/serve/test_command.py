"""`tessel serve`: step costs from the simulator (or the GPU baseline), the KV cache from the
device's memory, every request served once, the outputs written, bad settings refused."""
from __future__ import annotations

import json

import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import Segment, Step
from tessel.cli import main
from tessel.serve import StepShape
from tessel.serve.args import TARGET_CHOICES
from tessel.serve.errors import ServeError
from tessel.serve.simulated import (SimulatedCosts, device_memory_bytes, kv_bytes_per_token,
                                    kv_capacity_tokens)
from tessel.targets import TARGETS
from tests.conftest import FIXTURES

TINY = str(FIXTURES / "tiny-qwen3")


def trace(tmp_path, rows) -> str:
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n"
                    + "".join(f"{a},{p},{o}\n" for a, p, o in rows))
    return str(path)


def serve(capsys, tmp_path, *argv) -> dict:
    out = tmp_path / "summary.json"
    code = main(["serve", "--model", TINY, *argv, "--json", str(out)])
    capsys.readouterr()
    assert code == 0
    return json.loads(out.read_text())


ROWS = [(0.0, 5, 4), (0.0, 3, 6), (0.001, 7, 3), (0.002, 4, 5), (0.01, 6, 2)]


@pytest.mark.slow      # the fast tier serves through --compare (systolic, gpu) below
@pytest.mark.parametrize("target, scheduler", [
    ("gpu", "continuous"), ("gpu", "sarathi"), ("systolic", "continuous"), ("systolic", "sarathi"),
    ("dataflow", "continuous"), ("dataflow", "sarathi")])
def test_a_trace_is_served_on_a_target_with_its_own_step_costs(capsys, tmp_path, target, scheduler):
    summary = serve(capsys, tmp_path, "--target", target, "--trace", trace(tmp_path, ROWS),
                    "--scheduler", scheduler, *(("--chunk", "4") if scheduler == "sarathi" else ()),
                    "--token-budget", "16",
                    "--max-batch", "4", "--out", str(tmp_path / "out"))
    assert summary["requests"] == {"total": 5, "finished": 5, "rejected": 0}
    assert summary["cost_model"]["distinct_shapes"] >= 2
    assert summary["ttft_s"]["p50"] > 0 and summary["energy"]["total_j"] > 0
    assert summary["target"]["target"] == target
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["latency_cdf.png", "requests.csv", "summary.json", "timeline.png", "trace.json"]


def test_a_request_the_cache_can_never_hold_is_reported(capsys, tmp_path):
    summary = serve(capsys, tmp_path, "--trace", trace(tmp_path, [(0, 4, 2), (0, 40, 8)]),
                    "--kv-blocks", "2", "--block-size", "8")
    assert summary["requests"] == {"total": 2, "finished": 1, "rejected": 1}
    assert "KV blocks" in summary["rejected"][0]["reason"]


@pytest.mark.slow
def test_a_request_beyond_the_models_context_is_rejected(capsys, tmp_path):
    limit = load_model(TINY).config.n_positions
    summary = serve(capsys, tmp_path, "--trace", trace(tmp_path, [(0, 4, 2), (0, limit, 2)]),
                    "--kv-bucket", "64")
    assert summary["requests"] == {"total": 2, "finished": 1, "rejected": 1}
    assert summary["rejected"][0]["reason"] == (f"needs {limit + 1} positions but the model's "
                                                f"context is {limit}")


@pytest.mark.parametrize("argv, method, bucket", [
    pytest.param(("--kv-bucket", "8"), "parts", 8, marks=pytest.mark.slow),
    pytest.param(("--step-cost", "whole", "--kv-bucket", "8"), "whole", 8, marks=pytest.mark.slow),
    pytest.param((), "parts", None, marks=pytest.mark.slow)])
def test_parts_and_buckets_report_their_error_on_steps_simulated_whole(capsys, tmp_path, argv,
                                                                         method, bucket):
    summary = serve(capsys, tmp_path, "--trace", trace(tmp_path, ROWS), *argv, "--check-steps", "3",
                    "--scheduler", "sarathi", "--chunk", "4", "--token-budget", "16",
                    "--max-batch", "4")
    error = summary["step_cost"]
    assert (error["method"], error["kv_bucket"], error["steps_checked"]) == (method, bucket, 3)
    # contexts of 3-12 tokens bucketed to 8 err by up to 20 % here; parts alone by a few %
    assert 0 <= error["mean_rel_error"] <= error["max_rel_error"] < (0.1 if bucket is None else 0.3)
    assert (error["parts_simulated"] is None) == (method == "whole")


@pytest.mark.slow
def test_exact_whole_steps_have_nothing_to_check(capsys, tmp_path):
    summary = serve(capsys, tmp_path, "--trace", trace(tmp_path, ROWS), "--step-cost", "whole")
    assert summary["step_cost"] == {"method": "whole", "kv_bucket": None, "token_grid": None,
                                    "parts_simulated": None}


@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_compare_serves_the_same_requests_on_each_target_and_gpu(capsys, tmp_path):
    out = tmp_path / "compare.json"
    code = main(["serve", "--model", TINY, "--trace", trace(tmp_path, ROWS), "--compare",
                 "systolic,gpu-a100-80gb", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "systolic" in text and "gpu-a100-80gb" in text
    runs = json.loads(out.read_text())
    assert list(runs) == ["systolic", "gpu-a100-80gb"]
    assert all(r["requests"]["finished"] == len(ROWS) for r in runs.values())
    assert runs["systolic"]["target"]["arch"] == "systolic-128"
    assert runs["systolic"]["ttft_s"] != runs["gpu-a100-80gb"]["ttft_s"]


@pytest.mark.parametrize("argv, message", [
    (("--compare", "systolic", "--arch", "systolic-32"), "--arch: not with --compare"),
    (("--compare", "systolic,sn40l"), "--compare sn40l: a dataflow architecture, not a GPU preset"),
    (("--target", "gpu", "--set", "rows=64"), "--set: not with --target gpu"),
    (("--target", "gpu", "--arch", "systolic-128"), "a systolic architecture, not a GPU preset"),
    (("--kv-bucket", "0"), "--kv-bucket 0: must be an integer >= 1"),
    (("--check-steps", "-1"), "--check-steps -1: must be an integer >= 0"),
    (("--step-cost", "whole", "--check-steps", "2"), "--check-steps: nothing to check"),
    (("--target", "gpu", "--step-cost", "parts"), "--step-cost: simulated targets only"),
    (("--token-grid", "1"), "--token-grid 1: must be an integer >= 2"),
    (("--step-cost", "whole", "--token-grid", "8"), "--token-grid: only with --step-cost parts"),
    (("--target", "gpu", "--token-grid", "8"), "--token-grid: only with --step-cost parts"),
    (("--requests", "50", "--seed", "3"), "--requests --seed: only with --rate"),
    (("--scheduler", "continuous", "--chunk", "64"), "--chunk: only with --scheduler sarathi"),
    (("--swap-link", "pcie5-x16"), "--swap-link: only with --preemption swap"),
    (("--routing", "zipf:1.2"), "has no experts to route"),
    (("--compare", "systolic", "--target", "systolic"), "--target: not with --compare"),
    (("--scheduler", "sarathi", "--chunk", "0"), "chunk must be an integer >= 1"),
])
def test_bad_serving_settings_are_one_line(capsys, tmp_path, argv, message):
    code = main(["serve", "--model", TINY, "--trace", trace(tmp_path, ROWS), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err


def test_the_kv_cache_is_the_memory_after_the_weights():
    model = load_model(TINY)
    arch = TARGETS["systolic"].load_arch()
    per_token = kv_bytes_per_token(model, 2)
    config = model.config
    assert per_token == config.kv_bytes(2)
    tokens = kv_capacity_tokens(model, device_memory_bytes(arch), 2)
    weights = sum(int(__import__("math").prod(op.type.shape)) for op in model.graph().params) * 2
    assert tokens == (arch.dram_bytes - weights) // per_token
    assert device_memory_bytes(load_arch("gpu-a100-80gb")) == 80 * 10**9
    with pytest.raises(ServeError, match="leave no room for a KV cache"):
        kv_capacity_tokens(load_model("llama-3.1-70b"), device_memory_bytes(arch), 2)


def test_a_step_shape_costs_what_its_step_graph_simulates():
    """The cost model is the simulator on the step's graph: a shape of equal decodes costs the
    batched decode."""
    model = load_model(TINY)
    arch = TARGETS["systolic"].load_arch()
    cost = SimulatedCosts(model, "systolic", arch).cost(StepShape((("decode", 1, 9),) * 3))
    spec = TARGETS["systolic"]
    program = spec.compile(model.graph(Step((Segment(1, 9),) * 3)), arch).program
    result = spec.simulate(program, arch, functional=False).result
    assert (cost.seconds, cost.energy_j) == (result.time_s, result.energy_j)


@pytest.mark.parametrize("target", ["systolic", pytest.param("dataflow", marks=pytest.mark.slow),
                                    pytest.param("pim", marks=pytest.mark.slow)])
@pytest.mark.parametrize("spec", [TINY, str(FIXTURES / "tiny-gpt2"),
                                  pytest.param(str(FIXTURES / "tiny-qwen3-moe"), marks=pytest.mark.slow)])
def test_a_steps_parts_add_up_to_its_whole_simulation_within_a_few_percent(spec, target):
    """Token-wise ops (one and two layers, extrapolated), each group's attention as what it
    adds to a reference group's, and the LM head, each simulated alone: their sum is the
    whole step's simulation but for the overlap of parts in the whole step. These steps take
    15-110 us, so a part's start and drain, and on PIM the refresh phase it meets, weigh more
    than on real models (docs/serving.md: within 0.4 % on systolic and PIM, 2.2 % on dataflow).
    PIM's tiny GEMVs read a MAC result every few columns, each read two mode switches of 32
    cycles, so its tiny steps err by up to 10.3 % (llama-3.2-1b: 0.2 %)."""
    from tessel.serve.simulated import SimulatedParts

    model, arch = load_model(spec), TARGETS[target].load_arch()
    whole, parts = SimulatedCosts(model, target, arch), SimulatedParts(model, target, arch)
    shapes = [(("decode", 1, 9),) * 3 + (("prefill", 5, 0),), (("decode", 1, 4), ("prefill", 3, 6))]
    for entries in shapes:
        shape = StepShape(tuple(sorted(entries)))
        exact, priced = whole.cost(shape), parts.cost(shape)
        bound = 0.12 if target == "pim" else 0.08
        assert priced.seconds == pytest.approx(exact.seconds, rel=bound)
        assert priced.energy_j == pytest.approx(exact.energy_j, rel=bound)
    assert parts.parts > 0


def test_a_token_grid_interpolates_token_counts_between_its_multiples():
    """Token-wise parts and prefill chunks off the grid are priced between the two multiples
    around them where the price at the middle lies on their line; where it steps (a tile or
    a buffer filled), the half that holds the count is taken, down to exact prices; on a
    multiple, below the first, or where the next passes the context, exactly."""
    from tessel.serve.simulated import SimulatedParts

    model, arch = load_model(TINY), TARGETS["systolic"].load_arch()
    grid = SimulatedParts(model, "systolic", arch, token_grid=8)

    def priced(fn):
        asked = []
        return asked, lambda n: asked.append(n) or fn(n)
    asked, line = priced(lambda n: (1.0 + n, 2.0 * n))
    assert grid._gridded(19, line, 100) == pytest.approx((20.0, 38.0)) and set(asked) == {16, 20, 24}
    asked, step = priced(lambda n: (1.0 + n + 50 * (n > 21), 0.0))
    assert grid._gridded(19, step, 100) == (20.0, 0.0) and 19 not in asked   # (16, 20] is a line
    assert grid._gridded(22, step, 100) == (73.0, 0.0) and 22 in asked       # the step: exact
    for tokens, most in ((16, 100), (5, 100), (19, 23)):
        asked, exact = priced(lambda n: (float(n), 0.0))
        assert grid._gridded(tokens, exact, most) == (tokens, 0.0) and asked == [tokens]
    def tokens(n):
        return StepShape((("prefill", n, 0),))
    exact = SimulatedParts(model, "systolic", arch)
    assert grid.cost(tokens(16)) == exact.cost(tokens(16))


def test_the_command_lists_every_target():
    assert set(TARGET_CHOICES) == {*TARGETS, "gpu"}


@pytest.mark.parametrize("spec", [TINY, str(FIXTURES / "tiny-gpt2"), str(FIXTURES / "tiny-qwen3-moe")])
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_the_gpu_prices_a_step_by_its_parts_as_its_whole_graph(spec):
    """Token-wise, LM-head and per-group parts, each priced once on one layer, add up to the
    whole step graph's kernels (ragged False); ragged attention launches once per role and
    layer, so a step of several groups costs less, and a step of one group the same."""
    import random

    from sim.gpu import gpu_baseline
    from tessel.gpu_kernels import graph_kernels
    from tessel.serve.simulated import GpuCosts, step_graph

    model, gpu = load_model(spec), load_arch("gpu-a100-80gb")
    exact, ragged = GpuCosts(model, gpu, ragged=False), GpuCosts(model, gpu)
    rng = random.Random(3)
    for _ in range(12):
        entries = [("decode", 1, rng.choice([3, 5, 8])) if rng.random() < 0.5
                   else ("prefill", rng.randint(1, 5), rng.choice([0, 4]))
                   for _ in range(rng.randint(1, 5))]
        shape = StepShape(tuple(sorted(entries)))
        whole = gpu_baseline(graph_kernels(step_graph(model, shape)), gpu)
        parts = exact.cost(shape)
        assert parts.seconds == pytest.approx(whole.time_s, rel=1e-12)
        assert parts.energy_j == pytest.approx(whole.energy_j, rel=1e-12)
        fused = ragged.cost(shape)
        if len(set(entries)) == 1:
            assert fused.seconds == pytest.approx(parts.seconds, rel=1e-12)
        else:
            assert fused.seconds < parts.seconds


def test_the_serving_bench_rows_are_valid_tessel_serve_invocations():
    from tessel.bench import SERVING
    from tessel.cli import build_parser
    for workload in SERVING:
        args = build_parser().parse_args(["serve", *workload.argv])
        assert args.handler.__name__ == "_cmd_serve" and args.requests == 1000
