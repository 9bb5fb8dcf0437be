"""qcfg and loadq in the simulator: values against isa.formats and a float64 reference, the
systolic machine's costs, the machines that refuse them, and compact timing of a loop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import isa
from arch import load_arch
from isa import Instr
from isa.formats import dequantize, quantize
from isa.numerics import from_storage, to_storage
from isa.packing import pack_rows
from isa.qformats import code_format, scale_patterns
from sim.compact_costs import PatternCosts, pattern_costs
from sim.functional import FunctionalError, Memory
from sim.machines import DataflowMachine, PimMachine, SystolicMachine
from sim.simulate import simulate
from tests.sim.test_functional import run

pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning may leak

SPACES = {"dram": 1 << 16, "sram": 1 << 16, "acc": 1 << 14}   # the spaces tests.sim.test_functional.run declares
SCALES = 0x8000                        # where the fp16 scales sit in DRAM
rng = np.random.default_rng(11)



def timed_per_pattern_as_unrolled(machine, text: str):
    """The program of `text`, and its timing: per pattern (its loops' costs repeat) and equal,
    figure for figure, to its unrolled program's."""
    program = isa.assemble(text)
    assert isinstance(pattern_costs(machine, program), PatternCosts)
    compact = simulate(program, machine, functional=False)
    flat = simulate(isa.unroll(program), machine, functional=False)
    assert compact.result.to_json() == flat.result.to_json()
    return program, compact.result


def load_codes(codes: np.ndarray, scales: np.ndarray, fmt: str, dtype: str, *,
               src_pitch: int = 0, dst_pitch: int = 0) -> np.ndarray:
    """codes [rows, cols] packed into DRAM (rows src_pitch apart), loaded with loadq; the
    on-chip tile read back as values of `dtype`."""
    bits, (rows, cols) = int(fmt[3:]), codes.shape
    packed = pack_rows(codes, bits)
    pitch = src_pitch or packed.shape[1]
    memory = Memory(SPACES)
    for r in range(rows):
        memory.write_bytes(f"dram[{r * pitch:#x}]", packed[r])
    memory.write_bytes(f"dram[{SCALES:#x}]", scales.astype("<f2"))
    step = 2 if scales.size > 1 else 0
    executor = run([Instr.make("dmacfg", "dma0", src_stride=src_pitch, dst_stride=dst_pitch),
                    Instr.make("qcfg", "dma0", fmt=fmt, dtype=dtype, cols=cols, step=step,
                               scales=f"dram[{SCALES:#x}]", group=0, pitch=0),
                    Instr.make("loadq", "dma0", dst="sram[0x10]", src="dram[0x0]", rows=rows)],
                   memory)
    assert executor.config("dma0").qcfg["cols"] == cols
    row_bytes = cols * isa.DType(dtype).itemsize
    return np.stack([memory.read(f"sram[{0x10 + r * (dst_pitch or row_bytes):#x}]", cols, dtype)
                     for r in range(rows)])


@pytest.mark.parametrize("fmt", [f"int{bits}" for bits in range(2, 9)])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("per_column", [True, False])
def test_loadq_gives_dequantize_rounded_to_its_dtype(fmt, dtype, per_column):
    """A [K, N] weight with one scale per column: per-channel scales of W.T (isa.formats
    groups along the last axis), or one scale for the tensor."""
    k, n = 12, 37
    weight = rng.normal(size=(k, n))
    q = quantize(weight.T, fmt, group=k if per_column else None)
    got = load_codes(q.codes.T, q.scales.reshape(-1), fmt, dtype)
    want = from_storage(to_storage(dequantize(q).T, dtype), dtype)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt, dtype", [("int3", "fp16"), ("int8", "bf16"), ("int5", "int32")])
def test_full_code_range_pitched_rows_and_any_fp16_scale(fmt, dtype):
    """Every code of the format (-2^(N-1) too), fp16 scales of both signs and subnormals,
    pitched rows on both sides: the product exact, rounded once to dtype."""
    bits, rows, cols = int(fmt[3:]), 5, 19
    codes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(rows, cols))
    scales = np.concatenate([rng.normal(size=cols - 2) * 8, [-6e-8, 3e-5]]).astype(np.float16)
    got = load_codes(codes, scales, fmt, dtype, src_pitch=40, dst_pitch=100)
    want = from_storage(to_storage(codes * scales.astype(np.float64), dtype), dtype)
    np.testing.assert_array_equal(got, want)


