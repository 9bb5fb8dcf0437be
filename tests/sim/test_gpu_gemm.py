"""sim/gpu_gemm.py, the tiled GEMM model of issue 21: tile and wave quantisation, split-K and
stream-K behave as designed, no GEMM beats the datasheet floor, bad parameters are refused, and
the fitted parameters reproduce the tables of docs/validation.md (tools/gpu_gemm_fit.py)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from arch import ArchError, load_arch
from arch.config import build
from arch.gpu import TiledGemm
from sim.gpu_gemm import (CONFIGS, Config, config_times_s, datasheet_floor_s, gemm_kernel, gemm_time_s,
                          load_params)

ROOT = Path(__file__).parents[2]
A100, H100 = "gpu-a100-80gb", "gpu-h100-sxm"
GPUS = {name: load_arch(name) for name in (A100, H100, "gpu-h200", "gpu-t4")}
# What docs/validation.md reports held out, against min: (points, mean |error|, worst, beyond 30 %).
HELD_OUT = {"a100": (836, 0.069, -0.402, 13), "h100": (631, 0.083, 0.292, 0)}
# Compute-bound on purpose: memory, ramp, floor and the split-K / stream-K costs out of the way.
COMPUTE = TiledGemm(clock_frac=1.0, k_half=0.0, operand_tbps=1000.0, mem_frac=1.0, ramp_us=0.0,
                     floor_us=0.0, splitk_us=1e4, streamk_us=1e4)


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("gpu_gemm_fit", ROOT / "tools" / "gpu_gemm_fit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fitted(tool) -> dict[str, TiledGemm]:
    return load_params(tool.FIT_PATH)


@pytest.fixture(scope="module")
def error_table(tool, fitted) -> dict:
    return tool.error_table(fitted)


def config_time(m: int, n: int, k: int, gpu: str, p: TiledGemm, config: Config) -> float:
    return float(config_times_s(m, n, k, GPUS[gpu], p)[CONFIGS.index(config)])


# --- mechanisms ------------------------------------------------------------------------------

def test_an_extra_row_of_tiles_costs_a_whole_wave():
    # 7680 / 128 = 60 column tiles: M = 128 is one wave of 60 tiles on 108 SMs, M = 129 two rows
    # of tiles (120) and so two waves; anything up to M = 256 fills the same two rows.
    tile = Config(128, 128)
    t128, t129, t256 = (config_time(m, 7680, 4096, A100, COMPUTE, tile) for m in (128, 129, 256))
    assert t129 == pytest.approx(2 * t128) and t256 == t129


def test_the_last_partial_wave_is_paid_in_full():
    # 9 x 12 = 108 tiles: one wave on 108 SMs; 10 x 11 = 110: two, the second holding two tiles.
    tile = Config(128, 128)
    one, two = (config_time(128 * rows, 128 * cols, 4096, A100, COMPUTE, tile) for rows, cols in ((9, 12), (10, 11)))
    assert two == pytest.approx(2 * one)


def test_stream_k_spreads_the_partial_wave():
    stream = Config(128, 128, stream_k=True)
    p = dataclasses.replace(COMPUTE, streamk_us=0.0)
    one, two = (config_time(128 * rows, 128 * cols, 4096, A100, p, stream) for rows, cols in ((9, 12), (10, 11)))
    assert two / one == pytest.approx(110 / 108, rel=0.01)


def test_fitted_a100_pays_for_a_tile_row_at_129_then_flat(fitted):
    # Llama-3-8B's down projection (K 14336 -> N 4096), the example shape.
    p = fitted[A100]
    t = {m: float(gemm_time_s(m, 4096, 14336, GPUS[A100], p)) for m in (128, 129, 160, 192)}
    assert t[129] > 1.15 * t[128]
    assert t[129] == t[160] == t[192]


def test_split_k_for_a_small_m_and_a_deep_k():
    # 8 tiles of 128x128 leave 100 of 108 SMs idle; split-K puts them to work.
    p = dataclasses.replace(COMPUTE, splitk_us=1.0)
    picked = gemm_kernel(128, 1024, 16384, GPUS[A100], p)
    assert picked.config.split > 1 and not picked.config.stream_k and picked.bound == "memory"
    no_split = config_time(128, 1024, 16384, A100, p, Config(128, 128))
    assert picked.time_s < no_split / 4


def test_operand_bandwidth_favours_larger_tiles():
    # Every tile operand-bound: a 64x64 tile does a quarter of a 128x128 tile's work at half its
    # rate (2 x 64 x 64 / (128 x 2 B) = 32 FLOPs per operand byte against 64).
    p = dataclasses.replace(COMPUTE, operand_tbps=2.0)
    big, small = (config_time(t, t, 4096, A100, p, Config(t, t)) for t in (128, 64))
    assert small == pytest.approx(big / 2)


def test_memory_bound_gemv_streams_the_weights(fitted):
    p = fitted[H100]
    picked = gemm_kernel(1, 12288, 12288, GPUS[H100], p)
    weights_s = 2 * 12288 * 12288 / (p.mem_frac * GPUS[H100].mem_bw_bytes_per_s)
    assert picked.bound == "memory"
    assert picked.time_s == pytest.approx(weights_s + p.ramp_us * 1e-6, rel=1e-3)


def test_array_and_scalar_forms_agree(fitted):
    m, n, k = np.array([1, 136, 4096]), np.array([4096, 14336, 6144]), np.array([14336, 4096, 4096])
    times = gemm_time_s(m, n, k, GPUS[A100], fitted[A100])
    assert times.tolist() == [gemm_kernel(*s, GPUS[A100], fitted[A100]).time_s for s in zip(m, n, k)]


@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 1 << 16), n=st.integers(1, 1 << 16), k=st.integers(1, 1 << 16),
       dtype_bytes=st.sampled_from((1, 2, 4)), gpu=st.sampled_from(sorted(GPUS)),
       p=st.builds(TiledGemm, clock_frac=st.floats(0.01, 1.0), k_half=st.floats(0, 1e3),
                   operand_tbps=st.floats(0.01, 100.0), mem_frac=st.floats(0.01, 1.0),
                   ramp_us=st.floats(0, 50), floor_us=st.floats(0, 50), splitk_us=st.floats(0, 50),
                   streamk_us=st.floats(0, 500)))
def test_no_gemm_beats_the_datasheet_floor(m, n, k, dtype_bytes, gpu, p):
    floor = float(datasheet_floor_s(m, n, k, GPUS[gpu], dtype_bytes))
    assert gemm_kernel(m, n, k, GPUS[gpu], p, dtype_bytes).time_s >= floor * (1 - 1e-12)


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, expected", [
    ("clock_frac", 1.5, "a number above 0 and at most 1"),
    ("mem_frac", 0.0, "a number above 0 and at most 1"),
    ("operand_tbps", 0.0, "a number above 0 and at most 10000 TB/s"),
    ("ramp_us", -1.0, "a number from 0 to 1000000 us"),
    ("k_half", float("nan"), "a number from 0 to 1048576 elements of K"),
    ("floor_us", True, "a number from 0 to 1000000 us"),
])
def test_bad_parameters_are_refused(field, value, expected):
    table = {**dataclasses.asdict(COMPUTE), field: value}
    with pytest.raises(ArchError, match=fr"^x.toml: field 'tiled_gemm.{field}' must be {expected}, "
                                        fr"got {value!r}$"):
        build(TiledGemm, table, "x.toml", "tiled_gemm.")


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"GEMM m must be positive integers, got \[0.0\]"):
        gemm_time_s(0, 1, 1, GPUS[A100], COMPUTE)
    with pytest.raises(ValueError, match=r"GEMM k must be positive integers, got \[1.5\]"):
        gemm_time_s(1, 1, 1.5, GPUS[A100], COMPUTE)
    with pytest.raises(ValueError, match=r"dtype_bytes must be 0.5, 1, 2 or 4, got 3"):
        gemm_time_s(1, 1, 1, GPUS[A100], COMPUTE, dtype_bytes=3)


def test_bad_parameter_files_are_refused(tmp_path):
    good = dataclasses.asdict(COMPUTE)
    cases = {"missing.json": None,
             "text.json": "not json",
             "empty.json": {"params": {}},
             "none.json": {"params": {A100: {**good, "floor_us": None}}},
             "field.json": {"params": {A100: {k: v for k, v in good.items() if k != "ramp_us"}}},
             "value.json": {"params": {A100: {**good, "clock_frac": 2.0}}}}
    messages = {"missing.json": r"missing.json: cannot read",
                "text.json": r"text.json: not a JSON file",
                "empty.json": r"empty.json: field 'params' must be a table of GPU presets, got \{\}",
                "none.json": r"none.json: field 'params.gpu-a100-80gb.floor_us' must be a number from 0 "
                              r"to 1000000 us, got None",
                "field.json": r"field.json: missing field 'params.gpu-a100-80gb.ramp_us'",
                "value.json": r"value.json: field 'params.gpu-a100-80gb.clock_frac' must be a number "
                              r"above 0 and at most 1, got 2.0"}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(ArchError, match=messages[name]):
            load_params(path)


# --- the fitted parameters and the tables of docs/validation.md ------------------------------

def test_docs_carry_the_generated_tables(tool, fitted, error_table):
    docs = (ROOT / "docs" / "validation.md").read_text()
    assert tool.params_table(fitted) in docs
    assert tool.table(error_table) in docs
    assert tool.reference_table(fitted) in docs


def test_stored_errors_are_the_fitted_parameters_errors(tool, error_table):
    stored = json.loads(tool.FIT_PATH.read_text())["errors"]
    assert stored.keys() == error_table.keys()
    for gpu, parts in error_table.items():
        for part, stats in parts.items():
            for stat, models in stats.items():
                for model, e in models.items():
                    assert stored[gpu][part][stat][model] == pytest.approx(e, rel=1e-9), (gpu, part, stat, model)


@pytest.mark.parametrize("gpu", sorted(HELD_OUT))
def test_held_out_errors_as_reported(error_table, gpu):
    new, today = (error_table[gpu]["held out"]["min_ms"][m] for m in ("tiled", "curve"))
    points, mean, worst, beyond = HELD_OUT[gpu]
    assert (new["count"], round(new["mean_abs"], 3), round(new["worst"], 3), new["beyond_30pct"]) == \
        (points, mean, worst, beyond)
    assert new["count"] >= 500 and new["mean_abs"] < 0.10          # the bar, mean part
    assert new["mean_abs"] < today["mean_abs"]


def test_tiled_model_beats_the_curve_everywhere(error_table):
    for gpu, parts in error_table.items():
        for part, stats in parts.items():
            for stat, models in stats.items():
                assert models["tiled"]["mean_abs"] < models["curve"]["mean_abs"], (gpu, part, stat)
                assert abs(models["tiled"]["worst"]) < abs(models["curve"]["worst"]), (gpu, part, stat)


@pytest.mark.slow
def test_the_fit_reproduces_the_stored_parameters(tool, fitted):
    for gpu, parts in tool.split().items():
        preset = tool.GPUS[gpu]
        assert tool.fit(parts["fit"], preset) == fitted[preset]


# --- the model in the baseline (sim/gpu.py) --------------------------------------------------

def test_presets_carry_the_stored_fit(fitted):
    chips = {"gpu-a100-80gb": A100, "gpu-a100-40gb": A100, "gpu-h100-sxm": H100, "gpu-h200": H100}
    for preset, fit in chips.items():
        assert load_arch(preset).tiled_gemm == fitted[fit], preset
    for preset in ("gpu-t4", "gpu-v100", "gpu-rtx-a6000"):
        assert load_arch(preset).tiled_gemm is None, preset


@pytest.mark.parametrize("preset", ("gpu-a100-80gb", "gpu-h200"))
def test_the_baseline_prices_a_gemm_as_the_model_does(preset):
    from sim.gpu import Kernel, kernel_time
    gpu = load_arch(preset)
    for m, n, k in ((1, 4096, 4096), (136, 8192, 1024), (4096, 14336, 4096)):
        kernel = Kernel("x", "gemv" if m <= 16 else "gemm", 2 * m * n * k, 2 * (m * k + k * n + m * n), m, n, k)
        timed = kernel_time(kernel, gpu, "graph")
        assert timed.time_s - timed.overhead_s == pytest.approx(float(gemm_time_s(m, n, k, gpu, gpu.tiled_gemm)))
    # a batched kernel is its batch's tiles in one launch: 12 heads of 256 x 256 are the tiles
    # (and split-K partials) of one GEMM of 12 x 256 rows, whatever the tile shape
    work, n_bytes = 2 * 12 * 256 * 256 * 64, 2 * 12 * 3 * 256 * 64
    heads = kernel_time(Kernel("x", "attention-matmul", work, n_bytes, 256, 256, 64, batch=12), gpu, "graph")
    rows = kernel_time(Kernel("x", "attention-matmul", work, n_bytes, 12 * 256, 256, 64), gpu, "graph")
    assert (heads.compute_s, heads.memory_s) == pytest.approx((rows.compute_s, rows.memory_s))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 1 << 14), n=st.integers(1, 1 << 14), k=st.integers(1, 1 << 14),
       batch=st.integers(1, 64), mma=st.sampled_from(("fp16", "int8")), gpu=st.sampled_from((A100, H100)))
def test_no_batched_or_narrow_kernel_beats_its_floor(m, n, k, batch, mma, gpu):
    """Through sim/gpu.py: the tiles of a batched or low-precision kernel never finish faster
    than its work at its format's datasheet peak, or its bytes at the datasheet bandwidth."""
    from sim.gpu import Kernel, floor_s, kernel_time
    arch = GPUS[gpu]
    if mma != "fp16" and mma not in arch.tensor_tops:
        mma = "fp8"
    width = 2 if mma == "fp16" else 1
    kernel = Kernel("x", "attention-matmul", 2 * batch * m * n * k, batch * width * (m * k + k * n + m * n),
                    m, n, k, batch=batch, mma=mma)
    timed = kernel_time(kernel, arch, "graph")
    assert timed.time_s - timed.overhead_s >= floor_s(kernel, arch) * (1 - 1e-12)
