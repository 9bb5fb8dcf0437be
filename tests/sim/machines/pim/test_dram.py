"""sim.machines.pim (commands, dram, gemv): one test per timing rule, refresh, the fast path against the command-level model,
and the bandwidth self-test of the PIM presets.

Expected cycles are derived here from the preset's timing parameters (reference/pim.md,
GDDR6-AiM), never read back from the code under test.
"""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arch.pim  # noqa: F401  (registers the "pim" target)
from arch import load_arch
from compiler.frontend.gpt2 import PRESETS
from sim.machines.pim.commands import Command, DramError
from sim.machines.pim.dram import CommandChannel
from sim.machines.pim.gemv import GemvTile, gemv_row_timing, gemv_stream, gemv_stream_cycles

ARCH = load_arch("pim-gpt")
T = ARCH.timing


def with_timing(**values):
    """The preset with some timing values replaced (validated like a loaded file)."""
    return dataclasses.replace(ARCH, timing=dataclasses.replace(ARCH.timing, **values))


def issue(commands, arch=ARCH, start=0):
    return list(CommandChannel(arch).run([Command(*c) for c in commands], start).issue_cycles)


# ---- one test per timing rule ------------------------------------------------------------

def test_act_to_column_waits_trcd_rd_trcd_wr_and_trcd_mac():
    assert issue([("ACT", 0, 5), ("RD", 0)]) == [0, T.tRCD_RD]
    assert issue([("ACT", 0, 5), ("WR", 0)]) == [0, T.tRCD_WR] == [0, 28]     # AiM: writes sooner
    assert issue([("ACT", 0, 5), ("MAC", 0)]) == [0, T.tRCD_MAC]


def test_act_to_pre_waits_tras():
    assert issue([("ACT", 0, 5), ("PRE", 0)]) == [0, T.tRAS]


def test_pre_to_act_waits_trp():
    a = with_timing(tRC=T.tRAS)                     # tRC no longer hides tRP
    assert issue([("ACT", 0, 5), ("PRE", 0), ("ACT", 0, 6)], a) == [0, T.tRAS, T.tRAS + T.tRP]


def test_act_to_act_same_bank_waits_trc():
    assert T.tRAS + T.tRP < T.tRC                   # so tRC, not tRAS + tRP, binds
    assert issue([("ACT", 0, 5), ("PRE", 0), ("ACT", 0, 6)]) == [0, T.tRAS, T.tRC]


def test_act_to_act_other_bank_waits_trrd_s_across_groups_and_trrd_l_within_one():
    assert ARCH.bank_group(1) == ARCH.bank_group(0) != ARCH.bank_group(4)
    assert issue([("ACT", 0, 5), ("ACT", 1, 5)]) == [0, T.tRRD_L]
    assert issue([("ACT", 0, 5), ("ACT", 4, 5)]) == [0, T.tRRD_S]
    a = with_timing(tRRD_S=5, tRRD_L=6)              # the values the AiM simulator applies
    assert issue([("ACT", 0, 5), ("ACT", 4, 5), ("ACT", 1, 5), ("ACT", 5, 5)], a) == [0, 5, 10, 15]


def test_fifth_act_waits_tfaw():
    acts = [("ACT", b, 0) for b in range(5)]
    # preset: tFAW (33) < 4 tRRD_L (44), so tRRD_L (banks 0-3 share a group) spaces the fifth ACT
    assert issue(acts) == [0, 11, 22, 33, 44]
    a = with_timing(tFAW=60)
    assert issue(acts, a) == [0, 11, 22, 33, 60]    # no more than four ACTs in any 60 cycles


def test_act_all_waits_trc_after_any_act_and_fills_the_faw_window():
    # a single-bank ACT after another bank's ACT waits only tRRD; ACT_ALL waits tRC
    assert issue([("ACT", 3, 0), ("PRE", 3), ("ACT_ALL", 0, 1)]) == [0, T.tRAS, T.tRC]
    a = with_timing(tFAW=95)                         # ACT_ALL counts as four ACTs for tFAW
    assert issue([("ACT_ALL", 0, 1), ("PRE_ALL",), ("ACT", 0, 2)], a) == [0, T.tRAS, 95]


