"""The PIM target's placement step: abuf regions, the activation region and the PIM matrices."""
import re

import numpy as np
import pytest

from arch import load_arch
import isa
from isa import DType
from compiler.errors import CompileError
from compiler.frontend import load_model
from compiler.frontend.decoder import DecoderConfig, build_graph as build_decoder
from compiler.passes.routing import Routing, route_graph
from compiler.phase import decode, prefill
from compiler.pipeline import dump_after
from compiler.targets.pim import PIPELINE
from compiler.targets.pim import layout as pl
from tests.compiler.targets.pim_attention import attention_error, attention_graph
from tests.families.tiny import TINY


@pytest.fixture(scope="module")
def placement():
    graph = load_model("gpt2").graph(decode(8))
    return PIPELINE.run(graph, load_arch("pim-gpt"), until="placement")["placement"]


def test_linear_weights_split_into_output_blocks_and_caches_stay_whole(placement):
    blocks = placement.matrices["h.0.mlp.c_fc.weight"]
    assert [b.n0 for b in blocks] == list(range(0, 3072, blocks[0].outputs))
    assert sum(b.outputs for b in blocks) == 3072 and {b.kind for b in blocks} == {"linear"}
    assert [m.kind for m in placement.matrices["h.0.attn.k_all"]] == ["kcache"]
    rows = [m.layout.first_row for ms in placement.matrices.values() for m in ms]
    assert rows == sorted(rows)                  # regions one after another on fresh rows
    assert [s.name for s in placement.regions] == [m.symbol for ms in placement.matrices.values() for m in ms]


def test_dump_names_symbols_and_rows(placement):
    text = placement.dump()
    assert "  psum0: abuf[" in text and "activation region:" in text
    assert "  pim.h.0.mlp.c_fc.weight.0: linear of h.0.mlp.c_fc.weight columns 0.." in text
    assert ", rows " in text and " passes, " in text


def test_pim_compiles_bf16_only():
    graph = load_model("gpt2").graph(decode(2))
    with pytest.raises(CompileError, match="the PIM target computes in bf16"):
        dump_after(PIPELINE, graph, load_arch("pim-gpt"), DType.fp32, "precision")


@pytest.mark.parametrize("heads", [4, 2])
def test_a_head_dimension_off_the_mac_lanes_is_refused(heads):
    """q . K reduces over the head dimension in whole 16-lane MAC columns: a head of 8 (or 24)
    elements would leave lanes out of every score (silently wrong numbers and timing)."""
    from compiler.frontend import GPT2Config
    from compiler.frontend.gpt2 import build_graph
    n_embd = 32 if heads == 4 else 48
    graph = build_graph(GPT2Config("odd-heads", n_layer=1, n_head=heads, n_embd=n_embd, vocab_size=64,
                                   n_positions=16), decode(4))
    with pytest.raises(CompileError, match=rf"op 'h.0.attn.scores': head dimension {n_embd // heads} "
                                           r"\(the reduction of q . K\) is not a multiple of the 16 MAC lanes"):
        PIPELINE.run(graph, load_arch("pim-gpt"), until="placement")


# ---- grouped-query attention ---------------------------------------------------------------


def _place(graph, *overrides):
    return PIPELINE.run(graph, load_arch("pim-gpt", list(overrides)), until="placement")["placement"]


def test_gqa_kv_regions_hold_each_kv_head_once():
    """llama-3.2-1b (32 query heads, 8 KV heads of 64) decoding at 512 positions: every
    layer's K and V region is n_kv_heads x T x Dh x 2 bytes, a quarter of what placing the
    cache per query head takes."""
    model = load_model("llama-3.2-1b")
    c, arch = model.config, load_arch("pim-gpt")
    T, H, Hkv, Dh = 512, c.num_attention_heads, c.num_key_value_heads, c.head_dim_
    placement = _place(model.graph(decode(T - 1)))
    per_query_head = {"kcache": pl.kcache_layout("k", arch, 0, H, T, Dh).rows,
                      "vcache": pl.vcache_layout("v", arch, 0, H, T, Dh).rows}
    for layer in range(c.num_hidden_layers):
        for which, kind in (("k", "kcache"), ("v", "vcache")):
            (m,) = placement.matrices[f"layers.{layer}.self_attn.{which}_all"]
            assert m.kind == kind and m.layout.queries == H // Hkv
            assert m.layout.rows * arch.row_block_bytes == Hkv * T * Dh * 2
            assert per_query_head[kind] == m.layout.rows * H // Hkv
    assert not any(name.endswith(".groups") for name in placement.matrices)


