"""Quantisation recipes: a format for each tensor role, and the layers set apart from it.

    weights       every matmul's weight operand (linear layers, experts, the LM head)
    activations   the other operand of those matmuls (their input), quantised when it is read
    kv            the K and V values a pass writes to the KV cache (attention reads them back)
    embeddings    the embedding table's rows (full precision unless a recipe says otherwise)

Named recipes (`named_recipe`), parts joined by `+` (each role set at most once):

    w<W>a<A>[kv<K>][:g<N>][:nested]   int<W> weights (one scale per output channel, or per N
                            input channels), int<A> activations (one scale per token; a16: none),
                            int<K> KV (one scale per token and head). w8a8, w4a16:g128, w4a8,
                            w4a4kv4 (COMET's W4A4KV4). `:nested`: the weights stored bit-nested,
                            so experts can be read at fewer bits (nested.py, --expert-bits)
    fp8                     fp8_e4m3 weights and activations, one scale per tensor
    mxfp4, mxfp8_e4m3, ...  any OCP MX format for weights and activations (blocks of 32)
    kv:<format>[:g<N>][:rearrange]   the KV cache only (kv:bfp8, kv:int4:g16, kv:mxfp8_e4m3)

Every named recipe that quantises weights keeps the LM head (its weight and its input) at full
precision, as AutoGPTQ does (it quantises the decoder layers' linears only: AutoGPTQ issue 647);
a recipe file (recipe_file.py) states its own exceptions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from isa.formats import Format, FormatError, parse_format

from compiler.errors import CompileError

__all__ = ["RecipeError", "TensorQuant", "LayerRule", "Recipe", "ROLES", "SCALES",
           "tensor_quant", "named_recipe", "NAMED_FORMS"]

ROLES = ("weights", "activations", "kv", "embeddings")
# What one scale covers, per role, for integer formats (the first is the default):
#   channel  one output channel of a weight (all its input channels)
#   row      one row of the embedding table
#   token    one token's channels (the matmul's contracted axis; the KV: all heads of a layer)
#   head     one token's channels of one KV head
#   group    `group` consecutive channels along the contracted axis (the KV: along the token)
#   tensor   the whole tensor (for activations and the KV: what one pass reads or writes)
# fp8 takes one scale per tensor and MX and bfp formats their own block ("block"), whatever the role.
SCALES = {"weights": ("channel", "group", "tensor"),
          "activations": ("token", "group", "tensor"),
          "kv": ("head", "token", "group", "tensor"),
          "embeddings": ("row", "group", "tensor")}
LAYER_NAMES = ("first", "last", "lm_head")
NAMED_FORMS = ("w<W>a<A>[kv<K>][:g<N>][:nested]", "fp8", "an MX format (mxfp4, mxfp8_e4m3, ...)",
               "kv:<format>[:g<N>][:rearrange]")


class RecipeError(CompileError):
    """A recipe that is malformed, names something that does not exist, or does not fit the
    model; one line naming the recipe, the field and the tensor."""


@dataclass(frozen=True, slots=True)
class TensorQuant:
    """How one role's tensors are quantised: the format and what one scale covers."""

    format: Format
    scale: str                  # tensor | channel | row | token | head | group | block
    group: int | None = None    # scale == "group": channels per scale
    rearrange: bool = False     # kv: channels sorted by magnitude before blocking (rearrange.py)
    nested: bool = False        # weights: stored bit-nested, readable at fewer bits (nested.py)

    def __str__(self) -> str:
        text = self.format.name
        if self.scale == "group":
            text += f":g{self.group}"
        elif self.scale not in ("block", "tensor") or self.format.kind == "int":
            text += f":{self.scale}"
        return text + (":rearrange" if self.rearrange else "") + (":nested" if self.nested else "")