def test_loadq_without_qcfg_is_refused():
    with pytest.raises(FunctionalError, match=r"^instruction 0 \(dma0 loadq\): loadq before any "
                                              r"qcfg on this queue$"):
        run([Instr.make("loadq", "dma0", dst="sram[0x0]", src="dram[0x0]", rows=1)],
            Memory(SPACES))


# ---- machines ------------------------------------------------------------------------------

ARCH = load_arch("systolic-128")
HEADER = ".target {target}\n.isa 3\n.spaces dram sram acc\n"
BODY = """\
dma0 qcfg fmt=int4 dtype=bf16 cols=96 step={step} scales=dram[0x8000] group=0 pitch=0
dma0 loadq dst=sram[0x0] src=dram[0x0] rows=64
"""


@pytest.mark.parametrize("step, scale_bytes", [(2, 192), (0, 2)])
def test_systolic_costs(step, scale_bytes):
    machine = SystolicMachine(ARCH)
    program = isa.assemble(HEADER.format(target="systolic") + BODY.format(step=step))
    costs = machine.start(program).costs
    packed = 64 * 48                                    # 96 int4 codes: 48 bytes a row
    # qcfg sets registers; loadq moves the scale row and the codes in one transfer
    assert costs.durations.tolist() == [0, machine.dma(scale_bytes + packed)]
    assert costs.resources.tolist()[1] == 0             # the DRAM port
    events = {name: costs.events[name].tolist() for name in ("dram_read_bytes",
              "sram_write_bytes", "dequant_ops", "vector_ops", "sram_read_bytes")}
    assert events == {"dram_read_bytes": [0, scale_bytes + packed],
                      "sram_write_bytes": [0, 64 * 96 * 2], "dequant_ops": [0, 64 * 96],
                      "vector_ops": [0, 0], "sram_read_bytes": [0, 0]}
    energy = machine.energy_pj(costs.events.totals())
    assert set(energy) == {"compute", "sram", "dram", "vector"}
    assert energy["vector"] == 64 * 96 * ARCH.energy.dequant_pj         # the dequantiser's multiplies


def test_dataflow_costs():
    """On the dataflow machine a loadq adds its codes and scale row to its tier's bytes and its
    dequantised tile to the PMUs' (timed per call, from the tiers' bytes)."""
    costs = DataflowMachine(load_arch("sn40l")).start(isa.assemble(
        HEADER.format(target="dataflow").replace("dram sram acc", "sram hbm ddr")
        + BODY.format(step=2).replace("dma0", "agcu0").replace("dram[", "hbm["))).costs
    assert costs.events["hbm_read_bytes"].tolist() == [0, 192 + 64 * 48]
    assert costs.events["sram_bytes"].tolist() == [0, 64 * 96 * 2]
    assert costs.events["dequant_ops"].tolist() == [0, 64 * 96]


@pytest.mark.parametrize("machine, queue, name", [
    (lambda: PimMachine(load_arch("pim-gpt")), "dma0", "a PIM machine"),
])
def test_the_pim_machine_refuses_them(machine, queue, name):
    text = HEADER.format(target="x") + BODY.format(step=2).replace("dma0", queue)
    with pytest.raises(isa.IsaError, match=rf"^instruction 0 \({queue} qcfg\): not executable "
                                           rf"on {name}$"):
        machine().start(isa.assemble(text))


