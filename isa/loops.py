"""Loop structure of a compact program: which words are loop headers and strides, and the body
each loop repeats (docs/isa.md, "Loops").

A `loop` word (count, body) is followed by its `stride` words, then by `body` words (counted
in the compact program: nested headers and strides included), all on queue seq0. Iteration k
of a loop runs its body with each strided operand's address increased by k*delta; a program
means its unrolled equivalent (`isa.unroll`). `loop_structure` checks that the words form such
loops and raises LoopError naming the loop (its header's index) and the field at fault.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from types import MappingProxyType

from isa.errors import LoopError
from isa.fields import AddressKind, Field
from isa.instr import Instr
from isa.opcodes import MOVING_INTS, OPCODES, STRUCTURE, STRUCTURE_QUEUE
from isa.values import Queue

__all__ = ["Loop", "Structure", "loop_structure", "where", "loop_words", "mark_name"]

_SEQ_QUEUE = Queue.parse(STRUCTURE_QUEUE)


def loop_words(count: int, body: int, strides) -> list[Instr]:
    """A loop's header and stride words: `count` runs of the `body` words that follow, with
    `strides` (body word offset, field position, delta bytes) in any order (written sorted, as
    the encoding requires). The one place loop words are made (assembler, roll pass, emitter)."""
    return [Instr("loop", _SEQ_QUEUE, (("count", count), ("body", body))),
            *(Instr("stride", _SEQ_QUEUE, (("at", at), ("field", position), ("delta", delta)))
              for at, position, delta in sorted(strides))]


@dataclass(frozen=True, slots=True)
class Loop:
    """One loop: its header's index, count, body [body_start, body_end) of compact indices,
    strides {(instruction index, field position): delta bytes}, the enclosing loop's header."""

    header: int
    count: int
    body_start: int
    body_end: int
    strides: Mapping[tuple[int, int], int]
    parent: int | None

    def contains(self, index: int) -> bool:
        return self.body_start <= index < self.body_end

    def delta(self, index: int, position: int) -> int:
        """Bytes the operand at `position` of instruction `index` moves per iteration."""
        return self.strides.get((index, position), 0)


@dataclass(frozen=True)
class Structure:
    """The loops of a program of `size` words, outer before inner (header order)."""

    loops: tuple[Loop, ...]
    size: int

    @cached_property
    def _headers(self) -> list[int]:
        return [loop.header for loop in self.loops]

    @cached_property
    def _by_header(self) -> dict[int, Loop]:
        return {loop.header: loop for loop in self.loops}

    def chain(self, index: int) -> tuple[Loop, ...]:
        """The loops whose body holds word `index`, outermost first (O(depth + log loops))."""
        k = bisect_left(self._headers, index) - 1
        by_header = self._by_header
        loop = self.loops[k] if k >= 0 else None
        while loop is not None and not loop.contains(index):
            loop = by_header.get(loop.parent) if loop.parent is not None else None
        out = []
        while loop is not None:
            out.append(loop)
            loop = by_header.get(loop.parent) if loop.parent is not None else None
        return tuple(reversed(out))

    def children(self, parent: int | None) -> tuple[Loop, ...]:
        """The loops directly inside the loop with header `parent` (None: the top level)."""
        return tuple(loop for loop in self.loops if loop.parent == parent)

    def strided(self) -> Mapping[int, Mapping[int, tuple[tuple[Loop, int], ...]]]:
        """instruction index -> field position -> ((loop, delta), ...) outermost first
        (read-only; worked out once: the verifier, the unroller and the machines ask)."""
        return self._strided

    @cached_property
    def _strided(self) -> Mapping[int, Mapping[int, tuple[tuple[Loop, int], ...]]]:
        out: dict[int, dict[int, list[tuple[Loop, int]]]] = {}
        for loop in self.loops:
            for (index, position), delta in loop.strides.items():
                out.setdefault(index, {}).setdefault(position, []).append((loop, delta))
        return MappingProxyType({i: MappingProxyType({p: tuple(pairs) for p, pairs in fields.items()})
                                 for i, fields in out.items()})


