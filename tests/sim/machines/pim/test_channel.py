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
from sim.machines.pim.run_memo import PlanForms

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


def _relabelled(stream, rows):
    """`stream` with every row r replaced by rows[r] (the same commands, other rows)."""
    return [isa.Instr.make(ins.opcode, ins.queue, **{
        name: rows[value] if name == "row" else value for name, value in ins.fields})
        for ins in stream]


def _gemv_rows(rng, arch):
    """Lockstep runs (between signals) that open a row, switch rows and close, then anything
    (single-bank work too): runs that start and end in lockstep, some with a row left open,
    one that reads no row (after an idle gap with a refresh: a row closed to reopen)."""
    def gemv():
        return [isa.Instr.make("pim.mac_all", "pim0", col=0, ncols=arch.columns, gb=0),
                isa.Instr.make("pim.rdmac_all", "pim0", dst=isa.Addr("abuf", 0))]
    signal = isa.Instr.make("signal", "pim0", sem=0)
    out = []
    for _ in range(8):
        out += [isa.Instr.make("pim.act_all", "pim0", row=int(rng.integers(arch.rows))),
                *gemv(), signal, *gemv(), signal,      # (the same plans, another row open)
                isa.Instr.make("pim.rdmac_all", "pim0", dst=isa.Addr("abuf", 0)), signal]
        for _ in range(2):
            out += [*gemv(), isa.Instr.make("pim.pre_all", "pim0"),
                    isa.Instr.make("pim.act_all", "pim0", row=int(rng.integers(arch.rows))),
                    *gemv(), signal]
        out += [*gemv(), isa.Instr.make("pim.pre_all", "pim0"), signal]
        out += _random_stream(rng, arch, 3)
    return out


def _timed(runs: dict) -> int:
    """Runs the memo holds as timed (keyed by plan forms and row pattern: four parts), not
    the keys by plan and row (five parts) that point at them."""
    return sum(len(key) == 4 for key in runs)


def _open_rows(state) -> tuple[set, set]:
    """(the open rows, the rows a refresh closed) over the banks."""
    if state.lock:
        return {state._lock_row}, {state._lock_memo}
    return set(state.open), set(state.memo)


@pytest.mark.parametrize("seed", range(6))
def test_remembered_runs_replay_exactly_under_other_rows(seed, monkeypatch):
    """Channels sharing the lockstep memo run one random stream in step: as generated, with
    its rows relabelled one to one, and with its rows folded onto two (rows that differed now
    equal). The relabelled channel replays what the first remembered (the memo keys rows by
    their pattern of equality), the folded one only runs of the same pattern, and each equals
    the command-level ground truth cycle for cycle, refreshes included, with the same rows
    open and remembered for reopening after every run."""
    rng = np.random.default_rng(100 + seed)
    first = _gemv_rows(rng, ARCH)
    streams = (first, _relabelled(first, rng.permutation(ARCH.rows).tolist()),
               _relabelled(first, [r % 2 for r in range(ARCH.rows)]))
    fast = [PimChannel(ARCH) for _ in streams]
    shared_runs, shared_forms = {}, PlanForms()
    for channel in fast:
        channel.state.runs, channel.state.forms = shared_runs, shared_forms
    exact = [PimChannel(ARCH, exact=True) for _ in streams]
    decode = fast[0].plan                   # one plan object per key, as in PimMachine
    replayed = _replays(monkeypatch)
    remembered = {id(channel.state): 0 for channel in fast + exact}
    runs, current = [], []                     # runs of instructions between signals
    for i, ins in enumerate(first):
        if ins.opcode == "signal":
            runs += [current, [i]] if current else [[i]]
            current = []
        else:
            current.append(i)
    runs.append(current)
    t = 0
    for indices in filter(None, runs):
        t += int(rng.integers(0, 4000)) if rng.random() < 0.3 else 0
        ends = []
        for channels in (fast, exact):
            for channel, stream in zip(channels, streams):
                ins = [stream[i] for i in indices]
                if ins[0].opcode == "signal":
                    ends.append(channel.wait_reads(t))
                else:
                    before = _timed(shared_runs)
                    ends.append(sum(channel.run(indices, [decode(i, x) for i, x in
                                                          zip(indices, ins)], t)))
                    remembered[id(channel.state)] += _timed(shared_runs) - before
        assert len(set(ends)) == 1, indices
        t += ends[0]
        for channel, truth in zip(fast, exact):
            assert _open_rows(channel.state) == _open_rows(truth.state), indices
    assert [c.stats for c in fast] == [c.stats for c in exact]
    first_state, relabelled = (id(channel.state) for channel in fast[:2])
    by = [state for _, state in replayed]
    assert remembered[first_state] > 0 and remembered[relabelled] == 0
    # the relabelled channel replays every run the first remembered or replayed
    assert by.count(relabelled) == remembered[first_state] + by.count(first_state)


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
    monkeypatch.setattr(ChannelState, "_replay", lambda self, seen, rows, t:
                        replayed.append((t, id(self))) or replay(self, seen, rows, t))
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


