"""The GEMV fast path: closed-form DRAM-command timing of the regular streams compilers emit.

Fast path. `gemv_stream_cycles(arch, tiles, start_cycle)` gives the same numbers for GEMV
tiles: per tile WRGB x g (input vector), then per row ACT_ALL, C x MAC_ALL, RDMAC_ALL (when
`read_each_row`), PRE_ALL. With s = max(1, tCCD_S, tCCD_L) the MAC_ALL spacing and
L = tRCD_MAC + (C-1)*s the ACT_ALL -> last MAC_ALL offset, a row clear of refresh and of the
WRGB wait takes

    P = max(tRAS, L + tRTP, L + s + 1 if RDMAC_ALL)      ACT_ALL -> PRE_ALL
    T = max(tRC, tRRD, tFAW, P + tRP)                    ACT_ALL -> next ACT_ALL

so R such rows from ACT_ALL at a end with PRE_ALL at a + (R-1)*T + P. Refresh k falls at
k*tREFI: the fast path evaluates each row in closed form (its MACs as one arithmetic run, cut
where it reaches the due cycle, the refresh then replayed by the rules above) and, once a row
repeats the previous one shifted by a uniform T with no fixed floor (WRGB data, last REF)
binding, jumps floor((due - 1 - last issue) / T) rows at once. The rules are max-plus, so a
shifted state gives the same rows shifted: the jump is exact. Work: O(tiles + refreshes).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from arch.pim import PimArch
from sim.machines.pim.commands import (
    FOREVER, NEVER, Command, DramError, DramStats, Tally, command_tails, refresh_schedule)

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
    s = max(1, t.tCCD_S, t.tCCD_L)
    last_mac = t.tRCD_MAC + (cols - 1) * s
    p = max(t.tRAS, last_mac + t.tRTP, last_mac + s + 1 if read_each_row else 0)
    return RowTiming(p, max(t.tRC, t.tRRD, t.tFAW, p + t.tRP))


@dataclass(slots=True)
class _Clock:
    """An all-bank stream's state (every bank alike) and the refresh schedule."""

    bus: int
    act: int = NEVER
    pre: int = NEVER
    mac: int = NEVER
    col_any: int = NEVER
    col_grp: int = NEVER
    wg: int = NEVER
    ref: int = NEVER
    due: int = FOREVER
    open: bool = False
    memo: bool = False                  # rows closed by a refresh, to reopen
    fresh: bool = False


_SHIFTING = ("bus", "act", "pre", "mac", "col_any", "col_grp")


