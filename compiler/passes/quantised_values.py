"""The values a recipe rounds while a program runs: each planned matmul input and KV-cache write
(compiler/quant/plan.py) gets a `quantize` op in front of its readers, so the program computes
what the reference executor's quantised mode computes (docs/formats.md, order of rounding,
steps 2 and 3) and every target lowers it with its vector unit (`vquant`).

The rewritten graph is what a quantised run compiles and what its reference executes: a
`quantize` op evaluates as the hook does (compiler/quant/tensors.py read_input and write_kv),
so the hook and the rewritten graph give the same logits (tests/compiler/quant).

A KV write is rounded in the layout the program holds it, [b, heads, tokens, head_dim], so its
scale groups must fall inside one head: per head, groups that divide head_dim, an MX block that
divides it, or one scale for the whole write. A scale over a token's channels of several heads
is refused in one line (not built on the targets). A rearranged channel order is rounded as
written: compiler/passes/kv_fold.py folds the order into the projections, so the write is
already in it.
Block floating point runs as its own code format, bfp<N> for mantissas of 2..8 bits (an e8m0
scale per block, any block that stays in a head); wider mantissas are refused.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Mapping

from compiler.errors import CompileError
from compiler.ir import Graph, Op, OpKind, freeze_attrs

if TYPE_CHECKING:
    from compiler.quant.plan import QuantPlan
    from compiler.quant.recipe import TensorQuant

__all__ = ["quantised_graph", "check_quantised_graph", "rounding_assumption", "mac_formats_for",
           "mac_format", "check_mac_formats", "code_name", "rounded_experts"]

_NOT_BUILT = "not built on the targets yet"


def quantised_graph(graph: Graph, plan: "QuantPlan | None") -> Graph:
    """`graph` with a quantize op in front of every value `plan` rounds (the graph itself
    without a plan, or when the plan rounds no value)."""
    if plan is None:
        return graph
    wanted: dict[str, tuple[str, int]] = {}       # value -> (format, group), KV writes
    reads: dict[str, tuple[str, tuple[str, int]]] = {}    # matmul -> (its input, code)
    experts: dict[str, Op] = {}                   # moe op -> itself, its experts' inputs rounded
    name = plan.recipe.name
    for written, write in plan.kv.items():
        if write.quant is not None:
            wanted[written] = _kv_code(name, written, write)
    for op_name, quant in plan.experts.items():
        if quant is not None and op_name in graph:
            op = graph[op_name]
            experts[op_name] = rounded_experts(name, op, quant, graph[op.inputs[0]].type.shape[-1],
                                               graph[op.inputs[2]].type.shape[-1])
    for op_name, quant in plan.activations.items():
        if quant is not None:
            x = graph[op_name].inputs[0]
            reads[op_name] = (x, _input_code(name, op_name, quant, graph[x].type.shape[-1]))
    if not wanted and not reads and not experts:
        return graph
    made: dict[tuple[str, tuple[str, int]], str] = {}     # (value, code) -> its quantize op
    ops: list[Op] = []
    renamed: dict[str, str] = {}                  # a KV write -> the op every reader reads

    def quantize(value: str, code: tuple[str, int]) -> str:
        if (value, code) not in made:
            fmt, group = code
            q = f"{value}.{fmt}" + (f".g{group}" if group else "")
            ops.append(Op(q, OpKind.QUANTIZE, (value,), graph[value].type,
                          freeze_attrs({"format": fmt, "group": group})))
            made[value, code] = q
        return made[value, code]

    for op in graph.ops:
        op = experts.get(op.name, op)
        inputs = tuple(renamed.get(src, src) for src in op.inputs)
        if op.name in reads:
            x, code = reads[op.name]
            inputs = (quantize(renamed.get(x, x), code), *inputs[1:])
        ops.append(replace(op, inputs=inputs) if inputs != op.inputs else op)
        if op.name in wanted:
            renamed[op.name] = quantize(op.name, wanted[op.name])
    outputs = [renamed.get(out, out) for out in graph.outputs]
    return Graph(graph.name, ops, outputs)


def check_quantised_graph(graph: Graph, plan: "QuantPlan | None") -> None:
    """A program compiled under `plan` rounds its values itself: refuse, in one line, a graph
    that was not passed through `quantised_graph` (it would run them at full precision)."""
    if plan is None:
        return
    unrounded = [f"the input of '{op}'" for op, quant in plan.activations.items()
                 if quant is not None and op in graph
                 and graph[graph[op].inputs[0]].kind is not OpKind.QUANTIZE]
    unrounded += [f"the experts' inputs of '{op}'" for op, quant in plan.experts.items()
                  if quant is not None and op in graph and graph[op].kind is OpKind.MOE
                  and graph[op].attr("act_format") is None]     # routed: its expert linears
    unrounded += [f"kv '{value}'" for value, write in plan.kv.items()
                  if write.quant is not None and value in graph
                  and not any(c.kind is OpKind.QUANTIZE for c in graph.consumers(value))]
    if unrounded:
        raise CompileError(f"recipe {plan.recipe.name!r}: {unrounded[0]} is planned quantised "
                           "and the graph does not round it: compile quantised_graph(graph, plan)")


def rounding_assumption(graph: Graph) -> tuple[str, ...]:
    """The report's line for a graph whose values a recipe rounds (none otherwise): the values
    are rounded on the vector unit and then held and moved at the operand type's width."""
    rounded = graph.of_kind(OpKind.QUANTIZE)
    if not rounded:
        return ()
    kinds = sorted({op.attr("format") for op in rounded})
    values = "value" if len(rounded) == 1 else "values"
    return (f"{len(rounded)} {values} (matmul inputs, KV writes) rounded to {' / '.join(kinds)} "
            "by the vector unit (vquant), then held and moved at the operand type's width (a KV "
            "cache stored as codes excepted)",)


