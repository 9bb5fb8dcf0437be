"""A compiled PIM program: `Lowered` plus the PIM matrices whose initial contents are scattered
into the banks' layouts (weights, and a decode pass's KV cache so far)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from isa import DType
from isa.numerics import to_storage
from isa.packing import pack_rows

from arch.pim import PimArch
from compiler.ir import Graph, OpKind
from compiler.passes.quantised import stored_codes, stored_scales, stored_weight
from compiler.targets.base import Lowered
from compiler.targets.pim import layout as pl
from compiler.targets.pim.placement import PimMatrix

__all__ = ["PimLowered", "ASSUMPTIONS"]

ASSUMPTIONS = ("GEMVs in the DRAM banks (one per token in prefill), everything else on the host ASIC",
               "activations round-trip the DRAM's activation region between ops (ASIC DMA)")


@dataclass(frozen=True)
class PimLowered(Lowered):
    """A `Lowered` whose program also holds PIM matrices: symbol -> `PimMatrix`."""

    arch: PimArch
    matrices: dict[str, PimMatrix]

    def quantised_bytes(self, layouts: tuple[str, ...] = ("weight", "planes")) -> int:
        """The codes as the banks hold them, and the scales as the ASIC reads them (fp32); the
        PIM target stores no KV cache narrow."""
        return sum(math.prod(fmt.code_shape) + 4 * fmt.cols * (fmt.rows // fmt.group)
                   for fmt in self.quantised.values() if fmt.layout in layouts)

    def initial_data(self, graph: Graph, weights, feeds) -> dict[str, np.ndarray]:
        """Symbol -> initial contents: dense values as targets.data does, PIM matrices
        scattered into their bank layout (weights, and a decode pass's KV cache so far)."""
        symbols = {s.name for s in self.program.symbols}
        data = {k: v for k, v in super().initial_data(graph, weights, feeds).items() if k in symbols}
        arch = self.arch
        for name, m in self.matrices.items():
            lay = m.layout
            if m.kind == "linear" and m.scales is not None:     # N-bit codes, packed row by row
                codes, scales = _codes_and_scales(weights, m.value, self.quantised[m.value])
                data[m.scales] = scales
                rows = pl.scatter_linear(arch, lay, codes[:, m.n0:m.n0 + m.outputs])
                data[name] = pack_rows(rows.astype(np.int8), lay.bits).view("<u2")
                continue
            if m.kind == "linear":
                w = np.asarray(weights[m.value], np.float64)
                w = w.T if m.transposed else w
                rows = pl.scatter_linear(arch, lay, w[:, m.n0:m.n0 + m.outputs])
            elif graph[m.value].kind is OpKind.KV_APPEND:
                cache = np.asarray(feeds[graph[m.value].inputs[0]], np.float64)[0]
                positions = graph[m.value].type.shape[-2]
                rows = (pl.scatter_kcache(arch, lay, cache) if m.kind == "kcache"
                        else pl.scatter_vcache(arch, lay, cache, positions))
            else:
                continue                                  # written by the program itself
            data[name] = to_storage(rows, DType.bf16)
        return data


def _codes_and_scales(weights, value: str, fmt) -> tuple[np.ndarray, np.ndarray]:
    """A quantised weight's codes [K, N] and its scales as the ASIC reads them, fp32 [K/g, N]
    (a row per scale group; one row per output channel, or the tensor's repeated)."""
    stored = stored_weight(weights, value, fmt)
    scales = np.broadcast_to(stored_scales(stored, fmt), (fmt.rows // fmt.group, fmt.cols))
    return stored_codes(stored), scales.astype(np.float32)
