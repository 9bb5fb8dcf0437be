"""Composition of experts on a dataflow chip: every model's weights live in DDR, and switching
to a model copies its weights into HBM with `df.xfer` (the AGCUs' tier-to-tier transfer).

`switch_program` builds the program of a sequence of switches, one op mark per switch, so the
simulator's per-op table gives each switch's time. Sizes are checked here: all experts must
fit DDR together, and each must fit HBM.
"""
from __future__ import annotations

import isa

from arch.dataflow import DataflowArch
from compiler.errors import CompileError
from compiler.targets.emit import Emitter

__all__ = ["switch_program", "XFER_MAX_BYTES"]

XFER_MAX_BYTES = ((1 << 24) - 1) * 1024 // (1 << 20) * (1 << 20)   # df.xfer kib is a U24


def switch_program(experts: list[tuple[str, int]], arch: DataflowArch) -> isa.Program:
    """Switch to each (name, weight bytes) in turn: DDR -> HBM copies on agcu0."""
    total = sum(size for _, size in experts)
    if total > arch.ddr_bytes:
        raise CompileError(f"experts need {total:,} bytes of weights; {arch.name}'s DDR holds "
                           f"{arch.ddr_bytes:,}")
    for name, size in experts:
        if size > arch.hbm_bytes:
            raise CompileError(f"expert '{name}' needs {size:,} bytes of weights; {arch.name}'s HBM "
                               f"holds {arch.hbm_bytes:,}")
    em, symbols, at = Emitter("dataflow"), [], 0
    slot = max(size for _, size in experts)
    for index, (name, size) in enumerate(experts):
        kib = -(-size // 1024)
        symbols.append(isa.Symbol(f"expert{index}", "ddr", at, (kib * 512,), isa.DType.bf16))
        em.begin_op(f"switch.{index}")
        for offset in range(0, kib * 1024, XFER_MAX_BYTES):
            chunk = min(XFER_MAX_BYTES, kib * 1024 - offset)
            em.emit("agcu0", "df.xfer", dst=isa.Addr("hbm", offset), src=isa.Addr("ddr", at + offset),
                    kib=chunk // 1024)
        at += kib * 1024
    symbols.insert(0, isa.Symbol("active", "hbm", 0, (-(-slot // 1024) * 512,), isa.DType.bf16))
    return em.program(("sram", "hbm", "ddr"), tuple(symbols), ("agcu0",))
