"""Recipes (compiler/quant/recipe.py, recipe_file.py, plan.py): every named recipe of issue 20
means what docs/formats.md says, a TOML file sets every field it may, and every bad recipe is
one line naming the field and, where it does not fit the model, the tensor."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.frontend import load_model
from compiler.phase import prefill
from compiler.quant import RecipeError, load_recipe_file, named_recipe, plan, quantise, resolve_recipe
from tessel.errors import USER_ERRORS

FIXTURES = Path(__file__).parents[2] / "fixtures"
GPT2 = load_model(str(FIXTURES / "tiny-gpt2"))          # D 64, 4 heads of 16, MLP 256
GRAPH = GPT2.graph(prefill(1))


def described(spec: str) -> dict[str, str | None]:
    recipe = named_recipe(spec)
    return {role: None if getattr(recipe, role) is None else str(getattr(recipe, role))
            for role in ("weights", "activations", "kv")}


@pytest.mark.parametrize("spec, roles", [
    ("w8a8", dict(weights="int8:channel", activations="int8:token", kv=None)),
    ("w4a16:g128", dict(weights="int4:g128", activations=None, kv=None)),
    ("w4a16", dict(weights="int4:channel", activations=None, kv=None)),
    ("w4a8", dict(weights="int4:channel", activations="int8:token", kv=None)),
    ("w4a4kv4", dict(weights="int4:channel", activations="int4:token", kv="int4:head")),
    ("w3a16:g64", dict(weights="int3:g64", activations=None, kv=None)),
    ("fp8", dict(weights="fp8_e4m3", activations="fp8_e4m3", kv=None)),
    ("mxfp4", dict(weights="mxfp4", activations="mxfp4", kv=None)),
    ("mxfp8_e5m2", dict(weights="mxfp8_e5m2", activations="mxfp8_e5m2", kv=None)),
    ("kv:bfp8", dict(weights=None, activations=None, kv="bfp8")),
    ("kv:bfp8:b16:rearrange", dict(weights=None, activations=None, kv="bfp8:b16:rearrange")),
    ("kv:int4:g32", dict(weights=None, activations=None, kv="int4:g32")),
    ("kv:fp8_e4m3", dict(weights=None, activations=None, kv="fp8_e4m3")),
    ("w4a8:g32+kv:bfp8", dict(weights="int4:g32", activations="int8:token", kv="bfp8")),
    ("fp8+kv:mxfp8_e4m3", dict(weights="fp8_e4m3", activations="fp8_e4m3", kv="mxfp8_e4m3")),
])
def test_named_recipes(spec, roles):
    assert described(spec) == roles


def test_named_recipes_keep_the_lm_head_and_embeddings_at_full_precision():
    p = plan(GRAPH, named_recipe("w8a8"), 2)
    assert p.weights["wte.weight"].quant is None and p.activations["lm_head"] is None
    assert all(p.weights[f"h.{i}.mlp.c_fc.weight"].quant is not None for i in range(2))
    assert named_recipe("kv:bfp8").rules == ()          # nothing to keep: weights untouched
    assert set(p.weights) == {op.inputs[1] for op in GRAPH.ops if op.kind.value == "linear"} | {"wte.weight"}


@pytest.mark.parametrize("spec, message", [
    ("int4", r"recipe 'int4': unknown recipe 'int4' \(recipes: w<W>a<A>"),
    ("w9a8", r"w9: integer widths are 2..8 bits"),
    ("w4a12", r"a12: integer widths are 2..8 bits \(or a16"),
    ("w4a16:x", r"unknown option 'x' \(this recipe takes g<N>, nested, each once\)"),
    ("fp8:g32", r"unknown option 'g32' \(this recipe takes no options\)"),
    ("kv:int9", r"recipe 'kv:int9': kv.format: format 'int9': integer widths are 2..8 bits"),
    ("kv:float3", r"kv.format: format 'float3': unknown \(formats:"),
    ("kv:bfp8:g16", r"kv: bfp8 shares one scale per block of 32; group 16 does not apply"),
    ("kv:fp8_e4m3:rearrange", r"kv.rearrange: only the KV cache's channels are rearranged"),
    ("w4a4kv4+kv:bfp8", r"kv set twice \('w4a4kv4' and 'kv:bfp8'\)"),
    ("w4a16:g0", r"weights.group: expected a positive integer, got 0"),
    ("", r"recipe '': expected a name"),
])
def test_bad_named_recipes_are_one_line(spec, message):
    with pytest.raises(RecipeError, match=message) as e:
        named_recipe(spec)
    assert "\n" not in str(e.value) and isinstance(e.value, USER_ERRORS)


@pytest.mark.parametrize("spec, message", [
    ("w4a16:g128", r"recipe 'w4a16:g128': weights: group 128 does not divide the 64 input "
                   r"channels of 'h.0.attn.c_attn.weight'"),
    ("w8a8:g48", r"weights: group 48 does not divide the 64 input channels of 'h.0.attn.c_attn.weight'"),
    ("kv:int4:g48", r"kv: group 48 does not divide the 64 channels \(4 heads x 16\) each token "
                    r"writes to 'h.0.attn.k.heads'"),
    ("kv:bfp8:b48", r"kv: bfp8:b48's block of 48 does not divide the 64 channels"),
])
def test_a_group_that_does_not_divide_names_the_tensor_and_the_field(spec, message):
    with pytest.raises(RecipeError, match=message):
        quantise(GPT2, spec)


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), acts=st.sampled_from([2, 4, 8, 16]), group=st.integers(1, 300))
def test_a_weight_group_fits_exactly_when_it_divides_every_input_dimension(bits, acts, group):
    """Input channels of the fixture's weights: 64 (c_attn, c_proj, c_fc) and 256 (mlp.c_proj)."""
    recipe = named_recipe(f"w{bits}a{acts}:g{group}")
    assert recipe.weights.format.bits == bits and recipe.weights.group == group
    assert (recipe.activations is None) == (acts == 16)
    if 64 % group == 0:
        assert plan(GRAPH, recipe, 2).weights["h.1.mlp.c_proj.weight"].quant == recipe.weights
    else:
        with pytest.raises(RecipeError, match=f"group {group} does not divide the 64 input channels"):
            plan(GRAPH, recipe, 2)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_a_recipe_file_sets_every_role_and_exception(tmp_path):
    path = write(tmp_path, """
name = "mixed"
[weights]
format = "int4"
group = 32
[activations]
format = "int8"
scale = "tensor"
[kv]
format = "bfp6"
rearrange = true
[embeddings]
format = "int8"
[[exceptions]]
layers = ["first"]
weights = { format = "int8", scale = "channel" }
kv = "none"
[[exceptions]]
layers = ["lm_head"]
weights = { format = "int8" }
activations = "none"
""")
    recipe = load_recipe_file(path)
    assert recipe.name == "mixed" and resolve_recipe(str(path)) == recipe
    p = plan(GRAPH, recipe, 2)
    assert str(p.weights["h.0.attn.c_attn.weight"].quant) == "int8:channel"
    assert str(p.weights["h.1.attn.c_attn.weight"].quant) == "int4:g32"
    assert str(p.weights["wte.weight"].quant) == "int8:row"      # embedding and LM head agree
    assert str(p.activations["h.1.mlp.c_fc"]) == "int8:tensor" and p.activations["lm_head"] is None
    kv = {name: (w.layer, w.which, w.quant and str(w.quant)) for name, w in p.kv.items()}
    assert kv == {"h.0.attn.k.heads": (0, "k", None), "h.0.attn.v.heads": (0, "v", None),
                  "h.1.attn.k.heads": (1, "k", "bfp6:rearrange"),
                  "h.1.attn.v.heads": (1, "v", "bfp6:rearrange")}


