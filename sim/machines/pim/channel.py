"""One PIM channel driven by its pim queue: ISA instructions -> DRAM commands -> cycles.

Each `pim.*` instruction becomes the commands of sim/machines/pim/commands.py's docstring (pim.act ->
ACT, pim.mac_all ncols -> ncols x MAC_ALL, pim.wrgb bytes -> ceil(bytes / burst) x WRGB,
...). The channel keeps its DRAM state (open rows, last command per bank, refresh
schedule) for the whole program, so an instruction's cycles depend on when it starts:
the engine asks at its start (`run`, for a queue's whole run of instructions at once).
Instructions are decoded once into plans of (command, repeat, step) (`plan`).

An instruction occupies the queue until its last command has issued (the next one may
issue a cycle later). Read data (RDMAC, RD) reaches the host tCL / RD_MAC after its
command; a `signal` on the queue waits for every read so far to land, so a consumer on
another queue never sees data early.

`exact=True` issues every command through the per-bank rules one by one (the ground
truth); `exact=False` (`ChannelState.run_plans`) issues each instruction's column commands
as one closed-form run and keeps the channel in lockstep while only all-bank commands come
(see ChannelState), which yields the same cycles (tests/sim/machines/pim/test_channel.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from arch.pim import PimArch
from isa.opcodes import OPCODES
from sim.machines.pim.commands import Command, DramError, validate_command
from sim.machines.pim.dram import ChannelState

__all__ = ["PimChannel", "Plan", "TIMING_FIELDS", "commands_of", "timing_key"]

# A decoded instruction: (validated command, repeat, step between repeats) triples; tuples
# because the channel walks millions of them.
Plan = tuple[tuple[Command, int, int], ...]


# The operands each pim opcode's DRAM commands depend on (not its data addresses): positions
# in its fields, in the order `timing_key` lists their values.
TIMING_FIELDS = {op: tuple(OPCODES[op].names.index(name) for name in names) for op, names in {
    "pim.act": ("bank", "row"), "pim.act_all": ("row",), "pim.pre": ("bank",), "pim.pre_all": (),
    "pim.wrgb": ("bytes",), "pim.mac": ("bank", "col", "ncols"), "pim.mac_all": ("col", "ncols"),
    "pim.rdmac": ("bank",), "pim.rdmac_all": (), "pim.wr": ("bank", "row", "col", "ncols"),
    "pim.rd": ("bank", "row", "col", "ncols")}.items()}


def _keyer(op: str, at: tuple[int, ...]):
    """fields -> (op, the values at positions `at`), without a generator per call."""
    if not at:
        key = (op,)
        return lambda fields: key
    if len(at) == 1:
        (a,) = at
        return lambda fields: (op, fields[a][1])
    return lambda fields: (op, *[fields[k][1] for k in at])


_KEYERS = {op: _keyer(op, at) for op, at in TIMING_FIELDS.items()}


def timing_key(instr) -> tuple:
    """The opcode and the operands its DRAM commands depend on (not its data addresses)."""
    return _KEYERS[instr.opcode](instr.fields)


def commands_of(arch: PimArch, key: tuple) -> list[tuple[Command, int]]:
    """(command, repeat) pairs of an instruction given by its `timing_key`, in order."""
    op, *v = key
    if op == "pim.act":
        return [(Command("ACT", v[0], v[1]), 1)]
    if op == "pim.act_all":
        return [(Command("ACT_ALL", row=v[0]), 1)]
    if op == "pim.pre":
        return [(Command("PRE", v[0]), 1)]
    if op == "pim.pre_all":
        return [(Command("PRE_ALL"), 1)]
    if op == "pim.wrgb":
        return [(Command("WRGB"), -(-v[0] // arch.burst_bytes))]
    if op == "pim.mac":
        return [(Command("MAC", v[0], col=v[1]), v[2])]
    if op == "pim.mac_all":
        return [(Command("MAC_ALL", col=v[0]), v[1])]
    if op == "pim.rdmac":
        return [(Command("RDMAC", v[0]), 1)]
    if op == "pim.rdmac_all":
        return [(Command("RDMAC_ALL"), 1)]
    if op in ("pim.wr", "pim.rd"):
        return [(Command(op[4:].upper(), v[0], v[1], v[2]), v[3])]
    raise DramError(f"{op} is not a PIM DRAM instruction")


class PimChannel:
    """The DRAM state of one channel; times its pim queue's instructions from their plans."""

    def __init__(self, arch: PimArch, *, exact: bool = False) -> None:
        self.arch, self.exact = arch, exact
        self.state = ChannelState(arch, 0, lockstep=not exact)
        t = arch.timing
        self.step = max(1, t.tCCD_S, t.tCCD_L)
        self.wrgb_step = max(1, t.tCCD_S)
        self._plans: dict[tuple, Plan] = {}

    @property
    def stats(self):
        return self.state.stats()

    def plan(self, index: int, instr) -> Plan | None:
        """An instruction decoded once: (validated command, repeat, step) triples, or None
        for a `signal` (which waits for read data). Equal timing keys share one plan."""
        if instr.opcode == "signal":
            return None
        return self.plan_of_key(index, timing_key(instr))

    def plan_of_key(self, index: int, key: tuple) -> Plan:
        """The plan of a pim instruction (program index `index`, named in errors) given by its
        `timing_key`; equal keys share one plan."""
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._decode(index, key[0], key)
        return found

    def _decode(self, index: int, opcode: str, key: tuple) -> Plan:
        a, out = self.arch, []
        for cmd, n in commands_of(a, key):
            if n == 0:
                continue
            cmd = validate_command(a, index, cmd)
            if cmd.kind in ("MAC", "MAC_ALL", "RD", "WR") and cmd.col + n > a.columns:
                raise DramError(f"instruction {index} ({opcode}): columns {cmd.col}..."
                                f"{cmd.col + n - 1} run past the row ({a.columns} columns)")
            out.append((cmd, n, self.wrgb_step if cmd.kind == "WRGB" else self.step))
        return tuple(out)

    def mac_cycles(self, plan: Plan | None) -> tuple[int, int, int]:
        """(all-bank MAC cycles, bank of its single-bank MACs or -1, their cycles): the MAC
        column slots of a plan, s cycles per MAC command."""
        every, bank, own = 0, -1, 0
        for cmd, n, _ in plan or ():
            if cmd.kind == "MAC_ALL":
                every += n * self.step
            elif cmd.kind == "MAC":
                bank, own = cmd.bank, own + n * self.step
        return every, bank, own

    def duration(self, index: int, instr, t: int) -> int:
        """Cycles `instr` (program index `index`) holds the queue when it starts at cycle t."""
        plan = self.plan(index, instr)
        return self.wait_reads(t) if plan is None else int(self.run((index,), (plan,), t)[0])

    def wait_reads(self, t: int) -> int:
        """A `signal` at cycle t: cycles until every read issued so far has returned."""
        return max(0, self.state.ready_at() - t)

    def run(self, indices, plans, t: int) -> Sequence[int]:
        """Durations of instructions (program indices, plans) issued back to back from t."""
        state = self.state
        if not self.exact:
            return state.run_plans(indices, plans, t)
        return self._exact(indices, plans, t)

    def run_numbered(self, indices, numbers: np.ndarray, table: Sequence[Plan], t: int
                     ) -> Sequence[int]:
        """`run` of the plans table[numbers], `numbers` an int array (ChannelState.run_numbered)."""
        if not self.exact:
            return self.state.run_numbered(indices, numbers, table, t)
        return self._exact(indices, [table[k] for k in numbers.tolist()], t)

    def _exact(self, indices, plans, t: int) -> list[int]:
        """`run` command by command through the per-bank rules (the ground truth)."""
        state = self.state
        state.idle_until(t)
        out = []
        for i, plan in zip(indices, plans):
            last = t - 1
            for cmd, n, _ in plan:
                for j in range(n):
                    last = state.issue(i, cmd if cmd.kind == "WRGB" else cmd._replace(col=cmd.col + j))
            out.append(last + 1 - t)
            t = last + 1
        return out
