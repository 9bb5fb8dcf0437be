"""The PIM channel's fast path (closed-form column runs) against the command-by-command
ground truth: random instruction streams and whole compiled programs, to the cycle."""

import numpy as np
import pytest

import isa
from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from tessel.targets import TARGETS
from sim.engine import simulate_events
from sim.machines.pim import PimMachine
from sim.machines.pim.channel import PimChannel

ARCH = load_arch("pim-gpt")


def _random_stream(rng, arch, n):
    """A legal random pim queue stream: all-bank GEMV rows, per-bank writes and reads, and
    per-bank reads and writes in a row every bank opened (closed all at once or bank by bank:
    each bank's own last read and write then bind)."""
    out = []
    for _ in range(n):
        kind = rng.integers(4)
        row = int(rng.integers(arch.rows))
        if kind == 3:
            out.append(isa.Instr.make("pim.act_all", "pim0", row=row))
            for _ in range(int(rng.integers(1, 2 * arch.banks))):
                bank, col = int(rng.integers(arch.banks)), int(rng.integers(arch.columns))
                ncols = int(rng.integers(1, arch.columns - col + 1))
                u = rng.random()
                if u < 0.2:                 # a single-bank GEMV piece: mode switches around RDMAC
                    out += [isa.Instr.make("pim.mac", "pim0", bank=bank, col=col, ncols=ncols, gb=0),
                            isa.Instr.make("pim.rdmac", "pim0", bank=bank, dst=isa.Addr("abuf", 0))]
                    continue
                op = "pim.wr" if u < 0.6 else "pim.rd"
                addr = {"src" if op == "pim.wr" else "dst": isa.Addr("abuf", 0)}
                out.append(isa.Instr.make(op, "pim0", bank=bank, row=row, col=col,
                                          ncols=ncols, **addr))
            if rng.random() < 0.5:
                out.append(isa.Instr.make("pim.pre_all", "pim0"))
            else:                   # bank by bank, some read once more first (hit or miss)
                for b in rng.permutation(arch.banks).tolist():
                    if rng.random() < 0.4:
                        out.append(isa.Instr.make("pim.rd", "pim0", bank=b, row=row, col=0,
                                                  ncols=1, dst=isa.Addr("abuf", 0)))
                    out.append(isa.Instr.make("pim.pre", "pim0", bank=b))
        elif kind == 0:
            out.append(isa.Instr.make("pim.wrgb", "pim0", gb=0, src=isa.Addr("abuf", 0),
                                      bytes=int(rng.integers(1, 64)) * 32))
            out.append(isa.Instr.make("pim.act_all", "pim0", row=row))
            col = 0
            while col < arch.columns:
                n_cols = int(rng.integers(1, arch.columns - col + 1))
                out.append(isa.Instr.make("pim.mac_all", "pim0", col=col, ncols=n_cols, gb=0))
                out.append(isa.Instr.make("pim.rdmac_all", "pim0", dst=isa.Addr("abuf", 0)))
                col += n_cols
            out.append(isa.Instr.make("pim.pre_all", "pim0"))
        else:
            bank = int(rng.integers(arch.banks))
            op = "pim.wr" if kind == 1 else "pim.rd"
            col = int(rng.integers(arch.columns))
            ncols = int(rng.integers(1, arch.columns - col + 1))
            addr = {"src" if op == "pim.wr" else "dst": isa.Addr("abuf", 0)}
            out += [isa.Instr.make("pim.act", "pim0", bank=bank, row=row),
                    isa.Instr.make(op, "pim0", bank=bank, row=row, col=col, ncols=ncols, **addr),
                    isa.Instr.make("pim.pre", "pim0", bank=bank)]
        if rng.random() < 0.3:
            out.append(isa.Instr.make("signal", "pim0", sem=0))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_fast_path_equals_command_level_on_random_streams(seed):
    rng = np.random.default_rng(seed)
    stream = _random_stream(rng, ARCH, 60)
    fast, exact = PimChannel(ARCH), PimChannel(ARCH, exact=True)
    t = int(rng.integers(0, 5000))
    for i, ins in enumerate(stream):
        gap = int(rng.integers(0, 3000)) if rng.random() < 0.2 else 0   # idle: refreshes due
        d_fast, d_exact = fast.duration(i, ins, t + gap), exact.duration(i, ins, t + gap)
        assert d_fast == d_exact, (i, ins.opcode)
        t += gap + d_fast
    assert fast.stats == exact.stats
    assert fast.stats.counts.get("REF", 0) > 0
    assert fast.stats.counts.get("MODE", 0) > 0


def _cycles(program, exact):
    """Fast: lockstep, closed-form runs and whole runs of a queue timed at once (timed_run);
    exact: every command by the rules, each instruction asked for on its own."""
    run = PimMachine(ARCH, exact_dram=exact).start(program)
    costs = run.costs
    timeline = simulate_events(program, costs.durations, costs.resources, None, costs.timed,
                               costs.delays, None if exact else costs.timed_run)
    return timeline.total_cycles, run.dram_stats(), timeline.start.tolist()


def _replays(monkeypatch) -> list:
    """Count the remembered lockstep runs the fast path replays (ChannelState.run_plans)."""
    from sim.machines.pim.dram import ChannelState
    replayed, replay = [], ChannelState._replay
    monkeypatch.setattr(ChannelState, "_replay",
                        lambda self, seen, t: replayed.append(t) or replay(self, seen, t))
    return replayed


@pytest.mark.parametrize("phase", [decode(16), prefill(3)])
def test_fast_path_equals_command_level_on_compiled_programs(phase, monkeypatch):
    model = load_model("tests/fixtures/tiny-gpt2")
    lowered = TARGETS["pim"].compile(model.graph(phase), ARCH)
    program = isa.unroll(lowered.program)             # machines run executed instructions
    replayed = _replays(monkeypatch)
    fast, exact = _cycles(program, False), _cycles(program, True)
    assert fast == exact
    assert replayed           # the channels run the same runs in step: most are replayed


@pytest.mark.slow      # a whole gpt2 decode program
def test_fast_path_equals_command_level_on_gpt2_decode(monkeypatch):
    """Every layer of GPT-2 decode: each GEMV and K write (V is written by the DMA)."""
    program = isa.unroll(TARGETS["pim"].compile(load_model("gpt2").graph(decode(128)), ARCH).program)
    replayed = _replays(monkeypatch)
    fast, exact = _cycles(program, False), _cycles(program, True)
    assert fast == exact
    assert len(replayed) > 100
    assert sum(s.counts["MAC_ALL"] for s in fast[1]) > 50_000
    assert sum(s.counts["REF"] for s in fast[1]) > 100
