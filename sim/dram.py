"""DRAM-command timing of one PIM channel: the command-level reference and the GEMV fast path.

Ground truth. `CommandChannel(arch).run(commands, start_cycle)` issues one channel's commands
in order (an in-order queue, no reordering), each at the earliest cycle every rule allows
(all times in DRAM cycles; `arch.timing`):

    every command  >= previous issue + 1 (one command per cycle), >= last REF + tRFC
    ACT b          bank idle; >= PRE b + tRP, ACT b + tRC, any ACT + tRRD, 4th-last ACT + tFAW
    ACT_ALL        all banks idle; >= every PRE + tRP, last ACT + max(tRC, tRRD, tFAW)
                   (AiM's ACT16 waits tRC after any ACT; it counts as four ACTs for tFAW)
    PRE b          open: >= ACT b + tRAS, RD/MAC b + tRTP, WR b + tWR; idle: a no-op slot
    PRE_ALL        the PRE rule over every open bank
    RD/WR/MAC b    bank open; >= ACT b + tRCD (RD, WR: tRCD_RD; MAC: tRCD_MAC)
    MAC_ALL        every bank open; >= every ACT + tRCD_MAC
    column kinds   RD WR MAC MAC_ALL RDMAC RDMAC_ALL WRGB: >= last column + tCCD_S and >= last
                   column of a shared bank group + tCCD_L (all-bank kinds hold every group, WRGB
                   none); MAC and MAC_ALL also >= last WRGB + WR_GB (its data in the buffer)
    REF            PRE_ALL of open rows first; >= every PRE + tRP, last ACT + tRC

Refresh: REF k is due at cycle k*tREFI (k >= 1). Those due before `start_cycle` were done on
time while the channel idled. Before each command, if its earliest cycle is >= the due cycle,
the controller refreshes first (PRE_ALL of open rows at >= due, REF), then resumes; a RD, WR,
MAC or MAC_ALL whose row the refresh closed first gets it reopened (ACT_ALL when every bank
was open to one row, else ACT per bank). A 'REF' in the stream refreshes at once (an extra
REF; the schedule stays). The end cycle is max(issue + tail): tail tCL + tCCD_S for RD, RD_MAC
for RDMAC/RDMAC_ALL, WR_GB for WRGB, 1 otherwise. A RD/WR/MAC/MAC_ALL is a row miss when it
is the first column command since its row opened (the one that paid for the ACT), else a hit.

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

ISA -> commands (one pim queue = one channel): pim.act/act_all/pre/pre_all -> ACT, ACT_ALL,
PRE, PRE_ALL; pim.mac/mac_all -> ncols x MAC/MAC_ALL; pim.wrgb -> ceil(bytes/burst_bytes) x
WRGB; pim.rdmac/rdmac_all -> RDMAC/RDMAC_ALL; pim.wr/rd -> ncols x WR/RD.
"""
from __future__ import annotations

import dataclasses
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

__all__ = ["Command", "DramError", "DramStats", "CommandResult", "CommandChannel", "GemvTile",
           "RowTiming", "gemv_stream", "gemv_row_timing", "gemv_stream_cycles", "KINDS"]

KINDS = ("ACT", "ACT_ALL", "PRE", "PRE_ALL", "MAC", "MAC_ALL", "RD", "WR", "WRGB", "RDMAC",
         "RDMAC_ALL", "REF")
_ALL_BANK = frozenset({"ACT_ALL", "PRE_ALL", "MAC_ALL", "RDMAC_ALL"})
_ROW_ACCESS = frozenset({"RD", "WR", "MAC", "MAC_ALL"})        # need an open row
_COLUMN = _ROW_ACCESS | {"RDMAC", "RDMAC_ALL", "WRGB"}
NEVER = -(1 << 60)                                              # "long ago": no constraint
_FOREVER = 1 << 62


class DramError(ValueError):
    """A command stream that breaks the DRAM protocol; names the command index."""


