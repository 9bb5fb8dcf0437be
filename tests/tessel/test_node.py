"""`tessel sim --devices N`: a tensor-parallel plan compiled for each target, simulated on one
node, its logits against one device's reference and its figures per device."""

from __future__ import annotations

import json

import pytest

from tessel.cli import main
from tests.conftest import FIXTURES

BF16_TOLERANCE = 3e-2          # as one device: BF16 storage, fp32 accumulation (docs/validation.md)
LLAMA = str(FIXTURES / "tiny-qwen3")     # GQA with 2 KV heads: one per rank at tp 2


def sim(capsys, tmp_path, *argv: str) -> dict:
    out = tmp_path / "node.json"
    code = main(["sim", *argv, "--gpu", "none", "--json", str(out)])
    capsys.readouterr()
    assert code == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("target", ["systolic", "pim", "dataflow"])
@pytest.mark.parametrize("phase", [("--seq", "5"), ("--phase", "decode", "--kv", "4")],
                         ids=["prefill", "decode"])
def test_tensor_parallel_logits_match_one_device(capsys, tmp_path, target, phase):
    report = sim(capsys, tmp_path, "--model", LLAMA, "--target", target, *phase,
                 "--devices", "2", "--tp", "2")
    assert report["logits_rel_error"] < BF16_TOLERANCE
    layers = 2 * json.loads((FIXTURES / "tiny-qwen3" / "config.json").read_text())["num_hidden_layers"]
    assert [c["kind"] for c in report["collectives"]] == ["all_reduce"] * layers
    assert all(c["members"] == [0, 1] for c in report["collectives"])
    first, second = report["devices"]
    assert first["cycles"] == second["cycles"] == report["cycles"]
    assert first["link_busy_cycles"] == sum(c["cycles"] for c in report["collectives"])
    assert 0 < first["exposed_comm_cycles"] <= first["link_busy_cycles"]


def test_timing_only_node_reports_tokens_per_second_and_gpu_nodes(capsys, tmp_path):
    out = tmp_path / "node.json"
    assert main(["sim", "--model", "gpt2", "--seq", "8", "--devices", "2", "--no-functional",
                 "--gpu", "h100-sxm", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["tokens_per_s"] == pytest.approx(8 / report["time_s"])
    assert report["link"]["name"] == "tpu-v4-ici" and report["plan"]["tp"] == 2
    assert "gpu-h100-sxm" in report["gpu"] and "GPU nodes (2 GPUs" in text


@pytest.mark.parametrize("argv, message", [
    (["--tp", "2"], r"^error: --tp: only with --devices N$"),
    (["--devices", "2", "--link", "nvlink9"], r"unknown link 'nvlink9'"),
    (["--devices", "5"], r"--tp 5: .*not divisible by 5"),
    (["--devices", "2", "--pp", "2", "--tp", "1"],
     r"--pp 2: pipeline stages are checked by the reference but not yet simulated"),
    (["--devices", "2", "--set-link", "link_bw_gbps=-1"], r"link_bw_gbps"),
])
def test_bad_plans_are_one_line_and_status_2(capsys, argv, message):
    import re
    code = main(["sim", "--model", "gpt2", "--seq", "4", "--no-functional", "--gpu", "none", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(message, err[0]), err
