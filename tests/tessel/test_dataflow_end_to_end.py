"""Dataflow target: simulated logits against the reference, granularities, tiers, errors."""
import json

import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from compiler.targets import CompileError
from tessel.cli import main
from tessel.driver import run
from tessel.request import make_request

pytestmark = pytest.mark.slow   # end-to-end: compiles and simulates whole models (make test, not make test-fast)

BF16_TOLERANCE = 3e-2          # as the systolic target: BF16 storage, fp32 accumulation
GRANULARITIES = ("operator", "layer", "model")


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("phase", [prefill(12), decode(11)], ids=str)
def test_logits_match_reference_at_every_granularity(tiny_hf, phase, granularity):
    arch = load_arch("dataflow-small", [f"kernel_granularity={granularity}"])
    outcome = run(make_request(load_model(str(tiny_hf)), "dataflow", arch, phase, numerics=True))
    assert outcome.result.logits_rel_error < BF16_TOLERANCE
    d = outcome.result.target_report
    assert d.granularity == granularity and d.calls >= 1


def test_gpt2_decode_on_sn40l_matches_reference_and_fusion_beats_per_operator():
    model = load_model("gpt2")
    times = {}
    for granularity in GRANULARITIES:
        arch = load_arch("sn40l", [f"kernel_granularity={granularity}"])
        outcome = run(make_request(model, "dataflow", arch, decode(8), numerics=granularity == "model"))
        times[granularity] = outcome.result.time_s
        if granularity == "model":
            assert outcome.result.logits_rel_error < BF16_TOLERANCE
    assert times["operator"] > times["layer"] > times["model"]


def test_gpt2_xl_decode_granularities_rank_as_the_paper():
    model = load_model("gpt2-xl")
    calls, times = {}, {}
    for granularity in GRANULARITIES:
        result = run(make_request(model, "dataflow", load_arch("sn40l", [f"kernel_granularity={granularity}"]), decode(32), numerics=False)).result
        times[granularity], calls[granularity] = result.time_s, result.target_report.calls
    assert times["operator"] > 2 * times["layer"] > 2 * times["model"]     # fusion: paper 2-13x
    assert times["layer"] > times["model"]                                # kernel looping
    assert calls["model"] < calls["layer"] < calls["operator"]


def test_weights_spill_to_ddr_when_hbm_is_full():
    arch = load_arch("dataflow-small", ["hbm_bytes=134217728"])         # 128 MiB < gpt2's 250 MB
    result = run(make_request(load_model("gpt2"), "dataflow", arch, decode(4), numerics=False)).result
    d = result.target_report
    assert d.tier_held_bytes["ddr"] > 0 and result.bytes["ddr_read"] > 0


def test_model_larger_than_hbm_plus_ddr_is_refused_with_sizes():
    arch = load_arch("dataflow-small", ["hbm_bytes=67108864", "ddr_bytes=134217728"])
    with pytest.raises(CompileError, match=r"gpt2-decode: weights \(.* bytes\) and activations \(.* bytes\) "
                                           r"exceed dataflow-small's HBM \(67,108,864 bytes\) \+ DDR "
                                           r"\(134,217,728 bytes\) = 201,326,592 bytes"):
        run(make_request(load_model("gpt2"), "dataflow", arch, decode(4), numerics=False))


def test_cli_sim_reports_dataflow_rows_and_coe_switches(capsys, tmp_path):
    assert main(["sim", "--model", "gpt2", "--target", "dataflow", "--phase", "decode", "--kv", "16",
                 "--gpu", "none", "--no-functional", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "PCU utilization" in out and "hbm traffic / occupancy" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["dataflow"]["sections"] >= report["dataflow"]["calls"]
    assert main(["coe", "--models", "gpt2,llama-3.1-8b", "--json", str(tmp_path / "c.json")]) == 0
    switches = json.loads((tmp_path / "c.json").read_text())["switches"]
    big = switches[1]
    # DDR (100 GB/s per socket) beats PCIe Gen5 (64 GB/s): 16.1 GB (the preset) in about 0.16 s vs 0.25 s
    assert 0.15 < big["switch_s"] < 0.17 and big["gpu_pcie_s"] > big["switch_s"]
    assert main(["coe", "--models", "gpt2", "--set", "hbm_bytes=1024"]) == 2
    assert "expert 'gpt2' needs 248," in capsys.readouterr().err