def where(index: int, instr: Instr | None, iterations: Sequence[tuple[Loop, int]]) -> str:
    """`instruction 41 (dma0 load) in loop at 12, iteration 11`: an instruction in its
    loops (outermost first), at the iteration of each that an error is about (without the
    queue and opcode when `instr` is None: for the middle of a message)."""
    text = f"instruction {index}"
    if instr is not None:
        text += f" ({instr.queue} {instr.opcode})"
    if iterations:
        text += " in " + ", ".join(f"loop at {loop.header}, iteration {k}"
                                   for loop, k in iterations)
    return text


_LAST: list = [None]     # (instructions, ops, their Structure) of the last tuple asked for


def loop_structure(instructions: Sequence[Instr], opcodes: Sequence[str] | None = None,
                   ops: Sequence[tuple[int, str]] = ()) -> Structure:
    """The loops of `instructions` (`opcodes[i]` their opcodes when the caller has them), with
    the op marks `ops` checked against them; LoopError when the words do not form loops.
    A program's (immutable) tuple of instructions asked for again gets the same Structure:
    the verifier, the machine, the unroller and the report each ask for one program's, and
    its strides per instruction (`strided`) are then worked out once."""
    last = _LAST[0]
    if last is not None and last[0] is instructions and last[1] is ops:
        return last[2]
    structure = _loop_structure(instructions, opcodes, ops)
    if type(instructions) is tuple and type(ops) is tuple:
        _LAST[0] = (instructions, ops, structure)
    return structure


def _loop_structure(instructions: Sequence[Instr], opcodes: Sequence[str] | None,
                    ops: Sequence[tuple[int, str]]) -> Structure:
    if opcodes is None:
        opcodes = list(map(attrgetter("opcode"), instructions))
    size = len(instructions)
    words = [i for i, op in enumerate(opcodes) if op in STRUCTURE]
    loops: list[Loop] = []
    open_loops: list[Loop] = []
    stride_of: dict[int, int] = {}          # stride word -> its loop's header
    for p in words:
        while open_loops and open_loops[-1].body_end <= p:
            open_loops.pop()
        if p in stride_of:
            continue
        instr = instructions[p]
        if str(instr.queue) != STRUCTURE_QUEUE:
            raise LoopError(f"instruction {p} ({instr.queue} {instr.opcode}): loop words "
                            f"belong to queue {STRUCTURE_QUEUE}", p)
        if opcodes[p] == "stride":
            raise LoopError(f"instruction {p} ({instr.queue} stride): a stride word must follow "
                            "its loop's header or another stride word", p)
        end = p + 1
        while end < size and opcodes[end] == "stride":
            stride_of[end] = p
            end += 1
        loop = _loop(instructions, opcodes, p, end, open_loops[-1] if open_loops else None, size)
        loops.append(loop)
        open_loops.append(loop)
    for index, name in ops:
        if index in stride_of:
            raise LoopError(f"op mark ({index}, {name!r}) points at a stride word of loop at "
                            f"{stride_of[index]}", stride_of[index])
        if "{" in name and not any(loop.body_start <= index < loop.body_end for loop in loops):
            raise LoopError(f"op mark ({index}, {name!r}): a name template {{+N}} needs a loop "
                            "around it (its iteration fills it in)", index)
    return Structure(tuple(loops), size)


_TEMPLATE = re.compile(r"\{\+(\d+)(?:\*([1-9]\d*))?\}")


def mark_name(name: str, iteration: int) -> str:
    """An op mark's name in iteration `iteration` of its innermost enclosing loop: a template
    `{+N}` in it reads N + iteration and `{+N*S}` reads N + S * iteration (`layers.{+3}.mlp`
    in iteration 2 is `layers.5.mlp`; a body of two layers names them `layers.{+3*2}` and
    `layers.{+4*2}`), so the ops of a model's layers can be one loop body and keep their own
    names."""
    if "{" not in name:
        return name
    return _TEMPLATE.sub(lambda m: str(int(m.group(1)) + int(m.group(2) or 1) * iteration), name)


