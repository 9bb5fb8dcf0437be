"""`verify(program, machine)`: reject a bad program with its instruction index and the reason.

Checks, in order: ISA version and target; spaces, symbols and data against the machine;
every field value (by encoding the program); per instruction: queue exists, unit allowed,
configuration present (and one a storeq can quantise by: isa.footprint.storeq_qcfg; one whose
integer codes have the bit planes a loadp reads: isa.footprint.loadp_rows), field limits (a
qcfg's cols and scale step, a vquant's scale group and tile types too), every operand
footprint inside its space and on the right side of the chip (a loadq's, loadp's or storeq's
scale rows too, moving with its qcfg's address; a storeq's checked as a write);
the DRAM row protocol of the pim queues when the machine gives its banks (`isa/rows.py`: no MAC
or read without an open row, no activate of an open bank);
finally that all queues run to completion through their semaphores. A program with loops is
checked compact where a check is per footprint (isa/loop_checks.py: every iteration's bounds in
closed form, token balance per iteration, moving writes that overlap the next iteration), and
so is the row protocol (isa/row_loops.py); the synchronisation run, and the naming of a row
violation, follow its executed order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from itertools import repeat
from operator import attrgetter
from types import MappingProxyType

import numpy as np

from isa.encoding import encode
from isa.errors import FieldError, IsaError, LoopError, VerifyError
from isa.footprint import (NO_FOOTPRINT, Footprint, QueueConfig, footprints, is_written,
                           pim_lanes_per_bf16, stripes)
from isa.instr import Instr, first_uses
from isa.qformats import code_format, group_error
from isa.loop_checks import (CONFIG_OPCODES, Context, Executed, check_token_balance, first_beyond,
                             overlaps, visits)
from isa.loops import Structure, loop_structure, where
from isa.machine import MachineView
from isa.opcodes import ISA_VERSION, OPCODES, STRUCTURE
from isa.program import Program
from isa.row_loops import rows_hold
from isa.rows import ROW_CODES, ROW_FIELDS, ROW_OPCODES, find_row_violation, first_row_violation
from isa.unroll import instances, moving_values, placed, unrolled_order
from isa.values import DType, Unit
from isa.sync import SYNC_OPCODES, completes_by_iterations, find_blocked_wait

__all__ = ["verify"]


def verify(program: Program, machine: MachineView, executed: Program | None = None) -> None:
    """Raise VerifyError on the first problem; return None when the program is valid.
    `executed`: the program unrolled (isa.unroll), where the caller has it anyway (a
    simulator that runs it unrolled): the row check then reads each iteration's rows from it
    instead of expanding the instructions that loops move again."""
    _check_program(program, machine)
    first = first_uses(program.instructions)
    opcodes = list(map(attrgetter("opcode"), program.instructions))
    _check_fields(program, first)
    try:
        structure = loop_structure(program.instructions, opcodes, program.ops)
    except LoopError as error:
        raise VerifyError(str(error), error.index) from None
    if structure.loops:
        check_token_balance(program.instructions, opcodes, structure)
    _check_instructions(program, machine, first, opcodes, structure)
    _check_rows(program, machine, opcodes, structure, executed)
    if not structure.loops:
        blocked = find_blocked_wait(program.instructions)
        if blocked is not None:
            raise _at(blocked.index, program.instructions[blocked.index], blocked.message)
        return
    if completes_by_iterations(program.instructions, structure, opcodes):
        return
    run = Executed(program.instructions, structure, SYNC_OPCODES, opcodes)
    blocked = find_blocked_wait(run.instructions, run.name)
    if blocked is not None:
        raise run.error(blocked.index, blocked.message)


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


def _check_rows(program: Program, machine: MachineView, opcodes: list[str],
                structure: Structure, executed: Program | None = None) -> None:
    """The pim queues' row protocol, on a machine whose `bank` limit gives its banks. Loops are
    checked compact (isa/row_loops.py); only a program it refuses runs the executed order, to
    name its first violation."""
    banks = machine.limits.get("bank")
    if banks is None:
        return
    if structure.loops and rows_hold(program.instructions, opcodes, structure, banks):
        return
    if _rows_pass(program, opcodes, structure, banks):
        return                              # else the pass below names the first violation
    if structure.loops:
        run = Executed(program.instructions, structure, ROW_OPCODES, opcodes)
        if executed is not None:            # every iteration's values, already unrolled
            flat = executed.instructions
            run.instructions = [flat[p] for p in run.positions.tolist()]
            moving = []
        else:
            moving = [index for index, moved in structure.strided().items()
                      if opcodes[index] in ROW_OPCODES and any(
                          type(program.instructions[index].fields[position][1]) is int
                          for position in moved)]
        if moving:                          # rows that move: each iteration's own values
            each = {index: iter(found) for index, found
                    in instances(program.instructions, structure, moving).items()}
            run.instructions = [next(each[c]) if c in each else instr
                                for c, instr in zip(run.compact, run.instructions)]
        found = find_row_violation(run.instructions, run.opcodes, banks, run.name)
        if found is not None:
            raise run.error(*found)
        return
    found = find_row_violation(program.instructions, opcodes, banks)
    if found is not None:
        index, reason = found
        raise _at(index, program.instructions[index], reason)


def _rows_pass(program: Program, opcodes: list[str], structure: Structure, banks: int) -> bool:
    """Whether the row protocol holds, by `first_row_violation` on arrays of the executed row
    instructions (each compact instruction's fields once, the rows and columns its loops move
    as arrays of every iteration's values): no Python per executed instruction."""
    instrs = program.instructions
    rows = np.array([op in ROW_CODES for op in opcodes], bool)
    if not rows.any():
        return True
    if structure.loops:
        order = unrolled_order(structure).order
        executed = order[rows[order]]                  # compact index of each executed row word
    else:
        executed = np.flatnonzero(rows)
    compact = np.flatnonzero(rows)
    slot = np.zeros(len(instrs), np.int32)             # a row word's column in `table`
    slot[compact] = np.arange(len(compact), dtype=np.int32)
    queue_ids: dict[object, int] = {}
    table = np.zeros((5, len(compact)), np.int32)      # channel, code, bank, row (U24), ncols
    for j, c in enumerate(compact.tolist()):
        ins = instrs[c]
        at = ROW_FIELDS[ins.opcode]
        table[:, j] = (queue_ids.setdefault(ins.queue, len(queue_ids)), ROW_CODES[ins.opcode],
                       *(ins.fields[k][1] if k is not None else 0 for k in at))
    values = table[:, slot[executed]]
    del slot, table
    moving = {c: fields for c, fields in structure.strided().items() if rows[c]}
    for c, places in placed(executed, moving) if moving else ():
        for k, position in enumerate(ROW_FIELDS[opcodes[c]], start=2):
            if position in moving[c]:
                values[k, places] = moving_values(structure, c, instrs[c], position,
                                                  moving[c][position])
    return first_row_violation(*values, banks) is None


def _at(index: int, instr: Instr, reason: str, context: Context = ()) -> VerifyError:
    """The error about instruction `index`, in the first iteration `context` stands for."""
    return VerifyError(f"{where(index, instr, [(loop, lo) for loop, lo, _ in context])}: "
                       f"{reason}", index)


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
                        opcodes: list[str], structure: Structure) -> None:
    """Each instruction `_to_check` picks, under its queue's configuration, in every iteration
    its context stands for. What passed once passes again: the same object under the same
    configuration (moved by the same loops, through the same iterations, when loops move it;
    a compiled program repeats a few patterns thousands of times) is checked once."""
    limits = machine.limits
    limited = {op: [(position, f.name, limits[f.name]) for position, f in enumerate(spec.fields)
                    if f.name in limits] for op, spec in OPCODES.items()}
    pim_fields = {op: {name: spec.names.index(name) for name in ("col", "ncols", "gb", "bytes")
                       if name in spec.names}
                  for op, spec in OPCODES.items() if op.startswith("pim.")}
    slots: dict[object, list] = {}      # queue -> [its QueueConfig so far]
    slot_of: dict[int, list] = {}       # id(queue object) -> its slot (equal queues share one)
    configs: dict[QueueConfig, QueueConfig] = {}   # one object per distinct configuration
    passed: set[tuple] = set()          # (instruction object, configuration, moves) checked
    qcfg_at: dict[int, int] = {}        # id(queue slot) -> index of its last qcfg (a loadq's,
                                        # loadp's or storeq's scale rows start at that qcfg's
                                        # moving address)
    wanted = _to_check(opcodes, first, structure)
    strided = structure.strided()
    within: tuple = ((), {})            # the last context, and per loop header of it the
                                        # iterations it stands for and the loop's count
    checks = (visits(structure, wanted, opcodes) if structure.loops else zip(wanted, repeat(())))
    for index, context in checks:
        instr = program.instructions[index]
        queue = instr.queue
        slot = slot_of.get(id(queue))
        if slot is None:
            if str(queue) not in machine.queues:
                alone = (" (a device's link to the others: simulate it with the rest of its node)"
                         if queue.unit is Unit.link else "")
                raise _at(index, instr, f"queue {queue} does not exist on this machine{alone}",
                          context)
            slot = slot_of[id(queue)] = slots.setdefault(queue, [QueueConfig()])
        spec = OPCODES[instr.opcode]
        if queue.unit not in spec.units:
            units = " ".join(sorted(u.name for u in spec.units))
            raise _at(index, instr, f"{instr.opcode} is not allowed on unit {queue.unit.name} "
                      f"(units: {units})", context)
        config = slot[0]
        scaled = instr.opcode in _SCALED and qcfg_at.get(id(slot)) in strided
        key = (id(instr), id(config))
        if index in strided and not scaled:
            if within[0] is not context:
                within = (context, {loop.header: (lo, hi, loop.count) for loop, lo, hi in context})
            ranges = within[1]
            key += tuple((position, tuple((ranges[loop.header], delta) for loop, delta in pairs))
                         for position, pairs in strided[index].items())
        elif scaled:                    # its scales move with the qcfg's: checked every time
            key = None
        if key is None or key not in passed:
            _check_one(program, index, context, config, qcfg_at.get(id(slot)),
                       index in strided or scaled, machine, limited, pim_fields)
            passed.add(key)
        if instr.opcode == "qcfg":
            qcfg_at[id(slot)] = index
        if instr.opcode in CONFIG_OPCODES:
            after = config.after(instr)
            slot[0] = configs.setdefault(after, after)


