"""vquant in the simulator: values bit for bit against isa.formats' quantize + dequantize,
errors in one line, the costs of the three machines from their presets, and compact timing of
a loop."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import isa
from arch import load_arch
from isa import Instr
from isa.formats import dequantize, quantize
from isa.numerics import from_storage, to_storage
from sim.functional import FunctionalError, Memory
from sim.machines import DataflowMachine, PimMachine, SystolicMachine
from tests.sim.test_functional import SPACES, run
from tests.sim.test_quantised_loads import timed_per_pattern_as_unrolled

pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning may leak

ROWS, COLS = 5, 64
SRC, DST = 0x0, 0x2000
rng = np.random.default_rng(23)


def tile(dtype: str) -> np.ndarray:
    """[ROWS, COLS] values of dtype: normal rows, an all-zero row, a row with one large
    outlier (its group's scale is the outlier's: the rest round to few codes)."""
    values = rng.normal(size=(ROWS, COLS)) * np.array([[1.0], [0.0], [3.0], [1e-3], [1.0]])
    values[2, 7] = 900.0
    return from_storage(to_storage(values, dtype), dtype)


def quantise(values: np.ndarray, fmt: str, group: int, dtype: str, out: str) -> np.ndarray:
    """The raw bytes a vquant writes for `values` (already of dtype) on a fresh machine."""
    memory = Memory(SPACES)
    memory.write(f"sram[{SRC:#x}]", values, dtype)
    rows, cols = values.shape
    run([Instr.make("vcfg", "vpu0", rows=rows, cols=cols, dtype=dtype, out=out, imm=0.0),
         Instr.make("vquant", "vpu0", fmt=fmt, group=group, dst=f"sram[{DST:#x}]",
                    src=f"sram[{SRC:#x}]")], memory)
    return memory.read_bytes(f"sram[{DST:#x}]", values.size * isa.DType(out).itemsize)


CASES = [("int8", COLS, COLS),         # one scale per row (per token)
         ("int4", 16, 16),             # groups of 16 along each row
         ("int8", 0, None),            # one scale for the tile
         ("fp8_e4m3", 0, None),        # fp8: one fp32 scale
         ("mxfp4", 32, None),          # MX: isa.formats takes its block of 32 itself
         ("mxint8", 32, None)]


@pytest.mark.parametrize("fmt, group, group_arg", CASES)
@pytest.mark.parametrize("dtype, out", [("fp32", "fp32"), ("bf16", "bf16"), ("fp32", "bf16")])
def test_values_are_dequantize_of_quantize_rounded_once_to_out(fmt, group, group_arg, dtype, out):
    values = tile(dtype)
    want = to_storage(dequantize(quantize(values, fmt, group_arg)), out)
    got = quantise(values, fmt, group, dtype, out)
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()


@pytest.mark.parametrize("fmt, group", [("bfp4", 16), ("bfp8", 32), ("bfp2", 8), ("bfp6", COLS)])
@pytest.mark.parametrize("dtype, out", [("fp32", "fp32"), ("bf16", "bf16")])
def test_bfp_blocks_are_the_group(fmt, group, dtype, out):
    """bfp<N> scales each block of `group` values of a row: isa.formats' bfp<N>:b<group>."""
    values = tile(dtype)
    want = to_storage(dequantize(quantize(values, f"{fmt}:b{group}")), out)
    assert quantise(values, fmt, group, dtype, out).tobytes() == np.ascontiguousarray(want).tobytes()


@pytest.mark.parametrize("fmt, group, levels", [("int4", 16, 15), ("int8", 0, 255),
                                                ("mxfp4", 32, 15), ("bfp3", 16, 7)])
def test_the_tile_is_rounded(fmt, group, levels):
    """The result is not the input, and a scale group holds at most the format's values."""
    values = tile("fp32")
    got = np.frombuffer(quantise(values, fmt, group, "fp32", "fp32").tobytes(), "<f4")
    got = got.reshape(ROWS, COLS).astype(np.float64)
    assert not np.array_equal(got, values)
    assert np.count_nonzero(got != values) > ROWS * COLS // 2
    width = group or ROWS * COLS
    for block in got.reshape(-1, width):
        assert len(np.unique(block)) <= levels
    assert not got[1].any()                                  # the zero row stays zero


