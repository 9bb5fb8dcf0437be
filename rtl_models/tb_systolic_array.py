"""Cocotb side of the systolic-array cross-check: run every case handed in, report what the RTL did.

Inputs (`runner.load_inputs()`): {"n_pe": N, "folds_max": F, "cases": [{"dataflow": "ws"|"os",
"overlap": bool, "via_ports": bool, "int4": bool, "m", "n", "k", "a": [[int8]] (m x k),
"b": [[int8]] (k x n)}]}; an int4 case's a and b are already packed two int4 values a byte
along K (k counts the pairs).
Operands go into the array's memories and C comes back through the write and read ports
(`via_ports`, one clock per word) or, for speed, straight into and out of the memory arrays
(a backdoor, zero simulated time); the GEMM itself always runs from `start` to `done`.
Results (`runner.write_results`): {"cases": [{"cycles": the RTL counter, "cycles_timed": clock
edges from the start edge to the done edge, "c": [[int32, None for X]] (m x n)}]}; all three are
None when `done` never came (the design is then reset before the next case). Nothing is checked
here: the pytest side compares against sim.timing and numpy.
"""
from __future__ import annotations

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from rtl_models.runner import load_inputs, write_results

CLOCK_NS = 10
TIMEOUT_CYCLES = 100_000   # far above any case's count; only a hung design reaches it


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _words(lanes: np.ndarray, n_pe: int, folds_max: int) -> list[tuple[int, int]]:
    """(address, packed word) for lanes[t, f*N + i]: word t*folds_max + f, lane i in byte i."""
    steps, width = lanes.shape
    padded = np.zeros((steps, _ceil(width, n_pe) * n_pe), dtype=np.int8)
    padded[:, :width] = lanes
    return [(t * folds_max + f,
             int.from_bytes(padded[t, f * n_pe:(f + 1) * n_pe].tobytes(), "little"))
            for t in range(steps) for f in range(_ceil(width, n_pe))]


def _int32(bits: str) -> int | None:
    """An MSB-first 32-bit string as a signed int; None if it holds X or Z."""
    return None if bits.strip("01") else int(bits, 2) - ((bits[0] == "1") << 32)


async def _load(dut, sel: int, words: list[tuple[int, int]], via_ports: bool) -> None:
    if not via_ports:
        memory = dut.top_mem if sel else dut.left_mem
        for addr, word in words:
            memory[addr].value = word
        return
    for addr, word in words:
        await FallingEdge(dut.clk)
        dut.mem_we.value, dut.mem_sel.value = 1, sel
        dut.mem_addr.value, dut.mem_wdata.value = addr, word
    await FallingEdge(dut.clk)
    dut.mem_we.value = 0


async def _read_result(dut, m: int, n: int, n_pe: int, folds_max: int,
                       via_ports: bool) -> list[list[int | None]]:
    """C[row, f*N + j] is word row*folds_max + f of accumulator bank j."""
    folds = _ceil(n, n_pe)
    addrs = [row * folds_max + f for row in range(m) for f in range(folds)]
    words = []
    if not via_ports:
        banks = [dut.acc_bank[j].mem for j in range(n_pe)]
        words = [[_int32(str(bank[addr].value)) for bank in banks] for addr in addrs]
    else:
        dut.acc_addr.value = addrs[0]
        for idx in range(len(addrs)):
            await FallingEdge(dut.clk)
            bits = str(dut.acc_rdata.value)
            words.append([_int32(bits[len(bits) - 32 * (j + 1):len(bits) - 32 * j])
                          for j in range(n_pe)])
            if idx + 1 < len(addrs):
                dut.acc_addr.value = addrs[idx + 1]
    return [sum(words[row * folds:(row + 1) * folds], [])[:n] for row in range(m)]


async def _reset(dut) -> None:
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _run_case(dut, case: dict, n_pe: int, folds_max: int) -> dict:
    a, b = np.array(case["a"], dtype=np.int8), np.array(case["b"], dtype=np.int8)
    is_os, via_ports = case["dataflow"] == "os", case["via_ports"]
    # left words hold what enters the rows at each stream step: A's rows (ws) or columns (os)
    await _load(dut, 0, _words(a.T if is_os else a, n_pe, folds_max), via_ports)
    await _load(dut, 1, _words(b, n_pe, folds_max), via_ports)
    await FallingEdge(dut.clk)
    dut.cfg_m.value, dut.cfg_n.value, dut.cfg_k.value = case["m"], case["n"], case["k"]
    dut.cfg_os.value, dut.cfg_overlap.value = int(is_os), int(case["overlap"])
    dut.cfg_int4.value = int(case.get("int4", False))
    dut.start.value = 1
    await RisingEdge(dut.clk)
    t_start = get_sim_time("ns")
    await FallingEdge(dut.clk)
    dut.start.value = 0
    try:
        await with_timeout(RisingEdge(dut.done), TIMEOUT_CYCLES * CLOCK_NS, "ns")
    except SimTimeoutError:
        await _reset(dut)
        return {"cycles": None, "cycles_timed": None, "c": None}
    timed = round((get_sim_time("ns") - t_start) / CLOCK_NS)
    await ReadOnly()
    cycles = dut.cycles.value.to_unsigned()
    await FallingEdge(dut.clk)
    return {"cycles": cycles, "cycles_timed": timed,
            "c": await _read_result(dut, case["m"], case["n"], n_pe, folds_max, via_ports)}


@cocotb.test()
async def systolic_cases(dut) -> None:
    """Every case of the inputs, in order, in one simulation."""
    inputs = load_inputs()
    n_pe, folds_max = inputs["n_pe"], inputs["folds_max"]
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    dut.start.value, dut.mem_we.value, dut.mem_sel.value = 0, 0, 0
    dut.mem_addr.value, dut.mem_wdata.value, dut.acc_addr.value = 0, 0, 0
    dut.cfg_m.value, dut.cfg_n.value, dut.cfg_k.value = 1, 1, 1
    dut.cfg_os.value, dut.cfg_overlap.value, dut.cfg_int4.value = 0, 0, 0
    await _reset(dut)
    results = [await _run_case(dut, case, n_pe, folds_max) for case in inputs["cases"]]
    write_results({"cases": results})
