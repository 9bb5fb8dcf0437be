"""A local Hugging Face checkpoint directory: config.json's `architectures` picks the family
(GPT-2: hf_config.py; Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen3-MoE: hf_llama.py), and the
weights come from `model.safetensors` or the shards `model.safetensors.index.json` maps them
to. Never downloads.

Weights are read lazily (safetensors_file.py): loading checks every tensor's name, shape and
dtype against the graph from the headers alone; a tensor's data is mapped when it is read,
and its values must then be finite. Every checkpoint tensor must be a graph parameter or one
of the few Hugging Face stores without using (below), and every parameter must be stored.

Key names per family:
- GPT-2: GPT2LMHeadModel's `transformer.h.0...` or GPT2Model's / the OpenAI conversion's
  `h.0...`; the causal-mask buffers `attn.bias` and `attn.masked_bias` are ignored. Conv1D
  weights are stored [in, out], as the graph takes them.
- Llama family: `model.` + the graph's name (or the bare name, as a base model saves it);
  nn.Linear weights (decoder.LINEAR_WEIGHT_SUFFIXES) are stored [out, in] and transposed to
  the graph's [in, out]. Experts are stored one key per expert (transformers 4.x, and 5.x's
  save_pretrained) or fused as transformers 5.x holds them (`save_original_format=False`):
  `layers.{i}.mlp.experts.gate_up_proj` [E, 2F, D] (gate rows, then up rows) and
  `.down_proj` [E, D, F], with Mixtral's router at `layers.{i}.mlp.gate.weight`. Buffers
  `rotary_emb.inv_freq` (older checkpoints) are ignored: the frequencies follow config.json.
- Both: `lm_head.weight` is read when the config unties the LM head; with a tied head it is
  ignored, as Hugging Face ties it to the embedding on load.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from compiler.ir import Graph, GraphError, OpKind

from compiler.frontend.decoder import LINEAR_WEIGHT_SUFFIXES, DecoderConfig
from compiler.frontend.gpt2 import GPT2Config
from compiler.frontend.hf_config import gpt2_config
from compiler.frontend.hf_fields import read_json
from compiler.frontend.hf_llama import ARCHITECTURES, decoder_config
from compiler.frontend.safetensors_file import FLOAT_DTYPES, StoredTensor, read_header, read_tensor

__all__ = ["load_config", "SafetensorsWeights", "SUPPORTED_ARCHITECTURES"]

SUPPORTED_ARCHITECTURES = ("GPT2LMHeadModel (or another GPT2* class)", *ARCHITECTURES)
SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"


def load_config(directory: Path) -> GPT2Config | DecoderConfig:
    """The model config of a checkpoint directory, by the class config.json names (or, when
    it names none, its model_type; neither: GPT-2)."""
    path = directory / "config.json"
    if not path.is_file():
        raise GraphError(f"{directory}: no config.json (expected a Hugging Face checkpoint directory)")
    raw = read_json(path)
    classes = raw.get("architectures")
    if classes is None:
        by_type = {family: arch for arch, family in ARCHITECTURES.items()}
        if raw.get("model_type") in by_type:
            return decoder_config(path, raw, by_type[raw["model_type"]], directory.name)
        return gpt2_config(path, raw, directory.name)
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise GraphError(f"{path}: field 'architectures' must be a list of class names, got {classes!r}")
    if all(c.startswith("GPT2") for c in classes):
        return gpt2_config(path, raw, directory.name)
    if len(classes) == 1 and classes[0] in ARCHITECTURES:
        return decoder_config(path, raw, classes[0], directory.name)
    raise GraphError(f"{path}: field 'architectures' = {classes!r} is not supported (supported: "
                     f"{', '.join(SUPPORTED_ARCHITECTURES)})")


@dataclass(frozen=True, slots=True)
class _Source:
    """A parameter's values: `tensor`[index], transposed when stored [out, in]."""

    tensor: StoredTensor
    index: tuple = ()
    transpose: bool = False


