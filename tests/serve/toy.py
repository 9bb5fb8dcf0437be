"""Test-only step costs: analytic toys for exercising the serving loop, NOT a model of any
target (the simulator's step cost is not built yet)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tessel.serve import KVConfig, Request, Scheduler, Step, StepCost, StepRecord, StepShape, serve


@dataclass(frozen=True)
class Linear:
    """seconds = fixed_s + per_token_s x tokens + per_context_s x context; energy_per_token_j x tokens."""

    fixed_s: float = 0.01
    per_token_s: float = 0.001
    per_context_s: float = 0.0
    energy_per_token_j: float = 1.0

    def cost(self, shape: StepShape) -> StepCost:
        context = sum(c for _, _, c in shape.entries)
        return StepCost(self.fixed_s + self.per_token_s * shape.tokens + self.per_context_s * context,
                        self.energy_per_token_j * shape.tokens)


@dataclass
class Steps:
    """An on_step observer keeping every step with its record."""

    seen: list[tuple[Step, StepRecord]] = field(default_factory=list)

    def __call__(self, step: Step, record: StepRecord) -> None:
        self.seen.append((step, record))

    def parts(self) -> list[list[tuple[int, str, int, int]]]:
        """Each step's (request id, kind, tokens, context), by request id."""
        return [sorted((e.request_id, e.kind, e.tokens, e.context) for e in step.entries) for step, _ in self.seen]


def run(requests: list[Request], policy: str, *, capacity_blocks: int = 1000, block_size: int = 16,
        cost=None, observer: Steps | None = None, **settings):
    """serve() with a toy cost; scheduler settings (max_batch, token_budget, chunk) by keyword,
    preemption and kv_bucket passed through."""
    engine = {k: settings.pop(k) for k in ("preemption", "kv_bucket") if k in settings}
    return serve(requests, cost or Linear(), scheduler=Scheduler(policy, **settings),
                 kv=KVConfig(capacity_blocks, block_size), on_step=observer, **engine)


def requests(*specs: tuple[float, int, int]) -> list[Request]:
    """Requests 0, 1, ... from (arrival_s, prompt_tokens, output_tokens)."""
    return [Request(i, a, p, o) for i, (a, p, o) in enumerate(specs)]
