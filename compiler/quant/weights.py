"""A checkpoint's weights quantised at compile time: the plan's weights held as codes and
scales (round to nearest even, isa.formats), read back to float64 on every use; every other
parameter (norm gains, biases, embeddings unless the recipe quantises them, tensors the recipe
keeps) passes through unchanged. A bit-nested weight (nested.py) is read at the width `widths`
gives it (an expert's), else whole."""
from __future__ import annotations

from dataclasses import replace
from typing import Collection, Iterator, Mapping

import numpy as np

from compiler.quant.nested import nested_read
from compiler.quant.plan import QuantPlan
from compiler.quant.tensors import StoredWeight, store_weight

__all__ = ["QuantizedWeights"]


class QuantizedWeights(Mapping[str, np.ndarray]):
    """`base` with the weights `plan` quantises replaced by their stored form (`stored`);
    `widths`: the bits each bit-nested weight is read at (the others: whole); `keep`: stored
    forms already made from these tensors of `base` (`rebased`)."""

    def __init__(self, base: Mapping[str, np.ndarray], plan: QuantPlan,
                 widths: Mapping[str, int] | None = None,
                 keep: Mapping[str, StoredWeight] | None = None) -> None:
        self._base, self._plan = base, plan
        self.widths = dict(widths or {})
        keep = keep or {}
        self.stored: dict[str, StoredWeight] = {
            name: keep[name] if name in keep else store_weight(base[name], use)
            for name, use in plan.weights.items() if use.quant is not None}

    @property
    def base(self) -> Mapping[str, np.ndarray]:
        """The tensors these weights were quantised from (the checkpoint's)."""
        return self._base

    def rebased(self, base: Mapping[str, np.ndarray], changed: Collection[str]) -> "QuantizedWeights":
        """The same recipe over `base`, which differs from these weights' own only in
        `changed`: those quantised again, every other weight's codes kept."""
        keep = {name: s for name, s in self.stored.items() if name not in changed}
        return QuantizedWeights(base, self._plan, self.widths, keep)

    def __getitem__(self, name: str) -> np.ndarray:
        stored = self.stored.get(name)
        if stored is None:
            return self._base[name]
        bits = self.widths.get(name)
        if bits is not None:
            fmt = stored.quantized.format
            stored = replace(stored, quantized=nested_read(stored.quantized, fmt.bits, bits))
        return stored.values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)
