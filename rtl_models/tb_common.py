"""What the cocotb benches share on the simulator side: the clock and the way out of reset."""
from __future__ import annotations

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

__all__ = ["CLOCK_NS", "start_out_of_reset"]

CLOCK_NS = 2


async def start_out_of_reset(dut) -> None:
    """Start the clock (the GPI clock: ~30x faster than cocotb's Python one on Icarus), hold
    reset for two falling edges and release it; inputs change on falling edges only."""
    dut.rst.value = 1
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
