"""The periodic engine's exposure (sim/periodic.py, sim/node_result.py's BusyMeter): a queue's
exposed cycles (busy while no other queue is) and the idle cycles (no queue busy), measured
as instances start and multiplied over jumped periods, equal what sim/node_result.py measures
on the unrolled schedule's Timeline: on loops whose periods are jumped over, with the link
partly hidden behind compute, nested loops, and a finished queue still busy while a loop's
periods repeat; and on a compiled tensor-parallel model's symmetric node."""

from __future__ import annotations

import numpy as np
import pytest

from isa.loops import Loop, Structure
from sim.loop_layout import loop_layout
from sim.node_result import exposed_cycles, idle_cycles, on_queue
from sim.periodic import PLAIN, SIGNAL, WAIT, schedule_periodic
from tests.sim.test_periodic import _Compact, _timeline

QUEUES = ("dma0", "mxu0", "vpu0", "link0")
DMA, MXU, VPU, LINK = range(4)


def _compact(items: list) -> tuple[_Compact, Structure]:
    """Words from items: (queue, kind, sem, cycles, resource, delay), or ("loop", count,
    [items]) for a loop."""
    words = _Compact([], [], [], [], [], [], [], [])

    def add(items: list, parent: int | None) -> None:
        for item in items:
            if item[0] == "loop":
                header = len(words.queue)
                _append(words, (-1, PLAIN, 0, 0, -1, 0))
                add(item[2], header)
                words.loops.append(Loop(header, item[1], header + 1, len(words.queue), {}, parent))
            else:
                _append(words, item)

    add(items, None)
    return words, Structure(tuple(sorted(words.loops, key=lambda loop: loop.header)),
                            len(words.queue))


def _append(words: _Compact, item: tuple) -> None:
    for column, value in zip((words.queue, words.kind, words.sem, words.dur, words.res,
                              words.delay, words.op), (*item, 0)):
        column.append(value)


def _both(items: list, queue: int = LINK):
    """The unrolled schedule's (cycles, exposed, idle, queue's busy cycles) and the periodic
    engine's timing, measuring `queue`."""
    words, structure = _compact(items)
    timeline, _ = _timeline(words, structure, QUEUES)
    mine = on_queue(timeline, QUEUES[queue])
    busy = int((timeline.end - timeline.start)[mine].sum())
    unrolled = (timeline.total_cycles, exposed_cycles(timeline, mine),
                idle_cycles(timeline, timeline.total_cycles), busy)
    return unrolled, _periodic(words, structure, queue)


def _periodic(words: _Compact, structure: Structure, queue: int | None):
    return schedule_periodic(loop_layout(structure, np.array(words.queue)), QUEUES,
                             bytes(words.kind), words.sem, words.dur, words.res, words.delay,
                             words.op, 1, exposure=queue)


def _assert_exact(unrolled, timing) -> None:
    assert (timing.total_cycles, timing.exposed_cycles, timing.idle_cycles) == unrolled[:3]


def _layer(compute: int, comm: int, post: int) -> list:
    """One layer: the matrix unit computes (two credits ahead), the link all-reduces what it
    made, the vector unit finishes and hands the credit back."""
    return [(MXU, WAIT, 3, 0, -1, 0), (MXU, PLAIN, 0, compute, -1, 0), (MXU, SIGNAL, 1, 0, -1, 0),
            (LINK, WAIT, 1, 0, -1, 0), (LINK, PLAIN, 0, comm, -1, 0), (LINK, SIGNAL, 2, 0, -1, 4),
            (VPU, WAIT, 2, 0, -1, 0), (VPU, PLAIN, 0, post, -1, 0), (VPU, SIGNAL, 3, 0, -1, 0)]


CREDITS = [(MXU, SIGNAL, 3, 0, -1, 0)] * 2
DRAIN = [(MXU, WAIT, 3, 0, -1, 0)] * 2


@pytest.mark.parametrize("compute, comm, post", [(100, 150, 30), (150, 100, 30), (90, 90, 90)])
def test_a_link_partly_hidden_behind_compute_is_measured_across_jumps(compute, comm, post):
    unrolled, timing = _both(CREDITS + [("loop", 3000, _layer(compute, comm, post))] + DRAIN)
    _assert_exact(unrolled, timing)
    assert timing.jumps >= 1 and timing.skipped > 10 * timing.simulated
    assert 0 < timing.exposed_cycles < unrolled[3]            # partly hidden, partly exposed


