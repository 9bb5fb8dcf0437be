"""Narrow MACs (isa `mfmt`; arch field `mac_formats`): what a gemm after an `mfmt` costs on an
array that lists the format, shared by the machines whose arrays have them (systolic, dataflow
PCUs). A gemm of two operands' codes in a listed format makes `mac_formats[fmt]` products a PE a
cycle (K packed: `gemm_cycles(pack=...)`) at `energy.mac_format_pj[fmt]` a MAC; its products
count in `macs` and in `macs_<fmt>`; a format the array does not list is refused in one line.
"""
from __future__ import annotations

from typing import Mapping

import isa

__all__ = ["NARROW", "MAC_EVENTS", "gemm_pack", "mac_energy_pj", "program_peak"]

NARROW = tuple(isa.MAC_FORMATS[1:])             # mfmt's narrow formats
MAC_EVENTS = tuple(f"macs_{fmt}" for fmt in NARROW)


def gemm_pack(i: int, ins: isa.Instr, cfg: isa.QueueConfig, mac_formats: Mapping[str, int],
              arch_name: str) -> tuple[str, int]:
    """(format, products a PE a cycle) of gemm `i` under its queue's last mfmt ("none", 1 at
    the operand type); IsaError of one line for a format the array does not list."""
    fmt = cfg.qcfg["fmt"] if cfg.qcfg is not None and cfg.qcfg.opcode == "mfmt" else "none"
    if fmt == "none":
        return fmt, 1
    pack = mac_formats.get(fmt)
    if pack is None:
        listed = ", ".join(mac_formats) or "none"
        raise isa.IsaError(f"instruction {i} ({ins.queue} gemm): mfmt {fmt}, and {arch_name} "
                           f"has no {fmt} MACs (arch field mac_formats: {listed})")
    return fmt, pack


def mac_energy_pj(totals: Mapping[str, float], mac_pj: float,
                  mac_format_pj: Mapping[str, float]) -> float:
    """Every MAC at `mac_pj`, but those of a narrow format at its own energy."""
    narrow = sum(totals.get(f"macs_{f}", 0) for f in NARROW)
    return ((totals["macs"] - narrow) * mac_pj
            + sum(totals.get(f"macs_{f}", 0) * pj for f, pj in mac_format_pj.items()))


def program_peak(program: isa.Program, mac_formats: Mapping[str, int]) -> int:
    """The most products a PE makes a cycle in the formats the program's mfmt set (1 without)."""
    return max([1, *(mac_formats.get(ins["fmt"], 1) for ins in program.instructions
                     if ins.opcode == "mfmt")])
