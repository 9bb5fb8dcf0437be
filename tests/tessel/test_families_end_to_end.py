"""The Llama-family presets through the command line end to end: `tessel sim` with the GPU
rows, `tessel compare`, `tessel compile --routing`, and a tiny mixture of experts routed by
its router with numerics. Slow: each compiles and simulates a whole model on a target (they
need every target's lowering of rmsnorm, rope, silu, div, gather and concat)."""
from __future__ import annotations

import json
import re

import pytest

from arch import load_arch
from compiler.frontend import PRESETS, Model
from compiler.phase import prefill
from tessel.cli import main
from tessel.driver import run
from tessel.request import make_request
from tests.families.tiny import TINY

pytestmark = pytest.mark.slow

MIXTRAL_EXPERT_BF16 = 3 * 4096 * 14336 * 2       # gate, up, down of one expert


def test_sim_llama_reports_kv_bytes_and_gpu_rows(capsys, tmp_path):
    out = tmp_path / "r.json"
    assert main(["sim", "--model", "llama-3.2-1b", "--target", "systolic", "--phase", "decode",
                 "--kv", "16", "--gpu", "t4,a100-80gb", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(timing only)" in text and re.search(r"KV cache per token +32,768 B", text)
    report = json.loads(out.read_text())
    assert report["workload"] == {"kv_bytes_per_token": 32768}
    assert set(report["gpu"]) == {"gpu-t4", "gpu-a100-80gb"}
    assert report["gpu"]["gpu-t4"]["time_s"] > report["gpu"]["gpu-a100-80gb"]["time_s"] > 0


def test_sim_mixtral_reads_only_the_routed_experts(capsys, tmp_path):
    out = tmp_path / "r.json"
    assert main(["sim", "--model", "mixtral-8x7b", "--target", "dataflow", "--phase", "decode",
                 "--kv", "16", "--routing", "zipf:1.2", "--gpu", "t4,h200", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    w = json.loads(out.read_text())["workload"]
    assert w["routing"] == "zipf:1.2 (seed 0)" and w["kv_bytes_per_token"] == 131072
    assert w["experts_touched"] == [2] * 32 and sum(w["tokens_per_expert"]) == 64
    assert w["expert_weight_bytes"] == 64 * MIXTRAL_EXPERT_BF16
    assert "expert weights read  " in text and "note: gpu-t4 holds 16 GiB" in text
    assert "note: gpu-h200" not in text


def test_compare_llama_on_every_target(capsys):
    assert main(["compare", "--model", "llama-3.2-1b", "--targets", "systolic,pim,dataflow",
                 "--phase", "decode", "--kv", "16"]) == 0
    text = capsys.readouterr().out
    assert "(timing only)" in text and "speedup vs gpu-t4" in text
    assert re.search(r"KV cache per token +32,768 B +32,768 B +32,768 B", text)


def test_compare_mixtral_with_a_routing_policy(capsys):
    assert main(["compare", "--model", "mixtral-8x7b", "--targets", "dataflow", "--phase", "decode",
                 "--kv", "8", "--routing", "uniform"]) == 0
    text = capsys.readouterr().out
    assert "uniform (seed 0)" in text and f"{64 * MIXTRAL_EXPERT_BF16:,} B" in text


def test_compile_routes_a_moe_model_by_the_policy(capsys, tmp_path):
    out = tmp_path / "m.tbin"
    assert main(["compile", "--model", "qwen3-30b-a3b", "--target", "dataflow", "--phase", "decode",
                 "--kv", "4", "--routing", "zipf:2", "-o", str(out)]) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize("target", ["systolic", "pim", "dataflow"])
def test_a_tiny_moe_runs_on_its_routers_choice(target):
    model = Model("tiny-mixtral", TINY["tiny-mixtral"])
    arch = load_arch({"systolic": "systolic-128", "pim": "pim-gpt", "dataflow": "sn40l"}[target])
    result = run(make_request(model, target, arch, prefill(6))).result
    w = result.workload
    assert w["routing"].startswith("router") and sum(w["tokens_per_expert"]) == 2 * 6 * 2
    per_expert = 3 * 64 * 96 * 2
    assert w["expert_weight_bytes"] == sum(w["experts_touched"]) * per_expert
    assert result.logits_rel_error < 3e-2


def test_llama_8b_does_not_fit_pim_gpt_and_says_so(capsys):
    assert PRESETS["llama-3.1-8b"].n_params * 2 > 4 * 2**30          # pim-gpt holds 4 GiB
    assert main(["sim", "--model", "llama-3.1-8b", "--target", "pim", "--phase", "decode",
                 "--kv", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bytes" in err and err.count("\n") == 1


def test_llama_70b_runs_on_sn40l_with_its_ddr_weights_beyond_64_gib(tmp_path):
    """141 GB of weights: 64 GiB in HBM and the other 73 GB in DDR, which an A40 operand
    reaches since ISA version 2 (256 GiB; version 1's 64 GiB refused this model)."""
    out = tmp_path / "r.json"
    assert main(["sim", "--model", "llama-3.1-70b", "--target", "dataflow", "--phase", "decode",
                 "--kv", "16", "--no-functional", "--gpu", "none", "--json", str(out)]) == 0
    held = json.loads(out.read_text())["dataflow"]["tier_held_bytes"]
    assert held["ddr"] > 64 * 2**30 and held["hbm"] <= 64 * 2**30