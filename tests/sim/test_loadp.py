"""loadp in the simulator: values bit for bit against compiler/quant/nested.py's nested_read
and isa.formats, the systolic and dataflow machines' costs (fewer planes, fewer bytes), the PIM
machine's refusal, and compact timing of a loop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import isa
from arch import load_arch
from compiler.quant.nested import nested_read
from isa import Instr
from isa.formats import dequantize, quantize
from isa.numerics import from_storage, to_storage
from isa.packing import pack_planes
from sim.functional import FunctionalError, Memory
from sim.machines import DataflowMachine, PimMachine, SystolicMachine
from sim.simulate import simulate
from tests.sim.test_functional import run
from tests.sim.test_quantised_loads import timed_per_pattern_as_unrolled

pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning may leak

SPACES = {"dram": 1 << 16, "sram": 1 << 16, "acc": 1 << 14}   # tests.sim.test_functional.run's
SCALES = 0x8000                        # where the fp16 scales sit in DRAM
DST = 0x10


def stored_weight(bits: int, k: int, n: int, group: int, seed: int):
    """A random [K, N] weight quantised as the compiler stores it (codes [K, N], scales
    [K/g, N]: groups along K), its offset-binary bit planes [K, W x N/8] and its Quantized
    (of W.T, as compiler/quant/tensors.py holds it)."""
    weight = np.random.default_rng(seed).normal(size=(k, n))
    quantized = quantize(weight.T, f"int{bits}", group)
    codes = quantized.codes.T.astype(np.int64)
    scales = quantized.scales.reshape(n, k // group).T
    return pack_planes(codes + (1 << (bits - 1)), bits), scales, quantized


def load_planes(planes_data: np.ndarray, scales: np.ndarray, bits: int, dtype: str, *,
                planes: int, c0: int, cols: int, group: int, src_pitch: int = 0,
                dst_pitch: int = 0) -> np.ndarray:
    """Columns [c0, c0 + cols) of the stored rows (each `src_pitch` apart, 0: back to back)
    read with loadp at `planes` planes; the on-chip tile read back as values of `dtype`."""
    rows, row_bytes = planes_data.shape
    pitch = src_pitch or row_bytes
    memory = Memory(SPACES)
    for r in range(rows):
        memory.write_bytes(f"dram[{r * pitch:#x}]", planes_data[r])
    memory.write_bytes(f"dram[{SCALES:#x}]", scales.astype("<f2").reshape(-1))
    n = scales.shape[-1]
    run([Instr.make("dmacfg", "dma0", src_stride=src_pitch, dst_stride=dst_pitch),
         Instr.make("qcfg", "dma0", fmt=f"int{bits}", dtype=dtype, cols=cols, step=2,
                    scales=f"dram[{SCALES + 2 * c0:#x}]", group=group if scales.shape[0] > 1 else 0,
                    pitch=n if scales.shape[0] > 1 else 0),
         Instr.make("loadp", "dma0", dst=f"sram[{DST:#x}]", src=f"dram[{c0 // 8:#x}]", rows=rows,
                    planes=planes, plane_bytes=row_bytes // bits)], memory)
    width = cols * isa.DType(dtype).itemsize
    return np.stack([memory.read(f"sram[{DST + r * (dst_pitch or width):#x}]", cols, dtype)
                     for r in range(rows)])


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("c0, cols", [(0, 64), (16, 24)])
def test_loadp_gives_nested_read_dequantized_bit_for_bit(bits, dtype, c0, cols):
    """Every width 1..W of a [16, 64] int<W> weight with scale groups of 4 rows along K (four
    scale rows, `pitch` = N scales apart), the whole weight and a tile of columns 16..40 of
    it (plane_bytes = 8, the weight's, not the tile's 3): dtype(dequantize(nested_read))."""
    k, n, group = 16, 64, 4
    planes_data, scales, quantized = stored_weight(bits, k, n, group, seed=bits)
    for planes in range(1, bits + 1):
        got = load_planes(planes_data, scales, bits, dtype, planes=planes, c0=c0, cols=cols,
                          group=group)
        want = dequantize(nested_read(quantized, bits, planes)).T[:, c0:c0 + cols]
        np.testing.assert_array_equal(got, from_storage(to_storage(want, dtype), dtype))


@pytest.mark.parametrize("bits, planes, dtype", [(4, 2, "fp16"), (8, 3, "bf16"), (3, 3, "int32")])
def test_any_code_pitched_rows_and_one_scale_row(bits, planes, dtype):
    """Every offset-binary code (0 too), rows pitched on both sides, one scale row for all the
    rows: the formula of the pseudo-code, the product rounded once."""
    generator = np.random.default_rng(bits * planes)
    rows, n = 5, 40
    u = generator.integers(0, 1 << bits, (rows, n))
    scales = generator.normal(size=(1, n)).astype(np.float16)
    got = load_planes(pack_planes(u, bits), scales, bits, dtype, planes=planes, c0=8, cols=32,
                      group=0, src_pitch=64, dst_pitch=200)
    k = bits - planes
    codes = (u >> k << k) + (1 << k) // 2 - (1 << (bits - 1))
    want = codes[:, 8:40] * scales[:, 8:40].astype(np.float64)
    np.testing.assert_array_equal(got, from_storage(to_storage(want, dtype), dtype))


@pytest.mark.parametrize("qcfg, planes, message", [
    (None, 1, "loadp before any qcfg on this queue"),
    (("fp8_e4m3", 0), 1, "loadp reads integer codes (int2..int8), got fmt=fp8_e4m3"),
    (("int4", 2), 5, "planes=5: int4 codes have 4 bit planes"),
])
def test_the_functional_model_refuses_what_verify_does(qcfg, planes, message):
    instrs = [] if qcfg is None else [Instr.make("qcfg", "dma0", fmt=qcfg[0], dtype="fp32",
                                                 cols=8, step=qcfg[1], scales="dram[0x100]",
                                                 group=0, pitch=0)]
    instrs.append(Instr.make("loadp", "dma0", dst="sram[0x0]", src="dram[0x0]", rows=1,
                             planes=planes, plane_bytes=1))
    with pytest.raises(FunctionalError) as error:
        run(instrs, Memory(SPACES))
    assert str(error.value) == f"instruction {len(instrs) - 1} (dma0 loadp): {message}"


# ---- machines ------------------------------------------------------------------------------

ARCH = load_arch("systolic-128")
HEADER = ".target {target}\n.isa 3\n.spaces dram sram acc\n"
BODY = """\
dma0 qcfg fmt=int4 dtype=bf16 cols=96 step=2 scales=dram[0x8000] group={group} pitch={pitch}
dma0 {load}
"""
LOADP = "loadp dst=sram[0x0] src=dram[0x0] rows=64 planes={planes} plane_bytes=12"


def systolic_costs(load: str, group: int = 0, pitch: int = 0):
    program = isa.assemble(HEADER.format(target="systolic")
                           + BODY.format(load=load, group=group, pitch=pitch))
    return SystolicMachine(ARCH).start(program).costs


@pytest.mark.parametrize("group, scale_rows", [(0, 1), (16, 4)])
def test_fewer_planes_read_fewer_bytes_on_the_systolic_machine(group, scale_rows):
    """Exactly rows x planes x ceil(cols/8) code bytes and the scale rows, one transfer;
    all four planes of int4 read what a loadq of the same codes does."""
    machine, scales = SystolicMachine(ARCH), scale_rows * 96 * 2
    durations = []
    for planes in range(1, 5):
        costs = systolic_costs(LOADP.format(planes=planes), group, 96 if group else 0)
        nbytes = 64 * planes * 12 + scales
        assert costs.durations.tolist() == [0, machine.dma(nbytes)]
        assert costs.resources.tolist()[1] == 0             # the DRAM port
        events = {name: costs.events[name].tolist()
                  for name in ("dram_read_bytes", "sram_write_bytes", "dequant_ops")}
        assert events == {"dram_read_bytes": [0, nbytes], "sram_write_bytes": [0, 64 * 96 * 2],
                          "dequant_ops": [0, 64 * 96]}
        durations.append(costs.durations[1])
    assert durations == sorted(set(durations))
    loadq = systolic_costs("loadq dst=sram[0x0] src=dram[0x0] rows=64", group,
                           96 if group else 0)
    assert loadq.durations[1] == durations[-1]
    assert loadq.events["dram_read_bytes"].tolist() == [0, 64 * 48 + scales]


def test_dataflow_costs():
    """On the dataflow machine a loadp adds the bytes of its planes and its scale row to its
    tier's bytes, as a loadq of those code bytes."""
    text = (HEADER.format(target="dataflow").replace("dram sram acc", "sram hbm ddr")
            + BODY.format(load=LOADP.format(planes=3), group=0, pitch=0)
            .replace("dma0", "agcu0").replace("dram[", "hbm["))
    costs = DataflowMachine(load_arch("sn40l")).start(isa.assemble(text)).costs
    assert costs.events["hbm_read_bytes"].tolist() == [0, 192 + 64 * 3 * 12]
    assert costs.events["sram_bytes"].tolist() == [0, 64 * 96 * 2]
    assert costs.events["dequant_ops"].tolist() == [0, 64 * 96]