@pytest.mark.parametrize("seed", range(4))
def test_a_run_after_the_same_run_replays_at_every_distance(seed):
    """Channels sharing the memo run the same runs in step, as a GEMV's channels do, but now
    and then one starts a run later than the others: the others find each run under the run
    before it and the distance (ChannelState's `_AFTER` keys; the replay's cycles written
    when first read), the late one must not, and every channel equals its command-level
    ground truth to the cycle, its reads' return, rows and counts too."""
    rng = np.random.default_rng(200 + seed)
    row = lambda: int(rng.integers(ARCH.rows))                      # noqa: E731
    gemv = [isa.Instr.make("pim.mac_all", "pim0", col=0, ncols=ARCH.columns, gb=0),
            isa.Instr.make("pim.rdmac_all", "pim0", dst=isa.Addr("abuf", 0))]
    pieces = [[isa.Instr.make("pim.act_all", "pim0", row=row()), *gemv * k,
               isa.Instr.make("pim.pre_all", "pim0")] for k in (1, 2, 5)]
    fast, exact, runs = _channels_sharing_a_memo(3)
    decode = fast[0].plan
    starts = [0] * len(fast)
    for k in rng.choice(len(pieces), 80).tolist():
        plans = [decode(i, x) for i, x in enumerate(pieces[k])]
        gap = int(rng.choice([0, 1, 37, 1500, 3333]))
        late = int(rng.integers(len(fast))) if rng.random() < 0.3 else -1
        delays = [int(rng.choice([1, 2, 40])) if c == late else 0 for c in range(len(fast))]
        _run_in_step(fast, exact, plans, starts, gap, delays)
    assert [c.stats for c in fast] == [c.stats for c in exact]
    assert sum(key[0] == "after" for key in runs) > 10


def _channels_sharing_a_memo(n: int) -> tuple[list, list, dict]:
    """n fast channels sharing one memo (as a program's do), n ground-truth ones, the memo."""
    fast = [PimChannel(ARCH) for _ in range(n)]
    runs, forms = {}, PlanForms()
    for channel in fast:
        channel.state.runs, channel.state.forms = runs, forms
    return fast, [PimChannel(ARCH, exact=True) for _ in fast], runs


