"""Bad architecture inputs through the command line: every `--set` and TOML field outside its
limit (arch/limits.py), of the wrong type or unknown is one line naming the `--set` argument
(or the file), the field and the value — never a traceback, a hang or a silent acceptance."""
import re

import pytest

from arch import load_arch, preset_names
from arch.config import CONFIG_DIR, table_class
from arch.limits import LIMITS, markdown_rows
from arch.presets import limit_fields
from tests.bad_input import refuses

# (target, --set argument, message after "error: ")
BAD_SETS = [
    ("systolic", "clock_mhz=nan", r"field 'clock_mhz' must be a number from 1 to 10000 MHz, got nan"),
    ("systolic", "clock_mhz=inf", r"field 'clock_mhz' must be a number from 1 to 10000 MHz, got inf"),
    ("systolic", "clock_mhz=1e300", r"field 'clock_mhz' must be .*, got 1e\+300"),
    ("systolic", "clock_mhz=0.5", r"field 'clock_mhz' must be .*, got 0.5"),
    ("systolic", "dram_bw_gbps=inf", r"field 'dram_bw_gbps' must be a number from 0.1 to 1000000 GB/s, got inf"),
    ("systolic", "dram_bw_gbps=0", r"field 'dram_bw_gbps' must be .*, got 0"),
    ("systolic", "rows=1e9", r"field 'rows' must be an integer from 1 to 65536 PEs, got 1000000000.0"),
    ("systolic", "rows=1000000000", r"field 'rows' must be an integer from 1 to 65536 PEs, got 1000000000"),
    ("systolic", "rows=0", r"field 'rows' must be an integer from 1 to 65536 PEs, got 0"),
    ("systolic", "cols=-4", r"field 'cols' must be an integer .*, got -4"),
    ("systolic", "vector_latency_cycles.exp=2.5",
     r"field 'vector_latency_cycles.exp' must be an integer from 0 to 4096 cycles, got 2.5"),
    ("systolic", "vector_latency_cycles.exp=-1", r"field 'vector_latency_cycles.exp' must be .*, got -1"),
    ("systolic", "vector_latency_cycles.exp=99999", r"field 'vector_latency_cycles.exp' must be .*, got 99999"),
    ("systolic", "rowz=4", r"unknown field 'rowz' \(did you mean 'rows'\?\)"),
    ("systolic", "energy.foo=1", r"unknown field 'energy.foo' \(fields: energy.mac_pj, .*energy.static_w, energy.mac_format_pj\)"),
    ("systolic", "mac_formats.int8=0", r"field 'mac_formats.int8' must be an integer from 1 to 16 MACs, got 0"),
    ("systolic", "dma_overlap=2", r"field 'dma_overlap' must be true or false, got 2"),
    ("dataflow", "mac_formats.fp8=0", r"field 'mac_formats.fp8' must be an integer from 1 to 16 MACs, got 0"),
    ("systolic", "energy.mac_pj=0", r"field 'energy.mac_pj' must be a number above 0 and at most 100000 pJ, got 0"),
    ("systolic", "energy.static_w=1e9", r"field 'energy.static_w' must be a number from 0 to 10000 W, got 1000000000.0"),
    ("systolic", "dram_bytes=1e20", r"field 'dram_bytes' must be an integer from 1 to 17592186044416 bytes"),
    ("systolic", "dram_bytes=18446744073709551616", r"field 'dram_bytes' must be .*, got 18446744073709551616"),
    ("systolic", "sram_bytes=0", r"field 'sram_bytes' must be an integer from 1 to 4294967296 bytes, got 0"),
    ("systolic", "dram_latency_ns=-1", r"field 'dram_latency_ns' must be a number from 0 to 10000 ns, got -1"),
    ("systolic", "dataflow=xs", r"field 'dataflow' must be one of ws, os, is, got 'xs'"),
    ("systolic", "weight_preload_overlap=1", r"field 'weight_preload_overlap' must be true or false, got 1"),
    ("systolic", "rows=", r"field 'rows' must be an integer .*, got ''"),
    ("systolic", "energy={}", r"missing field 'energy.mac_pj'"),
    ("systolic", "vector_latency_cycles=3", r"field 'vector_latency_cycles' must be a table, got 3"),
    ("pim", "tck_ns=1e-9", r"field 'tck_ns' must be a number from 0.1 to 10 ns, got 1e-09"),
    ("pim", "tck_ns=100", r"field 'tck_ns' must be .*, got 100"),
    ("pim", "timing.tREFI=1000000000", r"field 'timing.tREFI' must be an integer from 1 to 131072 tCK"),
    ("pim", "timing.tRCD_RD=0", r"field 'timing.tRCD_RD' must be an integer from 1 to 8192 tCK, got 0"),
    ("pim", "timing.tRFC=100000", r"field 'timing.tRFC' must be .*, got 100000"),
    ("pim", "timing.tCL=12.5", r"field 'timing.tCL' must be an integer .*, got 12.5"),
    ("pim", "channels=5000", r"field 'channels' must be an integer from 1 to 1024 channels, got 5000"),
    ("pim", "banks=512", r"field 'banks' must be an integer from 1 to 256 banks, got 512"),
    ("pim", "rows=1e9", r"field 'rows' must be an integer from 1 to 1048576 rows, got 1000000000.0"),
    ("pim", "asic.clock_mhz=nan", r"field 'asic.clock_mhz' must be a number from 1 to 10000 MHz, got nan"),
    ("pim", "io_bw_gbps=inf", r"field 'io_bw_gbps' must be .*, got inf"),
    ("pim", "asic.latency_cycles.exp=2.5", r"field 'asic.latency_cycles.exp' must be an integer .*, got 2.5"),
    ("pim", "energy.p_act_mw=0", r"field 'energy.p_act_mw' must be a number above 0 and at most 1000000 mW"),
    ("pim", "gbuf_bytes=131072", r"field 'gbuf_bytes' must be an integer from 1 to 65536 bytes, got 131072"),
    ("dataflow", "hbm_bw_gbps=inf", r"field 'hbm_bw_gbps' must be a number from 0.1 to 1000000 GB/s, got inf"),
    ("dataflow", "ddr_bw_gbps=nan", r"field 'ddr_bw_gbps' must be .*, got nan"),
    ("dataflow", "pcus=0", r"field 'pcus' must be an integer from 1 to 65536 units, got 0"),
    ("dataflow", "launch_us=1e12", r"field 'launch_us' must be a number from 0 to 1000000 us, got 1000000000000.0"),
    ("dataflow", "hbm_bytes=1.5", r"field 'hbm_bytes' must be an integer .*, got 1.5"),
    ("dataflow", "kernel_granularity=op", r"field 'kernel_granularity' must be one of operator, layer, model, got 'op'"),
    ("dataflow", "stage_latency_cycles=-3", r"field 'stage_latency_cycles' must be .*, got -3"),
    ("dataflow", "attention=flash", r"field 'attention' must be one of fused, unfused, got 'flash'"),
    ("systolic", "attention=true", r"field 'attention' must be one of fused, unfused, got True"),
    ("systolic", "energy.dequant_pj=0", r"field 'energy.dequant_pj' must be a number above 0 and at most 100000 pJ, got 0"),
    ("dataflow", "energy.dequant_pj=cheap", r"field 'energy.dequant_pj' must be a number above 0 .*, got 'cheap'"),
]


