"""Quantisation recipes and the reference executor's quantised mode (docs/formats.md).

    recipe       a format per tensor role (weights, activations, KV cache, embeddings) and
                 per-layer exceptions; named recipes (w4a16:g128, fp8, kv:bfp8, ...)
    recipe_file  the same in TOML
    plan         which tensors of a graph take which format
    tensors      where tensors are rounded: weights stored, matmul inputs read, KV written
    weights      a checkpoint's weights quantised at compile time (codes and scales)
    rearrange    the KV cache's outlier-aware channel order
    model        a model under a recipe, run by compiler.driver as a Variant
    report       logits error, top-1 agreement and bytes by role, per recipe
"""
from compiler.quant.model import QuantisedModel, quantise
from compiler.quant.plan import QuantPlan, plan
from compiler.quant.recipe import LayerRule, Recipe, RecipeError, TensorQuant, named_recipe
from compiler.quant.recipe_file import load_recipe_file, resolve_recipe
from compiler.quant.report import RecipeReport, RoleBytes, recipe_reports, render, role_bytes

__all__ = ["QuantisedModel", "quantise", "QuantPlan", "plan", "LayerRule", "Recipe",
           "RecipeError", "TensorQuant", "named_recipe", "load_recipe_file", "resolve_recipe",
           "RecipeReport", "RoleBytes", "recipe_reports", "render", "role_bytes"]
