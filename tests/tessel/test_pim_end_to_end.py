"""The PIM target end to end: logits from the simulated program, report fields, errors."""
import subprocess
import sys

import pytest

import isa
from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from compiler.targets import CompileError
from tessel.targets import TARGETS
from sim.machines.pim import PimMachine
from tessel.driver import run
from tessel.request import make_request

pytestmark = pytest.mark.slow   # end-to-end: compiles and simulates whole models (make test, not make test-fast)

TINY = "tests/fixtures/tiny-gpt2"
BF16_TOLERANCE = 3e-2          # docs/validation.md: bf16 storage, fp32 accumulation


@pytest.mark.parametrize("phase", [decode(7), prefill(6)])
def test_logits_match_reference(phase):
    model = load_model(TINY)
    outcome = run(make_request(model, "pim", load_arch("pim-gpt"), phase, numerics=True))
    assert outcome.result.logits_rel_error < BF16_TOLERANCE
    assert outcome.result.macs > 0


def test_gpt2_decode_logits_and_report():
    outcome = run(make_request(load_model("gpt2"), "pim", load_arch("pim-gpt"), decode(16), numerics=True))
    r = outcome.result
    assert r.logits_rel_error < BF16_TOLERANCE
    assert 0.9 < r.target_report.row_hit_rate < 1.0
    assert set(r.energy_breakdown_j) == {"act_pre", "mac", "reads", "io", "asic", "static"}
    assert r.target_report.dram_commands["MAC_ALL"] * 16 * 16 == r.macs
    assert len(r.target_report.mac_utilization_per_channel) == 8
    assert r.target_report.clock_domains["asic"].clock_mhz == 1000
    assert 0 < r.target_report.non_vmm_share < 1


def test_model_too_large_names_the_sizes():
    arch = load_arch("pim-gpt", ["rows=2048"])
    with pytest.raises(CompileError, match=r"needs [\d,]+ bytes of PIM DRAM .* has [\d,]+"):
        TARGETS["pim"].compile(load_model("gpt2-xl").graph(decode(8)), arch)


def test_cli_error_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "tessel.cli", "sim", "--model", "gpt2-medium",
                           "--target", "pim", "--set", "rows=1024", "--phase", "decode",
                           "--no-functional"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


def test_strided_narrow_dma_rows_cost_a_burst_and_a_row_each():
    """The decode V append's store (a 2-byte lane per bank, banks a DRAM row apart) costs a
    masked burst and a row activation per bank; the same bytes contiguous cost one of each."""
    arch = load_arch("pim-gpt")
    program = isa.assemble(".target pim\n.isa 3\n.spaces dram abuf\n"
                           f"dma0 dmacfg src_stride=2 dst_stride={arch.row_bytes}\n"
                           "dma0 store dst=dram[0x0] src=abuf[0x0] rows=16 row_bytes=2\n"
                           "dma0 dmacfg src_stride=0 dst_stride=0\n"
                           "dma0 store dst=dram[0x0] src=abuf[0x0] rows=16 row_bytes=2\n")
    costs = PimMachine(arch).start(program).costs
    strided, dense = 1, 3
    assert costs.events["wr_bursts"][strided] == 16 and costs.events["wr_bursts"][dense] == 1
    assert costs.events["act_banks"][strided] == 16 and costs.events["act_banks"][dense] == 1
    assert costs.events["io_bytes"][strided] == 16 * arch.burst_bytes
    assert costs.events["dma_bytes"][strided] == costs.events["dma_bytes"][dense] == 32
    assert costs.durations[strided] > costs.durations[dense]