@pytest.mark.parametrize("name", ["tiny-llama3", "tiny-mistral", "tiny-qwen3"])
def test_gqa_cache_cells_are_the_kv_heads(name):
    """The cells a decode cache is scattered into: exactly n_kv_heads x T x Dh elements
    (no copy per query head), each cache value once."""
    config, arch = TINY[name], load_arch("pim-gpt")
    T, Hkv, Dh = 10, config.num_key_value_heads, config.head_dim_
    placement = _place(build_decoder(config, decode(T - 1)))
    cache = np.arange(1, Hkv * T * Dh + 1, dtype=np.float64).reshape(Hkv, T, Dh)
    (k,) = placement.matrices["layers.0.self_attn.k_all"]
    (v,) = placement.matrices["layers.0.self_attn.v_all"]
    for cells in (pl.scatter_kcache(arch, k.layout, cache), pl.scatter_vcache(arch, v.layout, cache, T)):
        stored = cells[cells != 0]
        assert sorted(stored.tolist()) == cache.reshape(-1).tolist()


def _attention_commands(graph):
    """Per kind of work, over the program: rows activated by the attention GEMVs (ACT_ALL),
    their MAC columns, and the KV-append's DRAM writes (pim.wr columns, masked DMA stores)."""
    program = isa.unroll(PIPELINE.run(graph, load_arch("pim-gpt"))["emit"].program)   # executed
    starts = [i for i, _ in program.ops] + [len(program.instructions)]
    out = {"act": 0, "mac_cols": 0, "append_writes": 0}
    for (first, name), end in zip(program.ops, starts[1:]):
        for ins in program.instructions[first:end]:
            op = ins.opcode
            if name in ("scores", "context"):
                out["act"] += op == "pim.act_all"
                out["mac_cols"] += ins["ncols"] if op == "pim.mac_all" else 0
            elif name.endswith("_all"):
                out["append_writes"] += (ins["ncols"] if op == "pim.wr" else
                                         ins["rows"] if op == "store" else 0)
    return out


def test_gqa_decode_attention_traffic_scales_with_kv_heads():
    """llama-3.2-1b's attention shape (32 query heads of 64, T = 512) with 8 KV heads against
    32: a quarter of the rows opened and of the KV-append writes; the MAC columns stay one per
    query row (a bank's MAC unit has one accumulator: each query row is its own dot product)."""
    gqa = _attention_commands(attention_graph(8, 4, 1, 511, 64))
    mha = _attention_commands(attention_graph(32, 1, 1, 511, 64))
    assert gqa["act"] * 4 == mha["act"] > 0
    assert gqa["append_writes"] * 4 == mha["append_writes"] > 0
    assert gqa["mac_cols"] == mha["mac_cols"]


@pytest.mark.parametrize("kv_heads, group, seq, cached", [(2, 2, 1, 9), (1, 4, 1, 9), (2, 3, 7, 0)])
def test_gqa_attention_numerics(kv_heads, group, seq, cached):
    """Each query row meets its own KV head's keys and values (unit-scale data: a row
    paired with the wrong query, key or softmax row is off by about 1)."""
    assert attention_error(attention_graph(kv_heads, group, seq, cached, 32)) < 2e-2


def test_a_group_wider_than_the_global_buffer_is_refused():
    """The G query rows of a KV head share one gbuf fill (G x Dh bf16 <= gbuf_bytes)."""
    with pytest.raises(CompileError, match=r"op 'scores': the 8 query rows of a KV head \(8 x 256 "
                                           r"bf16\) exceed the 2048-byte global buffer"):
        _place(attention_graph(1, 8, 1, 3, 256))


