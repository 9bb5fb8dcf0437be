"""The fp32 constant tensors the vector lowering reads: attention masks and rotary tables.

A constant's name, shape and values are a pure function of the op that needs it, so a target
can size every constant before lowering (the dataflow target keeps their HBM free during
placement) and the lowering places each one once, however many ops share it.

- softmax mask [S, T]: 0 where a query sees a key, -inf where it does not (causal, and the
  sliding window when the op has one; compiler.reference.attention_mask). A softmax that
  hides nothing (decode without a window, or with a window covering every key) needs none.
- rope table [S, head_dim]: cos of the angles in the first half of each row, sin in the
  second (compiler.reference.rope_tables, its pairs' frequencies in the op's `pairs` order),
  one per (positions, head_dim, rope attributes).
"""
from __future__ import annotations

import zlib

import numpy as np

from compiler.ir import Graph, Op, OpKind
from compiler.reference import attention_mask, rope_tables

__all__ = ["mask_name", "mask_values", "rope_name", "rope_values", "constant_shapes"]

_ROPE_ATTRS = ("theta", "start", "factor", "low_freq_factor", "high_freq_factor", "original_max_position",
               "pairs")


def _hidden(op: Op, s: int, t: int) -> np.ndarray | None:
    if not op.attr("causal", False):
        return None
    hidden = attention_mask(s, t, op.attr("window"))
    return hidden if hidden.any() else None


def mask_name(op: Op, s: int, t: int) -> str | None:
    """The mask constant a softmax over [..., s, t] adds to its scores, or None."""
    if _hidden(op, s, t) is None:
        return None
    window = op.attr("window")
    return f"const.causal_mask.{s}x{t}" if window is None else f"const.window_mask.{s}x{t}.w{window}"


def mask_values(op: Op, s: int, t: int) -> np.ndarray:
    return np.where(_hidden(op, s, t), -np.inf, 0.0).astype(np.float32)


def rope_name(op: Op, s: int, d: int) -> str:
    """The [cos | sin] table of a rope op over [..., s, d]: equal rope attributes share one."""
    key = repr(tuple(op.attr(n) for n in _ROPE_ATTRS)).encode()
    return f"const.rope.{s}x{d}.{zlib.crc32(key):08x}"


def rope_values(op: Op, s: int, d: int) -> np.ndarray:
    cos, sin = rope_tables(op, s, d)
    return np.concatenate([cos, sin], axis=1).astype(np.float32)


def constant_shapes(graph: Graph) -> dict[str, tuple[int, int]]:
    """Every constant the vector lowering of `graph` adds, by name."""
    out: dict[str, tuple[int, int]] = {}
    for op in graph.of_kind(OpKind.SOFTMAX):
        s, t = op.type.shape[-2:]
        name = mask_name(op, s, t) if len(op.type.shape) >= 2 else None
        if name is not None:
            out[name] = (s, t)
    for op in graph.of_kind(OpKind.ROPE):
        s, d = op.type.shape[-2:]
        out[rope_name(op, s, d)] = (s, d)
    return out