@dataclass(frozen=True, slots=True)
class _Rule:
    """What one stored tensor is: its shape as config.json implies it, the parameters it holds."""

    shape: tuple[int, ...]
    sources: tuple[tuple[str, tuple, bool], ...]    # (parameter, index, transpose)


_IGNORED = _Rule((), ())


class SafetensorsWeights(Mapping[str, np.ndarray]):
    """The graph's parameters, read lazily from a checkpoint's tensors (float32)."""

    def __init__(self, directory: Path, graph: Graph, config: GPT2Config | DecoderConfig) -> None:
        self.path, stored = _stored_tensors(directory)
        names = _GPT2Names(graph) if isinstance(config, GPT2Config) else _DecoderNames(graph)
        self._sources: dict[str, _Source] = {}
        for key, tensor in stored.items():
            rule = names.rule(key)
            if rule is None:
                raise GraphError(f"{tensor.path}: unexpected tensor '{key}'")
            if rule is _IGNORED:
                continue
            for name, _, _ in rule.sources:
                if name in self._sources:
                    raise GraphError(f"{tensor.path}: tensor '{key}' is also stored as "
                                     f"'{self._sources[name].tensor.key}'")
            if tensor.shape != rule.shape:
                raise GraphError(f"{tensor.path}: tensor '{key}' has shape {list(tensor.shape)}, "
                                 f"config.json implies {list(rule.shape)}")
            if tensor.dtype not in FLOAT_DTYPES:
                raise GraphError(f"{tensor.path}: tensor '{key}' has dtype {tensor.dtype}, "
                                 f"expected one of {', '.join(FLOAT_DTYPES)}")
            for name, index, transpose in rule.sources:
                self._sources[name] = _Source(tensor, index, transpose)
        missing = [p.name for p in graph.params if p.name not in self._sources]
        if missing:
            first = min(missing)
            why = " (config.json unties the LM head)" if first == "lm_head.weight" else ""
            raise GraphError(f"{self.path}: missing tensor '{names.key(first)}'{why}")

    def __getitem__(self, name: str) -> np.ndarray:
        src = self._sources[name]
        values = read_tensor(src.tensor, src.index)
        values = np.asarray(values.T if src.transpose else values)
        # One pass, no temporary: a float64 sum of float32 values cannot overflow, and is
        # finite exactly when every value is (NaN and infinities propagate).
        if not math.isfinite(values.sum(dtype=np.float64)):
            raise GraphError(f"{src.tensor.path}: tensor '{src.tensor.key}' holds NaN or infinite values")
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


def _stored_tensors(directory: Path) -> tuple[Path, dict[str, StoredTensor]]:
    """Every stored tensor by key, from model.safetensors or the shards the index lists (each
    shard's header only); the path returned is the file that names them all."""
    single, index = directory / SINGLE, directory / INDEX
    if single.is_file() and index.is_file():
        raise GraphError(f"{directory}: both {SINGLE} and {INDEX}: which holds the weights is "
                         "ambiguous (remove one)")
    if single.is_file():
        return single, read_header(single)
    if not index.is_file():
        raise GraphError(f"{directory}: no {SINGLE} (nor {INDEX})")
    raw = read_json(index)
    for field in raw:
        if field not in ("metadata", "weight_map"):
            raise GraphError(f"{index}: field '{field}' is not a shard-index field Tessel knows, "
                             f"got {raw[field]!r}")
    if not isinstance(raw.get("metadata", {}), dict):   # total_size, total_parameters: bookkeeping
        raise GraphError(f"{index}: field 'metadata' must be an object, got {raw['metadata']!r}")
    weight_map = raw.get("weight_map")
    if not (isinstance(weight_map, dict) and weight_map):
        raise GraphError(f"{index}: field 'weight_map' must map tensor names to shard files, "
                         f"got {weight_map!r}")
    headers: dict[str, dict[str, StoredTensor]] = {}
    for key, shard in weight_map.items():
        if not (isinstance(shard, str) and shard == Path(shard).name and shard not in ("", ".", "..")):
            raise GraphError(f"{index}: tensor '{key}' is mapped to {shard!r}, not a file name "
                             "in the checkpoint directory")
        if shard not in headers:
            if not (directory / shard).is_file():
                raise GraphError(f"{index}: shard '{shard}' (holding '{key}') does not exist")
            headers[shard] = read_header(directory / shard)
        if key not in headers[shard]:
            raise GraphError(f"{index}: tensor '{key}' is mapped to '{shard}', which does not hold it")
    for shard, header in headers.items():
        for key in header:
            if weight_map.get(key) != shard:
                raise GraphError(f"{directory / shard}: tensor '{key}' is not mapped to this shard "
                                 f"by {INDEX} (mapped to {weight_map.get(key)!r})")
    return index, {key: headers[shard][key] for key, shard in weight_map.items()}


