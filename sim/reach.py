"""How much of each memory space a program can touch: what a numeric run allocates.

A numeric run holds a space only up to the highest byte any symbol or instruction footprint
reaches (`isa.footprints`, as the verifier computes them), not the whole 16 GiB DRAM a preset
describes. The functional memory refuses an access beyond that (`sim.functional.Memory`), so
an address the footprints miss is an error, never a silent wrap or a read of memory nobody
allocated.
"""
from __future__ import annotations

import isa
from isa.footprint import NO_FOOTPRINT
from isa.loop_checks import CONFIG_OPCODES

__all__ = ["reached_bytes"]


def reached_bytes(program: isa.Program, view: isa.MachineView) -> dict[str, int]:
    """Per space of `view`: the end of the highest byte of it that a symbol of `program` or a
    footprint of one of its instructions covers (0 where none does), at most the space's size.

    Footprints depend only on the instruction and its queue's configuration, so each
    (instruction object, configuration) pair is measured once: compilers share equal
    instructions among ~10^6 uses."""
    ends = dict.fromkeys(view.spaces, 0)
    for symbol in program.symbols:
        ends[symbol.space] = max(ends.get(symbol.space, 0), symbol.addr + symbol.size_bytes)
    configs: dict[isa.Queue, isa.QueueConfig] = {}
    seen: set[tuple[int, int]] = set()
    alive: list[isa.QueueConfig] = []          # keeps the ids in `seen` from being reused
    reset = isa.QueueConfig()
    limits = view.limits
    for instr in program.instructions:
        op = instr.opcode
        if op in NO_FOOTPRINT:
            continue
        config = configs.get(instr.queue, reset)
        if op in CONFIG_OPCODES:        # qcfg also reads its scales: measured below
            configs[instr.queue] = config.after(instr)
            alive.append(configs[instr.queue])
        key = (id(instr), id(config))
        if key in seen:
            continue
        seen.add(key)
        for _, addr, size, _ in isa.footprints(instr, config, limits):
            ends[addr.space] = max(ends.get(addr.space, 0), addr.addr + size)
    # within the spaces: the verifier has already refused anything beyond them
    return {name: min(ends.get(name, 0), space.size_bytes) for name, space in view.spaces.items()}