def test_the_pim_machine_refuses_it():
    text = HEADER.format(target="x") + "dma0 " + LOADP.format(planes=2) + "\n"
    with pytest.raises(isa.IsaError) as error:
        PimMachine(load_arch("pim-gpt")).start(isa.assemble(text))
    assert str(error.value) == "instruction 0 (dma0 loadp): not executable on a PIM machine"


def test_a_loop_of_bit_nested_loads_is_timed_per_pattern_as_unrolled():
    """Timing only, the periodic engine times the compact program exactly as the unrolled
    one: qcfg and loadp cost the same in every iteration whatever addresses move."""
    machine = SystolicMachine(ARCH)
    text = (HEADER.format(target="systolic") + "dma0 dmacfg src_stride=0 dst_stride=0\n"
            ".loop count=6\n"
            "  dma0 qcfg fmt=int4 dtype=bf16 cols=96 step=2 scales=dram[0x8000]+=0xc0 group=0 "
            "pitch=0\n"
            "  .loop count=3\n"
            "    dma0 loadp dst=sram[0x0]+=0x3000 src=dram[0x0]+=0x600 rows=32 planes=2 "
            "plane_bytes=12\n"
            "    dma0 signal sem=1\n"
            "    vpu0 wait sem=1\n"
            "  .endloop\n"
            ".endloop\n")
    program, compact = timed_per_pattern_as_unrolled(machine, text)
    assert compact.bytes["dram_read"] == 6 * 3 * (192 + 32 * 2 * 12)   # scales + 2 planes
    numeric = simulate(dataclasses.replace(program, data={}), machine)
    # memory held up to the last scale qcfg reads (sim/reach.py)
    assert numeric.memory.held["dram"] == 0x8000 + 5 * 0xc0 + 192