def tensor_quant(role: str, fmt: str, scale: str | None = None, group: int | None = None,
                 rearrange: bool = False, where: str = "", nested: bool = False) -> TensorQuant:
    """A role's format, checked: the scale the format and the role take, a group only with
    integer formats, rearrangement only for a grouped KV cache. `where` prefixes errors."""
    where = where or role
    try:
        f = parse_format(fmt)
    except FormatError as e:
        raise RecipeError(f"{where}.format: {e}") from None
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group < 1):
        raise RecipeError(f"{where}.group: expected a positive integer, got {group!r}")
    if group is not None and scale not in (None, "group"):
        raise RecipeError(f"{where}: group {group} goes with scale 'group', not {scale!r}")
    if f.kind in ("mx", "bfp"):
        if group is not None or scale not in (None, "block"):
            given = f"group {group}" if group is not None else f"scale {scale!r}"
            raise RecipeError(f"{where}: {f.name} shares one scale per block of {f.block}; "
                              f"{given} does not apply")
        scale = "block"
    elif f.kind == "fp8":
        if group is not None or scale not in (None, "tensor"):
            given = f"group {group}" if group is not None else f"scale {scale!r}"
            raise RecipeError(f"{where}: {f.name} has one scale per tensor; {given} does not apply")
        scale = "tensor"
    else:
        scale = scale or ("group" if group is not None else SCALES[role][0])
        if scale not in SCALES[role]:
            raise RecipeError(f"{where}.scale: {scale!r} is not a scale of {role} "
                              f"({', '.join(SCALES[role])})")
        if scale == "group" and group is None:
            raise RecipeError(f"{where}: scale 'group' needs group = <channels per scale>")
    if rearrange and (role != "kv" or scale == "tensor"):
        raise RecipeError(f"{where}.rearrange: only the KV cache's channels are rearranged, "
                          "and only where scales cover blocks of them (not one per tensor)")
    if nested and (role != "weights" or f.kind != "int"):
        raise RecipeError(f"{where}.nested: only integer weights are stored bit-nested, not "
                          f"{role} in {f.name}")
    return TensorQuant(f, scale, group, bool(rearrange), bool(nested))


@dataclass(frozen=True, slots=True)
class LayerRule:
    """Some layers' roles set apart from the recipe's: a format, or None for full precision.
    Layers are indices, "first", "last" or "lm_head" (the matmul outside the numbered layers)."""

    layers: tuple[int | str, ...]
    roles: tuple[tuple[str, TensorQuant | None], ...]


@dataclass(frozen=True, slots=True)
class Recipe:
    """A format (or None: full precision) per role, and per-layer rules; a later rule that
    names a layer wins over an earlier one."""

    name: str
    weights: TensorQuant | None = None
    activations: TensorQuant | None = None
    kv: TensorQuant | None = None
    embeddings: TensorQuant | None = None
    rules: tuple[LayerRule, ...] = ()

    def role(self, role: str, layer: int | str | None, n_layers: int) -> TensorQuant | None:
        """The format of `role` in `layer` (an index, "lm_head", or None: outside the layers)."""
        quant = getattr(self, role)
        for rule in self.rules:
            if layer is not None and layer in self.layer_keys(rule, n_layers):
                quant = dict(rule.roles).get(role, quant)
        return quant

    def layer_keys(self, rule: LayerRule, n_layers: int) -> set[int | str]:
        """The layers a rule names, "first" and "last" resolved; an index past the model's
        layers is refused."""
        keys: set[int | str] = set()
        for layer in rule.layers:
            if isinstance(layer, int) and not 0 <= layer < n_layers:
                raise RecipeError(f"recipe {self.name!r}: exceptions: layer {layer} does not exist "
                                  f"(the model has layers 0..{n_layers - 1})")
            keys.add({"first": 0, "last": n_layers - 1}.get(layer, layer))
        return keys


_KEEP_HEAD = LayerRule(("lm_head",), (("weights", None), ("activations", None)))


