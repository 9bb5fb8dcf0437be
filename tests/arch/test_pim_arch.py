"""arch.pim: the PIM-GPT and AiM presets, their derived rates and energies, the machine view,
and the validation errors (pinned messages)."""
from __future__ import annotations

import re

import pytest

import arch.pim  # noqa: F401  (registers the "pim" target)
import isa
from arch import ArchError, load_arch
from arch.config import CONFIG_DIR
from arch.pim import ASIC_FUNCS, PimArch

PRESETS = ("pim-gpt", "aim-32ch")


@pytest.mark.parametrize("name, channels", [("pim-gpt", 8), ("aim-32ch", 32)])
def test_presets_load_with_aim_timing(name, channels):
    a = load_arch(name)
    assert isinstance(a, PimArch) and a.name == name and a.channels == channels
    t = a.timing
    # reference/pim.md, GDDR6-AiM calibrated preset (cycles of tCK 0.5 ns)
    assert (a.tck_ns, t.tRCD_RD, t.tRCD_MAC, t.tRP, t.tRAS, t.tRC) == (0.5, 36, 56, 32, 54, 89)
    assert (t.tCCD_S, t.tCCD_L, t.tRRD_S, t.tRRD_L, t.tRTP, t.tCL) == (2, 2, 11, 11, 12, 50)
    assert (t.tRFC, t.tREFI) == (210, 3333)
    # the AiM simulator's GDDR6_AiM_timing: nRCDWR, nCWL, nBL, nWR, nMODCH; the register
    # commands' latencies nCWLGB + nBL and nCLREG + nBL (docs/pim.md, timing table)
    assert (t.tRCD_WR, t.tCWL, t.tBL, t.tWR, t.tMODCH) == (28, 6, 2, 33, 32)
    assert (t.WR_GB, t.RD_MAC, t.wr_to_pre) == (3, 2, 41)
    assert (a.banks, a.bank_groups, a.rows, a.row_bytes, a.burst_bytes) == (16, 4, 16384, 2048, 32)
    assert a.columns == 64 and a.macs_per_bank_per_access == 16


def test_peak_rates_and_derived_energies():
    a = load_arch("pim-gpt")
    assert a.peak_macs_per_ns == 2048                  # reference/pim.md: peak 2048 MAC/ns
    assert 2 * a.peak_macs_per_ns / 1e3 == pytest.approx(4.1, abs=0.05)   # about 4.1 TFLOP/s
    assert a.peak_internal_bw_gbps == 8 * 16 * 32      # one 32 B burst per bank per ns
    assert a.io_bw_total_gbps == 8 * 32
    assert load_arch("aim-32ch").peak_macs_per_ns == 4 * 2048
    assert a.e_act_pj == pytest.approx(66.3 * 44.5)    # P_ACT x tRC
    assert a.e_mac_all_pj == pytest.approx(3 * 438.15 * 1.0)   # 3 x P_RD x tCCD_L
    assert a.dram_bytes == 4 * 2**30


def test_machine_view_spaces_queues_and_limits():
    a = load_arch("pim-gpt")
    view = a.machine_view()
    assert view.target == "pim"
    assert {n: (s.size_bytes, s.on_chip) for n, s in view.spaces.items()} == {
        "dram": (4 * 2**30, False), "gbuf": (8 * 2048, False), "abuf": (a.asic.buffer_bytes, True)}
    assert view.queues == {f"pim{c}" for c in range(8)} | {"asic0", "dma0", "dma1"}
    assert dict(view.limits) == {"bank": 16, "row": 16384, "col": 64, "gbuf_bytes": 2048,
                                 "pim_burst_bytes": 32}


