"""sim.multi: several devices in one engine, collectives as cross-device tokens."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import isa
from arch import load_arch
from arch.links import load_link
from isa.numerics import from_storage, to_storage
from sim.collectives import collective_cost
from sim.machines.systolic.machine import SystolicMachine
from isa.opcodes import LINK_QUEUE
from sim.multi import simulate_node
from sim.node_numerics import apply_collective
from sim.simulate import simulate

HEADER = (".target systolic\n.isa 3\n.spaces dram sram acc\n"
          ".symbol x dram 0x0 64 fp32\n")
ARCH = load_arch("systolic-128")
LINK = load_link("nvlink4-h100")
rng = np.random.default_rng(7)


def program(lines: list[str], x: np.ndarray | None = None) -> isa.Program:
    p = isa.assemble(HEADER + "\n".join(lines) + "\n")
    return dataclasses.replace(p, data=None if x is None else {"x": to_storage(x, isa.DType.fp32)})


def coll(kind: str, ranks: int = 2, stride: int = 1, nbytes: int = 256) -> str:
    return (f"{LINK_QUEUE} coll kind={kind} dtype=fp32 buf=dram[0x0] bytes={nbytes} "
            f"ranks={ranks} stride={stride}")


def machines(n: int) -> list[SystolicMachine]:
    return [SystolicMachine(ARCH) for _ in range(n)]


def cycles_of(kind: str, nbytes: int, ranks: int) -> int:
    return math.ceil(collective_cost(LINK, kind, nbytes, ranks).seconds * ARCH.clock_hz - 1e-9)


def test_a_collective_starts_when_the_last_member_arrives():
    slow = program(["dma0 load dst=sram[0x0] src=dram[0x100] rows=64 row_bytes=4096",
                    "dma0 signal sem=0", f"{LINK_QUEUE} wait sem=0", coll("all_reduce")])
    fast = program([coll("all_reduce")])
    node = simulate_node([slow, fast], machines(2), LINK)
    alone = simulate(isa.assemble(HEADER + "dma0 load dst=sram[0x0] src=dram[0x100] rows=64 "
                                  "row_bytes=4096\n"), SystolicMachine(ARCH), functional=False)
    assert node.cycles == alone.result.cycles + cycles_of("all_reduce", 256, 2)
    assert node.link_busy_cycles == (cycles_of("all_reduce", 256, 2),) * 2
    assert node.exposed_cycles == node.link_busy_cycles     # nothing else runs meanwhile
    (c,) = node.collectives
    assert c.members == (0, 1) and c.kind == "all_reduce"


def test_compute_that_does_not_wait_for_the_collective_overlaps_it():
    both = [coll("all_reduce", nbytes=1 << 20),
            "dma0 load dst=sram[0x0] src=dram[0x100] rows=64 row_bytes=4096"]
    node = simulate_node([program(both), program(both)], machines(2), LINK)
    comm = cycles_of("all_reduce", 1 << 20, 2)
    assert node.cycles == max(comm, simulate(program(both[1:]), SystolicMachine(ARCH),
                                             functional=False).result.cycles)
    assert node.exposed_cycles[0] < node.link_busy_cycles[0] == comm


def test_a_node_of_one_device_reports_what_a_single_simulation_does():
    lines = ["dma0 load dst=sram[0x0] src=dram[0x0] rows=1 row_bytes=256", "dma0 signal sem=1",
             "vpu0 wait sem=1", "vpu0 vcfg rows=1 cols=64 dtype=fp32 out=fp32 imm=2.0",
             "vpu0 vec func=muli bcast=none dst=sram[0x100] a=sram[0x0] b=sram[0x0]"]
    single = simulate(program(lines), SystolicMachine(ARCH), functional=False).result
    (device,) = simulate_node([program(lines)], machines(1), LINK).devices
    assert device.cycles == single.cycles
    assert device.energy_breakdown_j == {**single.energy_breakdown_j, "link": 0.0}
    assert device.ops == single.ops and device.unit_busy_cycles == single.unit_busy_cycles


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_all_reduce_sums_every_member_in_ring_order(dtype):
    n = 4
    xs = [from_storage(to_storage(rng.uniform(-1, 1, 64), isa.DType(dtype)), isa.DType(dtype))
          for _ in range(n)]
    header = HEADER.replace("64 fp32", f"64 {dtype}")
    programs = [dataclasses.replace(isa.assemble(
        header + coll("all_reduce", ranks=n, nbytes=64 * isa.DType(dtype).itemsize)
        .replace("dtype=fp32", f"dtype={dtype}") + "\n"),
        data={"x": to_storage(x, isa.DType(dtype))}) for x in xs]
    node = simulate_node(programs, machines(n), LINK, functional=True)
    out = [m.read(isa.Addr("dram", 0), 64, isa.DType(dtype)) for m in node.memories]
    for o in out[1:]:
        np.testing.assert_array_equal(o, out[0])
    np.testing.assert_allclose(out[0], np.sum(xs, axis=0), rtol=1e-2 if dtype == "bf16" else 1e-6,
                               atol=1e-2 if dtype == "bf16" else 1e-6)
    chunk = 64 // n              # chunk 0 is added from rank 1 round to rank 0, in fp32 each step
    x = [v[:chunk].astype(np.float32) for v in xs]
    if dtype == "fp32":
        np.testing.assert_array_equal(out[0][:chunk], ((x[1] + x[2]) + x[3]) + x[0])


def test_the_data_movement_collectives():
    a, b = np.arange(8, dtype=np.uint8), np.arange(8, 16, dtype=np.uint8)
    gathered = apply_collective("all_gather", [a, b])
    assert [g.tolist() for g in gathered] == [[0, 1, 2, 3, 12, 13, 14, 15]] * 2
    swapped = apply_collective("all_to_all", [a, b])
    assert swapped[0].tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert swapped[1].tolist() == [4, 5, 6, 7, 12, 13, 14, 15]
    scattered = apply_collective("reduce_scatter", [a.astype(float), b.astype(float)])
    assert scattered[0][:4].tolist() == (a[:4] + b[:4]).tolist() and scattered[0][4:].tolist() == a[4:].tolist()
    assert apply_collective("send_recv", [a, b])[1].tolist() == a.tolist()


def test_send_and_receive_copy_a_buffer_between_stages():
    x = rng.uniform(-1, 1, 64)
    sender = program([coll("send", ranks=1)], x)
    receiver = program([coll("recv", ranks=1)], np.zeros(64))
    node = simulate_node([sender, receiver], machines(2), LINK, functional=True)
    np.testing.assert_array_equal(node.memories[1].read(isa.Addr("dram", 0), 64, isa.DType.fp32),
                                  from_storage(to_storage(x, isa.DType.fp32), isa.DType.fp32))
    assert node.cycles == cycles_of("send_recv", 256, 2)


@pytest.mark.parametrize("lines, message", [
    ([[coll("all_reduce")], []], r"device 0 instruction 0: coll all_reduce number 0 of group \[0, 1\] has no partner on device 1"),
    ([[coll("all_reduce")], [coll("all_reduce", nbytes=128)]], r"device 1 instruction 0: coll all_reduce of 128 bytes fp32 does not match device 0's 256 bytes fp32"),
    ([[coll("all_reduce", ranks=3)], [coll("all_reduce", ranks=3)]], r"group \[0, 1, 2\] runs past the node's 2 devices"),
    ([[coll("send", ranks=1, stride=1)], [coll("send", ranks=1)]], r"device 1 instruction 0 \(coll send\): peer device 2 is not in the node"),
    ([[coll("send", ranks=2)], [coll("recv", ranks=1)]], r"ranks=2 must be 1"),
    ([[coll("all_gather", nbytes=12)], [coll("all_gather", nbytes=12)]], r"bytes=12 is not 2 chunks of whole fp32 elements"),
    ([[coll("all_reduce", nbytes=6)], [coll("all_reduce", nbytes=6)]], r"bytes=6 is not whole fp32 elements"),
    ([[coll("all_reduce"), coll("send", ranks=1)], [coll("recv", ranks=1), coll("all_reduce")]],
     r"device 0 instruction 0 \(link0 coll all_reduce\): deadlock: a device of its group never reaches it"),
    ([["dma0 wait sem=3"], []], r"device 0: instruction 0 \(dma0 wait\): wait on semaphore 3 has no matching signal"),
])
def test_bad_nodes_are_refused_in_one_line(lines, message):
    with pytest.raises((isa.IsaError, ValueError), match=message):
        simulate_node([program(p) for p in lines], machines(len(lines)), LINK)


def test_a_single_device_simulation_refuses_a_collective():
    with pytest.raises(isa.IsaError, match="queue link0 does not exist on this machine "
                                           r"\(a device's link to the others: simulate it with the rest of its node\)"):
        simulate(program([coll("all_reduce")]), SystolicMachine(ARCH), functional=False)


def test_pim_devices_keep_their_dram_state_in_a_node():
    """A machine that times DRAM commands by the rows it keeps open runs in a node too; the
    device's own part is timed as alone, the collective after it."""
    from sim.machines.pim.machine import PimMachine
    pim = load_arch("pim-gpt")
    head = ".target pim\n.isa 3\n.spaces dram gbuf abuf\n"
    rows = "".join(f"pim0 pim.act_all row={r}\npim0 pim.mac_all col=0 ncols=64 gb=0\n"
                   f"pim0 pim.pre_all\n" for r in range(40))
    alone = simulate(isa.assemble(head + rows), PimMachine(pim), functional=False).result
    body = rows + "pim0 signal sem=0\nlink0 wait sem=0\n" + (
        "link0 coll kind=all_reduce dtype=bf16 buf=dram[0x0] bytes=4096 ranks=2 stride=1\n")
    node = simulate_node([isa.assemble(head + body)] * 2, [PimMachine(pim)] * 2, LINK)
    comm = math.ceil(collective_cost(LINK, "all_reduce", 4096, 2).seconds * pim.dram_clock_hz - 1e-9)
    assert node.cycles == alone.cycles + comm
    assert node.devices[0].target_report.dram_commands == alone.target_report.dram_commands


