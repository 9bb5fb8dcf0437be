"""The PIM target's placement step: abuf regions, the activation region and the PIM matrices."""
import pytest

from arch import load_arch
from isa import DType
from compiler.errors import CompileError
from compiler.frontend import load_model
from compiler.phase import decode
from compiler.pipeline import dump_after
from compiler.targets.pim import PIPELINE


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
