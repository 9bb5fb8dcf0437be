"""`verify(program, machine)`: reject a bad program with its instruction index and the reason.

Checks, in order: ISA version and target; spaces, symbols and data against the machine;
every field value (by encoding the program); per instruction: queue exists, unit allowed,
configuration present, field limits, every operand footprint inside its space and on the
right side of the chip; the DRAM row protocol of the pim queues when the machine gives its
banks (`isa/rows.py`: no MAC or read without an open row, no activate of an open bank);
finally that all queues run to completion through their semaphores.
"""

from __future__ import annotations

import re
from collections import defaultdict
from operator import attrgetter

from isa.encoding import encode
from isa.errors import FieldError, IsaError, VerifyError
from isa.footprint import NO_FOOTPRINT, Footprint, QueueConfig, footprints
from isa.instr import Instr, first_uses
from isa.machine import MachineView
from isa.opcodes import ISA_VERSION, OPCODES
from isa.program import Program
from isa.rows import find_row_violation
from isa.sync import find_blocked_wait

__all__ = ["verify"]


def verify(program: Program, machine: MachineView) -> None:
    """Raise VerifyError on the first problem; return None when the program is valid."""
    _check_program(program, machine)
    first = first_uses(program.instructions)
    opcodes = list(map(attrgetter("opcode"), program.instructions))
    _check_fields(program, first)
    _check_instructions(program, machine, first, opcodes)
    _check_rows(program, machine, opcodes)
    blocked = find_blocked_wait(program.instructions)
    if blocked is not None:
        raise _at(blocked.index, program.instructions[blocked.index], blocked.message)


def _check_fields(program: Program, first: list[int]) -> None:
    """Every field value fits its encoding: each distinct instruction object is encoded once
    (compilers share equal instructions; an error names the object's first index)."""
    instrs = program.instructions
    try:
        encode([instrs[i] for i in first], program.spaces)
    except FieldError as error:
        index = first[error.index] if error.index is not None else None
        message = str(error)
        if index is not None:
            message = re.sub(rf"\binstruction {error.index}\b", f"instruction {index}", message,
                             count=1)
        raise VerifyError(message, index) from None


def _check_rows(program: Program, machine: MachineView, opcodes: list[str]) -> None:
    """The pim queues' row protocol, on a machine whose `bank` limit gives its banks."""
    banks = machine.limits.get("bank")
    if banks is None:
        return
    found = find_row_violation(program.instructions, opcodes, banks)
    if found is not None:
        index, reason = found
        raise _at(index, program.instructions[index], reason)


def _at(index: int, instr: Instr, reason: str) -> VerifyError:
    return VerifyError(f"instruction {index} ({instr.queue} {instr.opcode}): {reason}", index)


def _check_program(program: Program, machine: MachineView) -> None:
    if program.isa_version != ISA_VERSION:
        raise VerifyError(f"program: ISA version {program.isa_version} is not supported "
                          f"(supported: {ISA_VERSION})")
    if machine.target is not None and program.target != machine.target:
        raise VerifyError(f"program: compiled for target {program.target!r}, "
                          f"the machine is {machine.target!r}")
    for name in program.spaces:
        if name not in machine.spaces:
            raise VerifyError(f"program: space {name} does not exist on this machine "
                              f"(spaces: {' '.join(machine.spaces)})")
    by_space = defaultdict(list)
    for symbol in program.symbols:
        size = machine.spaces[symbol.space].size_bytes
        end = symbol.addr + symbol.size_bytes
        if end > size:
            raise VerifyError(f"symbol {symbol.name}: address range {symbol.space}"
                              f"[{symbol.addr:#x}, {end:#x}) exceeds space {symbol.space} "
                              f"of {size} bytes")
        by_space[symbol.space].append(symbol)
    for symbols in by_space.values():
        symbols.sort(key=lambda s: s.addr)
        for before, after in zip(symbols, symbols[1:]):
            if after.addr < before.addr + before.size_bytes:
                raise VerifyError(f"symbol {after.name}: overlaps symbol {before.name} in "
                                  f"{after.space} at {after.addr:#x} (it ends at "
                                  f"{before.addr + before.size_bytes:#x})")
    for name, array in (program.data or {}).items():
        try:
            symbol = program.symbol(name)
        except KeyError:
            raise VerifyError(f"data {name}: no symbol of that name") from None
        if array.shape != symbol.shape:
            raise VerifyError(f"data {name}: shape {array.shape} but the symbol is {symbol.shape}")
        if array.dtype != symbol.dtype.storage:
            raise VerifyError(f"data {name}: dtype {array.dtype} but a {symbol.dtype} symbol "
                              f"is stored as {symbol.dtype.storage}")