class _GPT2Names:
    """GPT-2 keys: the graph's names, optionally under `transformer.`; stored as used."""

    _IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")

    def __init__(self, graph: Graph) -> None:
        self._shapes = {p.name: p.type.shape for p in graph.params}

    def rule(self, key: str) -> _Rule | None:
        name = key.removeprefix("transformer.")
        if name.endswith(self._IGNORED_SUFFIXES) or (name == "lm_head.weight" and name not in self._shapes):
            return _IGNORED
        if name not in self._shapes:
            return None
        return _Rule(self._shapes[name], ((name, (), False),))

    def key(self, name: str) -> str:
        return name


class _DecoderNames:
    """Llama-family keys: `model.` + the graph's name, nn.Linear weights transposed, experts
    one key each or fused (the moe ops of the graph say which parameters a fused key fills)."""

    _FUSED = re.compile(r"layers\.(\d+)\.(?:mlp|block_sparse_moe)\.experts\.(gate_up_proj|down_proj)")
    _ROUTER = re.compile(r"layers\.(\d+)\.mlp\.gate\.weight")     # Mixtral's, as 5.x names it

    def __init__(self, graph: Graph) -> None:
        self._shapes = {p.name: p.type.shape for p in graph.params}
        self._moe = {}      # layer -> (router weight, expert parameters gate, up, down, ...)
        for op in graph.ops:
            if op.kind is OpKind.MOE:
                router = graph[op.inputs[1]]
                self._moe[int(op.name.split(".")[1])] = (router.inputs[1], op.inputs[2:])

    def rule(self, key: str) -> _Rule | None:
        name = key if key == "lm_head.weight" else key.removeprefix("model.")
        if name.endswith(".rotary_emb.inv_freq") or (name == "lm_head.weight" and name not in self._shapes):
            return _IGNORED
        fused, router = self._FUSED.fullmatch(name), self._ROUTER.fullmatch(name)
        if fused and int(fused[1]) in self._moe:
            return self._fused(int(fused[1]), fused[2])
        if router and int(router[1]) in self._moe and name not in self._shapes:
            name = self._moe[int(router[1])][0]
        if name not in self._shapes:
            return None
        transpose = name.endswith(LINEAR_WEIGHT_SUFFIXES)
        shape = self._shapes[name]
        return _Rule(shape[::-1] if transpose else shape, ((name, (), transpose),))

    def _fused(self, layer: int, which: str) -> _Rule:
        """gate_up_proj [E, 2F, D]: expert e's gate is rows :F of [e], its up rows F:;
        down_proj [E, D, F]: expert e's down is [e]. All [out, in], so transposed."""
        experts = self._moe[layer][1]
        gates, ups, downs = experts[0::3], experts[1::3], experts[2::3]
        d, f = self._shapes[gates[0]]
        if which == "down_proj":
            return _Rule((len(downs), d, f), tuple((n, (e,), True) for e, n in enumerate(downs)))
        halves = [(n, (e, slice(0, f)), True) for e, n in enumerate(gates)]
        halves += [(n, (e, slice(f, 2 * f)), True) for e, n in enumerate(ups)]
        return _Rule((len(gates), 2 * f, d), tuple(halves))

    def key(self, name: str) -> str:
        return name if name == "lm_head.weight" else "model." + name
