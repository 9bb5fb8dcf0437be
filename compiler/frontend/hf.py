"""A local Hugging Face GPT-2 directory: config.json (hf_config.py) + model.safetensors.
Never downloads.

Both key styles load: GPT2LMHeadModel's (`transformer.h.0...`) and GPT2Model's or the
original OpenAI conversion's (`h.0...`). The causal-mask buffers `attn.bias` and
`attn.masked_bias` are ignored. `lm_head.weight` is read when the config unties the LM
head; with a tied head it is ignored, as Hugging Face ties it to `wte.weight` on load.
Every tensor must be floating point; its values must be finite (checked when it is read).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open

from compiler.ir import Graph, GraphError

__all__ = ["SafetensorsWeights"]

_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


class SafetensorsWeights(Mapping[str, np.ndarray]):
    """Tensors of model.safetensors under the graph's parameter names, read lazily."""

    def __init__(self, directory: Path, graph: Graph) -> None:
        self.path = directory / "model.safetensors"
        if not self.path.is_file():
            raise GraphError(f"{directory}: no model.safetensors")
        expected = {p.name: p.type.shape for p in graph.params}
        self._keys: dict[str, str] = {}
        try:
            with safe_open(self.path, framework="numpy") as f:
                for key in f.keys():
                    name = key.removeprefix("transformer.")
                    if name.endswith(_IGNORED_SUFFIXES) or (name == "lm_head.weight"
                                                            and name not in expected):
                        continue
                    if name not in expected:
                        raise GraphError(f"{self.path}: unexpected tensor '{key}'")
                    if name in self._keys:
                        raise GraphError(f"{self.path}: tensor '{key}' is also stored as "
                                         f"'{self._keys[name]}'")
                    tensor = f.get_slice(key)
                    shape = tuple(tensor.get_shape())
                    if shape != expected[name]:
                        raise GraphError(f"{self.path}: tensor '{key}' has shape {list(shape)}, "
                                         f"config.json implies {list(expected[name])}")
                    if tensor.get_dtype() not in _FLOAT_DTYPES:
                        raise GraphError(f"{self.path}: tensor '{key}' has dtype "
                                         f"{tensor.get_dtype()}, expected one of {', '.join(_FLOAT_DTYPES)}")
                    self._keys[name] = key
        except SafetensorError as e:
            raise GraphError(f"{self.path}: not a readable safetensors file ({e})") from None
        missing = sorted(set(expected) - set(self._keys))
        if missing:
            why = " (config.json unties the LM head)" if missing[0] == "lm_head.weight" else ""
            raise GraphError(f"{self.path}: missing tensor '{missing[0]}'{why}")

    def __getitem__(self, name: str) -> np.ndarray:
        with safe_open(self.path, framework="numpy") as f:
            try:
                values = f.get_tensor(self._keys[name])
            except (TypeError, SafetensorError) as e:
                raise GraphError(f"{self.path}: cannot read '{self._keys[name]}' ({e})") from None
        values = np.asarray(values, dtype=np.float32)
        # One pass, no temporary: a float64 sum of float32 values cannot overflow, and is
        # finite exactly when every value is (NaN and infinities propagate).
        if not math.isfinite(values.sum(dtype=np.float64)):
            raise GraphError(f"{self.path}: tensor '{self._keys[name]}' holds NaN or infinite values")
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