# Opcodes whose checks do not depend on their queue's configuration registers.
STATELESS = frozenset(op for op in OPCODES if op.startswith("pim.")) | {"halt", "signal", "wait"}


def _check_instructions(program: Program, machine: MachineView, first: list[int],
                        opcodes: list[str]) -> None:
    limits = machine.limits
    spaces = machine.spaces
    limited = {op: [(position, f.name, limits[f.name]) for position, f in enumerate(spec.fields)
                    if f.name in limits] for op, spec in OPCODES.items()}
    pim_fields = {op: {name: spec.names.index(name) for name in ("col", "ncols", "gb", "bytes")
                       if name in spec.names}
                  for op, spec in OPCODES.items() if op.startswith("pim.")}
    slots: dict[object, list] = {}      # queue -> [its QueueConfig so far]
    slot_of: dict[int, list] = {}       # id(queue object) -> its slot (equal queues share one)
    for index in _to_check(opcodes, first):
        instr = program.instructions[index]
        queue = instr.queue
        slot = slot_of.get(id(queue))
        if slot is None:
            if str(queue) not in machine.queues:
                raise _at(index, instr, f"queue {queue} does not exist on this machine")
            slot = slot_of[id(queue)] = slots.setdefault(queue, [QueueConfig()])
        spec = OPCODES[instr.opcode]
        if queue.unit not in spec.units:
            units = " ".join(sorted(u.name for u in spec.units))
            raise _at(index, instr, f"{instr.opcode} is not allowed on unit {queue.unit.name} "
                      f"(units: {units})")
        for position, name, bound in limited[instr.opcode]:
            value = instr.fields[position][1]
            if value >= bound:
                raise _at(index, instr, f"{name}={value} exceeds the machine limit (< {bound})")
        if instr.opcode in pim_fields:
            _check_pim(index, instr, pim_fields[instr.opcode], limits)
        if instr.opcode in NO_FOOTPRINT:
            continue                        # touches no memory and configures nothing
        config = slot[0]
        try:
            found = footprints(instr, config, limits)
        except IsaError as error:
            raise _at(index, instr, str(error)) from None
        for footprint in found:
            _check_footprint(index, instr, footprint, spaces)
        if instr.opcode in ("dmacfg", "mcfg", "vcfg"):
            slot[0] = config.after(instr)


def _to_check(opcodes: list[str], first: list[int]) -> list[int]:
    """Indices to check, in order: every instruction whose checks read its queue's
    configuration, and the first use of each other instruction object (compilers share equal
    instructions; the same object passes the same stateless checks again)."""
    stateful = [i for i, op in enumerate(opcodes) if op not in STATELESS]
    return sorted({*first, *stateful})


def _check_footprint(index: int, instr: Instr, footprint: Footprint, spaces) -> None:
    role, addr, size, on_chip = footprint
    space = spaces.get(addr.space)
    if space is None:
        raise _at(index, instr, f"{role}: space {addr.space} does not exist on this machine")
    if on_chip is not None and space.on_chip != on_chip:
        want, have = ("on-chip", "off-chip") if on_chip else ("off-chip", "on-chip")
        raise _at(index, instr, f"{role}={addr} must be {want} but {space.name} is {have}")
    if size > space.size_bytes:
        raise _at(index, instr, f"{role}: tile of {size} bytes does not fit space "
                  f"{space.name} ({space.size_bytes} bytes)")
    if addr.addr + size > space.size_bytes:
        raise _at(index, instr, f"{role}: address range {space.name}[{addr.addr:#x}, "
                  f"{addr.addr + size:#x}) exceeds space {space.name} of {space.size_bytes} bytes")


def _check_pim(index: int, instr: Instr, at: dict[str, int], limits) -> None:
    """Column and global-buffer ranges, when the machine gives their sizes (`at`: the
    positions of the col, ncols, gb and bytes fields the opcode has)."""
    fields = instr.fields
    columns = limits.get("col")
    if columns is not None and "ncols" in at:
        start = fields[at["col"]][1]
        stop = start + fields[at["ncols"]][1]
        if stop > columns:
            raise _at(index, instr,
                      f"columns [{start}, {stop}) exceed the {columns} columns of a row")
    gbuf, burst = limits.get("gbuf_bytes"), limits.get("pim_burst_bytes")
    if gbuf is None or "gb" not in at:
        return
    if "bytes" in at:
        length = fields[at["bytes"]][1]
    elif burst is not None:
        length = fields[at["ncols"]][1] * burst
    else:
        return
    gb = fields[at["gb"]][1]
    if gb + length > gbuf:
        raise _at(index, instr, f"global buffer range [{gb}, {gb + length}) exceeds "
                  f"gbuf_bytes {gbuf}")