def sim_argv(target: str, *sets: str, arch: str | None = None) -> list[str]:
    """A command that fails at the architecture before any compilation work."""
    argv = ["sim", "--model", "gpt2", "--phase", "decode", "--kv", "4", "--no-functional",
            "--gpu", "none", "--target", target]
    return argv + (["--arch", arch] if arch else []) + [f"--set={s}" for s in sets]


@pytest.mark.parametrize("target, assignment, message", BAD_SETS, ids=[a for _, a, _ in BAD_SETS])
def test_a_bad_set_names_the_argument_field_and_value(capsys, target, assignment, message):
    refuses(capsys, sim_argv(target, assignment), rf"^error: --set {re.escape(assignment)}: {message}")


@pytest.mark.parametrize("assignment, message", [
    ("mac_formats.int3=1", r"unknown field 'mac_formats.int3' \(formats: int8, int4, fp8, mxfp8, mxfp6, mxfp4, mxint8\)"),
    ("mac_formats.fp8=1", r"missing field 'energy.mac_format_pj.fp8'"),
    ("energy.mac_format_pj.fp8=1", r"field 'energy.mac_format_pj.fp8' prices a format mac_formats does not list"),
])
def test_narrow_macs_and_their_energy_come_together(capsys, assignment, message):
    """A cross-field check: it names the preset and the --set argument, then the field."""
    refuses(capsys, sim_argv("systolic", assignment),
            rf"^error: .*systolic-128\.toml with --set {re.escape(assignment)}: {message}$")


@pytest.mark.parametrize("assignment, message", [
    ("rows", r"--set rows: expected KEY=VALUE"),
    ("=4", r"--set =4: expected KEY=VALUE"),
    ("energy..mac_pj=1", r"--set energy..mac_pj=1: expected KEY=VALUE"),
    ("energy.mac_pj.x.y=1", r"--set energy.mac_pj.x.y=1: 'energy.mac_pj' is not a table in .*systolic-128.toml"),
    ("target=pim", r"--set target=pim: the target is fixed by .*systolic-128.toml \('systolic'\)"),
])
def test_malformed_set_arguments_are_named(capsys, assignment, message):
    refuses(capsys, sim_argv("systolic", assignment), rf"^error: {message}")