def test_column_spacing_tccd_s_and_tccd_l_by_bank_group():
    a = with_timing(tCCD_L=4)                        # preset has tCCD_S = tCCD_L = 2
    assert ARCH.bank_group(1) == ARCH.bank_group(0) != ARCH.bank_group(4)
    got = issue([("ACT", 0, 0), ("ACT", 4, 0), ("ACT", 1, 0),
                 ("RD", 1), ("RD", 0), ("RD", 4), ("RD", 4)], a)
    rd1 = max(2 * T.tRRD_S, T.tRRD_L) + T.tRCD_RD     # banks 0, 4, 1: S, then L after bank 0
    assert got[3:] == [rd1, rd1 + 4, rd1 + 4 + 2, rd1 + 4 + 2 + 4]   # L, S, L


def test_mac_and_rd_to_pre_wait_trtp():
    assert T.tRCD_MAC + T.tRTP > T.tRAS
    assert issue([("ACT", 0, 5), ("MAC", 0), ("PRE", 0)]) == [0, T.tRCD_MAC, T.tRCD_MAC + T.tRTP]
    a = with_timing(tRAS=20)
    assert issue([("ACT", 0, 5), ("RD", 0), ("PRE", 0)], a) == [0, T.tRCD_RD, T.tRCD_RD + T.tRTP]


def test_wr_to_pre_waits_write_recovery_from_the_end_of_the_burst():
    wr_to_pre = T.tCWL + T.tBL + T.tWR                 # 6 + 2 + 33 = 41
    assert issue([("ACT", 0, 5), ("WR", 0), ("PRE", 0)]) == [0, T.tRCD_WR, T.tRCD_WR + wr_to_pre]
    # the precharge lands where it did with tRCD_RD 36 and tWR 33 from the command: 69
    assert T.tRCD_WR + wr_to_pre == 36 + 33 == 69


def test_mac_waits_for_the_global_buffer_write():
    a = with_timing(tMODCH=0, WR_GB=100)             # no mode switch to hide it
    assert issue([("WRGB",), ("ACT", 0, 5), ("MAC", 0)], a) == [0, 1, 100]


def test_one_command_per_cycle_and_idle_precharge_is_a_slot():
    a = with_timing(tMODCH=0)
    assert issue([("PRE", 0), ("PRE_ALL",), ("WRGB",), ("WRGB",)], a) == [0, 1, 2, 2 + T.tCCD_S]


def test_register_commands_switch_the_channel_mode():
    m = T.tMODCH                                     # 32: the MODE, then tMODCH to anything
    assert issue([("PRE", 0), ("WRGB",), ("WRGB",)]) == [0, 1 + m, 1 + m + T.tCCD_S]
    got = CommandChannel(ARCH).run([Command(*c) for c in [
        ("ACT_ALL", 0, 1), ("MAC_ALL",), ("RDMAC_ALL",), ("PRE_ALL",)]])
    rdmac = T.tRCD_MAC + 1 + m                       # MODE the cycle after the MAC
    pre = max(T.tRAS, T.tRCD_MAC + T.tRTP, rdmac + 1 + m)
    assert got.issue_cycles == (0, T.tRCD_MAC, rdmac, pre) == (0, 56, 89, 122)
    assert got.stats.counts["MODE"] == 2
    # a MODE in the stream switches at once; the register command then needs none
    got = CommandChannel(ARCH).run([Command("MODE"), Command("WRGB")])
    assert got.issue_cycles == (0, m) and got.stats.counts["MODE"] == 1
    # tMODCH = 0: no modes
    a = with_timing(tMODCH=0)
    assert issue([("ACT_ALL", 0, 1), ("MAC_ALL",), ("RDMAC_ALL",), ("PRE_ALL",)], a) == [
        0, T.tRCD_MAC, T.tRCD_MAC + T.tCCD_L, T.tRCD_MAC + T.tRTP]