def _run_in_step(fast, exact, plans, starts: list[int], gap: int, delays: list[int]) -> None:
    """Each channel pair runs `plans` from its last end plus `gap` plus its own delay: the same
    cycles, the same reads' return (pending or not) and the same rows as the ground truth."""
    for c, (channel, truth) in enumerate(zip(fast, exact)):
        t = starts[c] + gap + delays[c]
        ends = [sum(x.run(range(len(plans)), plans, t)) for x in (channel, truth)]
        assert ends[0] == ends[1], c
        probes = [t, t + ends[0] // 2, t + ends[0]]
        assert [channel.wait_reads(p) for p in probes] == [truth.wait_reads(p) for p in probes]
        assert _open_rows(channel.state) == _open_rows(truth.state), c
        starts[c] = t + ends[0]


@pytest.mark.parametrize("seed", range(2))
def test_single_bank_runs_replay_exactly(seed, monkeypatch):
    """Runs of single-bank commands (a KV cache's writes: one bank's ACT, WR or RD, PRE, a few
    rows in turn), each time on fresh rows, between lockstep GEMVs and idle gaps, on channels
    sharing the memo: remembered by their forms, banks, row pattern and relative state and
    replayed (sim/machines/pim/bank_runs.py) only where no refresh falls inside, each channel
    equal to its command-level ground truth to the cycle, reads' return, rows and counts
    included."""
    from sim.machines.pim.bank_runs import BankRuns
    replayed, replay = [], BankRuns._bank_replay
    monkeypatch.setattr(BankRuns, "_bank_replay", lambda self, *a: replayed.append(1)
                        or replay(self, *a))
    rng = np.random.default_rng(300 + seed)
    row = lambda: int(rng.integers(ARCH.rows))                      # noqa: E731
    addr = isa.Addr("abuf", 0)

    def writes(banks, k, read):
        out = []
        for _ in range(k):
            r = row()
            for b in banks:
                out.append(isa.Instr.make("pim.act", "pim0", bank=b, row=r))
                out.append(isa.Instr.make("pim.wr", "pim0", bank=b, row=r, col=16, ncols=32,
                                          src=addr))
                if read:
                    out.append(isa.Instr.make("pim.rd", "pim0", bank=b, row=r, col=0, ncols=2,
                                              dst=addr))
                out.append(isa.Instr.make("pim.pre", "pim0", bank=b))
        return out

    gemv = lambda: [isa.Instr.make("pim.act_all", "pim0", row=row()),           # noqa: E731
                    isa.Instr.make("pim.mac_all", "pim0", col=0, ncols=ARCH.columns, gb=0),
                    isa.Instr.make("pim.rdmac_all", "pim0", dst=addr),
                    isa.Instr.make("pim.pre_all", "pim0")]
    makers = [lambda: writes((0,), 2, False), lambda: writes((0, 5), 3, False),
              lambda: writes((3,), 14, True), gemv]
    fast, exact, _ = _channels_sharing_a_memo(3)
    decode = fast[0].plan
    starts = [0] * len(fast)
    for k in rng.choice(len(makers), 120).tolist():
        plans = [decode(i, x) for i, x in enumerate(makers[k]())]
        gap = int(rng.choice([0, 1, 37, 1500, 3333]))
        delays = [int(rng.choice([1, 2, 40])) if rng.random() < 0.2 else 0 for _ in fast]
        _run_in_step(fast, exact, plans, starts, gap, delays)
    assert [c.stats for c in fast] == [c.stats for c in exact]
    assert len(replayed) > 20 and sum(s.counts["REF"] for s in (c.stats for c in fast)) > 10


@pytest.mark.parametrize("seed", range(4))
def test_long_idle_stretches_refresh_as_one_by_one(seed, monkeypatch):
    """A channel idle for many refresh intervals (a vector phase) issues their REFs in closed
    form (ChannelState._idle_refreshes): every REF's cycle, the counts and every later
    command equal the ground truth's, which issues them one by one, after rows left open,
    in register mode or not."""
    from sim.machines.pim.dram import ChannelState
    closed, idle = [], ChannelState._idle_refreshes

    def counted(self, cycle):                  # the REFs each closed form issued
        before = self.tally.counts["REF"]
        idle(self, cycle)
        closed.append(self.tally.counts["REF"] - before)
    monkeypatch.setattr(ChannelState, "_idle_refreshes", counted)
    rng = np.random.default_rng(400 + seed)
    stream = _random_stream(rng, ARCH, 40)
    fast, exact = PimChannel(ARCH), PimChannel(ARCH, exact=True)
    t = 0
    for i, ins in enumerate(stream):
        gap = int(rng.integers(3 * ARCH.timing.tREFI, 12 * ARCH.timing.tREFI)) \
            if rng.random() < 0.3 else 0
        d_fast, d_exact = fast.duration(i, ins, t + gap), exact.duration(i, ins, t + gap)
        assert d_fast == d_exact, (i, ins.opcode)
        t += gap + d_fast
    assert fast.stats == exact.stats
    assert sum(closed) > fast.stats.counts["REF"] // 2      # most of them in closed form
