"""mfmt (docs/isa.md, "Narrow MACs"): a gemm after it is timed with K packed by the array's
mac_formats and priced at the format's energy per MAC; an array without the format refuses it;
the values do not change."""
from __future__ import annotations

import numpy as np
import pytest

import isa
from arch import load_arch
from sim.machines.systolic.machine import SystolicMachine
from sim.timing import gemm_cycles

HEADER = ".target systolic\n.isa 3\n.spaces dram sram acc\n"
GEMM = ("mxu0 mcfg m=16 n=32 k=256 dtype=bf16 acc=fp32\n"
        "{mfmt}mxu0 gemm c=acc[0x0] a=sram[0x0] b=sram[0x4000] accumulate=0 transpose_b=0 "
        "stream=0 preloaded=0\n")
NARROW = ["mac_formats.int4=2", "energy.mac_format_pj.int4=0.25"]


def costs(mfmt: str, overrides=NARROW):
    arch = load_arch("systolic-32", overrides)
    program = isa.assemble(HEADER + GEMM.format(mfmt=f"mxu0 mfmt fmt={mfmt}\n" if mfmt else ""))
    machine = SystolicMachine(arch)
    return arch, machine, machine.start(program).costs


def test_round_trips_text_and_binary():
    text = HEADER + "".join(f"mxu0 mfmt fmt={f}\n" for f in isa.MAC_FORMATS)
    program = isa.assemble(text)
    assert isa.disassemble(program) == text
    words = isa.encode(program.instructions, program.spaces)
    assert [i["fmt"] for i in isa.decode(words, program.spaces)] == list(isa.MAC_FORMATS)


@pytest.mark.parametrize("mfmt, pack", [(None, 1), ("none", 1), ("int4", 2)])
def test_a_gemm_packs_k_by_the_formats_rate(mfmt, pack):
    arch, machine, c = costs(mfmt)
    gemm = c.durations.tolist()[-1]
    assert gemm == gemm_cycles(16, 32, 256, 32, 32, "ws", False, False, False, pack)
    totals = c.events.totals()
    assert totals["macs"] == 16 * 32 * 256
    assert totals.get("macs_int4", 0) == (16 * 32 * 256 if pack == 2 else 0)
    compute = machine.energy_pj(totals)["compute"]
    per_mac = arch.energy.mac_format_pj["int4"] if pack == 2 else arch.energy.mac_pj
    assert compute == pytest.approx(16 * 32 * 256 * per_mac, rel=1e-12)


def test_packing_shortens_the_gemm():
    assert costs("int4")[2].durations.tolist()[-1] < costs("none")[2].durations.tolist()[-1]


def test_an_array_without_the_format_refuses_it():
    with pytest.raises(isa.IsaError, match=r"^instruction 2 \(mxu0 gemm\): mfmt fp8, and systolic-32 "
                                           r"has no fp8 MACs \(arch field mac_formats: int8, int4\)$"):
        costs("fp8", [])


@pytest.mark.parametrize("mfmt, peak", [(None, 1), ("none", 1), ("int4", 2)])
def test_the_peak_counts_the_most_products_a_pe_makes_in_the_programs_formats(mfmt, peak):
    _, machine, _ = costs(mfmt)
    assert machine.mac_units() == 32 * 32 * peak


def test_values_are_those_without_it():
    from sim.functional import FunctionalExecutor, Memory
    values = np.random.default_rng(0).standard_normal(16 * 256 + 256 * 32).astype(np.float32)
    operands = (values.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)    # bf16
    out = []
    for mfmt in ("", "mxu0 mfmt fmt=int8\n"):
        program = isa.assemble(HEADER + GEMM.format(mfmt=mfmt))
        memory = Memory({"dram": 1 << 16, "sram": 1 << 16, "acc": 1 << 14})
        sram = memory._buffers["sram"]
        sram[:16 * 256 * 2] = operands[:16 * 256 * 2]
        sram[0x4000:0x4000 + 256 * 32 * 2] = operands[16 * 256 * 2:]
        executor = FunctionalExecutor(program, memory)
        for i in range(len(program.instructions)):
            executor.execute(i)
        out.append(bytes(memory._buffers["acc"][:16 * 32 * 4]))
    assert out[0] == out[1] and any(out[0])