# ---- fit -------------------------------------------------------------------------------
@pytest.mark.slow      # about 0.5-0.8 s: the fast tier stays under 30 s
def test_a_model_too_large_names_weights_kv_and_capacity():
    """llama-3.1-8b (16 GB of bf16 weights) on pim-gpt (4 GiB): one line with what it needs,
    split into weights, KV cache and the activation region, and what the preset has."""
    with pytest.raises(CompileError) as e:
        _place(load_model("llama-3.1-8b").graph(decode(128)))
    n = r"([\d,]+)"
    found = re.fullmatch(rf"llama-3.1-8b-decode needs {n} bytes of PIM DRAM \({n} rows per bank\): "
                         rf"weights {n} \(as placed\), KV cache {n}, activations and constants "
                         rf"{n}; pim-gpt has 4,294,967,296 \(16,384 rows per bank\)", str(e.value))
    need, rows, weights, kv, rest = (int(g.replace(",", "")) for g in found.groups())
    assert need == weights + kv + rest == rows * load_arch("pim-gpt").row_block_bytes
    assert 16_060_522_496 <= weights < 16_060_522_496 * 1.001        # 8.03 B parameters in bf16
    assert kv >= 32 * 2 * 8 * 129 * 128 * 2                           # 32 layers x K, V x 8 heads


# ---- experts ---------------------------------------------------------------------------
_MOE = DecoderConfig("moe-placement", "mixtral", vocab_size=64, hidden_size=128, intermediate_size=256,
                     num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=64, num_experts=4, num_experts_per_tok=2,
                     moe_intermediate_size=256)