class Command(NamedTuple):
    """One DRAM command; `row` of a column command, when given, must be the open row."""

    kind: str
    bank: int = 0
    row: int | None = None
    col: int = 0


@dataclass(frozen=True, slots=True)
class DramStats:
    start_cycle: int
    end_cycle: int
    row_hits: int
    row_misses: int
    counts: dict[str, int]                  # issued commands by kind, the controller's included
    refresh_cycles: tuple[int, ...]         # issue cycle of every REF

    @property
    def cycles(self) -> int:
        return self.end_cycle - self.start_cycle


@dataclass(frozen=True, slots=True)
class CommandResult:
    issue_cycles: tuple[int, ...]           # one per stream command
    stats: DramStats


@dataclass(slots=True)
class _Tally:
    start: int
    end: int
    hits: int = 0
    misses: int = 0
    counts: Counter = field(default_factory=Counter)
    refs: list[int] = field(default_factory=list)

    def stats(self) -> DramStats:
        counts = {k: self.counts[k] for k in KINDS if self.counts[k]}
        return DramStats(self.start, self.end, self.hits, self.misses, counts, tuple(self.refs))


def _tails(t) -> dict[str, int]:
    return {**dict.fromkeys(KINDS, 1), "RD": t.tCL + t.tCCD_S, "RDMAC": t.RD_MAC,
            "RDMAC_ALL": t.RD_MAC, "WRGB": t.WR_GB}


