"""A checkpoint's weights quantised at compile time: the plan's weights held as codes and
scales (round to nearest even, isa.formats), read back to float64 on every use; every other
parameter (norm gains, biases, embeddings unless the recipe quantises them, tensors the recipe
keeps) passes through unchanged."""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from compiler.quant.plan import QuantPlan
from compiler.quant.tensors import StoredWeight, store_weight

__all__ = ["QuantizedWeights"]


class QuantizedWeights(Mapping[str, np.ndarray]):
    """`base` with the weights `plan` quantises replaced by their stored form (`stored`)."""

    def __init__(self, base: Mapping[str, np.ndarray], plan: QuantPlan) -> None:
        self._base = base
        self.stored: dict[str, StoredWeight] = {
            name: store_weight(base[name], use) for name, use in plan.weights.items()
            if use.quant is not None}

    def __getitem__(self, name: str) -> np.ndarray:
        stored = self.stored.get(name)
        return self._base[name] if stored is None else stored.values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)