def named_recipe(spec: str) -> Recipe:
    """The recipe a name stands for (the module's table); parts joined by `+` combine."""
    if not isinstance(spec, str) or not spec.strip():
        raise RecipeError(f"recipe {spec!r}: expected a name ({', '.join(NAMED_FORMS)}) "
                          "or a .toml file")
    roles: dict[str, tuple[TensorQuant | None, str]] = {}
    for part in spec.split("+"):
        for role, quant in _part(spec, part).items():
            if role in roles:
                raise RecipeError(f"recipe {spec!r}: {role} set twice ({roles[role][1]!r} and "
                                  f"{part!r})")
            roles[role] = (quant, part)
    rules = (_KEEP_HEAD,) if "weights" in roles else ()
    return Recipe(spec, **{role: quant for role, (quant, _) in roles.items()}, rules=rules)


def _part(spec: str, part: str) -> dict[str, TensorQuant | None]:
    """The roles one `+`-part of a named recipe sets."""
    name, *options = part.split(":")
    where = f"recipe {spec!r}" + (f" (part {part!r})" if part != spec else "")
    if name == "kv":
        return {"kv": _kv_part(where, options)}
    if m := re.fullmatch(r"w(\d+)a(\d+)(?:kv(\d+))?", name):
        w, a, kv = (int(b) if b else None for b in m.groups())
        for field, bits, wide in (("w", w, False), ("a", a, True), ("kv", kv, False)):
            if bits is not None and not (2 <= bits <= 8 or wide and bits == 16):
                raise RecipeError(f"{where}: {field}{bits}: integer widths are 2..8 bits"
                                  f"{' (or a16: activations unquantised)' if wide else ''}")
        group, _, nested = _options(where, options, allow_group=True, allow_nested=True)
        roles = {"weights": tensor_quant("weights", f"int{w}", group=group, where=f"{where}: weights",
                                         nested=nested),
                 "activations": None if a == 16 else tensor_quant("activations", f"int{a}",
                                                                  where=f"{where}: activations")}
        if kv is not None:
            roles["kv"] = tensor_quant("kv", f"int{kv}", where=f"{where}: kv")
        return roles
    if name == "fp8" or _is_mx(name):
        fmt = "fp8_e4m3" if name == "fp8" else name
        _options(where, options, allow_group=False)
        return {role: tensor_quant(role, fmt, where=f"{where}: {role}")
                for role in ("weights", "activations")}
    raise RecipeError(f"{where}: unknown recipe {part!r} (recipes: {', '.join(NAMED_FORMS)}, "
                      "joined by '+', or a .toml file)")


def _is_mx(name: str) -> bool:
    try:
        return parse_format(name).kind == "mx"
    except FormatError:
        return False


def _kv_part(where: str, options: list[str]) -> TensorQuant:
    if not options:
        raise RecipeError(f"{where}: kv: needs a format (kv:bfp8, kv:int8, ...)")
    fmt, *rest = options
    if rest and re.fullmatch(r"b\d+", rest[0]) and fmt.startswith("bfp"):
        fmt, rest = f"{fmt}:{rest[0]}", rest[1:]      # bfp<N>:b<B>: the block is the format's
    group, rearrange, _ = _options(where, rest, allow_group=True, allow_rearrange=True)
    return tensor_quant("kv", fmt, group=group, rearrange=rearrange, where=f"{where}: kv")


def _options(where: str, options: list[str], allow_group: bool, allow_rearrange: bool = False,
             allow_nested: bool = False) -> tuple[int | None, bool, bool]:
    """(group, rearrange, nested) from `:g<N>`, `:rearrange` and `:nested`; anything else is
    refused."""
    group, rearrange, nested = None, False, False
    for option in options:
        if allow_group and group is None and (m := re.fullmatch(r"g(\d+)", option)):
            group = int(m.group(1))
        elif allow_rearrange and option == "rearrange" and not rearrange:
            rearrange = True
        elif allow_nested and option == "nested" and not nested:
            nested = True
        else:
            accepted = [o for o, ok in (("g<N>", allow_group), ("rearrange", allow_rearrange),
                                        ("nested", allow_nested)) if ok]
            takes = f"takes {', '.join(accepted)}, each once" if accepted else "takes no options"
            raise RecipeError(f"{where}: unknown option {option!r} (this recipe {takes})")
    return group, rearrange, nested
