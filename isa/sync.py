"""Semaphore check: run every queue in order, abstractly (no timing, only signal/wait/halt).

Each queue issues in order; `signal s` adds one to counting semaphore s, `wait s` blocks until
s > 0 and takes one. Blocked queues wake in the order they blocked. The run is linear in the
program size. When each semaphore is waited on by one queue only, whether the run finishes
does not depend on the interleaving; with shared semaphores this checks one fair schedule.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from bisect import bisect_left
from operator import attrgetter

from isa.instr import Instr
from isa.loops import Structure

__all__ = ["Blocked", "find_blocked_wait", "completes_by_iterations", "SYNC_OPCODES"]

_LISTED_QUEUES = 4
SYNC_OPCODES = frozenset({"signal", "wait", "halt"})


@dataclass(frozen=True, slots=True)
class Blocked:
    """The earliest wait left blocked and why."""

    index: int
    message: str


def find_blocked_wait(instructions: Sequence[Instr],
                      name: Callable[[int], str] = "instruction {}".format) -> Blocked | None:
    """None if every queue runs to its end (or halt); else the first wait that never passes.
    `name(i)` names instruction i in the message (a loop program's verifier passes the
    executed sync instructions and names each by its loop iteration)."""
    steps: dict[object, list[tuple[int, bool, int]]] = defaultdict(list)
    halted: set[object] = set()
    signalled: set[int] = set()
    opcodes = list(map(attrgetter("opcode"), instructions))
    for index in [i for i, op in enumerate(opcodes) if op in SYNC_OPCODES]:   # few of the many
        instr = instructions[index]
        opcode = opcodes[index]
        if opcode == "signal":
            signalled.add(instr["sem"])
        if instr.queue in halted:
            continue
        if opcode == "halt":
            halted.add(instr.queue)
        else:
            steps[instr.queue].append((index, opcode == "wait", instr["sem"]))
    position = _settle(steps, defaultdict(int))
    stuck = sorted((steps[q][position[q]][0], q, steps[q][position[q]][2])
                   for q in steps if position[q] < len(steps[q]))
    if not stuck:
        return None
    index, _, sem = stuck[0]
    if sem not in signalled:
        return Blocked(index, f"wait on semaphore {sem} has no matching signal")
    listed = ", ".join(f"{q} at {name(i)} (semaphore {s})"
                       for i, q, s in stuck[:_LISTED_QUEUES])
    more = f" and {len(stuck) - _LISTED_QUEUES} more" if len(stuck) > _LISTED_QUEUES else ""
    return Blocked(index, f"deadlock: wait on semaphore {sem} is never satisfied; "
                          f"blocked: {listed}{more}")


def _settle(steps: dict[object, list[tuple[int, bool, int]]],
            count: dict[int, int]) -> dict[object, int]:
    """Run each queue's (index, is_wait, semaphore) steps with the tokens `count` (updated in
    place) until every queue is done or blocked: how far each got."""
    position = dict.fromkeys(steps, 0)
    sleepers: dict[int, deque] = defaultdict(deque)
    ready = deque(steps)
    while ready:
        queue = ready.popleft()
        ops, step = steps[queue], position[queue]
        while step < len(ops):
            _, is_wait, sem = ops[step]
            if is_wait:
                if count[sem] == 0:
                    sleepers[sem].append(queue)
                    break
                count[sem] -= 1
            else:
                count[sem] += 1
                if sleepers[sem]:
                    ready.append(sleepers[sem].popleft())
            step += 1
        position[queue] = step
    return position


def completes_by_iterations(instructions: Sequence[Instr], structure: Structure,
                            opcodes: Sequence[str]) -> bool:
    """True when a compact program's unrolled equivalent provably runs every queue to its
    end, checked on one iteration of each loop (cost: the compact program's sync words).

    The check runs the program with a barrier at every loop boundary: each stretch of words
    between loop headers and ends runs to completion before the next starts, and a loop's
    body runs once from the tokens it is entered with. A body that leaves those tokens as it
    found them (the verifier's per-iteration balance) starts every iteration from the same
    state, so one iteration that completes stands for all. A barrier only holds queues back,
    so a schedule that completes with barriers is a schedule of the program that completes;
    and when each semaphore is waited on by one queue, whether a schedule completes does not
    depend on the interleaving (a Kahn network), so the program completes whatever the order.
    A halt that is its queue's last sync word, outside loops, ends the queue as running out of
    words would. False (not proven) when a semaphore has several waiting queues, a queue halts
    anywhere else, or some stretch needs a later one's signals: the caller then walks the
    executed instructions."""
    sync = [i for i, op in enumerate(opcodes) if op in SYNC_OPCODES]
    halts = [i for i in sync if opcodes[i] == "halt"]
    if halts:             # a queue's closing halt, outside loops, ends it as running out would
        last = {instructions[i].queue: i for i in sync}
        if any(last[instructions[i].queue] != i or structure.chain(i) for i in halts):
            return False
        sync = [i for i in sync if opcodes[i] != "halt"]
    waiters: dict[int, object] = {}
    for i in sync:
        if opcodes[i] == "wait" and waiters.setdefault(instructions[i]["sem"],
                                                       instructions[i].queue) != instructions[i].queue:
            return False
    children: dict[int | None, list] = defaultdict(list)
    for loop in structure.loops:
        children[loop.parent].append(loop)
    count: dict[int, int] = defaultdict(int)

    def stretch(lo: int, hi: int) -> bool:
        steps: dict[object, list[tuple[int, bool, int]]] = defaultdict(list)
        for i in sync[bisect_left(sync, lo):bisect_left(sync, hi)]:
            steps[instructions[i].queue].append((i, opcodes[i] == "wait", instructions[i]["sem"]))
        position = _settle(steps, count)
        return all(position[q] == len(ops) for q, ops in steps.items())

    def block(lo: int, hi: int, parent: int | None) -> bool:
        cursor = lo
        for loop in children.get(parent, []):
            if not stretch(cursor, loop.header):
                return False
            entered = {s: n for s, n in count.items() if n}
            if not block(loop.body_start, loop.body_end, loop.header):
                return False
            if {s: n for s, n in count.items() if n} != entered:
                return False
            cursor = loop.body_end
        return stretch(cursor, hi)

    return block(0, structure.size, None)
