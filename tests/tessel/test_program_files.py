"""`tessel sim PROGRAM`: a program file runs on the architecture it was compiled for; another
one only with --override-arch (both named in the report); damaged or protocol-breaking files
are one line `error: ...` and exit status 2."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tessel.cli import main

DECODE = ["--phase", "decode", "--kv", "8"]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _report(capsys, tmp_path: Path, name: str, *argv) -> dict:
    out = tmp_path / f"{name}.json"
    code, _, err = _cli(capsys, "sim", *argv, "--no-functional", "--json", out)
    assert code == 0, err
    return json.loads(out.read_text())


@pytest.mark.parametrize("target, preset, default", [
    ("systolic", "systolic-32", "systolic-128"),
    ("pim", "aim-32ch", "pim-gpt"),
    ("dataflow", "dataflow-small", "sn40l"),
])
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_a_program_runs_on_the_architecture_it_was_compiled_for(capsys, tmp_path, tiny_hf,
                                                                  target, preset, default):
    program = tmp_path / "p.tbin"
    model = ["--model", tiny_hf, "--target", target, *DECODE]
    assert _cli(capsys, "compile", *model, "--arch", preset, "-o", program)[0] == 0
    from_file = _report(capsys, tmp_path, "file", program)
    compiled = _report(capsys, tmp_path, "model", *model, "--arch", preset, "--gpu", "none")
    for key in ("arch_name", "arch", "cycles", "energy_breakdown_j", "instructions"):
        assert from_file[key] == compiled[key], key
    assert f"architecture {preset}, recorded in the program (compiled by tessel" in \
        " ".join(from_file["assumptions"])
    on_default = _report(capsys, tmp_path, "default", *model, "--gpu", "none")
    assert on_default["arch_name"] == default and on_default["cycles"] != from_file["cycles"]


@pytest.fixture
def s32(capsys, tmp_path, tiny_hf) -> Path:
    program = tmp_path / "s32.tbin"
    assert _cli(capsys, "compile", "--model", tiny_hf, *DECODE, "--arch", "systolic-32",
                "-o", program)[0] == 0
    return program


def test_another_architecture_is_an_error_naming_both(capsys, s32):
    code, _, err = _cli(capsys, "sim", s32, "--arch", "systolic-128")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {s32} was compiled for systolic-32; with --arch systolic-128 "
                          f"the architecture differs (rows 32 -> 128, cols 32 -> 128, clock_mhz "
                          f"1000.0 -> 940.0 and ")
    assert err.endswith("more): add --override-arch to simulate it on that one\n")
    code, _, err = _cli(capsys, "sim", s32, "--set", "dram_bw_gbps=51.2")
    assert code == 2 and "with --set dram_bw_gbps=51.2 the architecture differs (dram_bw_gbps " \
                          "25.6 -> 51.2): add --override-arch" in err


def test_the_same_architecture_given_again_is_no_conflict(capsys, tmp_path, s32):
    assert _report(capsys, tmp_path, "again", s32, "--arch", "systolic-32")["arch_name"] == "systolic-32"


def test_override_names_both_architectures_in_the_report(capsys, tmp_path, s32):
    report = _report(capsys, tmp_path, "o", s32, "--set", "dram_bw_gbps=51.2", "--override-arch")
    assert report["arch"]["dram_bw_gbps"] == 51.2
    assert any(re.fullmatch(r"compiled for systolic-32 by tessel \S+, simulated on systolic-32 "
                            r"\(--set dram_bw_gbps=51.2, --override-arch\): dram_bw_gbps 25.6 -> 51.2",
                            line) for line in report["assumptions"]), report["assumptions"]


@pytest.mark.parametrize("argv, message", [
    (["--override-arch"], "--override-arch needs --arch or --set"),
    (["--kv", "4", "--target", "pim"], "--target --kv: only with --model (a program file has no "
                                       "graph and names its target)"),
    (["--gpu", "t4"], "--gpu: only with --model"),
])
def test_options_a_program_file_cannot_honour_are_refused(capsys, s32, argv, message):
    code, _, err = _cli(capsys, "sim", s32, *argv)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1


def test_override_arch_is_for_program_files_only(capsys, tiny_hf):
    code, _, err = _cli(capsys, "sim", "--model", tiny_hf, "--override-arch")
    assert code == 2 and err.startswith("error: --override-arch: only with a program file")


def test_a_program_without_a_record_runs_on_the_default_preset_and_says_so(capsys, tmp_path):
    tasm = tmp_path / "hand.tasm"
    tasm.write_text(".target systolic\n.isa 3\n.spaces dram sram acc\ndma0 halt\n")
    report = _report(capsys, tmp_path, "hand", tasm)
    assert report["arch_name"] == "systolic-128"
    assert (f"{tasm} records no architecture: simulated on systolic-128, the target's default "
            f"preset (--arch chooses another)") in report["assumptions"]
    assert _report(capsys, tmp_path, "hand32", tasm, "--arch", "systolic-32")["arch_name"] == "systolic-32"


@pytest.mark.slow      # one CLI run per byte of the file
def test_every_damaged_byte_is_one_line_exit_2(capsys, tmp_path):
    """A bit (seeded choice) of every byte of a small .tbin with data, through sim and disasm;
    tests/isa/test_isa_tbin_format.py flips every bit through isa.load."""
    tasm = tmp_path / "p.tasm"
    tasm.write_text(".target systolic\n.isa 3\n.spaces dram sram acc\n.symbol x dram 0x0 4 fp32\n"
                    "dma0 load dst=sram[0x0] src=dram[0x0] rows=1 row_bytes=16\ndma0 halt\n")
    assert _cli(capsys, "asm", tasm, "-o", tmp_path / "p.tbin")[0] == 0
    assert _cli(capsys, "sim", tmp_path / "p.tbin", "--no-functional")[0] == 0
    raw = (tmp_path / "p.tbin").read_bytes()
    rng = random.Random(14)
    damaged = tmp_path / "d.tbin"
    for at in range(len(raw)):
        flipped = bytearray(raw)
        flipped[at] ^= 1 << rng.randrange(8)
        damaged.write_bytes(bytes(flipped))
        for command in ("sim", "disasm"):
            code, out, err = _cli(capsys, command, damaged)
            assert code == 2 and not out and err.startswith(f"error: {damaged}: ") \
                and err.count("\n") == 1, (at, command, err)


def test_a_pim_program_that_breaks_the_row_protocol_is_refused_before_it_runs(capsys, tmp_path):
    """The MAC moved before the row activation it needs: a verify error, not a DramError."""
    tasm = tmp_path / "p.tasm"
    tasm.write_text(".target pim\n.isa 3\n.spaces dram gbuf abuf\n"
                    "pim3 pim.wrgb gb=0 src=abuf[0x0] bytes=64\n"
                    "pim3 pim.mac_all col=0 ncols=2 gb=0\n"
                    "pim3 pim.act_all row=5\n"
                    "pim3 pim.rdmac_all dst=abuf[0x100]\n"
                    "pim3 pim.pre_all\n")
    code, _, err = _cli(capsys, "sim", tasm, "--no-functional")
    assert (code, err) == (2, f"error: {tasm}: instruction 1 (pim3 pim.mac_all): bank 0 has no "
                              "open row (no row was ever activated)\n")
