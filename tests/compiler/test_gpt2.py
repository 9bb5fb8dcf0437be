"""GPT-2 frontend: presets, graph structure, FLOP totals against the analytic formula."""
import pytest

from compiler.cost import graph_cost
from compiler.frontend import build_graph
from compiler.frontend.gpt2 import PRESETS
from compiler.frontend.gpt2 import GPT2Config
from compiler.ir import GraphError, OpKind
from compiler.phase import Phase, decode, prefill
from compiler.verify import verify

# Published parameter counts (Hugging Face model cards; tied LM head).
PUBLISHED_PARAMS = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
}


def analytic_flops(c: GPT2Config, phase: Phase) -> int:
    """Closed form from the cost conventions in compiler/ops.py, derived by hand."""
    B, S, T, D, H, V = phase.batch, phase.seq, phase.total_len, c.n_embd, c.n_head, c.vocab_size
    matmuls = 24 * B * S * D * D                 # qkv 3D^2, proj D^2, fc 4D^2, fc-proj 4D^2; x2
    attention = 4 * B * S * T * D                # scores and context, 2*S*T*Dh per head each
    softmax = 5 * B * H * S * T
    elementwise = B * S * D * (9 + 2 * 7 + 8 * 4 + 2)   # biases, 2 LNs, gelu on 4D, 2 residuals
    per_layer = matmuls + attention + softmax + elementwise
    return c.n_layer * per_layer + B * S * D * (1 + 7) + 2 * B * S * D * V  # embed add, ln_f, head


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("phase", [prefill(128), decode(128), prefill(7, batch=3), decode(5, batch=2)],
                         ids=str)
def test_flops_match_analytic_formula(name, phase):
    graph = verify(build_graph(PRESETS[name], phase))
    assert graph_cost(graph).total_flops == analytic_flops(PRESETS[name], phase)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_match_published(name):
    graph = build_graph(PRESETS[name], prefill(1))
    assert sum(p.type.numel for p in graph.params) == PUBLISHED_PARAMS[name]
    assert PRESETS[name].n_params == PUBLISHED_PARAMS[name]


def test_gpt3_presets_have_published_shapes():
    # Brown et al. 2020, Table 2.1: n_layers, d_model, n_heads, d_head; context 2048.
    table = {"gpt3-small": (12, 768, 12, 64), "gpt3-medium": (24, 1024, 16, 64),
             "gpt3-large": (24, 1536, 16, 96), "gpt3-xl": (24, 2048, 16, 128)}  # paper: 24 heads; see the preset
    for name, (layers, d, heads, d_head) in table.items():
        c = PRESETS[name]
        assert (c.n_layer, c.n_embd, c.n_head, c.head_dim, c.n_positions) == (layers, d, heads, d_head, 2048)
    assert round(PRESETS["gpt3-xl"].n_params / 1e9, 1) == 1.3


def test_decode_graph_reads_and_extends_the_cache():
    c = PRESETS["gpt2"]
    graph = verify(build_graph(c, decode(20, batch=2)))
    caches = [op for op in graph.inputs if op.name.endswith("_cache")]
    assert len(caches) == 2 * c.n_layer
    assert caches[0].type.shape == (2, 12, 20, 64)
    appends = graph.of_kind(OpKind.KV_APPEND)
    assert appends[0].type.shape == (2, 12, 21, 64)
    assert graph[graph.outputs[0]].type.shape == (2, 1, 50257)


def test_context_overflow_is_rejected():
    with pytest.raises(GraphError, match="1025 positions exceed the context of 1024"):
        build_graph(PRESETS["gpt2"], decode(1024))


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="decode", seq=2, kv=3), "decode takes 1 token"),
    (dict(kind="prefill", seq=0, kv=0), "seq must be a positive integer"),
    (dict(kind="prefill", seq=4, kv=1), "prefill has no KV cache"),
    (dict(kind="train", seq=4, kv=0), "phase must be prefill or decode"),
])
def test_bad_phases_are_rejected(kwargs, message):
    with pytest.raises(GraphError, match=message):
        Phase(**kwargs)
