"""The figures of a serving run (definitions: docs/serving.md, from reference/serving.md).

- TTFT: arrival to first output token (queueing + prefill); E2E: arrival to last token.
- TPOT: (E2E - TTFT) / (output tokens - 1) per request (requests of one token have none).
- TBT: every gap between consecutive tokens of one request, all requests pooled.
- Percentiles: numpy's default (linear interpolation between the closest ranks).
- Duration: first arrival to the end of the last step; throughput = finished requests'
  output tokens (or the requests) / duration.
- SLO attainment: share of ALL requests of the trace (a rejected one misses) that finished
  meeting every SLO given; goodput: those requests / duration (DistServe, OSDI'24).
- KV use: blocks in use over time, time-weighted over the duration (0 between steps).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tessel.serve.engine import RequestRecord, ServeResult
from tessel.serve.errors import ServeError

__all__ = ["summarize", "request_rows", "PERCENTILES"]

PERCENTILES = (50, 90, 99)


def request_rows(result: ServeResult) -> list[dict[str, Any]]:
    """One row per finished request, for the per-request CSV."""
    return [{"id": r.id, "arrival_s": r.arrival_s, "first_token_s": r.first_token_s, "finish_s": r.finish_s,
             "ttft_s": r.ttft_s, "mean_tpot_s": r.tpot_s, "e2e_s": r.e2e_s, "prompt_tokens": r.prompt_tokens,
             "output_tokens": r.output_tokens, "preemptions": r.preemptions} for r in result.requests]


def summarize(result: ServeResult, *, slo_ttft_s: float | None = None,
              slo_tpot_s: float | None = None) -> dict[str, Any]:
    """Every figure of a run as a JSON-ready dict, with the settings it was computed under."""
    for name, slo in (("slo_ttft_s", slo_ttft_s), ("slo_tpot_s", slo_tpot_s)):
        if slo is not None and not (isinstance(slo, (int, float)) and np.isfinite(slo) and slo > 0):
            raise ServeError(f"{name} must be a finite number of seconds > 0, got {slo!r}")
    records = result.requests
    steps = result.steps
    duration_s = (steps[-1].end_s - result.first_arrival_s) if steps else 0.0
    output_tokens = sum(r.output_tokens for r in records)
    total = len(records) + len(result.rejected)
    energy_j = sum(s.energy_j for s in steps)
    return {
        "settings": {"scheduler": result.scheduler.describe(),
                     "kv_cache": {"capacity_blocks": result.kv.capacity_blocks,
                                  "block_size": result.kv.block_size},
                     "preemption": result.preemption.describe(),
                     "kv_bucket": result.kv_bucket},
        "requests": {"total": total, "finished": len(records), "rejected": len(result.rejected)},
        "duration_s": duration_s,
        "ttft_s": distribution([r.ttft_s for r in records]),
        "tpot_s": distribution([r.tpot_s for r in records if r.tpot_s is not None]),
        "e2e_s": distribution([r.e2e_s for r in records]),
        "tbt_s": distribution([b - a for r in records for a, b in zip(r.token_times_s, r.token_times_s[1:])]),
        "throughput": {"output_tokens_per_s": _per(output_tokens, duration_s),
                       "requests_per_s": _per(len(records), duration_s)},
        "slo": _slo(records, total, duration_s, slo_ttft_s, slo_tpot_s),
        "energy": {"total_j": energy_j, "per_output_token_j": _per(energy_j, output_tokens)},
        "kv_cache": _kv_use(result, duration_s),
        "steps": {"count": len(steps),
                  "mean_batch": float(np.mean([s.batch for s in steps])) if steps else None,
                  "preemptions": sum(s.preemptions for s in steps),
                  "swap_s": sum(s.swap_s for s in steps)},
        "cost_model": {"distinct_shapes": result.cost_calls, "memo_hits": result.cost_hits},
        "rejected": [{"id": r.request.id, "reason": r.reason} for r in result.rejected],
    }


def distribution(values: list[float]) -> dict[str, float] | None:
    """Mean and percentiles of `values`; None when there are none."""
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    return {"mean": float(data.mean()), **{f"p{q}": float(np.percentile(data, q)) for q in PERCENTILES},
            "max": float(data.max())}


def _per(amount: float, over: float) -> float | None:
    return amount / over if over > 0 else None


def _meets(record: RequestRecord, slo_ttft_s: float | None, slo_tpot_s: float | None) -> bool:
    tpot_s = record.tpot_s
    return ((slo_ttft_s is None or record.ttft_s <= slo_ttft_s)
            and (slo_tpot_s is None or tpot_s is None or tpot_s <= slo_tpot_s))


def _slo(records: tuple[RequestRecord, ...], total: int, duration_s: float, slo_ttft_s: float | None,
         slo_tpot_s: float | None) -> dict[str, Any] | None:
    if slo_ttft_s is None and slo_tpot_s is None:
        return None
    good = sum(_meets(r, slo_ttft_s, slo_tpot_s) for r in records)
    return {"ttft_s": slo_ttft_s, "tpot_s": slo_tpot_s, "met": good,
            "attainment": _per(good, total), "goodput_requests_per_s": _per(good, duration_s)}


def _kv_use(result: ServeResult, duration_s: float) -> dict[str, Any]:
    capacity = result.kv.capacity_blocks
    peak = max((s.kv_blocks for s in result.steps), default=0)
    block_s = sum(s.kv_blocks * (s.end_s - s.start_s) for s in result.steps)
    mean = block_s / duration_s if duration_s > 0 else 0.0
    return {"capacity_blocks": capacity, "peak_blocks": peak, "mean_blocks": mean,
            "peak_fraction": peak / capacity, "mean_fraction": mean / capacity}
