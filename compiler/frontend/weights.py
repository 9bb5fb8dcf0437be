"""Weights as lazy mappings from parameter name to numpy array.

Random weights are generated per parameter from (seed, name) when first read (and kept up
to 1 GiB), so a gpt2-xl graph costs nothing until a numeric run touches a tensor, and any
one tensor is reproducible without generating the others. Initialisation follows each parameter's role:
GPT-2's N(0, 0.02) for matrices and embeddings (initializer_range), 1 + N(0, 0.02) for
layer-norm gains and N(0, 0.02) for biases — non-trivial gains and biases so numeric
checks exercise them.
"""
from __future__ import annotations

import zlib
from typing import Iterator, Mapping

import numpy as np

from compiler.ir import Graph, OpKind, TensorType

__all__ = ["RandomWeights", "param_roles", "INIT_STD"]

INIT_STD = 0.02  # GPT-2 initializer_range (Hugging Face GPT2Config default)
CACHE_LIMIT_BYTES = 1 << 30  # keep generated tensors up to this much (gpt2-medium fits in fp32)


def param_roles(graph: Graph) -> dict[str, str]:
    """'gain', 'bias' or 'weight' for each parameter, from how the graph uses it."""
    roles = {p.name: "weight" for p in graph.params}
    for op in graph.ops:
        if op.kind is OpKind.LAYERNORM:
            roles[op.inputs[1]], roles[op.inputs[2]] = "gain", "bias"
        elif op.kind is OpKind.RMSNORM:
            roles[op.inputs[1]] = "gain"
        elif op.kind is OpKind.LINEAR and len(op.inputs) == 3:
            roles[op.inputs[2]] = "bias"
    return roles


class RandomWeights(Mapping[str, np.ndarray]):
    """Seeded random float32 values for every parameter of a graph."""

    def __init__(self, graph: Graph, seed: int = 0) -> None:
        self._types: dict[str, TensorType] = {p.name: p.type for p in graph.params}
        self._roles = param_roles(graph)
        self.seed = seed
        self._cache: dict[str, np.ndarray] = {}
        self._cached_bytes = 0

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._cache:
            return self._cache[name]
        values = self._generate(name)
        if self._cached_bytes + values.nbytes <= CACHE_LIMIT_BYTES:
            values.setflags(write=False)
            self._cache[name] = values
            self._cached_bytes += values.nbytes
        return values

    def _generate(self, name: str) -> np.ndarray:
        t = self._types[name]
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        values = rng.standard_normal(t.shape, dtype=np.float32) * np.float32(INIT_STD)
        if self._roles[name] == "gain":
            values += np.float32(1.0)
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)
