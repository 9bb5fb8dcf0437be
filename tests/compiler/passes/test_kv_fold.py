"""The KV channel order folded into the projections (compiler/passes/kv_fold.py): the folded
graph, run by the reference on the permuted weights, computes the reference executor's
rearranged quantised logits (which store each head's channels in the order and read them back
in place); a fold that misses any part of it does not; and what cannot fold is one line."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from compiler.driver import decode_logits, kv_feeds, prefill_logits, token_feeds
from compiler.errors import CompileError
from compiler.frontend import load_model
from compiler.ir import Graph, OpKind, freeze_attrs
from compiler.passes.kv_fold import KVFold, kv_fold
from compiler.phase import decode, prefill
from compiler.quant import quantise, resolve_recipe
from compiler.reference import execute
from compiler.verify import verify
from tessel.driver import recipe_graph

FIXTURES = Path(__file__).parents[2] / "fixtures"
TOKENS = list(range(3, 13))


def _logits(model, recipe: str, phase, edit=lambda fold: fold) -> tuple[np.ndarray, np.ndarray]:
    """The folded graph's float64 logits under `recipe` (each fold `edit`ed first; a decode's
    cache from the folded prefill), and the reference executor's (unfolded)."""
    q = quantise(model, recipe, calibration=TOKENS)

    def fold_of(phase) -> KVFold:
        graph, plan = recipe_graph(model, phase, resolve_recipe(recipe))
        fold = edit(kv_fold(graph, plan, q.kv_order))
        verify(fold.graph)
        return fold

    fold = fold_of(phase)
    weights = q.folded(fold)
    feeds = token_feeds(np.asarray(TOKENS))
    if phase.kind == "decode":
        first = fold_of(prefill(len(TOKENS) - 1))
        cache = execute(first.graph, weights, token_feeds(np.asarray(TOKENS[:-1])))
        feeds = {**kv_feeds(first.graph, cache, fold.graph), **token_feeds(np.asarray(TOKENS[-1:]))}
    got = execute(fold.graph, weights, feeds)[fold.graph.outputs[0]][0]
    run = prefill_logits if phase.kind == "prefill" else decode_logits
    return got, run(model, TOKENS, np.float64, q)


def _error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


CASES = [("tiny-gpt2", "kv:int4:g8:rearrange"),            # c_attn's q | k | v blocks
         ("tiny-llama3-tied", "kv:int4:g8:rearrange"),     # rope, 4 query heads on 2 KV heads
         ("tiny-qwen3", "kv:int4:g16:rearrange"),          # rope after q_norm and k_norm
         ("tiny-qwen2-bias", "kv:int4:g8:rearrange"),      # biases of q, k and v
         ("tiny-qwen3", "w4a16:g32+kv:int4:g16:rearrange")]  # weights quantised once permuted


@pytest.mark.parametrize("fixture, recipe", CASES)
@pytest.mark.parametrize("phase", [prefill(len(TOKENS)), decode(len(TOKENS) - 1)], ids=str)
def test_the_folded_graph_computes_the_rearranged_reference(fixture, recipe, phase):
    model = load_model(str(FIXTURES / fixture))
    got, want = _logits(model, recipe, phase)
    assert _error(got, want) < 1e-12
    plain = (prefill_logits if phase.kind == "prefill" else decode_logits)(
        model, TOKENS, np.float64, quantise(model, recipe.replace(":rearrange", "")))
    assert _error(plain, want) > 1e-3                  # the order changes the values


def _drop_params(match):
    def edit(fold: KVFold) -> KVFold:
        return replace(fold, params={n: p for n, p in fold.params.items() if not match(n, p)})
    return edit


def _drop_block(name: str, first: int, width: int):
    """The fused projection's columns first..first+width back in place (one block unfolded)."""
    def edit(fold: KVFold) -> KVFold:
        params = dict(fold.params)
        for param in [n for n in params if n.startswith(name)]:
            axis, index = params[param]
            index = index.copy()
            index[first:first + width] = np.arange(first, first + width)
            params[param] = (axis, index)
        return replace(fold, params=params)
    return edit


def _drop_pairs(fold: KVFold) -> KVFold:
    ops = [replace(op, attrs=freeze_attrs({k: v for k, v in op.attrs if k != "pairs"}))
           if op.kind is OpKind.ROPE else op for op in fold.graph.ops]
    return replace(fold, graph=Graph(fold.graph.name, ops, fold.graph.outputs))


