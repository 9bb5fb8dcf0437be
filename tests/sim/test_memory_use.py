"""Memory per simulated instruction, counted by tracemalloc (bytes, not time: deterministic).

docs/performance.md has the breakdown. On this program (gpt2 decode kv=64 on PIM, 52,138
instructions) a timing-only simulate() peaked 334 bytes an instruction above the program
before the per-instruction structures were made compact, 77 after (10 of them fixed costs,
such as the engine's 65,536 semaphore counters); the bound leaves ~30 % headroom.
"""
import tracemalloc

import pytest

import isa
from compiler.frontend import load_model
from compiler.phase import decode
from isa.bulk import no_gc
from isa.unroll import executed_count
from sim.simulate import simulate
from tessel.targets import TARGETS

BYTES_PER_INSTRUCTION = 100


@pytest.mark.slow      # simulates a whole program under tracemalloc
def test_a_timing_only_simulation_stays_under_its_bytes_per_instruction():
    pim = TARGETS["pim"]
    arch = pim.load_arch()
    # the flat program: a compact one is unrolled inside simulate(), and that flat copy is
    # program, not per-instruction simulation state
    program = isa.unroll(pim.compile(load_model("gpt2").graph(decode(64)), arch).program)
    n = executed_count(program)
    with no_gc():
        tracemalloc.start()
        try:
            simulate(program, pim.machine(arch), functional=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert n > 50_000
    assert peak / n < BYTES_PER_INSTRUCTION
