"""Model frontends: resolve a model spec to graphs and weights.

A spec is a preset name (gpt2 ... gpt3-xl, llama-3.2-1b ... qwen3-30b-a3b), a local Hugging
Face directory (GPT-2 or a Llama-style family, by its config.json: hf.py) or a `.graph` file.
Preset and checkpoint models build one graph per phase; a .graph file is one fixed graph
whose shapes it declares itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Mapping

import numpy as np

from compiler.ir import Graph, GraphError
from compiler.phase import Phase, Step, prefill
from compiler.frontend import decoder, gpt2
from compiler.frontend.decoder import DecoderConfig
from compiler.frontend.gpt2 import GPT2Config
from compiler.frontend.graph_text import from_text, load_graph_file, to_text
from compiler.frontend.hf import SafetensorsWeights, load_config
from compiler.frontend.weights import RandomWeights

__all__ = ["Model", "load_model", "PRESETS", "GPT2Config", "DecoderConfig", "ModelConfig",
           "build_graph", "from_text", "to_text"]

ModelConfig = GPT2Config | DecoderConfig
# every preset, by family: GPT-2/GPT-3 shapes, then the Llama-style decoders
PRESETS: dict[str, ModelConfig] = {**gpt2.PRESETS, **decoder.PRESETS}


def build_graph(config: ModelConfig, phase: Phase | Step) -> Graph:
    """The graph of one pass (or serving step) of a model of any family (each family has one
    builder)."""
    builder = decoder.build_graph if isinstance(config, DecoderConfig) else gpt2.build_graph
    return builder(config, phase)


@dataclass(frozen=True)
class Model:
    """A resolved model: its config (None for .graph files) and where weights come from."""

    name: str
    config: ModelConfig | None
    checkpoint: Path | None = None      # Hugging Face directory (any family), else random weights
    fixed_graph: Graph | None = None    # the graph of a .graph file
    seed: int = 0

    def graph(self, phase: Phase | Step | None = None) -> Graph:
        if self.fixed_graph is not None:
            return self.fixed_graph
        return build_graph(self.config, phase or prefill(1))

    @cached_property
    def weights(self) -> Mapping[str, np.ndarray]:
        """The weights, kept as long as the model (random tensors are cached once made)."""
        return self.load_weights()

    def load_weights(self) -> Mapping[str, np.ndarray]:
        """A fresh weights mapping with its own cache: a run that drops it once it has built
        what it needs frees the tensors, which `weights` keeps as long as the model."""
        graph = self.graph(prefill(1)) if self.config else self.fixed_graph
        if self.checkpoint is not None:
            return SafetensorsWeights(self.checkpoint, graph, self.config)
        return RandomWeights(graph, self.seed)


def load_model(spec: str, seed: int = 0) -> Model:
    """Resolve a spec; an unknown one gets an error listing what is accepted."""
    if spec in PRESETS:
        return Model(spec, PRESETS[spec], seed=seed)
    path = Path(spec)
    if path.suffix == ".graph":
        if not path.is_file():
            raise GraphError(f"graph file '{spec}' does not exist")
        graph = load_graph_file(path)
        return Model(graph.name, None, fixed_graph=graph, seed=seed)
    if path.is_dir():
        config = load_config(path)
        model = Model(config.name, config, checkpoint=path, seed=seed)
        model.weights  # validate the checkpoint against the config now, at the boundary
        return model
    if "/" in spec or path.exists():
        raise GraphError(f"model directory '{spec}' does not exist")
    raise GraphError(f"unknown model '{spec}': not a preset ({', '.join(PRESETS)}), "
                     "a Hugging Face directory or a .graph file")
