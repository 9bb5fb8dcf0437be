"""A local Hugging Face GPT-2 directory: config.json + model.safetensors. Never downloads.

Both key styles load: GPT2LMHeadModel's (`transformer.h.0...`) and GPT2Model's or the
original OpenAI conversion's (`h.0...`). The causal-mask buffers `attn.bias` and
`attn.masked_bias` are ignored, and the LM head is tied to the token embedding.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open

from compiler.ir import Graph, GraphError

from compiler.frontend.gpt2 import GPT2Config

__all__ = ["load_config", "SafetensorsWeights"]

_REQUIRED = ("n_layer", "n_head", "n_embd", "vocab_size")
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def load_config(directory: Path) -> GPT2Config:
    """GPT2Config from config.json; errors name the file and the field."""
    path = directory / "config.json"
    if not path.is_file():
        raise GraphError(f"{directory}: no config.json (expected a Hugging Face GPT-2 directory)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GraphError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(raw, dict):
        raise GraphError(f"{path}: expected a JSON object")
    if raw.get("model_type", "gpt2") != "gpt2":
        raise GraphError(f"{path}: model_type '{raw['model_type']}' is not gpt2")
    missing = [f for f in _REQUIRED if f not in raw]
    if "n_positions" not in raw and "n_ctx" not in raw:
        missing.append("n_positions")
    if missing:
        raise GraphError(f"{path}: missing field '{missing[0]}'")
    act = raw.get("activation_function", "gelu_new")
    if act != "gelu_new":
        raise GraphError(f"{path}: activation_function '{act}' is not supported (gelu_new only)")
    fields = {f: raw[f] for f in _REQUIRED}
    fields["n_positions"] = raw.get("n_positions", raw.get("n_ctx"))
    for name, value in fields.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GraphError(f"{path}: field '{name}' must be a positive integer, got {value!r}")
    eps = raw.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        raise GraphError(f"{path}: field 'layer_norm_epsilon' must be a positive number, got {eps!r}")
    if fields["n_embd"] % fields["n_head"]:
        raise GraphError(f"{path}: n_embd {fields['n_embd']} is not divisible by n_head {fields['n_head']}")
    return GPT2Config(name=directory.name, layer_norm_epsilon=float(eps), **fields)


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
                    if name.endswith(_IGNORED_SUFFIXES) or name == "lm_head.weight":
                        continue
                    if name not in expected:
                        raise GraphError(f"{self.path}: unexpected tensor '{key}'")
                    shape = tuple(f.get_slice(key).get_shape())
                    if shape != expected[name]:
                        raise GraphError(f"{self.path}: tensor '{key}' has shape {list(shape)}, "
                                         f"config.json implies {list(expected[name])}")
                    self._keys[name] = key
        except SafetensorError as e:
            raise GraphError(f"{self.path}: not a readable safetensors file ({e})") from None
        missing = sorted(set(expected) - set(self._keys))
        if missing:
            raise GraphError(f"{self.path}: missing tensor '{missing[0]}'")

    def __getitem__(self, name: str) -> np.ndarray:
        with safe_open(self.path, framework="numpy") as f:
            try:
                values = f.get_tensor(self._keys[name])
            except (TypeError, SafetensorError) as e:
                raise GraphError(f"{self.path}: cannot read '{self._keys[name]}' ({e})") from None
        return np.asarray(values, dtype=np.float32)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