def test_experts_spread_over_all_banks_and_unchosen_ones_stay_resident_but_idle():
    """Routed so that expert 3 gets no token: its three matrices are still placed (resident,
    each output column on its own bank lane like any weight) and no instruction touches their
    rows; the chosen experts' rows are read."""
    graph = build_decoder(_MOE, prefill(6))
    choice = np.array([[0, 1], [1, 2], [2, 0], [0, 1], [1, 2], [2, 0]])
    routed = route_graph(graph, Routing({"layers.0.block_sparse_moe": choice}, "test"))
    arch = load_arch("pim-gpt")
    c = PIPELINE.run(routed, arch)
    placement, program = c["placement"], c["emit"].program
    lanes = arch.channels * arch.banks
    rows_read = {ins["row"] for ins in program.instructions if ins.opcode == "pim.act_all"}
    for e in range(4):
        for w, (k, n) in (("w1", (128, 256)), ("w3", (128, 256)), ("w2", (256, 128))):
            (m,) = placement.matrices[f"layers.0.block_sparse_moe.experts.{e}.{w}.weight"]
            cells = pl.scatter_linear(arch, m.layout, np.ones((k, n)))
            per_bank = (cells != 0).sum(axis=(0, 3))                  # [channels, banks]
            assert (per_bank == k * n // lanes).all()
            rows = set(range(m.layout.first_row, m.layout.first_row + m.layout.rows))
            assert bool(rows & rows_read) == (e != 3)


# ---- long contexts: attention GEMVs in pieces --------------------------------------------
def _caches(placement):
    return {m.kind: m for blocks in placement.matrices.values() for m in blocks if m.kind != "linear"}


def test_attention_stays_whole_up_to_the_old_limit():
    """H x T <= 16,384 (llama-3.2-1b's shape at T = 512): one GEMV per token row, as before."""
    assert all(not m.pieces for m in _caches(_place(attention_graph(8, 4, 1, 511, 64))).values())


def _k_cells(passes):
    return sorted((s.start, s.length, s.gb_bytes) for p in passes for s in p.segments)


def _v_columns(passes, lanes):
    """The stream element of every 16-lane column the passes MAC."""
    return sorted(s.start + e for p in passes for s in p.segments for e in range(0, s.length, lanes))


@pytest.mark.parametrize("kv_heads, group, cached", [(8, 4, 600), (8, 4, 4095), (25, 1, 1100), (16, 8, 200)])
def test_pieces_do_the_whole_gemvs_mac_work_once_within_the_buffers(kv_heads, group, cached):
    """Past the limit the K and V GEMVs run in pieces: together their MAC columns are the
    whole layout's, each exactly once (the same stream columns against the same inputs; V's
    within a chunk's sub-range), and each piece's partial sums fit a 64 KiB buffer and its
    input one 16 KiB GEMV input buffer."""
    arch = load_arch("pim-gpt")
    caches = _caches(_place(attention_graph(kv_heads, group, 1, cached, 64)))
    heads, total = kv_heads * group, cached + 1
    k, v = caches["kcache"], caches["vcache"]
    assert k.pieces and v.pieces
    assert _k_cells(q for piece in k.pieces for q in piece.passes) == _k_cells(k.layout.passes)
    assert sum(p.count for p in k.pieces) == sum(p.count for p in v.pieces) == total
    assert all(p.psum_elems * 4 <= 65536 for p in (*k.pieces, *v.pieces))
    assert all(heads * p.count * 2 <= 16384 for p in v.pieces)
    lanes = arch.macs_per_bank_per_access
    assert _v_columns([q for piece in v.pieces for q in piece.passes], lanes) == _v_columns(v.layout.passes, lanes)


@pytest.mark.parametrize("kv_heads, group, seq, cached", [
    (8, 4, 1, 600),       # llama-3.2-1b's grouping: K in 512 + 89 positions, V in 256-position ranges
    (25, 1, 1, 1100),     # gpt2-xl's heads: V ranges of 320 positions cross the 1,024-position chunks
])
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_attention_in_pieces_numerics(kv_heads, group, seq, cached):
    assert attention_error(attention_graph(kv_heads, group, seq, cached, 16)) < 2e-2


@pytest.mark.slow      # compiles llama-3.2-1b decode at KV 8,192 (about 2 s)
def test_a_softmax_row_past_the_asic_buffers_goes_by_column_blocks():
    """llama-3.2-1b decode at kv 8,192: a softmax row of 8,193 bf16 scores outgrows a 16 KiB
    vp_out slot (pim-gpt's wide-row layout), so the ASIC runs online softmax over column
    blocks: every red covers fewer than 8,193 columns, and the scores are loaded twice."""
    graph = load_model("llama-3.2-1b").graph(decode(8192))
    program = isa.unroll(PIPELINE.run(graph, load_arch("pim-gpt"))["emit"].program)   # executed
    marks = [i for i, name in program.ops] + [len(program.instructions)]
    at = next(k for k, (_, name) in enumerate(program.ops) if name == "layers.0.self_attn.probs")
    body = program.instructions[marks[at]:marks[at + 1]]
    widths = {ins["cols"] for ins in body if ins.opcode == "vcfg"}
    loads = sum(ins["rows"] * ins["row_bytes"] for ins in body if ins.opcode == "load")
    assert max(widths) < 8193 and any(ins.opcode == "red" for ins in body)
    assert loads >= 2 * 32 * 8193 * 2            # 32 query heads' score rows, read twice


def test_channels_of_a_pass_copy_the_first_channels_rows(monkeypatch):
    """Every channel of a GEMV pass reads the same rows: the lowering sweeps them once, for
    the pass's first channel, and copies those words to the other channels (their queues and
    partial-sum addresses); what that emits is the flat emission, rolled (test_sweep.py)."""
    from compiler.targets.pim.lowering import PimLowering
    from tessel.targets import TARGETS
    calls = {"segments": 0, "swept": 0}
    segments, pieces = PimLowering._segments, PimLowering._row_pieces
    monkeypatch.setattr(PimLowering, "_segments", lambda self, *a: calls.__setitem__(
        "segments", calls["segments"] + 1) or segments(self, *a))
    monkeypatch.setattr(PimLowering, "_row_pieces", lambda self, *a: calls.__setitem__(
        "swept", calls["swept"] + 1) or pieces(self, *a))
    arch = load_arch("pim-gpt")
    lowered = TARGETS["pim"].compile(load_model("tests/fixtures/tiny-gpt2").graph(decode(8)), arch)
    assert 0 < calls["swept"] < calls["segments"] / 4      # once a pass, not once a channel
    program = lowered.program
    rdmacs = {ins.queue.index for ins in program.instructions if ins.opcode == "pim.rdmac_all"}
    assert rdmacs == set(range(arch.channels))
