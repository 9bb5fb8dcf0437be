"""Recipe files: a quantisation recipe in TOML, for anything the named recipes do not say.

    name = "w4a8-ends"               # optional; the file's path otherwise
    [weights]                        # each role optional: absent means full precision
    format = "int4"                  # a format of isa/formats.py
    group = 128                      # int formats: channels per scale (scale = "group")
    [activations]
    format = "int8"
    scale = "token"                  # int formats: a scale of the role (recipe.SCALES)
    [kv]
    format = "bfp8"
    rearrange = true                 # kv only: channels sorted by magnitude at compile time
    [embeddings]
    format = "int8"
    [[exceptions]]                   # applied in order; a later one wins
    layers = ["first", "last", "lm_head", 3]
    weights = "none"                 # "none": full precision; or a table as above
    activations = { format = "int8" }

Every field is honoured or refused: an unknown field, a wrong type, a format that does not
exist or a scale the format cannot take is a RecipeError of one line naming the file and field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from arch.toml_file import read_toml
from compiler.quant.recipe import (LAYER_NAMES, ROLES, LayerRule, Recipe, RecipeError,
                                   TensorQuant, named_recipe, tensor_quant)

__all__ = ["load_recipe_file", "resolve_recipe"]

_ROLE_FIELDS = ("format", "scale", "group")
_RULE_ROLES = ("weights", "activations", "kv")


def resolve_recipe(spec: str | Recipe) -> Recipe:
    """A recipe from a name (recipe.named_recipe) or a path ending in .toml."""
    if isinstance(spec, Recipe):
        return spec
    if isinstance(spec, str) and spec.endswith(".toml"):
        return load_recipe_file(spec)
    return named_recipe(spec)


def load_recipe_file(path: str | Path) -> Recipe:
    path = Path(path)
    table = read_toml(path, RecipeError)
    _known(path, "", table, ("name", *ROLES, "exceptions"))
    name = table.get("name", str(path))
    if not isinstance(name, str) or not name:
        raise RecipeError(f"{path}: name: expected a non-empty string, got {name!r}")
    roles = {role: _role(path, role, role, table[role]) for role in ROLES if role in table}
    rules = table.get("exceptions", [])
    if not isinstance(rules, list):
        raise RecipeError(f"{path}: exceptions: expected an array of tables ([[exceptions]])")
    return Recipe(name, **roles, rules=tuple(_rule(path, i, r) for i, r in enumerate(rules)))


def _known(path: Path, where: str, table: Any, fields: tuple[str, ...]) -> None:
    if not isinstance(table, dict):
        raise RecipeError(f"{path}: {where}: expected a table, got {table!r}")
    for key in table:
        if key not in fields:
            field, of = (f"{where}.{key}", f" of {where}") if where else (key, "")
            raise RecipeError(f"{path}: unknown field '{field}' (fields{of}: {', '.join(fields)})")


def _role(path: Path, role: str, where: str, value: Any) -> TensorQuant | None:
    """A role's table (or, in an exception, "none")."""
    if value == "none":
        if where != role:
            return None
        raise RecipeError(f"{path}: {role}: leave the role out to keep it at full precision "
                          "('none' is for exceptions)")
    _known(path, where, value, _ROLE_FIELDS + {"kv": ("rearrange",), "weights": ("nested",)}.get(role, ()))
    if "format" not in value:
        raise RecipeError(f"{path}: {where}: needs a format")
    for field, kind in (("format", str), ("scale", str), ("rearrange", bool), ("nested", bool)):
        if field in value and not isinstance(value[field], kind):
            raise RecipeError(f"{path}: {where}.{field}: expected a {kind.__name__}, "
                              f"got {value[field]!r}")
    return tensor_quant(role, value["format"], value.get("scale"), value.get("group"),
                        value.get("rearrange", False), where=f"{path}: {where}",
                        nested=value.get("nested", False))


def _rule(path: Path, index: int, table: Any) -> LayerRule:
    where = f"exceptions[{index}]"
    _known(path, where, table, ("layers", *_RULE_ROLES))
    layers = table.get("layers")
    if not isinstance(layers, list) or not layers or not all(
            (isinstance(x, int) and not isinstance(x, bool)) or x in LAYER_NAMES for x in layers):
        raise RecipeError(f"{path}: {where}.layers: expected a non-empty list of layer indices "
                          f"or {', '.join(map(repr, LAYER_NAMES))}, got {layers!r}")
    if "lm_head" in layers and "kv" in table:
        raise RecipeError(f"{path}: {where}.kv: the LM head writes no KV cache")
    roles = tuple((role, _role(path, role, f"{where}.{role}", table[role]))
                  for role in _RULE_ROLES if role in table)
    if not roles:
        raise RecipeError(f"{path}: {where}: sets no role (weights, activations, kv)")
    return LayerRule(tuple(layers), roles)
