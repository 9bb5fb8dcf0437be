"""A model's decoder layers swept as one loop body (docs/isa.md, "Tile sweeps are emitted as
loops"): consecutive layers are the items of one `Emitter.sweep`, so that once three layers
have been emitted alike the rest are one loop whose op marks carry the layer number as a
name template (`layers.{+3}.mlp`).

A layer's (`layers.<n>.` or GPT-2's `h.<n>.`) item for the sweep is what its emission reads,
besides the emitter's state: for each op its kind, attributes and result type, and for each
value it reads or writes the placed address, memory space, offset, shape and strides of its
storage view (and of a fused attention chain, its block plan). Layers whose items do not move
by one constant step (a tier boundary between HBM and DDR, a routed mixture-of-experts layer
with its own token counts) end a loop.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from compiler.ir import Graph, Op
from compiler.passes.storage import StoragePlan
from compiler.targets.emit import Emitter, symbol_name

__all__ = ["layer_runs", "layer_key", "layer_of", "sweep_layers"]

T = TypeVar("T")
_LAYER = re.compile(r"^(?:layers|h)\.(\d+)\.")      # Llama-style, GPT-2


def layer_of(names: Sequence[str]) -> int | None:
    """The layer all of `names` belong to (`layers.<n>.` or `h.<n>.`), or None."""
    found = {m.group(1) if (m := _LAYER.match(name)) else None for name in names}
    return int(found.pop()) if len(found) == 1 and None not in found else None


def layer_runs(elements: Sequence[T], names: Callable[[T], Sequence[str]]
               ) -> list[list[list[T]] | T]:
    """`elements` (ops, or calls of sections) in order, as runs: a list of consecutive layers
    (each the list of its elements) where layers follow each other, else one element alone.
    An element of the layer before inside a layer belongs to that layer's item: two halves of
    a batch interleaved (compiler/parallel/overlap.py) finish one layer inside the next."""
    runs: list = []
    current: list[list[T]] | None = None
    last: int | None = None
    for element in elements:
        layer = layer_of(names(element))
        if layer is None:
            runs.append(element)
            current, last = None, None
        elif current is not None and last is not None and layer in (last, last - 1):
            current[-1].append(element)     # last - 1: an op of the layer before, interleaved
        elif current is not None and last is not None and layer == last + 1:
            current.append([element])
            last = layer
        else:
            current, last = [[element]], layer
            runs.append(current)
    return runs


def layer_key(graph: Graph, plan: StoragePlan, em: Emitter, ops: Sequence[Op],
              extra: Callable[[Op], object] = lambda op: None) -> tuple:
    """What the emission of these ops reads, names left out (module docstring); `extra(op)`
    adds a target's own facts about an op (a fused attention's blocks, a section's config)."""
    out: list = []
    for op in ops:
        out += [op.kind.value, repr(op.attrs), repr(op.type), extra(op)]
        for name in (*op.inputs, op.name):
            out.append(graph[name].kind.value)
            view = plan.views.get(name)
            if view is None:
                out.append(None)
                continue
            symbol = symbol_name(view.buffer)
            placed = symbol in em.addresses
            out += [em.addresses[symbol] if placed else -1, em.space_of(symbol) if placed else "",
                    view.offset, tuple(view.shape), tuple(view.strides)]
    return tuple(out)


def sweep_layers(em: Emitter, elements: Sequence[T], names: Callable[[T], Sequence[str]],
                 key: Callable[[list[T]], object], lower: Callable[[T], None], *,
                 uniform: bool = False, begin: Callable[[], None] = lambda: None) -> None:
    """Each of `elements` through `lower`, in order, consecutive layers (`layer_runs`) as the
    items of one sweep (`key(layer)`: what the layer's emission reads; `begin()` before each
    layer's elements; `uniform`: as `Emitter.sweep` takes it)."""
    for run in layer_runs(elements, names):
        if not isinstance(run, list):
            lower(run)
            continue
        for layer in em.sweep(run, [key(layer) for layer in run], uniform):
            begin()
            for element in layer:
                lower(element)
