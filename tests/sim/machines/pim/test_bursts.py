"""Bursts' per-burst sums (sim/machines/pim/bursts.py) against plain per-burst loops: the sums
of several columns packed into one int64's bit fields equal each column's own sums."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from sim.machines.pim.bursts import find_bursts


def _bursts(rng: np.random.Generator, n: int, plans: int):
    """Bursts of a random executed order on two pim queues, some instructions unplanned."""
    plan_at = rng.integers(-1, plans, n).astype(np.int32)
    queue_of = rng.integers(0, 2, n).astype(np.int8)
    return find_bursts(plan_at, np.ones(plans, bool), queue_of, np.array([0, 1]), [])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 400), st.integers(1, 6), st.integers(1, 9),
       st.sampled_from([1, 16, 2 ** 20, 2 ** 40]), st.integers(0, 2 ** 32))
def test_packed_sums_equal_each_columns_own(n, plans, k, top, seed):
    """`sums_of` equals a dense sum over each burst's members, column by column, whether the
    columns share a word (small values) or each needs one (values up to 2^40)."""
    rng = np.random.default_rng(seed)
    bursts = _bursts(rng, n, plans)
    columns = [rng.integers(0, top, plans, endpoint=True) for _ in range(k)]
    got = bursts.sums_of(columns)
    for column, sums in zip(columns, got):
        want = [sum(int(column[p]) for p in bursts.plan_at[lo:hi] if p >= 0)
                for lo, hi in zip(bursts.first.tolist(), bursts.end.tolist())]
        assert sums.tolist() == want
