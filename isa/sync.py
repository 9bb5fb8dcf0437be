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
from operator import attrgetter

from isa.instr import Instr

__all__ = ["Blocked", "find_blocked_wait", "SYNC_OPCODES"]

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
    position = dict.fromkeys(steps, 0)
    count: dict[int, int] = defaultdict(int)
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