def _check_one(program: Program, index: int, context: Context, config: QueueConfig,
               qcfg: int | None, moving: bool, machine: MachineView, limited, pim_fields) -> None:
    """Instruction `index` under `config` in the iterations `context` stands for (`qcfg`: its
    queue's last qcfg, whose address a loadq's, loadp's or storeq's scale rows start at)."""
    instr, limits = program.instructions[index], machine.limits
    ints = _int_moves(index, instr, context) if moving else {}
    for position, name, bound in limited[instr.opcode]:
        value = instr.fields[position][1]
        if value >= bound and position not in ints:
            raise _at(index, instr, f"{name}={value} exceeds the machine limit (< {bound})",
                      context)
    wide = pim_lanes_per_bf16(config)         # a MAC's gbuf inputs per BF16 lane
    if instr.opcode in pim_fields:
        _check_pim(index, instr, pim_fields[instr.opcode], limits, context, ints, wide)
    if instr.opcode == "qcfg":
        _check_qcfg(index, instr, context)
    if instr.opcode == "pim.qmode":
        _check_qmode(index, instr, context)
    if ints:
        _check_moving_ints(index, instr, ints, pim_fields.get(instr.opcode, {}), limits,
                           context, wide)
    if instr.opcode in NO_FOOTPRINT:
        return                              # touches no memory and configures nothing
    try:
        found = footprints(instr, config, limits)
    except IsaError as error:
        raise _at(index, instr, str(error), context) from None
    for footprint in found:
        if footprint.role == "scales" and instr.opcode in _SCALED:   # the qcfg's address
            moves = _moves(qcfg, program.instructions[qcfg], footprint, context) if moving else []
        else:
            moves = _moves(index, instr, footprint, context) if moving else []
        _check_footprint(index, instr, footprint, machine.spaces, context, moves)
        if moves and is_written(instr.opcode, footprint.role):
            _check_moving_write(index, instr, footprint, config, context, moves)
    if instr.opcode == "vquant":
        _check_vquant(index, instr, config.vcfg, context)


