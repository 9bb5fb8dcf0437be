"""A pipeline stage's program: the compiled stage graph run once per micro-batch, each run
between a receive of the hidden state from the stage before and a send to the stage after.

The hand-off wraps the program a target compiled for the stage graph rather than being lowered
op by op, so every target gets it alike. Before a micro-batch, the link queue receives the
`hidden` input (`coll recv` from `stride` devices below: rank r of the stage before) and then
releases every other queue; after it, every queue reports done and the link sends the stage's
hidden-state output (`coll send`). Compute therefore never overlaps the hand-off of its own
stage (a conservative schedule: Megatron overlaps sends with the next micro-batch), and a
stage works on micro-batch j once it has finished j-1 and the stage before has sent j: GPipe's
forward schedule (compiler/parallel/schedule.py), now timed by the simulator with the link.

Micro-batches reuse the stage's buffers: each run's inputs are the same data (timing), so
numeric runs take one micro-batch.
"""
from __future__ import annotations

import math
from dataclasses import replace

import isa
from compiler.errors import CompileError
from compiler.ir import Graph
from compiler.passes.storage import View
from compiler.targets import Lowered
from compiler.targets.emit import symbol_name
from isa.opcodes import LINK_QUEUE

__all__ = ["stage_program", "HIDDEN"]

HIDDEN = "hidden"         # the input a later stage's graph reads (compiler/frontend builders)


def stage_program(lowered: Lowered, graph: Graph, stride: int, *, first: bool, last: bool,
                  microbatches: int = 1) -> isa.Program:
    """The stage's program for `microbatches` runs, receiving `hidden` unless `first` and
    sending the graph's first output unless `last`; `stride`: devices between a device and its
    peer in the next stage (the plan's tp)."""
    program = lowered.program
    if first and last and microbatches == 1:
        return program
    body, halts = _split_halts(program)
    queues = [str(h.queue) for h in halts]
    others = [q for q in queues if q != LINK_QUEUE]
    sem = 1 + max((i["sem"] for i in program.instructions if i.opcode in ("signal", "wait")),
                  default=-1)
    start = {q: sem + k for k, q in enumerate(others)}
    done = sem + len(others)
    recv = None if first else _coll(lowered, program, HIDDEN, "recv", stride)
    send = None if last else _coll(lowered, program, graph.outputs[0], "send", stride)
    words: list[isa.Instr] = []
    ops: list[tuple[int, str]] = []
    for _ in range(microbatches):
        if recv is not None:
            words.append(recv)
            words += [isa.Instr.make("signal", LINK_QUEUE, sem=start[q]) for q in others]
            words += [isa.Instr.make("wait", q, sem=start[q]) for q in others]
        ops += [(len(words) + i, name) for i, name in program.ops]
        words += body
        if send is not None:
            words += [isa.Instr.make("signal", q, sem=done) for q in others]
            words += [isa.Instr.make("wait", LINK_QUEUE, sem=done) for _ in others]
            words.append(send)
    if LINK_QUEUE not in queues:
        halts.append(isa.Instr.make("halt", LINK_QUEUE))
    return replace(program, instructions=tuple(words + halts), ops=tuple(ops))


def _split_halts(program: isa.Program) -> tuple[list[isa.Instr], list[isa.Instr]]:
    """The program without the halts that end it (one per queue, last), and those halts."""
    words = list(program.instructions)
    end = len(words)
    while end and words[end - 1].opcode == "halt":
        end -= 1
    if any(w.opcode == "halt" for w in words[:end]):
        raise isa.IsaError("a pipeline stage's program must end its queues only at its end")
    return words[:end], words[end:]


def _coll(lowered: Lowered, program: isa.Program, value: str, kind: str, stride: int) -> isa.Instr:
    """`coll send|recv` of graph value `value` (a dense view: the hidden state [B, S, D])."""
    view = lowered.plan.views[value]
    if view.strides != View.contiguous(view.buffer, view.shape).strides:
        raise CompileError(f"pipeline hand-off of '{value}': not a dense buffer")
    symbol = next(s for s in program.symbols if s.name == symbol_name(view.buffer))
    addr = isa.Addr(symbol.space, symbol.addr + view.offset * symbol.dtype.itemsize)
    return isa.Instr.make("coll", LINK_QUEUE, kind=kind, dtype=symbol.dtype, buf=addr,
                          bytes=math.prod(view.shape) * symbol.dtype.itemsize, ranks=1,
                          stride=stride)