def _schedule(t, start: int) -> tuple[int, int]:
    """(last REF before start or NEVER, next due cycle) for a channel idle until `start`."""
    if start < 0:
        raise DramError(f"start_cycle={start} must be >= 0")
    k = max(1, -(-start // t.tREFI))
    return ((k - 1) * t.tREFI if k >= 2 else NEVER), k * t.tREFI


class CommandChannel:
    """The command-level model of one channel (see the module docstring for every rule)."""

    def __init__(self, arch) -> None:
        self.arch = arch

    def run(self, commands: Iterable[Sequence], start_cycle: int = 0) -> CommandResult:
        return _Run(self.arch, start_cycle).execute(commands)


class _Run:
    """State of one `CommandChannel.run`: per-bank last-command cycles, open rows, refresh."""

    def __init__(self, arch, start: int) -> None:
        self.arch, self.t, n = arch, arch.timing, arch.banks
        self.tail = _tails(self.t)
        self.group = [arch.bank_group(b) for b in range(n)]
        self.open: list[int | None] = [None] * n
        self.memo: list[int | None] = [None] * n       # row a refresh closed, to reopen
        self.n_open = 0
        self.act, self.pre, self.rd, self.wr = ([NEVER] * n for _ in range(4))
        self.fresh = [False] * n
        self.faw = deque([NEVER] * 4, maxlen=4)
        self.act_any = self.col_any = self.wg = NEVER
        self.col_grp = [NEVER] * arch.bank_groups
        self.bus = start - 1
        self.ref, self.due = _schedule(self.t, start)
        self.tally = _Tally(start, start)

    def execute(self, commands: Iterable[Sequence]) -> CommandResult:
        issued = []
        for i, raw in enumerate(commands):
            cmd = self._validate(i, Command(*raw))
            while True:
                head = self._reopen(i, cmd) or cmd
                e = self._earliest(head)
                if e >= self.due:
                    self._refresh(self.due)
                    self.due += self.t.tREFI
                    continue
                if head.kind == "REF":
                    e = self._refresh(e)
                else:
                    self._apply(i, head, e)
                if head is cmd:
                    issued.append(e)
                    break
        return CommandResult(tuple(issued), self.tally.stats())

    def _validate(self, i: int, c: Command) -> Command:
        a = self.arch
        if c.kind not in KINDS:
            raise DramError(f"command {i}: unknown kind {c.kind!r} (kinds: {' '.join(KINDS)})")
        if c.kind not in _ALL_BANK and not 0 <= c.bank < a.banks:
            raise DramError(f"command {i} ({c.kind}): bank {c.bank} outside 0..{a.banks - 1}")
        if c.kind in ("ACT", "ACT_ALL") and (c.row is None or not 0 <= c.row < a.rows):
            raise DramError(f"command {i} ({c.kind}): row {c.row!r} outside 0..{a.rows - 1}")
        if c.kind in _ROW_ACCESS and not 0 <= c.col < a.columns:
            raise DramError(f"command {i} ({c.kind}): col {c.col} outside 0..{a.columns - 1}")
        return c

    def _banks(self, c: Command) -> range | tuple[int, ...]:
        if c.kind in _ALL_BANK:
            return range(self.arch.banks)
        return () if c.kind == "WRGB" else (c.bank,)

    def _reopen(self, i: int, c: Command) -> Command | None:
        """The ACT the controller inserts for a row that a refresh closed, if any."""
        if c.kind not in _ROW_ACCESS or (c.kind == "MAC_ALL" and self.n_open == self.arch.banks):
            return None
        closed = [b for b in self._banks(c) if self.open[b] is None]
        if not closed:
            return None
        for b in closed:
            if self.memo[b] is None:
                raise DramError(f"command {i} ({c.kind}): bank {b} has no open row")
        rows = {self.memo[b] for b in closed}
        if len(closed) == self.arch.banks and len(rows) == 1:
            return Command("ACT_ALL", row=rows.pop())
        return Command("ACT", closed[0], self.memo[closed[0]])

    def _pre_ready(self, b: int) -> int:
        t = self.t
        return max(self.act[b] + t.tRAS, self.rd[b] + t.tRTP, self.wr[b] + t.tWR)

    def _earliest(self, c: Command) -> int:
        t, k = self.t, c.kind
        e = max(self.bus + 1, self.ref + t.tRFC)
        if k == "ACT":
            b = c.bank
            return max(e, self.pre[b] + t.tRP, self.act[b] + t.tRC, self.act_any + t.tRRD,
                       self.faw[0] + t.tFAW)
        if k == "ACT_ALL":
            return max(e, max(self.pre) + t.tRP, self.act_any + max(t.tRC, t.tRRD, t.tFAW))
        if k in ("PRE", "PRE_ALL"):
            return max([e] + [self._pre_ready(b) for b in self._banks(c)
                              if self.open[b] is not None])
        if k == "REF":
            return e                                    # _refresh adds its own waits
        banks = self._banks(c)
        if k in _ALL_BANK:
            e = max(e, self.col_any + t.tCCD_S, max(self.col_grp) + t.tCCD_L)
        elif banks:
            e = max(e, self.col_any + t.tCCD_S, self.col_grp[self.group[c.bank]] + t.tCCD_L)
        else:
            e = max(e, self.col_any + t.tCCD_S)
        if k in ("RD", "WR"):
            e = max(e, self.act[c.bank] + t.tRCD_RD)
        elif k in ("MAC", "MAC_ALL"):
            e = max(e, self.wg, max(self.act[b] for b in banks) + t.tRCD_MAC)
        return e

    def _apply(self, i: int, c: Command, e: int) -> None:
        k, banks = c.kind, self._banks(c)
        if k in ("ACT", "ACT_ALL"):
            busy = [b for b in banks if self.open[b] is not None]
            if busy:
                raise DramError(f"command {i} ({k}): bank {busy[0]} is open; precharge it first")
            for b in banks:
                self.open[b], self.memo[b], self.act[b], self.fresh[b] = c.row, None, e, True
            self.n_open += len(banks)
            self.act_any = e
            self.faw.extend([e] * (4 if k == "ACT_ALL" else 1))
        elif k in ("PRE", "PRE_ALL"):
            for b in banks:
                if self.open[b] is not None:
                    self.pre[b], self.open[b] = e, None
                    self.n_open -= 1
                self.memo[b] = None
        elif k in _COLUMN:
            if k in _ROW_ACCESS:
                self._access(i, c, banks, e)
            if k == "WRGB":
                self.wg = e + self.t.WR_GB
            self.col_any = e
            for g in ({self.group[b] for b in banks} if len(banks) < self.arch.banks
                      else range(self.arch.bank_groups)):
                self.col_grp[g] = e
        self.bus = e
        self.tally.counts[k] += 1
        self.tally.end = max(self.tally.end, e + self.tail[k])

    def _access(self, i: int, c: Command, banks, e: int) -> None:
        for b in banks:
            if c.row is not None and self.open[b] != c.row:
                raise DramError(f"command {i} ({c.kind}): row {c.row} is not open in bank {b} "
                                f"(open: {self.open[b]})")
        if any(self.fresh[b] for b in banks):
            self.tally.misses += 1
        else:
            self.tally.hits += 1
        last = self.wr if c.kind == "WR" else self.rd
        for b in banks:
            self.fresh[b], last[b] = False, e

    def _refresh(self, not_before: int) -> int:
        """Close open rows, then REF; returns the REF cycle."""
        t, tally = self.t, self.tally
        opened = [b for b in range(self.arch.banks) if self.open[b] is not None]
        if opened:
            p = max(not_before, self.bus + 1, self.ref + t.tRFC,
                    *(self._pre_ready(b) for b in opened))
            for b in opened:
                self.memo[b], self.open[b], self.pre[b] = self.open[b], None, p
            self.n_open = 0
            self.bus = p
            tally.counts["PRE_ALL"] += 1
            tally.end = max(tally.end, p + 1)
        r = max(not_before, self.bus + 1, self.ref + t.tRFC, max(self.pre) + t.tRP,
                self.act_any + t.tRC)
        self.ref = self.bus = r
        tally.counts["REF"] += 1
        tally.refs.append(r)
        tally.end = max(tally.end, r + 1)
        return r


# ---- GEMV streams: the command list and the fast path ------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class GemvTile:
    """A weight tile on every bank of one channel: `rows` DRAM rows of `cols` MAC columns."""

    rows: int
    cols: int
    gbuf_bursts: int = 0            # WRGB commands of the input vector, before the rows
    read_each_row: bool = True      # RDMAC_ALL after each row's MACs (partial sums out)
    first_row: int = 0              # DRAM row of the tile's first row

    def check(self, arch) -> None:
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


def gemv_stream(arch, tiles: Sequence[GemvTile]) -> list[Command]:
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


def gemv_row_timing(arch, cols: int, read_each_row: bool) -> RowTiming:
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
    due: int = _FOREVER
    open: bool = False
    memo: bool = False                  # rows closed by a refresh, to reopen
    fresh: bool = False


_SHIFTING = ("bus", "act", "pre", "mac", "col_any", "col_grp")


class _AllBank:
    """Issues all-bank commands on a `_Clock` by the same rules as `_Run`, in closed form."""

    def __init__(self, t, clock: _Clock, tally: _Tally) -> None:
        self.t, self.c, self.tally, self.tail = t, clock, tally, _tails(t)

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
    probe = _AllBank(stream.t, dataclasses.replace(before, wg=NEVER, ref=NEVER, due=_FOREVER),
                     _Tally(0, 0))
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


def gemv_stream_cycles(arch, tiles: Sequence[GemvTile], start_cycle: int = 0) -> DramStats:
    """What `CommandChannel(arch).run(gemv_stream(arch, tiles), start_cycle).stats` returns,
    in O(tiles + refreshes) (module docstring)."""
    t = arch.timing
    ref, due = _schedule(t, start_cycle)
    stream = _AllBank(t, _Clock(bus=start_cycle - 1, ref=ref, due=due),
                      _Tally(start_cycle, start_cycle))
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
