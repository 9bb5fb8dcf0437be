"""The requests inside the engine and the mechanics every scheduler shares.

A request's sequence is its prompt and the tokens generated so far; its KV cache holds a
prefix of that sequence. A step runs some of the tokens not yet in the cache (a prefill
chunk, or the one token of a decode); when the cache reaches the end of the sequence, the
step emits a new token. So the first prefill emits the first output token, a decode emits
one more, and a prefill after a recompute preemption (prompt + generated tokens) emits the
next one. A request holds at most prompt + output - 1 tokens of KV.

Queues: `waiting` (arrived, not admitted; recompute-preempted requests at its front),
`swapped` (preempted by swap, KV on the host), `running` (KV on the device, in admission
order: the last is preempted first). Every request is in exactly one place (asserted).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tessel.serve.kv import BlockManager, KVConfig
from tessel.serve.preemption import Preemption, Recompute
from tessel.serve.step import Step, StepEntry
from tessel.serve.workload import Request

__all__ = ["Live", "Pool"]


@dataclass(slots=True, eq=False)
class Live:
    """A request's state while the engine holds it."""

    request: Request
    generated: int = 0                 # output tokens emitted
    kv_tokens: int = 0                 # tokens of the sequence in its KV cache
    in_prefill: bool = True            # its next part is a prefill (chunk), not a decode
    host_blocks: int = 0               # swapped out: the blocks on the host
    preemptions: int = 0
    token_times_s: list[float] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.request.id

    @property
    def sequence_tokens(self) -> int:
        return self.request.prompt_tokens + self.generated

    @property
    def remaining(self) -> int:
        """Tokens of the sequence not yet in the KV cache (a decode's: 1)."""
        return self.sequence_tokens - self.kv_tokens

    @property
    def done(self) -> bool:
        return self.generated == self.request.output_tokens


class Pool:
    """Queues, the block manager and the preemption mode; schedulers plan through it."""

    def __init__(self, kv: KVConfig, preemption: Preemption) -> None:
        self.kv = kv
        self.blocks = BlockManager(kv)
        self.preemption = preemption
        self.waiting: deque[Live] = deque()
        self.swapped: deque[Live] = deque()
        self.running: list[Live] = []
        self.finished: dict[int, Live] = {}
        self.moved_blocks = 0          # swapped out or in while planning the current step
        self.preempted = 0             # preemptions while planning the current step

    @property
    def idle(self) -> bool:
        return not (self.waiting or self.swapped or self.running)

    def arrive(self, request: Request) -> None:
        self.waiting.append(Live(request))

    def admit(self) -> Live:
        """Run the head of the waiting queue: a block table for its whole pending prefill."""
        live = self.waiting.popleft()
        self.blocks.allocate(live.id, self.kv.blocks_for(live.sequence_tokens))
        self.running.append(live)
        return live

    def decode_growth(self, live: Live) -> int:
        """Blocks its next step takes (prefills hold their whole table from admission)."""
        return 0 if live.in_prefill else self.blocks.growth(live.id, live.kv_tokens + 1)

    def make_room(self) -> int:
        """Preempt the most recently admitted until every running request's next step fits;
        the blocks those steps will take."""
        while True:
            reserved = sum(self.decode_growth(live) for live in self.running)
            if reserved <= self.blocks.free_blocks:
                return reserved
            self._preempt(self.running[-1])

    def resume_swapped(self, max_batch: int, reserved_blocks: int) -> int:
        """Bring swapped requests back (first swapped, first back) while they fit; the blocks
        reserved for running requests' next steps, theirs added."""
        while self.swapped and len(self.running) < max_batch:
            live = self.swapped[0]
            need = max(live.host_blocks, self.kv.blocks_for(live.kv_tokens + (0 if live.in_prefill else 1)))
            if need + reserved_blocks > self.blocks.free_blocks:
                break
            self.swapped.popleft()
            self.blocks.allocate(live.id, live.host_blocks)
            self.moved_blocks += live.host_blocks
            live.host_blocks = 0
            self.running.append(live)
            reserved_blocks += need - self.blocks.held(live.id)
        return reserved_blocks

    def _preempt(self, live: Live) -> None:
        self.running.remove(live)
        blocks = self.blocks.free(live.id)
        live.preemptions += 1
        self.preempted += 1
        if isinstance(self.preemption, Recompute):
            live.kv_tokens = 0
            live.in_prefill = True
            self.waiting.appendleft(live)
        else:
            live.host_blocks = blocks
            self.moved_blocks += blocks
            self.swapped.append(live)

    def start(self, parts: list[tuple[Live, int]]) -> Step:
        """The step running `tokens` of each listed request; their KV grows to hold them."""
        entries = []
        running = {live.id for live in self.running}
        for live, tokens in parts:
            assert live.id in running and 1 <= tokens <= live.remaining, (live.id, tokens)
            self.blocks.grow(live.id, live.kv_tokens + tokens)
            kind = "prefill" if live.in_prefill else "decode"
            entries.append(StepEntry(live.id, kind, tokens, live.kv_tokens))
        return Step(tuple(entries))

    def finish(self, step: Step, end_s: float) -> int:
        """Apply a step that ended at `end_s`: tokens emitted, finished requests out; how many finished."""
        by_id = {live.id: live for live in self.running}
        finished = 0
        for entry in step.entries:
            live = by_id[entry.request_id]
            live.kv_tokens += entry.tokens
            if live.remaining:
                continue
            live.generated += 1
            live.in_prefill = False
            live.token_times_s.append(end_s)
            if live.done:
                assert live.id not in self.finished, f"request {live.id} served twice"
                self.running.remove(live)
                self.blocks.free(live.id)
                self.finished[live.id] = live
                finished += 1
        self.moved_blocks = self.preempted = 0
        return finished