_SCALED = frozenset({"loadq", "loadp", "storeq"})   # their scale rows: at their qcfg's `scales`
_POSITION = {op: {name: k for k, name in enumerate(spec.names)} for op, spec in OPCODES.items()}


def _moves(index: int, instr: Instr, footprint: Footprint, context: Context) -> list:
    """(loop, k_lo, k_hi, delta) of the loops in `context` that move `footprint`'s operand."""
    position = _POSITION[instr.opcode][footprint.role]
    return [(loop, lo, hi, loop.delta(index, position)) for loop, lo, hi in context
            if loop.delta(index, position)]


def _to_check(opcodes: list[str], first: list[int], structure: Structure) -> list[int]:
    """Indices to check, in order: every instruction whose checks read its queue's
    configuration, every instruction a loop moves, and the first use of each other instruction
    object (compilers share equal instructions; the same object passes the same stateless
    checks again). Loop words are checked as loops (isa/loops.py)."""
    stateful = [i for i, op in enumerate(opcodes) if op not in STATELESS]
    wanted = {*first, *stateful, *structure.strided()}
    if structure.loops:
        wanted = {i for i in wanted if opcodes[i] not in STRUCTURE}
    return sorted(wanted)


def _check_footprint(index: int, instr: Instr, footprint: Footprint, spaces, context: Context,
                     moves: list) -> None:
    """Direction and bounds of one footprint, in every iteration of `context` (its address is
    affine in the iterations of the loops that move it, `moves`: checked at the extremes)."""
    role, addr, size, on_chip = footprint
    space = spaces.get(addr.space)
    if space is None:
        raise _at(index, instr, f"{role}: space {addr.space} does not exist on this machine",
                  context)
    if on_chip is not None and space.on_chip != on_chip:
        want, have = ("on-chip", "off-chip") if on_chip else ("off-chip", "on-chip")
        raise _at(index, instr, f"{role}={addr} must be {want} but {space.name} is {have}",
                  context)
    if size > space.size_bytes:
        raise _at(index, instr, f"{role}: tile of {size} bytes does not fit space "
                  f"{space.name} ({space.size_bytes} bytes)", context)
    if not moves:
        if addr.addr + size > space.size_bytes:
            raise _at(index, instr, f"{role}: address range {space.name}[{addr.addr:#x}, "
                      f"{addr.addr + size:#x}) exceeds space {space.name} of "
                      f"{space.size_bytes} bytes", context)
        return
    spec = OPCODES["qcfg" if role == "scales" else instr.opcode]   # a loadq's, loadp's or
                                                                    # storeq's scales: its qcfg's
    kind = spec.field(role).kind
    below = first_beyond([(loop, lo, hi, -d) for loop, lo, hi, d in moves], -addr.addr, 0)
    if below is not None:
        start = _moved(addr.addr, moves, below)
        raise _at(index, instr, f"{role}: address range {space.name}[{start:#x}, "
                  f"{start + size:#x}) starts below address 0", _pinned(context, below))
    reach = first_beyond(moves, addr.addr, kind.reach - kind.granule)
    if reach is not None:
        start = _moved(addr.addr, moves, reach)
        raise _at(index, instr, f"{role}={space.name}[{start:#x}] does not fit {kind.label} "
                  f"(address 0x0..{kind.reach - kind.granule:#x})", _pinned(context, reach))
    beyond = first_beyond(moves, addr.addr + size, space.size_bytes)
    if beyond is not None:
        start = _moved(addr.addr, moves, beyond)
        raise _at(index, instr, f"{role}: address range {space.name}[{start:#x}, "
                  f"{start + size:#x}) exceeds space {space.name} of {space.size_bytes} bytes",
                  _pinned(context, beyond))


