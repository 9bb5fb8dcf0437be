"""Narrow MAC lanes (pim.qmode): a column burst read as packed integer codes against as many
BF16 inputs, checked in the verifier, the numerics and the machine's events."""
import numpy as np
import pytest

import isa
from arch import load_arch
from isa import Addr
from isa.packing import pack_rows
from sim.functional import Memory
from sim.machines import PimMachine
from sim.machines.pim.numerics import PimNumerics

ARCH = load_arch("pim-gpt")
HEAD = ".target pim\n.isa 3\n.spaces dram gbuf abuf\n"


@pytest.mark.parametrize("body, message", [
    ("pim0 pim.qmode fmt=int3\n", r"fmt=int3: the MAC lanes take 2-, 4- or 8-bit integer codes"),
    ("pim0 pim.qmode fmt=int4\npim0 pim.act_all row=0\npim0 pim.mac_all col=0 ncols=17 gb=0\n",
     r"global buffer range \[0, 2176\) exceeds gbuf_bytes 2048"),      # 17 columns x 64 inputs
])
def test_the_verifier_reads_the_mode(body, message):
    with pytest.raises(isa.VerifyError, match=message):
        isa.verify(isa.assemble(HEAD + body), ARCH.machine_view())


def test_a_mode_names_bf16_or_an_integer_code():
    """pim.qmode's field holds bf16 and int2..int8 only (ISA version 3): a float or block
    format is refused where the program is read."""
    with pytest.raises(isa.AsmError, match=r"fmt='mxfp4' is not one of bf16, int2, int3, int4, "
                                           r"int5, int6, int7, int8$"):
        isa.assemble(HEAD + "pim0 pim.qmode fmt=mxfp4\n")


def test_a_mode_sets_only_its_channel_and_bf16_resets_it():
    ok = HEAD + ("pim0 pim.qmode fmt=int4\npim0 pim.act_all row=0\npim0 pim.mac_all col=0 ncols=16 gb=0\n"
                 "pim1 pim.act_all row=0\npim1 pim.mac_all col=0 ncols=64 gb=0\n"
                 "pim0 pim.qmode fmt=bf16\npim0 pim.mac_all col=0 ncols=64 gb=0\n")
    isa.verify(isa.assemble(ok), ARCH.machine_view())


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_codes_times_inputs_are_exact_and_summed_by_the_tree(bits):
    a, rng = ARCH, np.random.default_rng(bits)
    lanes, ncols = 256 // bits, 2048 // (256 // bits) // 2          # inputs fill the gbuf
    codes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (a.banks, ncols * lanes))
    x = rng.standard_normal(ncols * lanes).astype(np.float32)
    x_bf16 = (x.view(np.uint32) >> 16).astype(np.uint16)            # truncated to bf16 bits
    memory = Memory({"dram": a.dram_bytes, "gbuf": a.channels * a.gbuf_bytes, "abuf": 4096},
                    {"dram": a.row_block_bytes, "gbuf": a.channels * a.gbuf_bytes, "abuf": 4096})
    for b in range(a.banks):
        memory.write_bytes(Addr("dram", a.dram_address(0, b, 0)), pack_rows(codes[b], bits).tobytes())
    memory.write_bytes(Addr("gbuf", 0), x_bf16.tobytes())
    numerics = PimNumerics(a, memory)
    models = numerics.models()
    text = HEAD + (f"pim0 pim.qmode fmt=int{bits}\npim0 pim.act_all row=0\n"
                   f"pim0 pim.mac_all col=0 ncols={ncols} gb=0\npim0 pim.rdmac_all dst=abuf[0x0]\n")
    for ins in isa.assemble(text).instructions:
        models[ins.opcode](ins)
    got = np.frombuffer(memory.read_bytes(Addr("abuf", 0), 4 * a.banks), np.float32)
    xs = (x_bf16.astype(np.uint32) << 16).view(np.float32)
    products = (codes.astype(np.float32) * xs).reshape(a.banks, ncols, lanes)   # exact in fp32
    while products.shape[-1] > 1:                                   # the adder tree, per column
        products = products[..., 0::2] + products[..., 1::2]
    expected = np.cumsum(np.concatenate([np.zeros((a.banks, 1), np.float32), products[..., 0]], axis=1),
                         axis=1, dtype=np.float32)[:, -1]
    np.testing.assert_array_equal(got, expected)
    assert np.allclose(got, codes @ xs.astype(np.float64), rtol=1e-5, atol=1e-4)


def test_a_narrow_mac_counts_its_multiply_accumulates_and_the_lanes_peak():
    text = HEAD + ("pim0 pim.act_all row=0\npim0 pim.mac_all col=0 ncols=4 gb=0\n"
                   "pim0 pim.qmode fmt=int4\npim0 pim.mac_all col=0 ncols=4 gb=0\n"
                   "pim0 pim.pre_all\n")
    machine = PimMachine(ARCH)
    costs = machine.start(isa.assemble(text)).costs
    macs = costs.events["macs"].tolist()
    assert macs[1] == 4 * 16 * ARCH.banks and macs[3] == 4 * 64 * ARCH.banks
    assert costs.durations[2] == 0                       # a mode is a register, no DRAM command
    bf16_peak = ARCH.channels * ARCH.banks * ARCH.macs_per_bank_per_access // ARCH.timing.tCCD_L
    assert machine.mac_units() == 4 * bf16_peak