class _AllBank:
    """Issues all-bank commands on a `_Clock` by the same rules as `ChannelState`, in closed form."""

    def __init__(self, t, clock: _Clock, tally: Tally) -> None:
        self.t, self.c, self.tally, self.tail = t, clock, tally, command_tails(t)

    def _earliest(self, k: str) -> int:
        t, c = self.t, self.c
        e = max(c.bus + 1, c.ref + t.tRFC)
        if k == "ACT_ALL":
            return max(e, c.pre + t.tRP, c.act + max(t.tRC, t.tRRD, t.tFAW))
        if k == "PRE_ALL":
            return max(e, c.act + t.tRAS, c.mac + t.tRTP) if c.open else e
        if k == "WRGB":
            return max(e, c.col_any + t.tCCD_S)
        e = max(e, c.col_any + t.tCCD_S, c.col_grp + t.tCCD_L)
        return max(e, c.act + t.tRCD_MAC, c.wg) if k == "MAC_ALL" else e

    def _apply(self, k: str, e: int) -> None:
        c, tally = self.c, self.tally
        if k == "ACT_ALL":
            c.act, c.open, c.memo, c.fresh = e, True, False, True
        elif k == "PRE_ALL":
            c.pre = e if c.open else c.pre
            c.open = c.memo = False
        elif k == "MAC_ALL":
            tally.misses += c.fresh
            tally.hits += not c.fresh
            c.fresh, c.mac, c.col_any, c.col_grp = False, e, e, e
        elif k == "RDMAC_ALL":
            c.col_any = c.col_grp = e
        else:                                               # WRGB
            c.col_any, c.wg = e, e + self.t.WR_GB
        c.bus = e
        tally.counts[k] += 1
        tally.end = max(tally.end, e + self.tail[k])

    def _refresh(self) -> None:
        t, c, tally = self.t, self.c, self.tally
        if c.open:
            c.pre = c.bus = max(c.due, c.bus + 1, c.ref + t.tRFC, c.act + t.tRAS, c.mac + t.tRTP)
            c.open, c.memo = False, True
            tally.counts["PRE_ALL"] += 1
            tally.end = max(tally.end, c.pre + 1)
        c.ref = c.bus = max(c.due, c.bus + 1, c.ref + t.tRFC, c.pre + t.tRP, c.act + t.tRC)
        c.due += t.tREFI
        tally.counts["REF"] += 1
        tally.refs.append(c.ref)
        tally.end = max(tally.end, c.ref + 1)

    def issue(self, kind: str) -> int:
        """One command (after any refresh it meets and the reopen a MAC_ALL then needs)."""
        while True:
            k = "ACT_ALL" if kind == "MAC_ALL" and not self.c.open else kind
            e = self._earliest(k)
            if e >= self.c.due:
                self._refresh()
                continue
            self._apply(k, e)
            if k == kind:
                return e

    def run(self, kind: str, n: int, step: int) -> None:
        """n commands of `kind` in a row: after the first, one per `step` until the due cycle."""
        c, tally = self.c, self.tally
        while n > 0:
            e = self.issue(kind)
            k = min(n - 1, (c.due - 1 - e) // step)
            n -= 1 + k
            if k > 0:
                last = c.bus = c.col_any = e + k * step
                tally.counts[kind] += k
                if kind == "MAC_ALL":
                    c.mac = c.col_grp = last
                    tally.hits += k
                else:
                    c.wg = last + self.t.WR_GB
                tally.end = max(tally.end, last + self.tail[kind])

    def row(self, cols: int, read: bool) -> int:
        """One GEMV row; returns its own end (max of issue + tail over its commands)."""
        t = self.t
        self.issue("ACT_ALL")
        self.run("MAC_ALL", cols, max(1, t.tCCD_S, t.tCCD_L))
        own = self.issue("RDMAC_ALL") + t.RD_MAC if read else NEVER
        return max(own, self.issue("PRE_ALL") + 1)


def _jump(stream: _AllBank, before: _Clock, own_end: int, rows_left: int, tile: GemvTile) -> int:
    """Rows that repeat the last one shifted by a uniform period, applied at once; 0 if none."""
    after = stream.c
    shifts = {getattr(after, f) - getattr(before, f) for f in _SHIFTING}
    if len(shifts) != 1 or (after.open, after.memo) != (before.open, before.memo):
        return 0
    shift = shifts.pop()
    k = min(rows_left, (after.due - 1 - after.bus) // shift) if shift > 0 else 0
    if k <= 0:
        return 0
    probe = _AllBank(stream.t, dataclasses.replace(before, wg=NEVER, ref=NEVER, due=FOREVER),
                     Tally(0, 0))
    probe.row(tile.cols, tile.read_each_row)            # the row without its fixed floors
    if any(getattr(probe.c, f) != getattr(after, f) for f in _SHIFTING):
        return 0
    for f in _SHIFTING:
        setattr(after, f, getattr(after, f) + k * shift)
    tally = stream.tally
    tally.counts.update({"ACT_ALL": k, "MAC_ALL": k * tile.cols, "PRE_ALL": k,
                         "RDMAC_ALL": k * tile.read_each_row})
    tally.hits += k * (tile.cols - 1)
    tally.misses += k
    tally.end = max(tally.end, own_end + k * shift)
    return k


def gemv_stream_cycles(arch: PimArch, tiles: Sequence[GemvTile], start_cycle: int = 0) -> DramStats:
    """What `CommandChannel(arch).run(gemv_stream(arch, tiles), start_cycle).stats` returns,
    in O(tiles + refreshes) (module docstring)."""
    t = arch.timing
    ref, due = refresh_schedule(t, start_cycle)
    stream = _AllBank(t, _Clock(bus=start_cycle - 1, ref=ref, due=due),
                      Tally(start_cycle, start_cycle))
    for tile in tiles:
        tile.check(arch)
        stream.run("WRGB", tile.gbuf_bursts, max(1, t.tCCD_S))
        left = tile.rows
        while left:
            before, refs = dataclasses.replace(stream.c), len(stream.tally.refs)
            own_end = stream.row(tile.cols, tile.read_each_row)
            left -= 1
            if left and len(stream.tally.refs) == refs:
                left -= _jump(stream, before, own_end, left, tile)
    return stream.tally.stats()
