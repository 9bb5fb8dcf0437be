"""cocotb side of the DMA engine bench (rtl_models/dma_engine.v).

Every case: load both memories through the host port, start one transfer, wait for done, and
record the engine's cycle counter, the same count measured here from simulation time, and the
whole destination memory; the pytest side (tests/rtl/test_dma_engine.py) checks them.
"""
from __future__ import annotations

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer

from rtl_models.runner import load_inputs, write_results
from rtl_models.tb_common import CLOCK_NS, start_out_of_reset

WORD_BYTES = 8                      # the host port's width


async def _load(dut, enable, image: list[int]) -> None:
    enable.value = 1
    for w in range(len(image) // WORD_BYTES):
        chunk = image[w * WORD_BYTES:(w + 1) * WORD_BYTES]
        dut.host_waddr.value = w
        dut.host_wdata.value = int.from_bytes(bytes(chunk), "little")
        await FallingEdge(dut.clk)
    enable.value = 0


async def _read_destination(dut, nbytes: int) -> list[int]:
    out = []
    for w in range(nbytes // WORD_BYTES):
        dut.host_raddr.value = w
        await FallingEdge(dut.clk)
        out += list(int(dut.host_rdata.value).to_bytes(WORD_BYTES, "little"))
    return out


async def _run_case(dut, case: dict, limit_cycles: int) -> dict:
    await _load(dut, dut.src_we, case["src"])
    await _load(dut, dut.dst_we, case["dst"])
    for port in ("src_addr", "dst_addr", "nbytes", "latency", "bytes_per_cycle"):
        getattr(dut, port).value = case[port]
    dut.start.value = 1
    start_edge_ns = get_sim_time("ns") + CLOCK_NS / 2
    await FallingEdge(dut.clk)                      # the engine took start at the edge between
    dut.start.value = 0
    if not dut.done.value:
        done = RisingEdge(dut.done)
        if await First(done, Timer(limit_cycles * CLOCK_NS, unit="ns")) is not done:
            return {"stuck": True}
        done_edge_ns = get_sim_time("ns")
        await FallingEdge(dut.clk)
    else:
        done_edge_ns = start_edge_ns
    return {"stuck": False, "cycles": int(dut.cycles.value),
            "timed_cycles": round((done_edge_ns - start_edge_ns) / CLOCK_NS),
            "dst": await _read_destination(dut, len(case["dst"]))}


@cocotb.test()
async def dma_engine_cases(dut):
    """Drive every case of the stimulus file; the checks are on the pytest side."""
    stimulus = load_inputs()
    dut.start.value = dut.src_we.value = dut.dst_we.value = 0
    await start_out_of_reset(dut)
    limit = stimulus["limit_cycles"]
    write_results({"cases": [await _run_case(dut, case, limit) for case in stimulus["cases"]]})
