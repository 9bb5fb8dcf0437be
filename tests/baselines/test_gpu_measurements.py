"""baselines/gpu_measurements.py: the committed Vidur per-operator measurements load into typed
records, their GEMM shapes match the models' published widths, malformed files are refused with
file, line and column, and the fit / held-out split is disjoint, honest and deterministic."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_measurements", ROOT / "baselines" / "gpu_measurements.py")
gm = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = gm             # its dataclasses look their module up while it loads
spec.loader.exec_module(gm)

# Published configs (Hugging Face config.json): heads, KV heads, hidden, intermediate.
KNOWN = {"meta-llama/Meta-Llama-3-8B": (32, 8, 4096, 14336),
         "meta-llama/Llama-2-7b-hf": (32, 32, 4096, 11008),
         "meta-llama/Llama-2-70b-hf": (64, 8, 8192, 28672),
         "internlm/internlm-20b": (40, 40, 5120, 13824)}
ROWS = {"a100": 651, "h100": 480, "a40": 325}
MODEL_ROWS = {"a100": {"meta-llama/Meta-Llama-3-8B": 175, "meta-llama/Llama-2-7b-hf": 155,
                       "meta-llama/Llama-2-70b-hf": 159, "internlm/internlm-20b": 162},
              "h100": {"meta-llama/Llama-2-7b-hf": 157, "meta-llama/Llama-2-70b-hf": 159,
                       "internlm/internlm-20b": 164},
              "a40": {"meta-llama/Llama-2-7b-hf": 163, "internlm/internlm-20b": 162}}
SPLIT = {"a100": (1768, 836), "h100": (1289, 631), "a40": (685, 615)}     # (fit, held-out) GEMMs
PEAK_FP16_TFLOPS = {"a100": 312.0, "h100": 989.4, "a40": 149.7}          # dense, datasheets
# Vidur's profiled token counts (get_num_tokens_to_profile, max 32768).
TOKEN_GRID = ({1, 2, 4} | set(range(8, 1024, 8)) | set(range(1024, 2049, 16)) | set(range(2048, 4097, 32))
              | set(range(4096, 8193, 64)) | set(range(8192, 16385, 128)) | set(range(16384, 32769, 256)))


def header() -> str:
    return ",".join(gm.COLUMNS)


def good_line() -> list[str]:
    return (["meta-llama/Meta-Llama-3-8B", "32", "8", "4096", "14336", "128256", "True", "1", "128"]
            + ["0.05", "0.04"] * 4 + ["0.01"] * 6)


def write(tmp_path: Path, lines: list[str], name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("gpu", gm.GPUS)
def test_row_and_gemm_counts(gpu):
    rows = gm.load_gpu(gpu)
    assert len(rows) == ROWS[gpu]
    assert len(gm.gemm_points(rows)) == 4 * ROWS[gpu]
    counts = {}
    for r in rows:
        counts[r.model] = counts.get(r.model, 0) + 1
    assert counts == MODEL_ROWS[gpu]


def test_llama3_8b_shapes_from_the_data_columns():
    dims = next(r.dims for r in gm.load_gpu("a100") if r.model == "meta-llama/Meta-Llama-3-8B")
    assert dims.head_dim == 128
    assert gm.gemm_shapes(dims, 1) == {"attn_pre_proj": (4096, 6144), "attn_post_proj": (4096, 4096),
                                       "mlp_up_proj": (4096, 28672), "mlp_down_proj": (14336, 4096)}
    assert gm.gemm_shapes(dims, 8) == {"attn_pre_proj": (4096, 768), "attn_post_proj": (512, 4096),
                                       "mlp_up_proj": (4096, 3584), "mlp_down_proj": (1792, 4096)}


@pytest.mark.parametrize("gpu", gm.GPUS)
def test_model_columns_match_published_configs_and_shard_evenly(gpu):
    for r in gm.load_gpu(gpu):
        d = r.dims
        assert (d.n_head, d.n_kv_head, d.n_embd, d.n_expanded_embd) == KNOWN[r.model], r.source
        assert d.use_gated_mlp and d.head_dim == 128
        qkv, out, up, down = (gm.gemm_shapes(d, r.tp)[op] for op in gm.GEMM_OPS)
        assert qkv[1] * r.tp == (d.n_head + 2 * d.n_kv_head) * 128 and out[0] * r.tp == d.n_head * 128
        assert up[1] * r.tp == 2 * d.n_expanded_embd and down[0] * r.tp == d.n_expanded_embd
        assert qkv[0] == up[0] == out[1] == down[1] == d.n_embd


@pytest.mark.parametrize("gpu", gm.GPUS)
def test_values_are_on_vidurs_grid_and_under_the_datasheet_peak(gpu):
    points = gm.gemm_points(gm.load_gpu(gpu))
    assert {p.m for p in points} <= TOKEN_GRID
    for p in points:
        assert 0 < p.min_ms <= p.median_ms
        assert p.flops / (p.min_ms * 1e-3) < PEAK_FP16_TFLOPS[gpu] * 1e12, p


def test_split_is_disjoint_in_weight_shape_and_big_enough():
    points = gm.all_gemm_points()
    split = gm.split_gemms(points)
    assert len(split.fit) + len(split.held_out) == len(points)
    held_shapes = {(p.k, p.n) for p in split.held_out}
    assert held_shapes.isdisjoint({(p.k, p.n) for p in split.fit})
    assert all(p.model in gm.HELD_OUT_MODELS for p in split.held_out)
    fitted_models = {(p.k, p.n) for p in points if p.model not in gm.HELD_OUT_MODELS}
    assert not any(gm.near_shapes(h, f) for h in held_shapes for f in fitted_models)
    for gpu, (fit, held) in SPLIT.items():
        assert (sum(p.gpu == gpu for p in split.fit), sum(p.gpu == gpu for p in split.held_out)) == (fit, held)
        assert held >= 500


def test_split_is_deterministic_and_order_independent():
    points = gm.all_gemm_points()
    first, again, backwards = gm.split_gemms(points), gm.split_gemms(points), gm.split_gemms(points[::-1])
    assert first == again
    assert first.fit == backwards.fit[::-1] and first.held_out == backwards.held_out[::-1]


def test_row_split_holds_out_unfitted_widths():
    rows = [r for gpu in gm.GPUS for r in gm.load_gpu(gpu)]
    split = gm.split_rows(rows)
    assert len(split.fit) + len(split.held_out) == len(rows) == sum(ROWS.values())
    assert {r.dims.n_embd for r in split.held_out} == {5120}
    assert {r.dims.n_embd for r in split.fit}.isdisjoint({r.dims.n_embd for r in split.held_out})
    assert set(split.held_out[0].median_ms) == set(gm.GEMM_OPS + gm.OTHER_OPS)


def test_refuses_a_bad_number_naming_file_line_and_column(tmp_path):
    line = good_line()
    line[gm.COLUMNS.index("attn_pre_proj_median_ms")] = "fast"
    path = write(tmp_path, [header(), ",".join(good_line()), ",".join(line)])
    with pytest.raises(gm.MeasurementError,
                       match=r"bad\.csv:3: column 'attn_pre_proj_median_ms': expected a positive time in ms, got 'fast'"):
        gm.load_rows(path)


@pytest.mark.parametrize("column, value, expected", [
    ("num_tensor_parallel_workers", "3", "one of 1, 2, 4, 8"),
    ("num_tokens", "-8", "a positive integer"),
    ("use_gated_mlp", "yes", "True or False"),
    ("mlp_down_proj_min_ms", "nan", "a positive time in ms"),
])
def test_refuses_bad_cells(tmp_path, column, value, expected):
    line = good_line()
    line[gm.COLUMNS.index(column)] = value
    path = write(tmp_path, [header(), ",".join(line)])
    with pytest.raises(gm.MeasurementError, match=rf"bad\.csv:2: column '{column}': expected {expected}"):
        gm.load_rows(path)


def test_refuses_min_above_median_header_and_width_errors(tmp_path):
    line = good_line()
    line[gm.COLUMNS.index("mlp_up_proj_min_ms")] = "0.06"
    with pytest.raises(gm.MeasurementError, match=r"bad\.csv:2: column 'mlp_up_proj_min_ms': 0\.06 exceeds"):
        gm.load_rows(write(tmp_path, [header(), ",".join(line)]))
    renamed = header().replace("attn_rope_median_ms", "rope_ms")
    with pytest.raises(gm.MeasurementError, match=r"bad\.csv:1: column 'attn_rope_median_ms': header must be"):
        gm.load_rows(write(tmp_path, [renamed, ",".join(good_line())]))
    with pytest.raises(gm.MeasurementError, match=r"bad\.csv:2: expected 23 columns, got 22"):
        gm.load_rows(write(tmp_path, [header(), ",".join(good_line()[:-1])]))
    with pytest.raises(gm.MeasurementError, match=r"empty\.csv:1: empty file"):
        gm.load_rows(write(tmp_path, [], "empty.csv"))
    with pytest.raises(gm.MeasurementError, match=r"unknown GPU 'v100'"):
        gm.load_gpu("v100")
