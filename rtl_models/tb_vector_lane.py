"""cocotb side of the vector lane bench (rtl_models/vector_lane.v).

Every case: load a, b, c through the host port, start one run of n elements, wait for done,
and record the lane's cycle counter, the same count measured here from simulation time, and
y[0:n]; the pytest side (tests/rtl/test_vector_lane.py) checks them.
"""
from __future__ import annotations

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer

from rtl_models.runner import load_inputs, write_results
from rtl_models.tb_common import CLOCK_NS, start_out_of_reset

MASK32 = (1 << 32) - 1


async def _load(dut, case: dict) -> None:
    dut.ld_we.value = 1
    for i, (a, b, c) in enumerate(zip(case["a"], case["b"], case["c"], strict=True)):
        dut.ld_addr.value = i
        dut.ld_a.value, dut.ld_b.value, dut.ld_c.value = a & MASK32, b & MASK32, c & MASK32
        await FallingEdge(dut.clk)
    dut.ld_we.value = 0


async def _read_y(dut, n: int) -> list[int]:
    out = []
    for i in range(n):
        dut.rd_addr.value = i
        await FallingEdge(dut.clk)
        out.append(dut.rd_y.value.to_signed())
    return out


async def _run_case(dut, case: dict, limit_cycles: int) -> dict:
    await _load(dut, case)
    dut.n.value, dut.func.value = case["n"], case["func"]
    dut.start.value = 1
    start_edge_ns = get_sim_time("ns") + CLOCK_NS / 2
    await FallingEdge(dut.clk)                      # the lane took start at the edge between
    dut.start.value = 0
    done = RisingEdge(dut.done)
    if await First(done, Timer(limit_cycles * CLOCK_NS, unit="ns")) is not done:
        return {"stuck": True}
    done_edge_ns = get_sim_time("ns")
    await FallingEdge(dut.clk)
    return {"stuck": False, "cycles": int(dut.cycles.value),
            "timed_cycles": round((done_edge_ns - start_edge_ns) / CLOCK_NS),
            "y": await _read_y(dut, case["n"])}


@cocotb.test()
async def vector_lane_cases(dut):
    """Drive every case of the stimulus file; the checks are on the pytest side."""
    stimulus = load_inputs()
    dut.start.value = dut.ld_we.value = 0
    await start_out_of_reset(dut)
    limit = stimulus["limit_cycles"]
    write_results({"cases": [await _run_case(dut, case, limit) for case in stimulus["cases"]]})