def test_an_outlier_takes_its_groups_scale_only():
    """Per row, the outlier's row rounds to coarse steps while the other rows keep theirs."""
    values = tile("fp32")
    per_row = np.frombuffer(quantise(values, "int8", COLS, "fp32", "fp32").tobytes(), "<f4")
    per_row = per_row.reshape(ROWS, COLS)
    whole = np.frombuffer(quantise(values, "int8", 0, "fp32", "fp32").tobytes(), "<f4")
    whole = whole.reshape(ROWS, COLS)
    assert np.abs(per_row[0] - values[0]).max() < 0.05
    assert not whole[3].any()                  # 1e-3 values under a 900/127 step round to 0


@pytest.mark.parametrize("instrs, message", [
    ([Instr.make("vquant", "vpu0", fmt="int8", group=0, dst="sram[0x0]", src="sram[0x100]")],
     r"^instruction 0 \(vpu0 vquant\): vquant before any vcfg on this queue$"),
    ([Instr.make("vcfg", "vpu0", rows=1, cols=2, dtype="fp32", out="fp32", imm=0.0),
      Instr.make("vquant", "vpu0", fmt="int8", group=0, dst="sram[0x100]", src="sram[0x0]")],
     r"^instruction 1 \(vpu0 vquant\): format int8: a scale of 7\.874e\+04 does not fit its "
     r"fp16$"),
    ([Instr.make("vcfg", "vpu0", rows=1, cols=2, dtype="fp32", out="fp32", imm=0.0),
      Instr.make("vquant", "vpu0", fmt="mxfp4", group=16, dst="sram[0x100]", src="sram[0x0]")],
     r"^instruction 1 \(vpu0 vquant\): group=16: mxfp4 scales blocks of 32 \(group must be "
     r"32\)$"),
    ([Instr.make("vcfg", "vpu0", rows=1, cols=2, dtype="fp32", out="fp32", imm=0.0),
      Instr.make("vquant", "vpu0", fmt="bfp4", group=0, dst="sram[0x100]", src="sram[0x0]")],
     r"^instruction 1 \(vpu0 vquant\): group=0: bfp4 scales blocks of `group` values \(group "
     r"must be its block, > 0\)$"),
])
def test_errors_are_one_line(instrs, message):
    memory = Memory(SPACES)
    memory.write("sram[0x0]", np.array([1e7, 1.0]), "fp32")
    with pytest.raises(FunctionalError, match=message):
        run(instrs, memory)


def test_an_empty_tile_writes_nothing():
    memory = Memory(SPACES)
    run([Instr.make("vcfg", "vpu0", rows=0, cols=64, dtype="fp32", out="fp32", imm=0.0),
         Instr.make("vquant", "vpu0", fmt="mxfp4", group=32, dst="sram[0x0]", src="sram[0x0]")],
        memory)
    assert not memory.read_bytes("sram[0x0]", 64).any()


@pytest.mark.slow      # processes of their own
def test_isa_formats_is_imported_by_vquant_only():
    """ml_dtypes (0.6 s) loads on a program's first vquant, not for one without."""
    code = ("import sys; import numpy as np; from isa import Instr; from sim.functional import "
            "Memory; from tests.sim.test_functional import SPACES, run; m = Memory(SPACES); "
            "run([Instr.make('vcfg', 'vpu0', rows=1, cols=32, dtype='fp32', out='fp32', imm=0.0), "
            "Instr.make('vec', 'vpu0', func='copy', bcast='none', dst='sram[0x100]', "
            "a='sram[0x0]', b='sram[0x0]')] + [Instr.make('vquant', 'vpu0', fmt='mxfp4', "
            "group=32, dst='sram[0x100]', src='sram[0x0]')] * {n}, m); "
            "print('ml_dtypes' in sys.modules)")
    for n, imported in ((0, "False"), (1, "True")):
        proc = subprocess.run([sys.executable, "-c", code.format(n=n)], capture_output=True,
                              text=True)
        assert proc.stdout.strip() == imported, proc.stderr[-2000:]


# ---- machines ------------------------------------------------------------------------------

HEADER = ".target {target}\n.isa 3\n.spaces {spaces}\n"
BODY = ("{q} vcfg rows=8 cols=96 dtype={dtype} out=bf16 imm=0.0\n"
        "{q} vquant fmt=int4 group=32 dst={space}[0x4000] src={src}[0x0]\n")