def _check_moving_write(index: int, instr: Instr, footprint: Footprint, config: QueueConfig,
                        context: Context, moves: list) -> None:
    """A write that a loop moves by less than it spans overlaps itself in the next iteration
    (checked with the footprint of the iterations `context` stands for)."""
    rows, row_bytes, pitch = stripes(instr, config, footprint)
    for loop, lo, hi, delta in moves:
        if lo + 1 < loop.count and overlaps(rows, row_bytes, pitch, abs(delta)):
            pinned = _pinned(context, {loop.header: lo + 1})
            start = _moved(footprint.addr.addr, moves, {h: k for h, k in
                                                         ((c[0].header, c[1]) for c in pinned)})
            raise _at(index, instr, f"{footprint.role} writes {footprint.addr.space}"
                      f"[{start:#x}, {start + footprint.size_bytes:#x}), overlapping its write "
                      f"of iteration {lo} (it moves {delta} bytes per iteration)", pinned)


def _moved(addr: int, moves: list, iterations: dict[int, int]) -> int:
    """The address `addr` at the iterations {loop header: k} (the first of a loop not given)."""
    return addr + sum(iterations.get(loop.header, lo) * delta for loop, lo, _, delta in moves)


def _pinned(context: Context, iterations: dict[int, int]) -> Context:
    """`context` with the loops in `iterations` pinned to the iteration given."""
    return tuple((loop, iterations.get(loop.header, lo), hi) for loop, lo, hi in context)


