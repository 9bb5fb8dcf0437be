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

from sim.dram import ChannelState, Command, DramError

__all__ = ["PimChannel", "commands_of"]


def commands_of(arch, instr) -> list[tuple[Command, int]]:
    """(command, repeat) pairs an instruction issues, in order."""
    op, f = instr.opcode, instr
    burst = arch.burst_bytes
    if op == "pim.act":
        return [(Command("ACT", f["bank"], f["row"]), 1)]
    if op == "pim.act_all":
        return [(Command("ACT_ALL", row=f["row"]), 1)]
    if op == "pim.pre":
        return [(Command("PRE", f["bank"]), 1)]
    if op == "pim.pre_all":
        return [(Command("PRE_ALL"), 1)]
    if op == "pim.wrgb":
        return [(Command("WRGB"), -(-f["bytes"] // burst))]
    if op == "pim.mac":
        return [(Command("MAC", f["bank"], col=f["col"]), f["ncols"])]
    if op == "pim.mac_all":
        return [(Command("MAC_ALL", col=f["col"]), f["ncols"])]
    if op == "pim.rdmac":
        return [(Command("RDMAC", f["bank"]), 1)]
    if op == "pim.rdmac_all":
        return [(Command("RDMAC_ALL"), 1)]
    if op in ("pim.wr", "pim.rd"):
        return [(Command(op[4:].upper(), f["bank"], f["row"], f["col"]), f["ncols"])]
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
        self.bank_mac_cycles = [0] * arch.banks

    @property
    def stats(self):
        return self.state.tally.stats()

    def duration(self, index: int, instr, t: int) -> int:
        """Cycles `instr` (program index `index`) holds the queue when it starts at cycle t."""
        if instr.opcode == "signal":
            return max(0, self.data_ready - t)
        state, a = self.state, self.arch
        state.idle_until(t)
        last = t - 1
        for cmd, n in commands_of(a, instr):
            if n == 0:
                continue
            cmd = state._validate(index, cmd)
            if cmd.kind in ("MAC", "MAC_ALL", "RD", "WR") and cmd.col + n > a.columns:
                raise DramError(f"instruction {index} ({instr.opcode}): columns {cmd.col}..."
                                f"{cmd.col + n - 1} run past the row ({a.columns} columns)")
            step = self.wrgb_step if cmd.kind == "WRGB" else self.step
            for j in range(n if self.exact else 1):
                c = cmd._replace(col=cmd.col + j) if cmd.kind != "WRGB" else cmd
                last = state.issue(index, c) if self.exact else state.issue_run(index, c, n, step)
            if cmd.kind in ("MAC", "MAC_ALL"):
                self.mac_cycles += n * self.step
                for b in (range(a.banks) if cmd.kind == "MAC_ALL" else (cmd.bank,)):
                    self.bank_mac_cycles[b] += n * self.step
            if cmd.kind in ("RDMAC", "RDMAC_ALL"):
                self.data_ready = max(self.data_ready, last + a.timing.RD_MAC)
            elif cmd.kind == "RD":
                self.data_ready = max(self.data_ready, last + a.timing.tCL + a.timing.tCCD_S)
        return last + 1 - t