def mac_formats_for(graph: Graph, op: Op, weight_format: str | None) -> tuple[str, ...]:
    """The narrow MAC formats (isa MAC_FORMATS) that multiply a matmul whose input is rounded
    and whose weight is stored quantised (in `weight_format`), narrowest first: integer codes
    of at most 4 bits go in int4 or int8 lanes, wider ones in int8; fp8 in fp8; MX codes in
    the MX format of their widest element; bfp (and mxint8) codes in MXINT8's lanes, which
    multiply integers of up to 8 bits and add their blocks' exponents. () when an operand is
    not quantised (the operand type's MACs multiply it); a CompileError for two families no
    MAC format takes together."""
    x = graph[op.inputs[0]]
    if x.kind is not OpKind.QUANTIZE or weight_format is None:
        return ()
    pair = (x.attr("format"), weight_format)
    if all(f.startswith("int") for f in pair):
        return ("int4", "int8") if max(int(f[3:]) for f in pair) <= 4 else ("int8",)
    if all(f.startswith("fp8") for f in pair):
        return ("fp8",)
    if all(f == "mxint8" or f.startswith("bfp") for f in pair):
        return ("mxint8",)      # block-scaled integers of at most 8 bits: MXINT8's lanes
    if all(f.startswith("mxfp") for f in pair):
        bits = max(8 if f.startswith("mxfp8") else 6 if f.startswith("mxfp6") else 4 for f in pair)
        return (f"mxfp{bits}",)
    raise CompileError(f"'{op.name}' multiplies {pair[0]} inputs by {pair[1]} weights: no MAC "
                       "format takes both (give both operands one family: int, fp8 or MX)")


def mac_format(graph: Graph, op: Op, quantised: Mapping[str, object], arch) -> str:
    """The MAC format a matmul runs in on `arch` (isa mfmt; an arch with `mac_formats`): "none"
    at the operand type, or the narrowest of its array's `mac_formats` that takes both its
    rounded input and its stored weight; CompileError, naming the matmul, both formats, the
    weight and the field, where the array has none."""
    weight = quantised.get(op.inputs[1]) if len(op.inputs) > 1 else None
    wanted = mac_formats_for(graph, op, weight.format if weight else None)
    if not wanted:
        return "none"
    found = [fmt for fmt in wanted if fmt in arch.mac_formats]
    if not found:
        listed = ", ".join(arch.mac_formats) or "none"
        raise CompileError(f"'{op.name}' multiplies {graph[op.inputs[0]].attr('format')} "
                           f"inputs by {weight.format} weights ('{op.inputs[1]}'), and "
                           f"{arch.name} has no {wanted[-1]} MACs (arch field mac_formats: {listed})")
    return found[0]


def check_mac_formats(graph: Graph, quantised: Mapping[str, object], arch) -> None:
    """Every matmul of `graph` has its MAC format on `arch` (before anything is compiled)."""
    for op in graph.of_kind(OpKind.LINEAR, OpKind.MATMUL):
        mac_format(graph, op, quantised, arch)


def code_name(recipe: str, what: str, quant: "TensorQuant") -> str:
    """The code format (isa/qformats.py) a program holds `quant`'s format in: its own name,
    bfp<N> for bfp<N>:b<B> (the block is the instructions' scale group); CompileError for
    bfp mantissas wider than the 8 bits a code holds."""
    fmt = quant.format
    if fmt.kind == "bfp":
        if fmt.bits > 8:
            raise CompileError(f"recipe {recipe!r}: {what}: format {fmt.name} has {fmt.bits}-bit "
                               f"mantissas; the targets' codes hold 2 to 8 bits (bfp2..bfp8)")
        return f"bfp{fmt.bits}"
    return fmt.name


def _input_code(recipe: str, op_name: str, quant: "TensorQuant", length: int) -> tuple[str, int]:
    """(format, group) of a matmul input: a token's channels, g of them, an MX or bfp block, or
    one scale for the operand."""
    fmt = code_name(recipe, f"activations of '{op_name}'", quant)
    group = {"token": length, "group": quant.group, "block": quant.format.block,
             "tensor": 0}[quant.scale]
    return fmt, group


def rounded_experts(recipe: str, op: Op, quant: "TensorQuant", d: int, f: int) -> Op:
    """The moe op `op` with its experts' matmul inputs rounded by `quant` (a recipe's
    activations): each expert's rows of x (`d` channels) and its gated hidden (`f`), scaled as
    a dense matmul's input is (`_input_code`). The reference rounds them inside the op, the
    routed graph with quantize ops (compiler/passes/routing.py)."""
    fmt, act = _input_code(recipe, op.name, quant, d)
    _, hidden = _input_code(recipe, op.name, quant, f)
    return replace(op, attrs=freeze_attrs({**dict(op.attrs), "act_format": fmt, "act_group": act,
                                           "hidden_group": hidden}))


def _kv_code(recipe: str, written: str, write) -> tuple[str, int]:
    """(format, group) of a KV write [b, heads, tokens, head_dim] whose groups stay in a head."""
    quant, heads, head_dim = write.quant, write.heads, write.head_dim
    where = f"recipe {recipe!r}: kv '{written}' in {quant}"
    fmt = code_name(recipe, f"kv '{written}'", quant)
    length = heads * head_dim
    group = {"head": head_dim, "token": length, "group": quant.group, "block": quant.format.block,
             "tensor": 0}[quant.scale]
    if group and head_dim % group:
        raise CompileError(f"{where}: a scale over {group} channels reaches across its {heads} "
                           f"heads of {head_dim}, which is {_NOT_BUILT}: scales per head, or "
                           "groups that divide head_dim, run")
    return fmt, group
