"""Three batching policies behind one interface: which requests run in the next step, and
how many tokens of each. Each respects `max_batch` (requests per step) and `token_budget`
(tokens per step); docs/serving.md gives their sources.

- `static` (FasterTransformer): when the last batch has finished, admit up to max_batch
  waiting requests (first come, first served) whose prompts fit the token budget and whose
  whole KV (prompt + output - 1 tokens) fits the cache, prefill them whole in one step,
  then decode until every one of them has finished. It reserves all its KV up front, so it
  never preempts.
- `continuous` (Orca, vLLM): iteration-level scheduling; finished requests leave and new
  ones join between steps. Prefills first, as vLLM's default scheduler: waiting requests'
  whole prefills take the token budget first (first come, first served: one that does not
  fit stops the admissions), then running decodes fill what is left; a decode that does not
  fit pauses for this step.
- `sarathi` (Sarathi-Serve stall-free batching): running decodes first (they never pause),
  then the running partial prefills, then new prefills, each prefill at most `chunk` tokens,
  all within the token budget.

Under continuous and sarathi, a step first preempts the most recently admitted running
requests until every running request's next step fits the KV cache (pool.py), then brings
swapped requests back, then admits new ones (none while any are swapped, as vLLM).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tessel.serve.errors import ServeError
from tessel.serve.pool import Live, Pool
from tessel.serve.preemption import Preemption, Recompute
from tessel.serve.workload import Request

__all__ = ["Scheduler", "POLICIES", "DEFAULT_MAX_BATCH", "DEFAULT_TOKEN_BUDGET", "DEFAULT_CHUNK"]

# Sarathi-Serve's setup (osdi-experiments/figure-5-6): max batch 128, token budget 2048
# (its relaxed SLO; 512 strict). Sarathi: chunks of 256/512 keep prefill overhead ~20 %/~10 %.
DEFAULT_MAX_BATCH = 128
DEFAULT_TOKEN_BUDGET = 2048
DEFAULT_CHUNK = 512

Plan = list[tuple[Live, int]]        # (request, tokens it runs) for the next step


def _static(pool: Pool, s: Scheduler) -> Plan:
    if not pool.running:
        tokens = blocks = 0
        free = pool.blocks.free_blocks
        while pool.waiting and len(pool.running) < s.max_batch:
            head = pool.waiting[0]
            need = pool.kv.blocks_for(head.request.kv_tokens_max)
            if tokens + head.remaining > s.token_budget or blocks + need > free:
                break
            pool.admit()
            tokens += head.remaining
            blocks += need
    return [(live, live.remaining if live.in_prefill else 1) for live in pool.running]


def _continuous(pool: Pool, s: Scheduler) -> Plan:
    reserved = pool.resume_swapped(s.max_batch, pool.make_room())
    budget = s.token_budget
    prefills: Plan = []
    while not pool.swapped and pool.waiting and len(pool.running) < s.max_batch:
        head = pool.waiting[0]
        if head.remaining > budget or not pool.blocks.can_admit(head.sequence_tokens, reserved_blocks=reserved):
            break
        prefills.append((pool.admit(), head.remaining))
        budget -= head.remaining
    admitted = {live.id for live, _ in prefills}
    decodes = [live for live in pool.running if live.id not in admitted][:budget]
    assert not any(live.in_prefill for live in decodes), "continuous runs prefills whole"
    return prefills + [(live, 1) for live in decodes]


def _sarathi(pool: Pool, s: Scheduler) -> Plan:
    reserved = pool.resume_swapped(s.max_batch, pool.make_room())
    plan: Plan = [(live, 1) for live in pool.running if not live.in_prefill]
    budget = s.token_budget - len(plan)           # >= 0: token_budget >= max_batch
    for live in pool.running:
        if live.in_prefill and budget:
            tokens = min(s.chunk, live.remaining, budget)
            plan.append((live, tokens))
            budget -= tokens
    while not pool.swapped and pool.waiting and len(pool.running) < s.max_batch and budget:
        head = pool.waiting[0]
        if not pool.blocks.can_admit(head.sequence_tokens, reserved_blocks=reserved):
            break
        tokens = min(s.chunk, head.remaining, budget)
        plan.append((pool.admit(), tokens))
        budget -= tokens
    return plan


@dataclass(frozen=True, slots=True)
class _Policy:
    plan: Callable[[Pool, "Scheduler"], Plan]
    prefills_whole: bool       # a prefill runs in one step (else in chunks)
    preempts: bool             # may preempt (static reserves its KV up front)


POLICIES: dict[str, _Policy] = {"static": _Policy(_static, prefills_whole=True, preempts=False),
                                "continuous": _Policy(_continuous, prefills_whole=True, preempts=True),
                                "sarathi": _Policy(_sarathi, prefills_whole=False, preempts=True)}


@dataclass(frozen=True, slots=True)
class Scheduler:
    """A policy and its limits; `chunk` (prefill tokens per request per step) is sarathi's only."""

    policy: str
    max_batch: int = DEFAULT_MAX_BATCH
    token_budget: int = DEFAULT_TOKEN_BUDGET
    chunk: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ServeError(f"scheduler '{self.policy}': unknown (schedulers: {', '.join(POLICIES)})")
        for name in ("max_batch", "token_budget", "chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ServeError(f"scheduler {self.policy}: {name} must be an integer >= 1, got {value!r}")
        if self.token_budget < self.max_batch:
            raise ServeError(f"scheduler {self.policy}: token_budget {self.token_budget} is below max_batch "
                             f"{self.max_batch} (a full batch of decodes must fit one step)")

    def plan(self, pool: Pool) -> Plan:
        """The next step's requests and tokens, admitting and preempting through `pool`; empty
        when nothing can run."""
        return POLICIES[self.policy].plan(pool, self)

    def refusal(self, request: Request, preemption: Preemption) -> str | None:
        """Why this scheduler can never run `request`, or None: a policy that prefills whole
        needs the longest prefill within the token budget (prompt + generated tokens after a
        recompute preemption; static never preempts)."""
        policy = POLICIES[self.policy]
        if not policy.prefills_whole:
            return None
        recomputes = policy.preempts and isinstance(preemption, Recompute)
        longest = request.kv_tokens_max if recomputes else request.prompt_tokens
        if longest <= self.token_budget:
            return None
        what = "its prefill after a recompute preemption can reach" if recomputes else "its prompt is"
        return (f"{what} {longest} tokens, above the token budget of {self.token_budget} "
                f"({self.policy} prefills whole)")

    def describe(self) -> dict[str, object]:
        settings: dict[str, object] = {"policy": self.policy, "max_batch": self.max_batch,
                                       "token_budget": self.token_budget}
        return settings | ({} if POLICIES[self.policy].prefills_whole else {"chunk": self.chunk})
