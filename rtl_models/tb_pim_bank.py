"""cocotb side of the PIM bank bench (rtl_models/pim_bank.v).

Every case: hold reset, program the timing, load the array, release reset, then present the
commands one after another, each from the falling edge after the previous one issued, so the
bank issues each at its earliest legal cycle. Records per case the issue cycles (the bank's
issue_cycle register, and the same counted here from simulation time), the RD data and the
RDMAC results; the pytest side (tests/rtl/test_pim_bank.py) checks them.
"""
from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, First, Timer

from rtl_models.runner import load_inputs, write_results

KIND_CODES = {"ACT": 0, "PRE": 1, "RD": 2, "WR": 3, "MAC": 4, "RDMAC": 5, "WRGB": 6, "MODE": 7}
TIMING_PORTS = {"tRCD_RD": "t_rcd_rd", "tRCD_WR": "t_rcd_wr", "tRCD_MAC": "t_rcd_mac", "tRP": "t_rp",
                "tRAS": "t_ras", "tRC": "t_rc", "tCCD_S": "t_ccd_s", "tCCD_L": "t_ccd_l",
                "tRTP": "t_rtp", "tCWL": "t_cwl", "tBL": "t_bl", "tWR": "t_wr", "WR_GB": "t_wr_gb",
                "tMODCH": "t_modch", "tRDMAC_PRE": "t_rdmac_pre"}
CLOCK_NS = 2
WAIT_LIMIT_CYCLES = 2048            # longer than any wait a legal command can have (8-bit timing)


def pack_lanes(lanes: list[int]) -> int:
    """int16 lanes -> one burst, lane i in bits [16i, 16i + 16)."""
    return sum((v & 0xFFFF) << (16 * i) for i, v in enumerate(lanes))


def unpack_lanes(burst: int, n: int) -> list[int]:
    raw = [(burst >> (16 * i)) & 0xFFFF for i in range(n)]
    return [v - 0x10000 if v & 0x8000 else v for v in raw]


async def _load_array(dut, array: list[list[list[int]]]) -> None:
    dut.ld_valid.value = 1
    for row, columns in enumerate(array):
        for col, lanes in enumerate(columns):
            dut.ld_row.value, dut.ld_col.value = row, col
            dut.ld_data.value = pack_lanes(lanes)
            await FallingEdge(dut.clk)
    dut.ld_valid.value = 0


def _present(dut, cmd: dict) -> None:
    dut.cmd_kind.value = KIND_CODES[cmd["kind"]]
    dut.cmd_row.value = cmd.get("row", 0)
    dut.cmd_col.value = cmd.get("col", 0)
    dut.cmd_gb.value = cmd.get("gb", 0)
    dut.cmd_data.value = pack_lanes(cmd.get("data", []))
    dut.cmd_valid.value = 1


async def _run_case(dut, case: dict) -> dict:
    lanes = len(case["array"][0][0])
    dut.rst.value = 1
    dut.cmd_valid.value = 0
    for name, port in TIMING_PORTS.items():
        getattr(dut, port).value = case["timing"][name]
    await FallingEdge(dut.clk)
    await _load_array(dut, case["array"])
    dut.rst.value = 0
    cycle0_ns = get_sim_time("ns") + CLOCK_NS / 2   # the first rising edge out of reset
    issued, timed, rd_data, mac_results, stuck = [], [], [], [], None
    for i, cmd in enumerate(case["commands"]):
        _present(dut, cmd)
        issue = dut.issue_toggle.value_change
        if await First(issue, Timer(WAIT_LIMIT_CYCLES * CLOCK_NS, unit="ns")) is not issue:
            stuck = {"index": i, "illegal": bool(dut.cmd_illegal.value)}
            break
        timed.append(round((get_sim_time("ns") - cycle0_ns) / CLOCK_NS))
        await FallingEdge(dut.clk)                  # everything the issuing edge wrote is settled
        issued.append(int(dut.issue_cycle.value))
        if cmd["kind"] == "RD":
            rd_data.append(unpack_lanes(int(dut.rd_data.value), lanes))
        elif cmd["kind"] == "RDMAC":
            mac_results.append(dut.mac_result.value.to_signed())
    dut.cmd_valid.value = 0
    return {"issue_cycles": issued, "timed_issue_cycles": timed, "rd_data": rd_data,
            "mac_results": mac_results, "stuck": stuck}


@cocotb.test()
async def pim_bank_cases(dut):
    """Drive every case of the stimulus file; the checks are on the pytest side."""
    stimulus = load_inputs()
    dut.ld_valid.value = 0
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    write_results({"cases": [await _run_case(dut, case) for case in stimulus["cases"]]})
