"""sim.machines.events: counts stored once per distinct vector read back exactly as a dense
sheet of one float64 per event and instruction held them, sums bit for bit included."""
import numpy as np
import pytest

from sim.machines.events import EventRows

NAMES = ("macs", "bytes", "ops")


def test_rows_read_back_as_the_dense_sheet_and_sum_bit_for_bit():
    rng = np.random.default_rng(7)
    n = 5000
    dense = {name: np.zeros(n) for name in NAMES}
    rows = EventRows(n, NAMES)
    values = rng.uniform(0, 1e3, 5)        # fractions too: the sums must not be reordered
    for i in range(n):
        if rng.random() < 0.3:
            continue
        counts = {name: float(values[rng.integers(len(values))])
                  for name in NAMES if rng.random() < 0.6}
        for name, value in counts.items():
            dense[name][i] = value
        rows.set(i, **counts)
    events = rows.freeze()
    for name in NAMES:
        np.testing.assert_array_equal(events[name], dense[name])
        assert events.total(name) == float(dense[name].sum())
        assert events.total(name, slice(1234, 4321)) == float(dense[name][1234:4321].sum())
        mask = rng.random(n) < 0.5
        assert events.total(name, mask) == float(dense[name][mask].sum())
    assert events.totals(slice(10, 20)) == {k: float(v[10:20].sum()) for k, v in dense.items()}
    assert list(events) == list(NAMES)


@pytest.mark.parametrize("whole", [True, False])
def test_totals_equal_each_dense_sum(whole):
    """`totals` (one pass over the rows for whole counts, per column otherwise) equals every
    column's dense sum bit for bit, over slices, masks and index arrays."""
    rng = np.random.default_rng(11)
    n = 20000
    values = rng.integers(0, 10**6, 7).astype(float) if whole else rng.uniform(0, 1e3, 7)
    rows = EventRows(n, NAMES)
    dense = {name: np.zeros(n) for name in NAMES}
    for i in np.flatnonzero(rng.random(n) < 0.8).tolist():
        counts = {name: float(values[rng.integers(len(values))]) for name in NAMES
                  if rng.random() < 0.7}
        for name, value in counts.items():
            dense[name][i] = value
        rows.set(i, **counts)
    events = rows.freeze()
    for at in (slice(None), slice(77, 15000), rng.random(n) < 0.3,
               np.sort(rng.choice(n, 500, replace=False))):
        assert events.totals(at) == {k: float(v[at].sum()) for k, v in dense.items()}


def test_set_keeps_the_other_counts_and_equal_vectors_share_a_row():
    rows = EventRows(3, NAMES)
    rows.set(0, macs=4)
    rows.set(0, bytes=8)                    # a later cost (dataflow charges calls afterwards)
    rows.set(1, macs=4, bytes=8)
    rows.set(2, macs=4)
    events = rows.freeze()
    assert events["macs"].tolist() == [4, 4, 4] and events["bytes"].tolist() == [8, 8, 0]
    assert events.total("ops") == 0.0
    with pytest.raises(KeyError, match="unknown event 'flops'"):
        EventRows(1, NAMES).set(0, flops=1)
