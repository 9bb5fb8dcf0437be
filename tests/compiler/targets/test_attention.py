"""Fused attention (compiler/targets/attention.py) on the systolic and dataflow targets:
logits equal the reference within BF16 tolerance (and fp32 to ~1e-6) for GPT-2 and the
Llama family (grouped-query heads, a sliding window, decode against a KV cache), with the
planned blocks and with tiny forced blocks that exercise query chunks, skipped key blocks,
cached masks and the online rescaling across many key blocks."""
from __future__ import annotations

import json

import pytest

from isa import DType

import compiler.targets.attention_plan as attention_plan
import compiler.targets.dataflow.lowering as dataflow_lowering
from compiler.frontend import Model
from compiler.frontend.gpt2 import GPT2Config
from compiler.phase import decode, prefill
from compiler.targets.attention_blocks import AttentionBlocks, plan_blocks
from tessel.cli import main
from tessel.driver import run
from tessel.request import make_request
from tessel.targets import target
from tests.families.tiny import TINY

GPT2 = Model("g", GPT2Config("g", n_layer=2, n_head=4, n_embd=64, vocab_size=128, n_positions=128))
PRESET = {"systolic": "systolic-128", "dataflow": "sn40l"}


def _run(model: Model, tgt: str, phase, dtype: DType = DType.bf16, *sets: str):
    arch = target(tgt).load_arch(PRESET[tgt], list(sets))
    return run(make_request(model, tgt, arch, phase, numerics=True, dtype=dtype)).result


def _tiny_blocks(monkeypatch) -> None:
    """16 query rows per block, 8 keys per block, chunks of 4 rows."""
    def tiny(rows, t, d, isz, sram, acc, masked, window, key_block_max=None):
        return AttentionBlocks(min(rows, 16), 8, 4, masked)
    monkeypatch.setattr(attention_plan, "plan_blocks", tiny)
    monkeypatch.setattr(dataflow_lowering, "plan_blocks", tiny)


@pytest.mark.parametrize("tgt", ["systolic", "dataflow"])
@pytest.mark.parametrize("phase", [prefill(40), decode(17)], ids=["prefill", "decode"])
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_gpt2_fused_equals_the_reference(tgt, phase):
    r = _run(GPT2, tgt, phase)
    assert r.attention["mode"] == "fused" and r.logits_rel_error < 3e-2
    assert any(a.startswith("attention fused") for a in r.assumptions)
    assert _run(GPT2, tgt, phase, DType.fp32).logits_rel_error < 1e-6


@pytest.mark.parametrize("tgt", ["systolic", "dataflow"])
@pytest.mark.parametrize("name", ["tiny-mistral", "tiny-qwen3"])
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_small_blocks_mask_skip_and_rescale(monkeypatch, tgt, name):
    _tiny_blocks(monkeypatch)
    for phase in (prefill(40), decode(17)):
        r = _run(Model(name, TINY[name]), tgt, phase, DType.fp32)
        assert r.logits_rel_error < 1e-6, (phase, r.logits_rel_error)
        assert r.attention["chains"][0]["blocks"].endswith("key block 8, chunk 4")


@pytest.mark.slow
@pytest.mark.parametrize("tgt", ["systolic", "dataflow"])
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_family_fused_and_unfused_in_bf16(tgt, name):
    model = Model(name, TINY[name])
    for phase in (prefill(24), decode(13)):
        fused, unfused = _run(model, tgt, phase), _run(model, tgt, phase, DType.bf16, "attention=unfused")
        assert fused.attention["mode"] == "fused" and unfused.attention["mode"] == "unfused"
        assert fused.logits_rel_error < 3e-2 and unfused.logits_rel_error < 3e-2


def test_unfused_when_asked_and_when_nothing_fits():
    r = _run(GPT2, "systolic", prefill(40), DType.bf16, "attention=unfused")
    assert r.attention["mode"] == "unfused" and r.logits_rel_error < 3e-2
    assert any("set attention=unfused" in a for a in r.assumptions)
    assert plan_blocks(1024, 1024, 64, 2, 2048, 1024, True, False) is None


def test_blocks_grow_with_the_on_chip_memory():
    small, large = (plan_blocks(4096, 4096, 64, 2, kib << 10, kib << 7, True, False) for kib in (256, 4096))
    assert small.br < large.br and small.bc <= large.bc and small.br % small.brc == 0
    assert large.br == 4096 and large.brc & (large.brc - 1) == 0


def test_reports_show_attention_traffic_beside_the_bound(capsys, tmp_path):
    out = tmp_path / "r.json"
    assert main(["sim", "--model", "gpt2", "--target", "systolic", "--phase", "prefill", "--seq", "64",
                 "--no-functional", "--gpu", "none", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    a = json.loads(out.read_text())["attention"]
    assert a["mode"] == "fused" and a["chains_total"] == 12 and len(a["chains"]) == 12
    assert a["ratio"] == pytest.approx(a["offchip_bytes"] / a["bound_bytes"])
    c = a["chains"][0]
    assert c["compulsory_bytes"] == 2 * 64 * (12 * 64 + 12 * 64) * 2 and c["bound_bytes"] == c["compulsory_bytes"]
    assert "attention traffic / bound" in text and "attention I/O bound" in text


@pytest.mark.slow
def test_pim_reports_no_attention_figures(tmp_path):
    out = tmp_path / "r.json"
    assert main(["sim", "--model", "gpt2", "--target", "pim", "--phase", "decode", "--kv", "4",
                 "--no-functional", "--gpu", "none", "--json", str(out)]) == 0
    assert "attention" not in json.loads(out.read_text())


def test_dataflow_operator_sections_keep_a_chain_whole():
    model = Model("tiny-llama3", TINY["tiny-llama3"])
    r = _run(model, "dataflow", prefill(24), DType.fp32, "kernel_granularity=operator")
    assert r.attention["mode"] == "fused" and r.logits_rel_error < 1e-6


def test_decode_reads_a_grouped_kv_head_once():
    """tiny-mistral: 4 query heads share one KV head; decode merges them into one block."""
    r = _run(Model("tiny-mistral", TINY["tiny-mistral"]), "systolic", decode(17))
    c = r.attention["chains"][0]
    assert c["blocks"].startswith("query block 4,") and r.logits_rel_error < 3e-2
    assert c["offchip_bytes"] <= c["compulsory_bytes"] + 4 * 18 + 4     # + key/query positions