@pytest.mark.slow
@pytest.mark.parametrize("comm", [300, 1500])
def test_nested_loops_jump_at_both_levels(comm):
    """Layers of tiles (load, multiply, finish, credits back; the load and the vector unit
    share a port), each layer's collective hidden behind the next layer's tiles, whose loads
    wait for the one before it."""
    tile = [(DMA, WAIT, 5, 0, -1, 0), (DMA, PLAIN, 0, 20, 0, 0), (DMA, SIGNAL, 4, 0, -1, 7),
            (MXU, WAIT, 4, 0, -1, 0), (MXU, PLAIN, 0, 25, -1, 0), (MXU, SIGNAL, 6, 0, -1, 0),
            (VPU, WAIT, 6, 0, -1, 0), (VPU, PLAIN, 0, 6, 0, 0), (VPU, SIGNAL, 5, 0, -1, 0)]
    layer = [(DMA, WAIT, 2, 0, -1, 0), ("loop", 40, tile), (VPU, SIGNAL, 1, 0, -1, 0),
             (LINK, WAIT, 1, 0, -1, 0), (LINK, PLAIN, 0, comm, -1, 0), (LINK, SIGNAL, 2, 0, -1, 0),
             (VPU, PLAIN, 0, 11, -1, 0)]
    items = [(DMA, SIGNAL, 5, 0, -1, 0)] * 2 + [(LINK, SIGNAL, 2, 0, -1, 0)] * 2 + [
        ("loop", 60, layer)]
    for queue in (LINK, VPU):
        unrolled, timing = _both(items, queue)
        _assert_exact(unrolled, timing)
        assert timing.jumps >= 2 and timing.skipped > 10 * timing.simulated
        assert 0 < timing.exposed_cycles < unrolled[3]


@pytest.mark.parametrize("tail", [LINK, VPU])
def test_a_finished_queue_still_busy_delays_the_jump_not_the_exactness(tail):
    """A queue's last instruction outlasts many periods of a loop on the others: the engine's
    state does not show it, the meter's reaches do, so the period is taken once it ends."""
    first = [(tail, PLAIN, 0, 5_000, -1, 0)] + [(MXU, SIGNAL, 7, 0, -1, 0)] * 2
    body = [(DMA, WAIT, 7, 0, -1, 0), (DMA, PLAIN, 0, 13, -1, 0), (DMA, SIGNAL, 5, 0, -1, 0),
            (MXU, WAIT, 5, 0, -1, 0), (MXU, PLAIN, 0, 17, -1, 0), (MXU, SIGNAL, 7, 0, -1, 0)]
    if tail == VPU:              # the link in the loop, the bottleneck once the vector unit is done
        first += [(LINK, SIGNAL, 8, 0, -1, 0)] * 2
        body += [(DMA, WAIT, 8, 0, -1, 0), (MXU, SIGNAL, 6, 0, -1, 0), (LINK, WAIT, 6, 0, -1, 0),
                 (LINK, PLAIN, 0, 25, -1, 0), (LINK, SIGNAL, 8, 0, -1, 0)]
    items = first + [("loop", 2000, body)]
    unrolled, timing = _both(items)
    _assert_exact(unrolled, timing)
    assert timing.jumps == 1 and timing.simulated > 5_000 // 17 * len(body) // 2
    assert _periodic(*_compact(items), None).simulated < 200     # unmeasured: jumps at once


def test_a_device_that_never_uses_its_link_has_nothing_exposed():
    items = [("loop", 500, [(DMA, PLAIN, 0, 13, -1, 0), (MXU, PLAIN, 0, 7, -1, 0)])]
    unrolled, timing = _both(items)
    _assert_exact(unrolled, timing)
    assert timing.exposed_cycles == 0 and timing.idle_cycles == 0
    assert _periodic(*_compact(items), -1).exposed_cycles == 0


def test_nothing_is_measured_unless_asked():
    timing = _periodic(*_compact(CREDITS + [("loop", 50, _layer(10, 20, 5))] + DRAIN), None)
    assert timing.exposed_cycles is None and timing.idle_cycles is None


@pytest.mark.slow
@pytest.mark.parametrize("target", ["systolic", "dataflow"])
def test_a_symmetric_node_per_pattern_measures_what_the_unrolled_run_does(target, monkeypatch):
    """gpt2 decode at tp 2: the device run per pattern (its loops jumped over) gives the node
    the exposed and idle cycles of the same run unrolled (gpt2's link is all exposed on
    systolic, none of it on dataflow)."""
    from arch.links import load_link
    from compiler.frontend import load_model
    from compiler.parallel.partition import device_graphs
    from compiler.parallel.plan import make_plan
    from compiler.phase import decode
    import sim.node_symmetry
    import sim.simulate
    from sim.compact_costs import timed_per_pattern
    from tessel.driver import compile_model_graph
    from tessel.targets import TARGETS

    spec = TARGETS[target]
    model, arch, link = load_model("gpt2"), spec.load_arch(), load_link(spec.default_link)
    part = device_graphs(model.config, make_plan(model.config, 2, tp=2), decode(64))[0]
    program = compile_model_graph(model, part.graph, target, arch).program
    assert timed_per_pattern(spec.machine(arch), program)
    unrolled = sim.node_symmetry.symmetric_node(program, spec.machine(arch), 2, link, unrolled=True)
    timings, schedule = [], sim.simulate.schedule_periodic
    monkeypatch.setattr(sim.simulate, "schedule_periodic",
                        lambda *args, **kw: timings.append(schedule(*args, **kw)) or timings[-1])
    patterns = sim.node_symmetry.symmetric_node(program, spec.machine(arch), 2, link)
    assert timings[0].skipped > 0 and unrolled.link_busy_cycles[0] > 0
    assert patterns.cycles == unrolled.cycles
    assert patterns.exposed_cycles == unrolled.exposed_cycles
    assert patterns.idle_cycles == unrolled.idle_cycles