def _loop(instructions: Sequence[Instr], opcodes: Sequence[str], header: int, body_start: int,
          parent: Loop | None, size: int) -> Loop:
    """The loop whose header is at `header` and whose stride words end at `body_start`."""
    count, body = (value for _, value in instructions[header].fields)
    body_end = body_start + body
    if count < 1:
        raise LoopError(f"loop at {header}: count 0 (a loop runs its body at least once)", header)
    if body < 1:
        raise LoopError(f"loop at {header}: empty body", header)
    limit = parent.body_end if parent is not None else size
    if body_end > limit:
        outer = (f"the body of loop at {parent.header} (word {limit})" if parent is not None
                 else f"the program ({size} words)")
        raise LoopError(f"loop at {header}: its body of {body} words ends at word {body_end}, "
                        f"past the end of {outer}", header)
    strides: dict[tuple[int, int], int] = {}
    previous = (-1, -1)
    for word in range(header + 1, body_start):
        stride = instructions[word]
        if str(stride.queue) != STRUCTURE_QUEUE:
            raise LoopError(f"instruction {word} ({stride.queue} stride): loop words belong to "
                            f"queue {STRUCTURE_QUEUE}", word)
        at, position, delta = (value for _, value in stride.fields)
        if (at, position) <= previous:
            raise LoopError(f"loop at {header}: stride words must be in increasing (at, field) "
                            f"order, each once (instruction {word})", header)
        previous = (at, position)
        strides[(body_start + at, position)] = _delta(instructions, opcodes, header, body,
                                                      body_start, at, position, delta)
    return Loop(header, count, body_start, body_end, MappingProxyType(strides),
                parent.header if parent is not None else None)


def _delta(instructions: Sequence[Instr], opcodes: Sequence[str], header: int, body: int,
           body_start: int, at: int, position: int, delta: int) -> int:
    """Check one stride of loop `header`: it moves an address operand of a body instruction."""
    if at >= body:
        raise LoopError(f"loop at {header}: stride at={at} is past its body of {body} words",
                        header)
    index = body_start + at
    target = instructions[index]
    if opcodes[index] in STRUCTURE:
        raise LoopError(f"loop at {header}: stride at={at} points at instruction {index}, a "
                        f"{opcodes[index]} word of a nested loop (only instructions move)",
                        header)
    granule = _GRANULES.get((target.opcode, position))
    if granule is not None and delta and not delta % granule:
        return delta                    # the usual case, decided without building messages
    spec = OPCODES[target.opcode]
    name = f"instruction {index} ({target.queue} {target.opcode})"
    if position >= len(spec.fields):
        raise LoopError(f"loop at {header}: stride on field {position} of {name}, which has "
                        f"{len(spec.fields)} fields", header)
    field = spec.fields[position]
    if not movable(target.opcode, field):
        raise LoopError(f"loop at {header}: stride on {field.name} of {name}: "
                        f"{field.kind.label} {NOT_MOVABLE}", header)
    if delta == 0:
        raise LoopError(f"loop at {header}: stride of 0 on {field.name} of {name} "
                        "(leave it out)", header)
    granule = stride_granule(field)
    if delta % granule:
        raise LoopError(f"loop at {header}: stride {delta} on {field.name} of {name} is not a "
                        f"multiple of {granule} bytes ({field.kind.label})", header)
    return delta


NOT_MOVABLE = ("is not an address field (only A32/A40 operands and the DRAM rows, columns and "
               "global-buffer offsets of pim instructions move)")


def movable(opcode: str, field: Field) -> bool:
    """Whether a loop may move operand `field` of `opcode`: an address, or one of the integer
    operands in MOVING_INTS."""
    return isinstance(field.kind, AddressKind) or (opcode, field.name) in MOVING_INTS


def stride_granule(field: Field) -> int:
    """What a stride on a movable field must be a multiple of: the address kind's granule, or
    1 for an integer."""
    return field.kind.granule if isinstance(field.kind, AddressKind) else 1


# (opcode, field position) -> `stride_granule` of each field a loop may move
_GRANULES = {(op, position): stride_granule(field) for op, spec in OPCODES.items()
             for position, field in enumerate(spec.fields) if movable(op, field)}