def test_verifier_uses_the_pim_limits():
    view = load_arch("pim-gpt").machine_view()
    head = ".target pim\n.isa 3\n.spaces dram gbuf abuf\n"
    ok = head + ("pim7 pim.act_all row=16383\n"
                 "pim7 pim.mac_all col=0 ncols=64 gb=0\n"
                 "pim7 pim.rdmac_all dst=abuf[0x0]\n")
    isa.verify(isa.assemble(ok), view)
    bad = head + "pim0 pim.mac_all col=1 ncols=64 gb=0\n"
    with pytest.raises(isa.VerifyError, match=r"columns \[1, 65\) exceed the 64 columns"):
        isa.verify(isa.assemble(bad), view)
    with pytest.raises(isa.VerifyError, match="pim8"):
        isa.verify(isa.assemble(head + "pim8 pim.pre_all\n"), view)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_value_names_its_source(name):
    """Each value has a comment, or its table header has one (e.g. [asic.latency_cycles])."""
    header_commented = True
    for line in (CONFIG_DIR / f"{name}.toml").read_text().splitlines():
        if line.startswith("["):
            header_commented = "#" in line
        elif "=" in line and line.split("=")[0].strip() not in ("name", "target"):
            assert "#" in line or header_commented, f"{name}: no source for {line!r}"
    text = (CONFIG_DIR / f"{name}.toml").read_text()
    for key in ("bank_groups", "rows", "gbuf_bytes", "tFAW", "vector_lanes", "buffer_bytes",
                "asic_op_pj"):
        line = next(l for l in text.splitlines() if re.match(rf"{key}\s*=", l))
        assert "substitute" in line, f"{name}: {key} stands in for an unpublished figure"


# ---- validation errors ------------------------------------------------------------------

def preset_text(drop: str | None = None) -> str:
    lines = (CONFIG_DIR / "pim-gpt.toml").read_text().splitlines()
    return "\n".join(l for l in lines if drop is None or not l.startswith(drop)) + "\n"


def test_missing_field_names_file_and_field(tmp_path):
    path = tmp_path / "nofaw.toml"
    path.write_text(preset_text(drop="tFAW"))
    with pytest.raises(ArchError, match=rf"^{re.escape(str(path))}: missing field 'timing.tFAW'$"):
        load_arch(path)
    path.write_text(preset_text(drop="exp "))
    with pytest.raises(ArchError, match=r"missing field 'asic.latency_cycles.exp'$"):
        load_arch(path)


@pytest.mark.parametrize("override, message", [
    ("channels=0", "field 'channels' must be an integer from 1 to 1024 channels, got 0"),
    ("timing.tRC=-1", "field 'timing.tRC' must be an integer from 1 to 8192 tCK, got -1"),
    ("tck_ns=0", "field 'tck_ns' must be a number from 0.1 to 10 ns, got 0"),
    ("dtype=fp8", "field 'dtype' must be one of bf16, got 'fp8'"),
    ("timing.tXYZ=3", "unknown field 'timing.tXYZ'"),
])
def test_a_bad_override_is_named_with_its_field(override, message):
    with pytest.raises(ArchError, match=rf"^--set {re.escape(override)}: {message}"):
        load_arch("pim-gpt", [override])


@pytest.mark.parametrize("override, message", [
    ("row_bytes=2000", r"field 'row_bytes' must be a multiple of burst_bytes \(32\), got 2000"),
    ("macs_per_bank_per_access=8",
     r"field 'burst_bytes' must be macs_per_bank_per_access x bf16 bytes \(16\), got 32"),
    ("bank_groups=3", r"field 'bank_groups' must be a divisor of banks \(16\), got 3"),
    ("timing.tRAS=90", r"field 'timing.tRAS' must be at most timing.tRC \(89\), got 90"),
    ("timing.tRRD_S=12", r"field 'timing.tRRD_L' must be at least timing.tRRD_S \(12\): a bank "
                         r"of the same group is never nearer, got 11"),
    ("timing.tRDMAC_PRE=55", r"field 'timing.tRDMAC_PRE' must be at most timing.tRAS \(54\): a "
                             r"read of an earlier row's results cannot hold a later row open, got 55"),
    ("timing.tREFI=900",
     r"field 'timing.tREFI' must be more than the longest refresh-and-reopen sequence "
     r"\(1001 cycles\), got 900"),
    ("asic.latency_cycles.sqrt=3", "unknown field 'asic.latency_cycles.sqrt'"),
])
def test_cross_field_errors_name_the_file_and_the_override(override, message):
    with pytest.raises(ArchError, match=rf"arch/configs/pim-gpt.toml with --set {re.escape(override)}: "
                                        + message):
        load_arch("pim-gpt", [override])


def test_asic_latency_table_covers_every_isa_function():
    a = load_arch("pim-gpt")
    assert set(a.asic.latency_cycles) == set(ASIC_FUNCS)
    assert set(ASIC_FUNCS) >= {"exp", "gelu", "rsqrt", "recip", "sum", "max", "add"}
