"""GEMV tile streams: the command stream compilers emit, its row cycle in closed form, and its
timing by the simulator's fast path.

A tile is, per channel, WRGB x g (the input vector), then per row ACT_ALL, C x MAC_ALL,
RDMAC_ALL (when `read_each_row`: the partial sums out), PRE_ALL. With s = max(1, tCCD_S,
tCCD_L) the MAC_ALL spacing, L = tRCD_MAC + (C-1)*s the ACT_ALL -> last MAC_ALL offset and
M = tMODCH, a row clear of refresh, started in bank mode, takes (`gemv_row_timing`)

    R = max(L + s, L + 1 + M)                         ACT_ALL -> RDMAC_ALL (a MODE at L + 1)
    P = max(tRAS, L + tRTP, R + 1 + M, R + tRDMAC_PRE) if RDMAC_ALL (a MODE at R + 1)
        max(tRAS, L + tRTP) otherwise                 ACT_ALL -> PRE_ALL
    T = max(tRC, tRRD_L, tFAW, P + tRP)               ACT_ALL -> next ACT_ALL

(with M = 0 there are no MODEs: R = L + s, P = max(tRAS, L + tRTP, R + 1)). On pim-gpt with
C = 64: L = 182, R = 215, P = 248, T = 280 cycles (docs/pim.md breaks it down).
`gemv_stream_cycles` times whole tiles, refreshes included, by ChannelState in lockstep, the
simulator's fast path; tests hold it equal to the command-by-command model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from arch.pim import PimArch
from sim.machines.pim.commands import Command, DramError, DramStats
from sim.machines.pim.dram import ChannelState

__all__ = ["GemvTile", "RowTiming", "gemv_stream", "gemv_row_timing", "gemv_stream_cycles"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GemvTile:
    """A weight tile on every bank of one channel: `rows` DRAM rows of `cols` MAC columns."""

    rows: int
    cols: int
    gbuf_bursts: int = 0            # WRGB commands of the input vector, before the rows
    read_each_row: bool = True      # RDMAC_ALL after each row's MACs (partial sums out)
    first_row: int = 0              # DRAM row of the tile's first row

    def check(self, arch: PimArch) -> None:
        limit = arch.gbuf_bytes // arch.burst_bytes
        if not (self.rows >= 1 and 0 <= self.first_row and self.first_row + self.rows <= arch.rows):
            raise DramError(f"GemvTile rows {self.first_row}+{self.rows} outside 1..{arch.rows}")
        if not 1 <= self.cols <= arch.columns:
            raise DramError(f"GemvTile cols={self.cols} outside 1..{arch.columns}")
        if not 0 <= self.gbuf_bursts <= limit:
            raise DramError(f"GemvTile gbuf_bursts={self.gbuf_bursts} outside 0..{limit}")


@dataclass(frozen=True, slots=True)
class RowTiming:
    act_to_pre: int                 # P: ACT_ALL -> PRE_ALL
    period: int                     # T: ACT_ALL -> next ACT_ALL


def gemv_stream(arch: PimArch, tiles: Sequence[GemvTile]) -> list[Command]:
    """The command stream of `tiles`, as the fast path assumes it."""
    out: list[Command] = []
    for tile in tiles:
        tile.check(arch)
        out += [Command("WRGB", col=j) for j in range(tile.gbuf_bursts)]
        for r in range(tile.first_row, tile.first_row + tile.rows):
            out.append(Command("ACT_ALL", row=r))
            out += [Command("MAC_ALL", col=j) for j in range(tile.cols)]
            out += [Command("RDMAC_ALL")] if tile.read_each_row else []
            out.append(Command("PRE_ALL"))
    return out


def gemv_row_timing(arch: PimArch, cols: int, read_each_row: bool) -> RowTiming:
    """P and T of the module docstring for rows of `cols` MAC_ALL columns."""
    t = arch.timing
    s, m = max(1, t.tCCD_S, t.tCCD_L), t.tMODCH
    last_mac = t.tRCD_MAC + (cols - 1) * s
    p = max(t.tRAS, last_mac + t.tRTP)
    if read_each_row:
        rdmac = max(last_mac + s, last_mac + 1 + m) if m else last_mac + s
        p = max(p, rdmac + 1 + m, rdmac + t.tRDMAC_PRE)
    return RowTiming(p, max(t.tRC, t.tRRD_L, t.tFAW, p + t.tRP))


def gemv_stream_cycles(arch: PimArch, tiles: Sequence[GemvTile], start_cycle: int = 0) -> DramStats:
    """What `CommandChannel(arch).run(gemv_stream(arch, tiles), start_cycle).stats` returns,
    by the simulator's fast path: the channel in lockstep, column runs in closed form."""
    t = arch.timing
    state = ChannelState(arch, start_cycle, lockstep=True)
    macs, wrgb = max(1, t.tCCD_S, t.tCCD_L), max(1, t.tCCD_S)
    at = start_cycle
    for tile in tiles:
        tile.check(arch)
        plans = [((Command("WRGB"), tile.gbuf_bursts, wrgb),)] if tile.gbuf_bursts else []
        for r in range(tile.first_row, tile.first_row + tile.rows):
            plans.append(((Command("ACT_ALL", row=r), 1, 1), (Command("MAC_ALL"), tile.cols, macs))
                         + (((Command("RDMAC_ALL"), 1, 1),) if tile.read_each_row else ())
                         + ((Command("PRE_ALL"), 1, 1),))
        at += sum(state.run_plans(range(len(plans)), plans, at))
    return state.stats()