def test_a_loop_of_quantised_loads_is_timed_per_pattern_as_unrolled():
    """Timing only, the periodic engine times the compact program exactly as the unrolled
    one: qcfg and loadq cost the same in every iteration whatever addresses move."""
    machine = SystolicMachine(ARCH)
    text = (HEADER.format(target="systolic") + "dma0 dmacfg src_stride=0 dst_stride=0\n"
            ".loop count=6\n"
            "  dma0 qcfg fmt=int4 dtype=bf16 cols=96 step=2 scales=dram[0x8000]+=0xc0 group=0 pitch=0\n"
            "  .loop count=3\n"
            "    dma0 loadq dst=sram[0x0]+=0x3000 src=dram[0x0]+=0x600 rows=32\n"
            "    dma0 signal sem=1\n"
            "    vpu0 wait sem=1\n"
            "  .endloop\n"
            ".endloop\n")
    program, compact = timed_per_pattern_as_unrolled(machine, text)
    assert compact.bytes["dram_read"] == 6 * 3 * (192 + 32 * 48)   # each loadq: scales + codes
    numeric = simulate(dataclasses.replace(program, data={}), machine)
    # memory held up to the last scale qcfg reads (sim/reach.py)
    assert numeric.memory.held["dram"] == 0x8000 + 5 * 0xc0 + 192


@pytest.mark.parametrize("group, rows", [(4, 12), (4, 10), (1, 5), (3, 3)])
def test_a_loadq_over_several_scale_rows_steps_by_pitch(group, rows):
    """Scale row j serves rows j*group ..; rows lie pitch scales apart (a [K/g, N] matrix whose
    N exceeds the tile's cols): the values equal each row's codes times its scales."""
    generator = np.random.default_rng(group * rows)
    cols, pitch = 8, 20
    codes = generator.integers(-7, 8, (rows, cols))
    scale_matrix = generator.uniform(0.01, 1, ((rows - 1) // group + 1, pitch)).astype(np.float16)
    memory = Memory(SPACES)
    memory.write_bytes("dram[0x0]", pack_rows(codes, 4).reshape(-1))
    memory.write_bytes(f"dram[{SCALES:#x}]", scale_matrix.astype("<f2").reshape(-1))
    run([Instr.make("qcfg", "dma0", fmt="int4", dtype="fp32", cols=cols, step=2,
                    scales=f"dram[{SCALES:#x}]", group=group, pitch=pitch),
         Instr.make("loadq", "dma0", dst="sram[0x10]", src="dram[0x0]", rows=rows)], memory)
    expected = codes * np.repeat(scale_matrix[:, :cols].astype(np.float64), group, axis=0)[:rows]
    got = np.stack([memory.read(f"sram[{0x10 + r * cols * 4:#x}]", cols, "fp32") for r in range(rows)])
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert group >= rows or not np.array_equal(got, codes * scale_matrix[0, :cols].astype(np.float64))


@pytest.mark.parametrize("fmt, block", [("bfp4", 16), ("bfp8", 32), ("bfp3", 8)])
def test_bfp_weights_read_an_exponent_per_block_of_rows(fmt, block):
    """A [K, N] bfp weight quantised along K (W.T in blocks of `block`): codes [K, N], e8m0
    exponents [K/block, N]; a qcfg of group=block, pitch=N, step=1 reads dequantize exactly."""
    k, n = 96, 10
    weight = rng.normal(size=(k, n)) * np.exp2(rng.integers(-4, 5, size=(1, n)))
    q = quantize(weight.T, f"{fmt}:b{block}")
    code = code_format(fmt)
    memory = Memory(SPACES)
    memory.write_bytes("dram[0x0]", pack_rows(q.codes.T, code.bits).reshape(-1))
    exponents = scale_patterns(q.scales.T, code)                  # [K/block, N] bytes
    memory.write_bytes(f"dram[{SCALES:#x}]", np.ascontiguousarray(exponents).reshape(-1))
    run([Instr.make("qcfg", "dma0", fmt=fmt, dtype="fp32", cols=n, step=1,
                    scales=f"dram[{SCALES:#x}]", group=block, pitch=n),
         Instr.make("loadq", "dma0", dst="sram[0x10]", src="dram[0x0]", rows=k)], memory)
    got = np.stack([memory.read(f"sram[{0x10 + r * n * 4:#x}]", n, "fp32") for r in range(k)])
    np.testing.assert_array_equal(got, dequantize(q).T.astype(np.float32))
