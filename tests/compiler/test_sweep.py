"""compiler/targets/sweep.py: a tile sweep becomes a loop only once it is seen to repeat, and
the compact program the lowering emits unrolls to exactly what flat emission gives, on every
target and family, with the same simulated report."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

import isa
from compiler.frontend import Model, decoder, build_graph, load_model
from compiler.phase import decode, prefill
from compiler.targets.emit import Emitter, Ring, RingSpec
from compiler.targets.sweep import flat_emission
from isa import Addr
from isa.loops import loop_structure
from isa.unroll import multiplicities
from sim.simulate import simulate
from tessel.attention import _op_bytes
from tessel.driver import policy_routed
from tessel.targets import TARGETS
from tests.families.tiny import TINY


def _both(target: str, graph, arch):
    compiled = TARGETS[target].compile(graph, arch).program
    with flat_emission():
        flat = TARGETS[target].compile(graph, arch).program
    return compiled, flat


def _loops(program: isa.Program) -> int:
    return len(loop_structure(program.instructions).loops)


def _emit(items, body, *, flat: bool = False) -> isa.Program:
    em = Emitter("systolic")
    ring = Ring(em, RingSpec("r", "sram", 0, 256, 2, "dma0", "mxu0"))
    em.emit("dma0", "dmacfg", src_stride=0, dst_stride=0)

    def run():
        for item in em.sweep(items):
            body(em, ring, item)
        return em.program(("dram", "sram", "acc"), (), ("dma0", "mxu0"))

    if flat:
        with flat_emission():
            return run()
    return run()


def _load(em, ring, item):
    slot = ring.acquire()
    em.emit("dma0", "load", dst=slot, src=Addr("dram", 0x1000 + 64 * item), rows=1, row_bytes=64)
    ring.filled()
    ring.take()
    ring.release()


def test_a_ring_sweep_becomes_a_loop_of_two_iterations_and_unrolls_to_the_flat_one():
    compact, flat = _emit(range(100), _load), _emit(range(100), _load, flat=True)
    assert _loops(compact) == 1
    assert len(compact.instructions) < len(flat.instructions) // 5
    assert isa.unroll(compact) == flat
    loop = loop_structure(compact.instructions).loops[0]
    assert loop.body_end - loop.body_start == 2 * 5     # two iterations (slots alternate)


def test_items_that_stop_moving_by_one_step_end_the_loop():
    # the addresses follow the items: a jump at item 40 must not be taken for the same step
    items = [k if k < 40 else k + 7 for k in range(80)]
    compact, flat = _emit(items, _load), _emit(items, _load, flat=True)
    assert isa.unroll(compact) == flat
    assert _loops(compact) == 2


class _Threshold:
    """State that changes what is emitted at item 20 although the items move on evenly."""

    def __init__(self, tracked: bool) -> None:
        self.seen, self.tracked = 0, tracked

    def sweep_key(self):
        return self.seen > 20 if self.tracked else None

    def sweep_counts(self):             # a counter with a threshold, as a packer's fill level
        return (self.seen,) if self.tracked else ()

    def sweep_set(self, counts):
        (self.seen,) = counts

    def sweep_room(self, per_period):
        return (20 - self.seen) // per_period[0] if self.seen <= 20 else None

    def body(self, em, ring, item):
        if not any(obj is self for obj in em._tracked):
            em.track(self)
        self.seen += 1
        _load(em, ring, item + (1000 if self.seen > 20 else 0))


@pytest.mark.parametrize("tracked", [True, False])
def test_a_loop_stops_where_tracked_state_changes(tracked):
    compact = _emit(range(60), _Threshold(tracked).body)
    flat = _emit(range(60), _Threshold(tracked).body, flat=True)
    # untracked, the sweep cannot see the change and loops past it: why state must be tracked
    assert (isa.unroll(compact) == flat) is tracked


def test_the_last_item_is_always_emitted_apart():
    def body(em, ring, item):
        _load(em, ring, item)
        if item == 49:                         # a lowering may treat the last item apart
            em.emit("mxu0", "signal", sem=9)
            em.emit("dma0", "wait", sem=9)

    compact, flat = _emit(range(50), body), _emit(range(50), body, flat=True)
    assert isa.unroll(compact) == flat


@pytest.mark.slow
@pytest.mark.parametrize("target", ["systolic", "dataflow", "pim"])
@pytest.mark.parametrize("phase", [prefill(8), decode(8)], ids=["prefill-8", "decode-8"])
def test_gpt2_compiles_to_loops_that_unroll_to_the_flat_emission(target, phase):
    arch = TARGETS[target].load_arch()
    compiled, flat = _both(target, load_model("gpt2").graph(phase), arch)
    assert _loops(compiled) and len(compiled.instructions) < len(flat.instructions)
    assert isa.unroll(compiled) == flat
    isa.verify(compiled, arch.machine_view())


@pytest.mark.slow
@pytest.mark.parametrize("target", ["systolic", "dataflow", "pim"])
@pytest.mark.parametrize("family", sorted(TINY))
def test_every_family_unrolls_to_the_flat_emission(target, family):
    arch = TARGETS[target].load_arch()
    config = TINY[family]
    graph, _ = policy_routed(Model(family, config).graph(prefill(8)),
                             "uniform" if config.num_experts else None)
    compiled, flat = _both(target, graph, arch)
    assert isa.unroll(compiled) == flat


@pytest.mark.slow
@pytest.mark.parametrize("target", ["systolic", "dataflow"])
def test_gpt2_prefill_128_reports_the_same_compact_and_flat(target):
    arch = TARGETS[target].load_arch()
    compiled, flat = _both(target, load_model("gpt2").graph(prefill(128)), arch)
    assert _loops(compiled)
    machine = TARGETS[target].machine
    reports = [simulate(p, machine(arch), functional=False).result.to_json()
               for p in (compiled, flat)]
    assert reports[0] == reports[1]


@pytest.mark.slow
def test_one_layer_of_llama_70b_prefill_2048_on_sn40l_is_exact_and_compact():
    # 643,342 instructions flat; the PMU row streams, GEMM sweeps and attention heads loop
    config = dataclasses.replace(decoder.PRESETS["llama-3.1-70b"], num_hidden_layers=1)
    arch = TARGETS["dataflow"].load_arch("sn40l")
    compiled, flat = _both("dataflow", build_graph(config, prefill(2048)), arch)
    assert len(flat.instructions) == 643_342
    assert len(compiled.instructions) < 12_000
    assert isa.unroll(compiled) == flat


@pytest.mark.slow      # about 0.5-0.8 s: the fast tier stays under 30 s
def test_attention_traffic_of_a_compact_program_counts_every_execution():
    # the report's per-op load/store bytes: each compact word times its executions
    arch = TARGETS["systolic"].load_arch()
    compiled = TARGETS["systolic"].compile(load_model("gpt2").graph(decode(8)), arch).program
    assert _loops(compiled)
    assert _op_bytes(compiled) == _op_bytes(isa.unroll(compiled))
    times = multiplicities(loop_structure(compiled.instructions))
    assert int(times.sum()) == isa.executed_count(compiled)


def test_a_uniform_sweep_may_end_in_its_loop():
    def run(flat: bool = False) -> isa.Program:
        em = Emitter("systolic")
        ring = Ring(em, RingSpec("r", "sram", 0, 256, 2, "dma0", "mxu0"))
        em.emit("dma0", "dmacfg", src_stride=0, dst_stride=0)
        with flat_emission() if flat else contextlib.nullcontext():
            for item in em.sweep(range(50), uniform=True):
                _load(em, ring, item)
        return em.program(("dram", "sram", "acc"), (), ("dma0", "mxu0"))

    compact = run()
    assert isa.unroll(compact) == run(flat=True)
    # items 2..49 are one loop of 24 two-item periods (the ring's slots alternate); only the
    # queues' closing halts follow it
    words = compact.instructions
    header = next(i for i, ins in enumerate(words) if ins.opcode == "loop")
    assert words[header]["count"] == 24
    end = header + 1 + sum(1 for ins in words if ins.opcode == "stride") + words[header]["body"]
    assert [ins.opcode for ins in words[end:]] == ["halt", "halt"]


@pytest.mark.slow
def test_causal_attention_steps_loop_and_unroll_to_the_flat_emission():
    # a 2,048-token query block on systolic-128: 16 key blocks of 128, each with up to 16
    # query chunks; the chunks of one key block are a sweep whose items carry the step before
    # (its context is emitted with them), so a loop must not leave it behind
    config = dataclasses.replace(TINY["tiny-llama3"], num_hidden_layers=1,
                                 max_position_embeddings=2048)
    arch = TARGETS["systolic"].load_arch()
    compiled, flat = _both("systolic", build_graph(config, prefill(2048)), arch)
    attention = [a for a, name in compiled.ops if name.endswith("attention")]
    assert attention and _loops(compiled)
    assert isa.unroll(compiled) == flat