@pytest.mark.parametrize("text, message", [
    ('[weights]\nformat = "int4"\nformt = 3\n',
     r"r.toml: unknown field 'weights.formt' \(fields of weights: format, scale, group, nested\)"),
    ('[weight]\nformat = "int4"\n', r"unknown field 'weight' \(fields: name, weights, activations"),
    ('[activations]\nformat = "int8"\nrearrange = true\n', r"unknown field 'activations.rearrange'"),
    ('[weights]\nscale = "channel"\n', r"r.toml: weights: needs a format"),
    ('[weights]\nformat = 4\n', r"weights.format: expected a str, got 4"),
    ('[weights]\nformat = "int4"\ngroup = "a"\n', r"weights.group: expected a positive integer, got 'a'"),
    ('[weights]\nformat = "int4"\nscale = "token"\n',
     r"weights.scale: 'token' is not a scale of weights \(channel, group, tensor\)"),
    ('[weights]\nformat = "int4"\nscale = "tensor"\ngroup = 8\n', r"weights: group 8 goes with scale 'group'"),
    ('[weights]\nformat = "fp8_e4m3"\nscale = "channel"\n', r"fp8_e4m3 has one scale per tensor"),
    ('[weights]\nformat = "mxint8"\ngroup = 32\n', r"mxint8 shares one scale per block of 32"),
    ('[weights]\nformat = "int4"\nscale = "group"\n', r"scale 'group' needs group = "),
    ('weights = "none"\n', r"weights: leave the role out to keep it at full precision"),
    ('[kv]\nformat = "int4"\nrearrange = 1\n', r"kv.rearrange: expected a bool, got 1"),
    ('name = 3\n', r"name: expected a non-empty string, got 3"),
    ('exceptions = 3\n', r"exceptions: expected an array of tables"),
    ('[[exceptions]]\nlayers = []\nkv = "none"\n', r"exceptions\[0\].layers: expected a non-empty list"),
    ('[[exceptions]]\nlayers = ["middle"]\nkv = "none"\n', r"exceptions\[0\].layers: expected a non-empty list"),
    ('[[exceptions]]\nlayers = [0]\n', r"exceptions\[0\]: sets no role"),
    ('[[exceptions]]\nlayers = [0]\nembeddings = "none"\n', r"unknown field 'exceptions\[0\].embeddings'"),
    ('[[exceptions]]\nlayers = ["lm_head"]\nkv = "none"\n', r"exceptions\[0\].kv: the LM head writes no KV cache"),
    ('[[exceptions]]\nlayers = [0]\nweights = { format = "int5", scale = "row" }\n',
     r"exceptions\[0\].weights.scale: 'row' is not a scale of weights"),
    ('x = [', r"r.toml: invalid TOML"),
])
def test_bad_recipe_files_are_one_line_naming_the_file_and_field(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message) as e:
        load_recipe_file(write(tmp_path, text))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ('[kv]\nformat = "int4"\n[[exceptions]]\nlayers = [5]\nkv = "none"\n',
     r"exceptions: layer 5 does not exist \(the model has layers 0..1\)"),
    ('[embeddings]\nformat = "int4"\n[weights]\nformat = "int8"\n',
     r"'wte.weight' is one stored tensor read as embeddings \(int4:row\) and as weights "
     r"\(int8:channel\): give both uses one format"),
    ('[weights]\nformat = "int4"\ngroup = 48\n', r"r.toml': weights: group 48 does not divide"),
    ('[kv]\nformat = "bfp8"\nrearrange = true\n', r"kv.rearrange orders the cache's channels "
                                                  r"from calibration tokens: give some"),
])
def test_recipe_files_that_do_not_fit_the_model(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        quantise(GPT2, str(write(tmp_path, text)))


def test_the_documented_example_plans_on_gpt2(tmp_path):
    text = (Path(__file__).parents[3] / "docs/formats.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    graph = load_model("gpt2").graph(prefill(1))
    p = plan(graph, load_recipe_file(write(tmp_path, example)), 12)
    assert p.recipe.name == "w4a8-ends"
    assert [layer for layer in range(12) if p.weights[f"h.{layer}.mlp.c_fc.weight"].quant is None] == [0, 3, 11]
    assert str(p.activations["h.3.mlp.c_fc"]) == "int8:token" and p.activations["lm_head"] is None
    assert str(p.weights["wte.weight"].quant) == "int8:row"       # stored as the LM head reads it
    assert str(p.kv["h.3.attn.k.heads"].quant) == "int8:head" and p.kv["h.4.attn.v.heads"].quant.rearrange


def test_a_missing_recipe_file():
    with pytest.raises(RecipeError, match=r"nowhere.toml: cannot read"):
        resolve_recipe("nowhere.toml")
