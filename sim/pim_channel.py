"""One PIM channel driven by its pim queue: ISA instructions -> DRAM commands -> cycles.

Each `pim.*` instruction becomes the commands of sim/dram.py's module docstring (pim.act ->
ACT, pim.mac_all ncols -> ncols x MAC_ALL, pim.wrgb bytes -> ceil(bytes / burst) x WRGB,
...). The channel keeps its DRAM state (open rows, last command per bank, refresh
schedule) for the whole program, so an instruction's cycles depend on when it starts:
the engine asks `duration(instr, t)` at its start.

An instruction occupies the queue until its last command has issued (the next one may
issue a cycle later). Read data (RDMAC, RD) reaches the host tCL / RD_MAC after its
command; a `signal` on the queue waits for every read so far to land, so a consumer on
another queue never sees data early.

`exact=True` issues every command through the rules one by one (the ground truth);
`exact=False` issues each instruction's column commands as one closed-form run
(`ChannelState.issue_run`), which yields the same cycles (tests/sim/test_pim_channel.py).
"""
from __future__ import annotations

from isa.opcodes import OPCODES
from sim.dram import ChannelState, Command, DramError

__all__ = ["PimChannel", "commands_of", "timing_key"]


# The operands each pim opcode's DRAM commands depend on (not its data addresses).
_TIMING_FIELDS = {op: tuple(OPCODES[op].names.index(name) for name in names) for op, names in {
    "pim.act": ("bank", "row"), "pim.act_all": ("row",), "pim.pre": ("bank",), "pim.pre_all": (),
    "pim.wrgb": ("bytes",), "pim.mac": ("bank", "col", "ncols"), "pim.mac_all": ("col", "ncols"),
    "pim.rdmac": ("bank",), "pim.rdmac_all": (), "pim.wr": ("bank", "row", "col", "ncols"),
    "pim.rd": ("bank", "row", "col", "ncols")}.items()}


def timing_key(instr) -> tuple:
    """The opcode and the operands its DRAM commands depend on (not its data addresses)."""
    fields = instr.fields
    return (instr.opcode, *(fields[k][1] for k in _TIMING_FIELDS[instr.opcode]))


def commands_of(arch, key: tuple) -> list[tuple[Command, int]]:
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
    """The DRAM state of one channel and the data-return time of its reads."""

    def __init__(self, arch, *, exact: bool = False) -> None:
        self.arch, self.exact = arch, exact
        self.state = ChannelState(arch, 0)
        t = arch.timing
        self.step = max(1, t.tCCD_S, t.tCCD_L)
        self.wrgb_step = max(1, t.tCCD_S)
        self.data_ready = 0
        self.mac_cycles = 0          # cycles of MAC column slots (s per MAC command)
        self.bank_mac_cycles = [0] * arch.banks      # single-bank MACs, per bank
        self.all_bank_mac_cycles = 0
        self._plans: dict[tuple, tuple] = {}

    @property
    def stats(self):
        return self.state.tally.stats()

    def plan(self, index: int, instr) -> tuple | None:
        """An instruction decoded once: (validated command, repeat, step) triples, or None
        for a `signal` (which waits for read data). Equal timing keys share one plan."""
        if instr.opcode == "signal":
            return None
        key = timing_key(instr)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._decode(index, instr.opcode, key)
        return found

    def _decode(self, index: int, opcode: str, key: tuple) -> tuple:
        a, out = self.arch, []
        for cmd, n in commands_of(a, key):
            if n == 0:
                continue
            cmd = self.state._validate(index, cmd)
            if cmd.kind in ("MAC", "MAC_ALL", "RD", "WR") and cmd.col + n > a.columns:
                raise DramError(f"instruction {index} ({opcode}): columns {cmd.col}..."
                                f"{cmd.col + n - 1} run past the row ({a.columns} columns)")
            out.append((cmd, n, self.wrgb_step if cmd.kind == "WRGB" else self.step))
        return tuple(out)

    def duration(self, index: int, instr, t: int) -> int:
        """Cycles `instr` (program index `index`) holds the queue when it starts at cycle t."""
        return self.run_plan(index, self.plan(index, instr), t)

    def run_plan(self, index: int, plan: tuple | None, t: int) -> int:
        if plan is None:
            return max(0, self.data_ready - t)
        state, timing = self.state, self.arch.timing
        state.idle_until(t)
        last = t - 1
        for cmd, n, step in plan:
            kind = cmd.kind
            if self.exact:
                for j in range(n):
                    last = state.issue(index, cmd if kind == "WRGB" else cmd._replace(col=cmd.col + j))
            else:
                last = state.issue_run(index, cmd, n, step) if n > 1 else state.issue(index, cmd)
            if kind == "MAC_ALL" or kind == "MAC":
                self.mac_cycles += n * self.step
                if kind == "MAC_ALL":
                    self.all_bank_mac_cycles += n * self.step
                else:
                    self.bank_mac_cycles[cmd.bank] += n * self.step
            elif kind == "RDMAC" or kind == "RDMAC_ALL":
                self.data_ready = max(self.data_ready, last + timing.RD_MAC)
            elif kind == "RD":
                self.data_ready = max(self.data_ready, last + timing.tCL + timing.tCCD_S)
        return last + 1 - t

    def bank_mac_utilization(self, cycles: int) -> list[float]:
        return [(self.all_bank_mac_cycles + own) / cycles if cycles else 0.0
                for own in self.bank_mac_cycles]