def _check_pim(index: int, instr: Instr, at: dict[str, int], limits,
               context: Context = (), moving: Mapping[int, list] = MappingProxyType({}),
               wide: int = 1) -> None:
    """Column and global-buffer ranges, when the machine gives their sizes (`at`: the
    positions of the col, ncols, gb and bytes fields the opcode has); an operand a loop moves
    (`moving`) is `_check_moving_ints`'s."""
    fields = instr.fields
    columns = limits.get("col")
    if columns is not None and "ncols" in at and at["col"] not in moving:
        start = fields[at["col"]][1]
        stop = start + fields[at["ncols"]][1]
        if stop > columns:
            raise _at(index, instr,
                      f"columns [{start}, {stop}) exceed the {columns} columns of a row", context)
    length = _gbuf_length(fields, at, limits, wide)
    if length is None or at["gb"] in moving:
        return
    gbuf = limits["gbuf_bytes"]
    gb = fields[at["gb"]][1]
    if gb + length > gbuf:
        raise _at(index, instr, f"global buffer range [{gb}, {gb + length}) exceeds "
                  f"gbuf_bytes {gbuf}", context)


def _check_qcfg(index: int, instr: Instr, context: Context) -> None:
    """A qcfg configures at least one column, and reads one scale per column (step: the bytes
    of its format's scale, isa/qformats.py) or one for them all (step 0): the layouts the
    compiler writes and a DMA engine's scale fetch supports."""
    if instr["cols"] == 0:
        raise _at(index, instr, "cols=0: a qcfg configures at least one column", context)
    fmt = code_format(instr["fmt"])
    if instr["step"] not in (0, fmt.scale_bytes):
        raise _at(index, instr, f"step={instr['step']} must be {fmt.scale_bytes} (one {fmt.scale} "
                  f"scale per column) or 0 (one scale for all columns)", context)
    if bool(instr["group"]) != bool(instr["pitch"]):
        raise _at(index, instr, f"group={instr['group']} pitch={instr['pitch']}: scale rows "
                  "advance by both (group > 0 and pitch > 0) or by neither", context)


_FLOAT_TILES = frozenset({DType.fp32, DType.bf16, DType.fp16})


def _check_vquant(index: int, instr: Instr, vcfg: Instr, context: Context) -> None:
    """A vquant rounds float tiles, in scale groups its format takes (isa/formats.py refuses
    the others): int<N> one scale (group 0) or groups that divide a row, fp8 one scale, MX its
    block of 32, bfp<N> a block (group > 0) that divides a row."""
    for name in ("dtype", "out"):
        if vcfg[name] not in _FLOAT_TILES:
            raise _at(index, instr, f"{name}={vcfg[name]} (vcfg): vquant reads and writes float "
                      "tiles (fp32, bf16, fp16)", context)
    fmt, group, cols = instr["fmt"], instr["group"], vcfg["cols"]
    if (why := group_error(fmt, group)) is not None:
        raise _at(index, instr, f"group={group}: {why}", context)
    if group and cols % group:
        raise _at(index, instr, f"group={group} does not divide the vcfg's cols={cols}", context)