@pytest.mark.parametrize("fixture, edit", [
    ("tiny-qwen3", _drop_params(lambda n, p: "q_proj" in n)),         # W_q left in place
    ("tiny-qwen3", _drop_params(lambda n, p: "k_proj" in n)),
    ("tiny-qwen3", _drop_params(lambda n, p: "norm" in n)),           # q_norm, k_norm gains
    ("tiny-qwen3", _drop_pairs),                                        # the rope tables
    ("tiny-qwen3", _drop_params(lambda n, p: "o_proj" in n)),         # W_o's rows
    ("tiny-qwen3", _drop_params(lambda n, p: "v_proj" in n)),
    ("tiny-qwen2-bias", _drop_params(lambda n, p: n.endswith("bias"))),
    ("tiny-gpt2", _drop_block("h.0.attn.c_attn", 0, 64)),             # W_q's block of c_attn
    ("tiny-gpt2", _drop_params(lambda n, p: "c_proj" in n)),
], ids=["q_proj", "k_proj", "qk_norm", "rope_pairs", "o_proj", "v_proj", "biases", "c_attn_q",
        "c_proj"])
def test_a_fold_that_misses_a_part_misses_the_reference(fixture, edit):
    """The mutation check of the test above: each part of the fold is needed."""
    model = load_model(str(FIXTURES / fixture))
    recipe = "kv:int4:g8:rearrange"
    for phase in (prefill(len(TOKENS)), decode(len(TOKENS) - 1)):
        got, want = _logits(model, recipe, phase, edit)
        assert _error(got, want) > 1e-4, phase


def test_the_fold_permutes_each_heads_columns_and_the_rope_frequencies():
    model = load_model(str(FIXTURES / "tiny-llama3-tied"))
    q = quantise(model, "kv:int8:rearrange", calibration=TOKENS)
    graph, plan = recipe_graph(model, prefill(4), resolve_recipe("kv:int8:rearrange"))
    fold = kv_fold(graph, plan, q.kv_order)
    k, v = q.kv_order[0, "k"], q.kv_order[0, "v"]
    axis, index = fold.params["layers.0.self_attn.q_proj.weight"]
    assert axis == -1 and np.array_equal(index, np.concatenate([h * 16 + k for h in range(4)]))
    o_axis, o_index = fold.params["layers.0.self_attn.o_proj.weight"]
    assert o_axis == -2 and np.array_equal(o_index, np.concatenate([h * 16 + v for h in range(4)]))
    ropes = [op for op in fold.graph.of_kind(OpKind.ROPE) if ".0." in op.name]
    assert len(ropes) == 2 and all(op.attr("pairs") == tuple(k[:8]) for op in ropes)


def test_without_an_order_the_graph_is_checked_and_kept():
    model = load_model(str(FIXTURES / "tiny-qwen3"))
    graph, plan = recipe_graph(model, decode(4), resolve_recipe("kv:int8:rearrange"))
    fold = kv_fold(graph, plan, {})
    assert fold.graph is graph and not fold.params


@pytest.mark.parametrize("recipe, message", [
    ("w4a16:g8+kv:int8:rearrange", r"recipe 'w4a16:g8\+kv:int8:rearrange': kv 'h.0.attn.v.heads' in "
     r"int8:head:rearrange: the V order permutes the channels of each head of 16 in weight "
     r"'h.0.attn.c_proj.weight', whose int4:g8 scale groups of 8 split a head"),
    ("w8a8:g8+kv:int8:rearrange", r"the V order permutes the channels of each head of 16 in weight"),
])
def test_groups_that_split_a_head_of_the_output_projection_are_refused(recipe, message):
    """Permuting W_o's rows inside a head moves them across groups smaller than a head, which
    would change their values: refused (whole heads, per channel, per token: folded)."""
    model = load_model(str(FIXTURES / "tiny-gpt2"))
    with pytest.raises(CompileError, match=message):
        recipe_graph(model, prefill(4), resolve_recipe(recipe))
    for fine in ("w4a16:g16+kv:int8:rearrange", "w8a8+kv:int8:rearrange", "w4a16:g8+kv:int8"):
        recipe_graph(model, prefill(4), resolve_recipe(fine))


def test_a_rounded_input_whose_groups_split_a_head_is_refused(tmp_path):
    path = tmp_path / "a8g8.toml"
    path.write_text('[activations]\nformat = "int8"\nscale = "group"\ngroup = 8\n'
                    '[kv]\nformat = "int8"\nrearrange = true\n')
    model = load_model(str(FIXTURES / "tiny-gpt2"))
    with pytest.raises(CompileError, match=r"the V order permutes the channels of each head of 16 "
                                           r"in the input of 'h.0.attn.c_proj', whose int8:g8 "
                                           r"scale groups of 8 split a head"):
        recipe_graph(model, prefill(4), resolve_recipe(str(path)))


def test_a_k_order_that_splits_rotated_pairs_is_refused():
    model = load_model(str(FIXTURES / "tiny-qwen3"))
    graph, plan = recipe_graph(model, prefill(4), resolve_recipe("kv:int8:rearrange"))
    order = {(layer, which): np.arange(32)[::-1] for layer in (0, 1) for which in "kv"}
    with pytest.raises(CompileError, match=r"the K order does not keep each rotated pair \(i, i \+ 16\) "
                                           r"together, so it cannot fold into the rotary embedding"):
        kv_fold(graph, plan, order)
