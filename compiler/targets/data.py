"""A compiled program's data: initial DRAM contents from weights and inputs, and reading
graph values back out of a simulated memory through their storage views."""
from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from isa import DType
from isa.numerics import to_storage

from compiler.ir import Graph, OpKind
from compiler.passes.quantised import SCALES_SUFFIX, StoredFormat, rows_data, stored_data, stored_weight
from compiler.passes.storage import StoragePlan, View
from compiler.targets.emit import symbol_name

__all__ = ["program_data", "read_value"]


def _flat_index(view: View) -> np.ndarray:
    """Buffer element index of every element of `view`, in the view's shape."""
    return view.offset + sum(np.indices(view.shape)[k] * s for k, s in enumerate(view.strides))


def program_data(graph: Graph, plan: StoragePlan, constants: Mapping[str, np.ndarray],
                 weights: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray],
                 quantised: Mapping[str, StoredFormat] = MappingProxyType({})) -> dict[str, np.ndarray]:
    """Symbol -> initial contents (in storage form) for parameters, inputs and constants.

    A KV-cache input lives inside its append's buffer, so that buffer starts out holding the
    cache; every other computed buffer starts as zeros (not stored). A weight in `quantised`
    is its codes and scales as quantised at compile time: `weights` must then be the
    recipe's (compiler.quant.weights.QuantizedWeights, which keeps them)."""
    data: dict[str, np.ndarray] = {}
    for buf in plan.buffers.values():
        op = graph[buf.name] if buf.name in graph else None
        if buf.name in quantised:
            fmt = quantised[buf.name]
            if fmt.layout == "rows":            # a KV cache of codes, its first rows the feed
                codes, scales = rows_data(_cache_values(graph, plan, buf, feeds), fmt)
            else:
                codes, scales = stored_data(stored_weight(weights, buf.name, fmt), fmt)
            data[symbol_name(buf.name)] = codes
            data[symbol_name(buf.name) + SCALES_SUFFIX] = scales
            continue
        if op is not None and op.kind is OpKind.PARAM:
            values = np.asarray(weights[buf.name])
        elif op is not None and op.kind is OpKind.INPUT:
            values = np.asarray(feeds[buf.name])
        elif op is not None and op.kind is OpKind.KV_APPEND:
            values = _cache_values(graph, plan, buf, feeds)
        else:
            continue
        data[symbol_name(buf.name)] = to_storage(values.reshape(buf.shape), buf.dtype)
    for name, values in constants.items():
        data[name] = to_storage(values, DType.fp32)
    return data


def _cache_values(graph: Graph, plan: StoragePlan, buf, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """An append's buffer as the program starts: the fed cache in its first rows, zeros after."""
    values = np.zeros(buf.shape)
    cache = graph[buf.name].inputs[0]
    values.reshape(-1)[_flat_index(plan.views[cache])] = np.asarray(feeds[cache])
    return values


def read_value(read_symbol: Callable[[str], np.ndarray], plan: StoragePlan, value: str) -> np.ndarray:
    """A graph value from simulated memory: its buffer's contents seen through its view."""
    view = plan.views[value]
    return np.asarray(read_symbol(symbol_name(view.buffer))).reshape(-1)[_flat_index(view)]