def test_a_precharge_waits_trdmac_pre_after_a_mac_result_read():
    # the presets: no wait (the result is read from the MAC registers, not the row)
    assert T.tRDMAC_PRE == 0
    a = with_timing(tMODCH=0, tRDMAC_PRE=20)
    rdmac = T.tRCD_MAC + T.tCCD_L
    assert issue([("ACT_ALL", 0, 1), ("MAC_ALL",), ("RDMAC_ALL",), ("PRE_ALL",)], a) == [
        0, T.tRCD_MAC, rdmac, rdmac + 20]
    assert issue([("ACT", 3, 1), ("MAC", 3), ("RDMAC", 3), ("PRE", 3)], a) == [
        0, T.tRCD_MAC, rdmac, rdmac + 20]
    assert issue([("ACT", 3, 1), ("MAC", 3), ("RDMAC", 2), ("PRE", 3)], a)[-1] == max(
        T.tRAS, T.tRCD_MAC + T.tRTP)                 # another bank's result: no wait


def test_a_refresh_in_register_mode_switches_to_bank_mode_and_back():
    m, start = T.tMODCH, T.tREFI - 40
    res = CommandChannel(ARCH).run([Command("WRGB")] * 6, start)
    wrgb = [start + m + 2 * j for j in range(4)]        # the four that fit before the due cycle
    ref = T.tREFI + m                                   # MODE at the due cycle, then REF
    resume = ref + T.tRFC + m                           # MODE after tRFC, then the WRGBs
    assert res.stats.refresh_cycles == (ref,)
    assert res.issue_cycles == (*wrgb, resume, resume + T.tCCD_S)
    assert res.stats.counts == {"WRGB": 6, "REF": 1, "MODE": 3}


def test_end_cycle_counts_read_latencies():
    a = with_timing(tMODCH=0)
    res = CommandChannel(a).run([Command("RDMAC_ALL")])
    assert res.stats.end_cycle == T.RD_MAC == 2         # the MAC result: nCLREG 0 + nBL 2
    res = CommandChannel(ARCH).run([Command("ACT", 0, 1), Command("RD", 0)])
    assert res.stats.end_cycle == T.tRCD_RD + T.tCL + T.tBL


def test_row_hits_and_misses():
    res = CommandChannel(ARCH).run([Command(*c) for c in [
        ("ACT", 0, 5), ("RD", 0), ("RD", 0), ("MAC", 0), ("PRE", 0), ("ACT", 0, 6), ("RD", 0)]])
    assert (res.stats.row_misses, res.stats.row_hits) == (2, 2)


# ---- refresh -----------------------------------------------------------------------------

def test_refreshes_due_before_the_start_were_done_while_idle():
    first_free = T.tREFI + T.tRFC
    for start in (T.tREFI, T.tREFI + 1, first_free - 1):
        assert issue([("ACT", 0, 1)], start=start) == [first_free]
    assert issue([("ACT", 0, 1)], start=first_free) == [first_free]
    assert issue([("ACT", 0, 1)], start=T.tREFI - 1) == [T.tREFI - 1]


def test_refresh_closes_open_rows_costs_trfc_and_reopens():
    start = T.tREFI - 100
    cmds = [("ACT", 0, 7)] + [("MAC", 0, 7)] * 40
    res = CommandChannel(ARCH).run([Command(*c) for c in cmds], start)
    macs = [start + T.tRCD_MAC + j * T.tCCD_L for j in range(40)]
    n = sum(m < T.tREFI for m in macs)              # MACs issued before the refresh is due
    pre = max(T.tREFI, start + T.tRAS, macs[n - 1] + T.tRTP)
    ref = max(pre + T.tRP, start + T.tRC)
    reopen = ref + T.tRFC
    assert res.stats.refresh_cycles == (ref,)
    assert list(res.issue_cycles[1:n + 1]) == macs[:n]
    assert res.issue_cycles[n + 1] == reopen + T.tRCD_MAC
    assert res.stats.counts == {"ACT": 2, "PRE_ALL": 1, "MAC": 40, "REF": 1}
    assert (res.stats.row_misses, res.stats.row_hits) == (2, 38)


def test_explicit_ref_in_the_stream():
    res = CommandChannel(ARCH).run([Command("ACT_ALL", row=3), Command("REF"),
                                    Command("MAC_ALL")])
    ref = T.tRAS + T.tRP                            # PRE_ALL at tRAS, REF tRP later ...
    ref = max(ref, T.tRC)                           # ... and tRC after the ACT
    assert res.issue_cycles == (0, ref, ref + T.tRFC + T.tRCD_MAC)
    assert res.stats.counts["ACT_ALL"] == 2


