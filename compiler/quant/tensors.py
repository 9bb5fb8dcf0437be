"""The three places the quantised mode rounds a tensor (docs/formats.md gives the order of
rounding that compiled programs will have to match):

    store_weight  at compile time: a weight as codes and scales, its groups along the input
                  channels (the contracted axis); read back on every use
    read_input    when a matmul reads its input: quantised with scales of its own values
                  (dynamic), read back in the executor's dtype
    write_kv      when a pass writes K or V: each token's channels of all the layer's heads
                  (each head's in the compile-time channel order when the recipe rearranges
                  them), quantised and read back in place in the executor's dtype

Quantisation is isa.formats' (float64 in, round to nearest even, saturating); a value read back
is element x scale in float64, then rounded once to the executor's dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isa.formats import Quantized, dequantize, quantize

from compiler.quant.plan import KVWrite, WeightUse, scale_group
from compiler.quant.recipe import TensorQuant

__all__ = ["StoredWeight", "store_weight", "read_input", "write_kv", "token_rows"]


@dataclass(frozen=True, slots=True)
class StoredWeight:
    """A weight as stored: codes and scales with the contracted axis last (`swapped`: the
    weight's last two axes were swapped to make it so, as a linear's [in, out] is)."""

    quantized: Quantized
    swapped: bool

    def values(self) -> np.ndarray:
        """The float64 weight the codes and scales stand for, in the weight's own layout."""
        values = dequantize(self.quantized)
        return np.swapaxes(values, -1, -2) if self.swapped else values


def store_weight(weight: np.ndarray, use: WeightUse) -> StoredWeight:
    values = np.asarray(weight, dtype=np.float64)
    if not use.contracted_last:
        values = np.swapaxes(values, -1, -2)
    quant = use.quant
    return StoredWeight(quantize(values, quant.format, scale_group(quant, values.shape[-1])),
                        not use.contracted_last)


def read_input(x: np.ndarray, quant: TensorQuant) -> np.ndarray:
    """A matmul's input as the MACs read it: quantised along its last (contracted) axis."""
    q = quantize(x, quant.format, scale_group(quant, x.shape[-1]))
    return dequantize(q).astype(x.dtype)


def token_rows(value: np.ndarray) -> np.ndarray:
    """[b, heads, s, head_dim] as [b, s, heads * head_dim]: each token's channels, head-major."""
    b, h, s, d = value.shape
    return value.transpose(0, 2, 1, 3).reshape(b, s, h * d)


def write_kv(value: np.ndarray, write: KVWrite, order: np.ndarray | None = None) -> np.ndarray:
    """K or V [b, heads, s, head_dim] as the cache holds it. `order`: the permutation of
    head_dim every head stores its channels in (rearrange.py); read back in place."""
    if order is not None:
        value = value[..., order]
    rows = token_rows(value)
    quant = write.quant
    back = dequantize(quantize(rows, quant.format, scale_group(quant, rows.shape[-1], write.head_dim)))
    b, h, s, d = value.shape
    back = back.reshape(b, s, h, d).transpose(0, 2, 1, 3)
    if order is not None:
        back = back[..., np.argsort(order)]
    return back.astype(value.dtype)