@pytest.mark.parametrize("stages, microbatches", [(2, 1), (4, 1), (4, 3), (3, 8)])
def test_a_pipeline_of_equal_stages_has_gpipes_bubble(stages, microbatches):
    """P stages of equal work T, m micro-batches, hand-offs of no cost: the node takes
    (m + P - 1) T and its devices idle (P - 1)/(m + P - 1) of the time (reference/parallel.md)."""
    free = load_link("nvlink4-h100", ["base_latency_us=0", "step_latency_ns=0"])
    work = "dma0 load dst=sram[0x0] src=dram[0x100] rows=64 row_bytes=4096"
    programs = []
    for s in range(stages):
        lines = []
        for _ in range(microbatches):
            if s > 0:
                lines += [coll("recv", ranks=1, nbytes=0), f"{LINK_QUEUE} signal sem=1", "dma0 wait sem=1"]
            lines.append(work)
            if s < stages - 1:
                lines += ["dma0 signal sem=2", f"{LINK_QUEUE} wait sem=2", coll("send", ranks=1, nbytes=0)]
        programs.append(program(lines))
    node = simulate_node(programs, machines(stages), free)
    t = simulate(program([work]), SystolicMachine(ARCH), functional=False).result.cycles
    assert node.cycles == (microbatches + stages - 1) * t
    share = sum(node.idle_cycles) / (stages * node.cycles)
    assert share == pytest.approx((stages - 1) / (microbatches + stages - 1), abs=1e-12)


def test_a_ring_all_reduce_takes_the_alpha_beta_time_in_the_simulator():
    """On a ring of links (no switch: neither tree nor NVLS applies) an all-reduce of S bytes
    over n devices lasts 2(n-1)/n S / B + 2(n-1) step latencies + the start-up, B one device's
    bandwidth over the ring, at the device clock, rounded up to whole cycles."""
    ring = load_link("nvlink2-v100")
    n, nbytes = 4, 1 << 20
    node = simulate_node([program([coll("all_reduce", ranks=n, nbytes=nbytes)])] * n, machines(n), ring)
    bandwidth = ring.links_per_device * ring.link_bw_gbps * 1e9 * ring.efficiency
    seconds = (2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * ring.step_latency_ns * 1e-9
               + ring.base_latency_us * 1e-6)
    assert node.cycles == math.ceil(seconds * ARCH.clock_hz - 1e-9)
    assert {c.algorithm for c in node.collectives} == {"ring"}