def test_protocol_errors_name_the_command():
    with pytest.raises(DramError, match=r"command 0 \(RD\): bank 0 has no open row"):
        issue([("RD", 0)])
    with pytest.raises(DramError, match=r"command 1 \(ACT\): bank 2 is open"):
        issue([("ACT", 2, 1), ("ACT", 2, 1)])
    with pytest.raises(DramError, match=r"command 1 \(MAC\): row 4 is not open in bank 0"):
        issue([("ACT", 0, 1), ("MAC", 0, 4)])
    with pytest.raises(DramError, match=r"command 0: unknown kind 'NOP'"):
        issue([("NOP",)])
    with pytest.raises(DramError, match=r"command 0 \(ACT\): bank 16 outside 0..15"):
        issue([("ACT", 16, 0)])


def test_gemv_tiles_are_checked_against_the_geometry():
    with pytest.raises(DramError, match=r"GemvTile cols=65 outside 1..64"):
        gemv_stream_cycles(ARCH, [GemvTile(rows=1, cols=65)])
    with pytest.raises(DramError, match=r"GemvTile gbuf_bursts=65 outside 0..64"):
        gemv_stream(ARCH, [GemvTile(rows=1, cols=1, gbuf_bursts=65)])


# ---- fast path == command-level model ----------------------------------------------------

def same(arch, tiles, start):
    slow = CommandChannel(arch).run(gemv_stream(arch, tiles), start).stats
    fast = gemv_stream_cycles(arch, tiles, start)
    assert fast == slow
    return fast


tile_st = st.builds(lambda rows, cols, g, read: GemvTile(rows=rows, cols=cols, gbuf_bursts=g,
                                                         read_each_row=read),
                    st.integers(1, 24), st.integers(1, 64), st.integers(0, 64), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(tile_st, min_size=1, max_size=3), st.integers(0, 4 * T.tREFI))
def test_fast_path_equals_command_model_on_the_preset(tiles, start):
    same(ARCH, tiles, start)


@st.composite
def timings(draw):
    v = {k: draw(st.integers(1, hi)) for k, hi in (
        ("tRCD_MAC", 60), ("tRCD_RD", 40), ("tRCD_WR", 40), ("tRP", 40), ("tRAS", 60),
        ("tCCD_S", 4), ("tCCD_L", 6), ("tRRD_S", 12), ("tFAW", 60), ("tRTP", 15), ("tRFC", 250),
        ("tCWL", 8), ("tBL", 4), ("WR_GB", 300), ("RD_MAC", 80))}
    v["tRRD_L"] = draw(st.integers(v["tRRD_S"], 14))
    v["tMODCH"] = draw(st.integers(0, 40))
    v["tRC"] = draw(st.integers(v["tRAS"], 100))
    v["tRDMAC_PRE"] = draw(st.integers(0, v["tRAS"]))
    t = dataclasses.replace(T, **v)
    busy = (2 * v["tMODCH"] + max(v["tRAS"], v["tRTP"], t.wr_to_pre) + max(v["tRP"], v["tRC"])
            + v["tRFC"] + ARCH.banks * max(v["tRRD_L"], v["tFAW"])
            + max(v["tRCD_RD"], v["tRCD_WR"], v["tRCD_MAC"]))
    v["tREFI"] = busy + 1 + draw(st.integers(0, 1500))
    return with_timing(**v)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(timings(), st.lists(tile_st, min_size=1, max_size=2), st.integers(0, 10_000))
def test_fast_path_equals_command_model_for_any_timing(arch, tiles, start):
    same(arch, tiles, start)