def ceil(a: int, b: int) -> int:
    return -(-a // b)


def two_passes(rows: int, cols: int, lanes: int, max_latency: int, mul_latency: int) -> int:
    """The group maxima, one row at a time, then every element: each pass fills the lanes and
    pays its function's pipeline depth."""
    return rows * ceil(cols, lanes) + max_latency + ceil(rows * cols, lanes) + mul_latency


@pytest.mark.parametrize("src, dtype, read_event", [("sram", "fp32", "sram_read_bytes"),
                                                    ("acc", "fp32", "acc_bytes"),
                                                    ("sram", "bf16", "sram_read_bytes")])
def test_systolic_costs(src, dtype, read_event):
    arch = load_arch("systolic-128")
    machine = SystolicMachine(arch)
    program = isa.assemble(HEADER.format(target="systolic", spaces="dram sram acc") +
                           BODY.format(q="vpu0", dtype=dtype, space="sram", src=src))
    costs = machine.start(program).costs
    latency = arch.vector_latency_cycles
    cycles = two_passes(8, 96, arch.vector_lanes, latency["max"], latency["mul"])
    assert costs.durations.tolist() == [0, cycles]
    size = isa.DType(dtype).itemsize
    other = "acc_bytes" if read_event == "sram_read_bytes" else "sram_read_bytes"
    events = {name: costs.events[name].tolist()[1] for name in
              ("vector_ops", read_event, other, "sram_write_bytes", "dequant_ops")}
    assert events == {"vector_ops": 2 * 8 * 96, read_event: 2 * 8 * 96 * size, other: 0,
                      "sram_write_bytes": 8 * 96 * 2, "dequant_ops": 0}
    energy = machine.energy_pj(costs.events.totals())
    assert energy["vector"] == pytest.approx(2 * 8 * 96 * arch.energy.vector_op_pj, rel=1e-12)


def test_dataflow_costs():
    """Body work of the PCUs in SIMD mode (latency 0, as vec/red): no time of its own."""
    arch = load_arch("sn40l")
    program = isa.assemble(HEADER.format(target="dataflow", spaces="sram hbm ddr") +
                           BODY.format(q="pcu0", dtype="fp32", space="sram", src="sram"))
    costs = DataflowMachine(arch).start(program).costs
    assert costs.durations.tolist() == [0, 0]
    assert costs.events["pcu_work_cycles"].tolist() == [0, two_passes(8, 96, arch.pcu_cols, 0, 0)]
    assert costs.events["vector_ops"].tolist() == [0, 2 * 8 * 96]
    assert costs.events["sram_bytes"].tolist() == [0, 8 * 96 * (2 * 4 + 2)]


def test_pim_costs():
    """The host ASIC's two passes, converted once to DRAM cycles."""
    arch = load_arch("pim-gpt")
    machine = PimMachine(arch)
    program = isa.assemble(HEADER.format(target="pim", spaces="dram gbuf abuf") +
                           BODY.format(q="asic0", dtype="fp32", space="abuf", src="abuf"))
    costs = machine.start(program).costs
    asic = arch.asic
    cycles = two_passes(8, 96, asic.vector_lanes, asic.latency_cycles["max"],
                        asic.latency_cycles["mul"])
    dram = math.ceil(cycles * arch.dram_clock_hz / (asic.clock_mhz * 1e6) - 1e-9)
    assert costs.durations.tolist() == [0, dram]
    assert costs.events["asic_ops"].tolist() == [0, 2 * 8 * 96]


def test_a_loop_of_vquants_is_timed_per_pattern_as_unrolled():
    machine = SystolicMachine(load_arch("systolic-128"))
    text = (HEADER.format(target="systolic", spaces="dram sram acc") +
            "vpu0 vcfg rows=8 cols=96 dtype=fp32 out=bf16 imm=0.0\n"
            ".loop count=5\n"
            "  vpu0 vquant fmt=mxfp4 group=32 dst=sram[0x0]+=0x600 src=acc[0x0]+=0xc00\n"
            "  vpu0 signal sem=1\n"
            "  dma1 wait sem=1\n"
            ".endloop\n")
    timed_per_pattern_as_unrolled(machine, text)