def test_a_cross_field_error_names_the_file_and_the_overrides(capsys):
    refuses(capsys, sim_argv("pim", "channels=4", "row_bytes=2000"),
            r"^error: .*pim-gpt.toml with --set channels=4, --set row_bytes=2000: field 'row_bytes' "
            r"must be a multiple of burst_bytes \(32\), got 2000$")


def preset_copy(tmp_path, preset: str, old: str, new: str) -> str:
    text = (CONFIG_DIR / f"{preset}.toml").read_text()
    assert old in text
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(old, new, 1))
    return str(path)


@pytest.mark.parametrize("preset, target, old, new, message", [
    ("systolic-128", "systolic", "clock_mhz = 940.0", "clock_mhz = nan", r"field 'clock_mhz' must be .*, got nan"),
    ("systolic-128", "systolic", "rows = 128", "rowz = 128", r"unknown field 'rowz' \(did you mean 'rows'\?\)"),
    ("systolic-128", "systolic", "weight_preload_overlap = true", 'weight_preload_overlap = "no"',
     r"field 'weight_preload_overlap' must be true or false, got 'no'"),
    ("pim-gpt", "pim", "tck_ns = 0.5", "tck_ns = 1e-9", r"field 'tck_ns' must be .*, got 1e-09"),
    ("pim-gpt", "pim", "tREFI = 3333", "tREFI = 3333.5", r"field 'timing.tREFI' must be an integer .*, got 3333.5"),
    ("sn40l", "dataflow", "hbm_bw_gbps = 1600.0", "hbm_bw_gbps = inf", r"field 'hbm_bw_gbps' must be .*, got inf"),
    ("gpu-h100-sxm", "systolic", "peak_tflops_fp16 = 989.4", "peak_tflops_fp16 = inf",
     r"field 'peak_tflops_fp16' must be a number above 0 and at most 100000 TFLOP/s, got inf"),
    ("gpu-h100-sxm", "systolic", 'link = "nvlink4-h100"', 'link = "nvlink9"',
     r"field 'link' must be a link preset \(cxl-cent, .*\), got 'nvlink9'"),
    ("gpu-h100-sxm", "systolic", "fp8 = 1979.0", "fp4 = 3958.0",
     r"unknown field 'tensor_tops.fp4' \(tensor-core formats: fp8, int8, int4\)$"),
    ("gpu-t4", "systolic", "int4 = 260.0", "int4 = nan",
     r"field 'tensor_tops.int4' must be a number above 0 and at most 200000 TOPS, got nan$"),
    ("gpu-h100-sxm", "systolic", "operand_tbps = 8.2363", "operand_tbps = 0.0",
     r"field 'tiled_gemm.operand_tbps' must be a number above 0 and at most 10000 TB/s, got 0.0$"),
    ("gpu-a100-80gb", "systolic", "streamk_us = 102.6951", "streamk_uss = 102.6951",
     r"unknown field 'tiled_gemm.streamk_uss' \(did you mean 'tiled_gemm.streamk_us'\?\)$"),
    ("gpu-h200", "systolic", "k_half = 0.0", "", r"missing field 'tiled_gemm.k_half'$"),
])
def test_a_bad_file_field_names_the_file(tmp_path, capsys, preset, target, old, new, message):
    path = preset_copy(tmp_path, preset, old, new)
    refuses(capsys, sim_argv(target, arch=path), rf"^error: {re.escape(path)}: {message}")


def test_a_non_utf8_toml_is_one_line(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_bytes((CONFIG_DIR / "systolic-32.toml").read_bytes() + b"# \xff\n")
    refuses(capsys, sim_argv("systolic", arch=str(path)), r"mine.toml: not UTF-8 text \(byte \d+\)$")


def test_every_preset_is_inside_every_limit():
    assert all(load_arch(name) for name in preset_names())


def test_every_numeric_field_declares_a_limit_and_the_docs_show_each():
    import dataclasses
    import typing
    from pathlib import Path

    from arch import ARCH_CLASSES
    pending = list(ARCH_CLASSES.values())
    while pending:
        cls = pending.pop()
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if table_class(hint) is not None:
                pending.append(table_class(hint))
            elif hint in (int, float) or typing.get_origin(hint) is dict:
                assert f.metadata.get("limit") in LIMITS, (cls.__name__, f.name)
    assert set(limit_fields()) == set(LIMITS)              # no limit without a field
    doc = (Path(__file__).parents[2] / "docs" / "inputs.md").read_text()
    for row in markdown_rows(limit_fields()):
        assert row in doc, row