def gemv_tiles(arch, n_out: int, n_in: int, first_row: int) -> list[GemvTile]:
    """Simple partition of y = W x, W [n_out, n_in] BF16, onto every channel and bank.

    Output rows of W are split evenly over channels x banks: each bank holds
    ceil(n_out / (channels * banks)) of them (banks run in lockstep, so the ceiling sets the
    time; every channel runs the same stream). The input goes in chunks of one global
    buffer (gbuf_bytes / 2 = 1024 BF16, also one DRAM row): per chunk the channel writes it
    with WRGB (16 BF16 per burst), then each output row's chunk of weights fills one DRAM row
    (ACT_ALL, one MAC_ALL per burst, RDMAC_ALL of the partial sum, PRE_ALL); the ASIC adds
    the partial sums of the chunks.
    """
    per_bank = -(-n_out // (arch.channels * arch.banks))
    chunk = min(arch.row_bytes, arch.gbuf_bytes) // 2
    tiles = []
    for j in range(-(-n_in // chunk)):
        bursts = -(-min(chunk, n_in - j * chunk) * 2 // arch.burst_bytes)
        tiles.append(GemvTile(rows=per_bank, cols=bursts, gbuf_bursts=bursts,
                              first_row=first_row + j * per_bank))
    return tiles


def gpt2_decode_matrices() -> list[tuple[str, int, int]]:
    """(name, n_out, n_in) of every weight matrix one GPT-2 (124M) decode step multiplies."""
    c = PRESETS["gpt2"]
    d = c.n_embd
    layer = [("attn.c_attn", 3 * d, d), ("attn.c_proj", d, d), ("mlp.c_fc", 4 * d, d),
             ("mlp.c_proj", d, 4 * d)]
    return [(f"h.{i}.{n}", o, k) for i in range(c.n_layer) for n, o, k in layer] + [
        ("lm_head", c.vocab_size, d)]


@pytest.mark.slow
def test_fast_path_equals_command_model_on_every_gpt2_decode_matrix():
    tiles, row = [], 0
    for name, n_out, n_in in gpt2_decode_matrices():
        mine = gemv_tiles(ARCH, n_out, n_in, row)
        row += sum(t.rows for t in mine)
        tiles += mine
        if name.startswith("h.0.") or name == "lm_head":     # each shape alone, two offsets
            for start in (0, T.tREFI - 150):
                same(ARCH, mine, start)
    assert row <= ARCH.rows
    whole = same(ARCH, tiles, 0)                            # the whole decode step, chained
    assert whole.counts["MAC_ALL"] == sum(t.rows * t.cols for t in tiles)
    assert whole.end_cycle // T.tREFI - 1 <= len(whole.refresh_cycles) <= whole.end_cycle // T.tREFI


# ---- bandwidth self-test -----------------------------------------------------------------

NO_REFRESH = with_timing(tREFI=10**9)


def macs(arch, rows: int, cols: int) -> int:
    """MACs of a stream on every channel: each MAC_ALL is banks x 16 MACs per channel."""
    return arch.channels * rows * cols * arch.banks * arch.macs_per_bank_per_access


def mac_rate(arch, rows: int, cols: int, cycles: int) -> float:
    return macs(arch, rows, cols) / (cycles * arch.tck_ns)


@pytest.mark.parametrize("preset", ["pim-gpt", "aim-32ch"])
def test_mac_all_streaming_reaches_the_peak_within_a_row(preset):
    a = load_arch(preset)
    got = CommandChannel(a).run(gemv_stream(a, [GemvTile(rows=1, cols=64,
                                                         read_each_row=False)])).issue_cycles
    span = got[64] - got[1] + a.timing.tCCD_L       # 64 MAC_ALLs, one per tCCD_L
    assert mac_rate(a, 1, 64, span) == a.peak_macs_per_ns == {"pim-gpt": 2048,
                                                              "aim-32ch": 8192}[preset]


@pytest.mark.slow
def test_sustained_streaming_rate_is_the_row_overhead_formula():
    rows, cols = 400, ARCH.columns
    p = T.tRCD_MAC + (cols - 1) * T.tCCD_L + T.tRTP        # ACT_ALL -> PRE_ALL (tRTP binds)
    period = T.tRP + p                                      # ACT_ALL -> next ACT_ALL
    assert gemv_row_timing(ARCH, cols, False).period == period == 226
    tile = [GemvTile(rows=rows, cols=cols, read_each_row=False)]
    ideal = same(NO_REFRESH, tile, 0)
    assert ideal.cycles == (rows - 1) * period + p + 1
    fraction = mac_rate(ARCH, rows, cols, ideal.cycles) / ARCH.peak_macs_per_ns
    assert fraction == pytest.approx(cols * T.tCCD_L / period, rel=2e-3)   # 128/226 = 56.6 %
    real = same(ARCH, tile, 0)
    refreshes = len(real.refresh_cycles)
    assert real.end_cycle // T.tREFI - 1 <= refreshes <= real.end_cycle // T.tREFI
    # each refresh costs at least tRFC and at most: close (tRAS), tRP, tRFC, reopen and
    # tRCD_MAC again, plus the lost part of a row (one period)
    per_ref = (real.cycles - ideal.cycles) / refreshes
    assert T.tRFC <= per_ref <= T.tRAS + T.tRP + T.tRFC + T.tRCD_MAC + period
    measured = mac_rate(ARCH, rows, cols, real.cycles) / ARCH.peak_macs_per_ns
    assert 0.50 < measured < fraction               # measured: 52.0 % of peak (1065 MAC/ns)


def test_one_mac_per_row_is_slower_by_the_timing_ratio():
    rows = 400
    p1 = max(T.tRAS, T.tRCD_MAC + T.tRTP)                    # 68: tRCD_MAC + tRTP binds
    t1 = max(T.tRC, T.tRP + p1)                              # 100 cycles per MAC_ALL
    t64 = gemv_row_timing(ARCH, 64, False).period            # 226 cycles per 64 MAC_ALLs
    miss = same(NO_REFRESH, [GemvTile(rows=rows, cols=1, read_each_row=False)], 0)
    assert miss.cycles == (rows - 1) * t1 + p1 + 1
    assert (miss.row_misses, miss.row_hits) == (rows, 0)
    stream = same(NO_REFRESH, [GemvTile(rows=rows, cols=64, read_each_row=False)], 0)
    slowdown = (miss.cycles / (rows * 1)) / (stream.cycles / (rows * 64))
    assert slowdown == pytest.approx(t1 * 64 / t64, rel=1e-2)          # 28.3x
    assert mac_rate(ARCH, rows, 1, miss.cycles) == pytest.approx(
        ARCH.peak_macs_per_ns * T.tCCD_L / t1, rel=1e-2)              # 2 % of peak (50x)


# ---- one GEMV row: docs/pim.md's breakdown ----------------------------------------------

def _doc_tables() -> list[list[tuple[str, int]]]:
    """The (command, cycle) rows of the tables under docs/pim.md's "One GEMV row" heading."""
    from pathlib import Path
    text = (Path(__file__).parents[4] / "docs" / "pim.md").read_text()
    section = text.split("### One GEMV row on pim-gpt")[1].split("\n## ")[0].split("Before issue 22")[0]
    tables, rows = [], []
    for line in section.splitlines() + [""]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[1].isdigit():
            rows.append((cells[0], int(cells[1])))
        elif rows and not line.startswith("|"):
            tables.append(rows)
            rows = []
    return tables


def _labelled(stream, cycles) -> list[tuple[str, int]]:
    """(command, cycle) with runs of MAC_ALL / WRGB named by their first and last."""
    out = []
    for k, (cmd, cycle) in enumerate(zip(stream, cycles)):
        kind = cmd[0]
        if kind in ("MAC_ALL", "WRGB"):
            prev = k > 0 and stream[k - 1][0] == kind
            nxt = k + 1 < len(stream) and stream[k + 1][0] == kind
            if prev and nxt:
                continue
            kind += " (last)" if prev else " (first)"
        out.append((kind, cycle))
    return out


@pytest.mark.parametrize("gbuf_write", [False, True])
def test_one_gemv_row_takes_the_cycles_docs_pim_md_gives(gbuf_write):
    """The row with the MODEs the controller issues written out (it then issues no more)."""
    a = with_timing(tREFI=1 << 17)
    macs = [("MAC_ALL", 0, None, j) for j in range(64)]
    stream = ([("ACT_ALL", 0, 1), *macs, ("MODE",), ("RDMAC_ALL",), ("MODE",), ("PRE_ALL",)]
              + ([("MODE",), *[("WRGB",)] * 64, ("MODE",)] if gbuf_write else [])
              + [("ACT_ALL", 0, 2)])
    res = CommandChannel(a).run([Command(*c) for c in stream])
    assert res.stats.counts["MODE"] == sum(c[0] == "MODE" for c in stream)
    got = _labelled(stream, res.issue_cycles)
    first, second = _doc_tables()
    if gbuf_write:
        assert got[got.index(("PRE_ALL", 248)):] == second
    else:
        assert got == first
    row = gemv_row_timing(a, 64, True)
    assert (row.act_to_pre, row.period) == (248, 280) == (first[-2][1], first[-1][1])