def _gbuf_length(fields, at: dict[str, int], limits, wide: int = 1) -> int | None:
    """Bytes of the global buffer a pim instruction reads or writes from its `gb` operand,
    when the machine gives the buffer's size (None: nothing to check); a MAC in an N-bit
    mode reads `wide` = 16 / N times a burst of BF16 inputs per column."""
    if limits.get("gbuf_bytes") is None or "gb" not in at:
        return None
    if "bytes" in at:
        return fields[at["bytes"]][1]
    burst = limits.get("pim_burst_bytes")
    return None if burst is None else fields[at["ncols"]][1] * burst * wide


def _check_qmode(index: int, instr: Instr, context: Context) -> None:
    """An N-bit mode needs whole codes in a 16-bit lane, and as many BF16 inputs as codes in a
    power-of-two adder tree: integer codes of 2, 4 or 8 bits."""
    fmt = instr["fmt"]
    if fmt != "bf16" and (not code_format(fmt).integer or 16 % code_format(fmt).bits):
        raise _at(index, instr, f"fmt={fmt}: the MAC lanes take 2-, 4- or 8-bit integer codes (a "
                  "16-bit lane splits into whole codes)", context)


def _int_moves(index: int, instr: Instr, context: Context) -> dict[int, list]:
    """position -> moves (loop, k_lo, k_hi, delta) of each integer operand the loops in
    `context` move (isa.opcodes.MOVING_INTS)."""
    out = {}
    for position, (_, value) in enumerate(instr.fields):
        if type(value) is int:
            moves = [(loop, lo, hi, loop.delta(index, position)) for loop, lo, hi in context
                     if loop.delta(index, position)]
            if moves:
                out[position] = moves
    return out


def _check_moving_ints(index: int, instr: Instr, moving: Mapping[int, list], at: dict[str, int],
                       limits, context: Context, wide: int = 1) -> None:
    """The bounds of each integer operand a loop moves, in every iteration of `context`: its
    field's range, the machine's limit on it (banks, rows), and for a column or global-buffer
    offset the range it starts (`_check_pim`'s rules). It is affine in the iterations, so each
    bound is checked at its extreme (`first_beyond`), and an error names the first iteration
    past it."""
    spec, fields = OPCODES[instr.opcode], instr.fields
    for position, moves in moving.items():
        name, base = fields[position]
        kind = spec.fields[position].kind
        low, high = kind.bounds
        below = first_beyond([(loop, lo, hi, -d) for loop, lo, hi, d in moves], -base, -low)
        if below is not None:
            raise _at(index, instr, f"{name}={_moved(base, moves, below)} does not fit "
                      f"{kind.label} ({low}..{high})", _pinned(context, below))
        bounds = [(high, lambda v: f"{name}={v} does not fit {kind.label} ({low}..{high})")]
        if name == "col" and "ncols" in at and limits.get("col") is not None:
            ncols, columns = fields[at["ncols"]][1], limits["col"]
            bounds.append((columns - ncols, lambda v: f"columns [{v}, {v + ncols}) exceed the "
                                                      f"{columns} columns of a row"))
        length = _gbuf_length(fields, at, limits, wide) if name == "gb" else None
        if length is not None:
            gbuf = limits["gbuf_bytes"]
            bounds.append((gbuf - length, lambda v: f"global buffer range [{v}, {v + length}) "
                                                    f"exceeds gbuf_bytes {gbuf}"))
        if name in limits:
            bound = limits[name]
            bounds.append((bound - 1, lambda v: f"{name}={v} exceeds the machine limit (< {bound})"))
        for limit, message in bounds:
            found = first_beyond(moves, base, limit)
            if found is not None:
                raise _at(index, instr, message(_moved(base, moves, found)),
                          _pinned(context, found))
