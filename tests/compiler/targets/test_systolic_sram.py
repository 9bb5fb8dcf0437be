"""The systolic SRAM plan (compiler/targets/systolic/memory.py): floors from the graph, the
effective size below which the shares give way to them, and the minimum it states."""
from __future__ import annotations

import dataclasses
import re
from functools import lru_cache

import pytest
from isa import DType

from arch import load_arch
from compiler.errors import CompileError
from compiler.frontend import build_graph, load_model
from compiler.frontend.gpt2 import PRESETS as GPT2_PRESETS
from compiler.phase import decode, prefill
from compiler.targets.systolic import PIPELINE
from compiler.targets.systolic.memory import effective_bytes, plan_sram
from tessel.targets import TARGETS

PHASES = {"prefill-128": prefill(128), "decode-128": decode(128)}
# (preset, --set overrides): every systolic preset the issue names, SCALE-Sim's in each dataflow
ARCHS = {"systolic-32": ("systolic-32", ()), "systolic-128": ("systolic-128", ()),
         **{f"scalesim-{n}-{df}": (f"scalesim-{n}", (f"dataflow={df}",))
            for n in (32, 128) for df in ("ws", "os", "is")},
         "gemmini": ("gemmini", ())}
SHARES = {"mx_a": 0.08, "mx_b": 0.16, "vp_in": 0.07, "vp_out": 0.07, "copy": 0.02}   # docs/systolic.md


def _up(n: int) -> int:
    return -(-n // 64) * 64


@lru_cache(maxsize=None)
def _graph(phase: str):
    return load_model("gpt2").graph(PHASES[phase])


def _arch(name: str, *more: str):
    preset, sets = ARCHS[name]
    return load_arch(preset, [*sets, *more])


def _floors(graph, arch):
    return PIPELINE.run(graph, arch, until="floors")["floors"]


def gpt2_minimum(rows: int, cols: int, dataflow: str, isz: int) -> int:
    """gpt2's minimum by hand: each ring's floor is the most of one fold (stationary block,
    one streamed row and its output, in fp32 when partial sums spill; os: the output fold),
    one column of layer norm (x, then
    gain and bias in fp32, each 64-byte aligned) and a 64-byte slice of an embedding row
    beside its 64-byte-aligned id; scratch holds a layer norm column and its square in fp32
    (+ 12 bytes of row statistics, 256 of alignment). Nothing depends on the model's width."""
    a, b, bias, out = ((rows * isz, cols * isz, cols * 4, rows * cols * isz) if dataflow == "os" else
                       (rows * isz, rows * cols * isz, cols * 4, cols * 4))
    rings = (a, b, max(bias, isz + 2 * 64 + 64), max(out, isz), 64 + 64)
    return 2 * sum(map(_up, rings)) + _up(2 * 4 + 12 + 4 * 64)


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", ARCHS)
def test_the_minimum_plans_and_64_bytes_less_is_refused_with_it(name, phase):
    graph, arch = _graph(phase), _arch(name)
    minimum = _floors(graph, arch).minimum_bytes()
    assert minimum == gpt2_minimum(arch.rows, arch.cols, arch.dataflow, 1 if arch.dtype == "int8" else 2)
    floors = _floors(graph, arch)
    layout = PIPELINE.run(graph, _arch(name, f"sram_bytes={minimum}"), until="sram")["sram"]
    assert [r.slot_bytes for r in layout.rings] == [floors.slot(r.name) for r in layout.rings]
    assert layout.scratch == (minimum - _up(floors.scratch.bytes), _up(floors.scratch.bytes))
    fold = "stationary block" if arch.dataflow != "os" else "output fold"
    with pytest.raises(CompileError, match=(
            rf"^{arch.name}: sram_bytes = {minimum - 64:,} cannot hold one fold of the "
            rf"{arch.rows}x{arch.cols} {arch.dataflow} array in {arch.dtype} \(double-buffered\) "
            rf"beside one column of every other op; the minimum is {minimum:,} bytes, set by .*"
            rf"one fold of the {arch.rows}x{arch.cols} {arch.dataflow} array \([\d,]+-byte {fold}\)")):
        PIPELINE.run(graph, _arch(name, f"sram_bytes={minimum - 64}"), until="sram")


def test_the_stated_causes_name_the_fold_layer_norm_and_embedding():
    with pytest.raises(CompileError, match=re.escape(
            "the minimum is 68,672 bytes, set by one fold of the 128x128 ws array (32,768-byte "
            "stationary block), layernorm 'h.0.ln_1' (one column) and embedding "
            "'embed.tokens' (one column)")):
        TARGETS["systolic"].compile(_graph("decode-128"), _arch("systolic-128", "sram_bytes=65536"))


def _small_gpt2(phase):
    """gpt2's widths (hence its floors) with one layer and a 512-token vocabulary: compiling
    whole gpt2 at its minimum (one streamed row a gemm) takes minutes per array."""
    config = dataclasses.replace(GPT2_PRESETS["gpt2"], n_layer=1, vocab_size=512)
    return build_graph(config, {"prefill-128": prefill(16), "decode-128": decode(16)}[phase])


FAST = {("systolic-32", "decode-128")}


@pytest.mark.parametrize("name, phase", [
    pytest.param(n, p, marks=() if (n, p) in FAST else pytest.mark.slow)     # up to 16 s each
    for n in ARCHS for p in PHASES])
def test_every_op_compiles_at_the_minimum(name, phase):
    """The floors are enough: the whole lowering (every GEMM fold, vector row and copy row)
    compiles at the minimum, on gpt2's one-layer twin (equal floors, asserted)."""
    graph, arch = _small_gpt2(phase), _arch(name)
    minimum = _floors(graph, arch).minimum_bytes()
    assert minimum == _floors(_graph(phase), arch).minimum_bytes()
    TARGETS["systolic"].compile(graph, _arch(name, f"sram_bytes={minimum}"))


@pytest.mark.slow      # about 3 s: 1.5 M instructions at the 68,672-byte minimum
def test_whole_gpt2_decode_compiles_and_runs_at_the_minimum():
    arch = _arch("systolic-128", f"sram_bytes={gpt2_minimum(128, 128, 'ws', 2)}")
    lowered = TARGETS["systolic"].compile(_graph("decode-128"), arch)
    assert TARGETS["systolic"].simulate(lowered.program, arch, functional=False).result.cycles > 0


def test_scalesim_128_os_shrinks_below_its_shares():
    """SCALE-Sim's default buffers hold the 128x128 os array's output fold (32 KiB, twice in
    the vp_out ring) only by giving that ring more than its 7 % share: the effective size x
    is below sram_bytes, and the plan still fits."""
    arch = load_arch("scalesim-128")
    layout = PIPELINE.run(_graph("prefill-128"), arch, until="sram")["sram"]
    assert arch.dataflow == "os" and layout.effective_bytes < arch.sram_bytes
    assert sum(2 * r.slot_bytes for r in layout.rings) + layout.scratch[1] == arch.sram_bytes


@pytest.mark.parametrize("preset", ["systolic-32", "systolic-128", "scalesim-32", "gemmini", "tpu-v1"])
def test_presets_keep_the_nominal_shares(preset):
    """At every preset's size each share exceeds its floor: the layout is the shares of
    sram_bytes itself, scratch the remaining 20 % (the pinned reports hold the programs)."""
    arch = load_arch(preset)
    layout = PIPELINE.run(_graph("prefill-128"), arch, until="sram")["sram"]
    assert layout.effective_bytes == arch.sram_bytes
    base = 0
    for ring in layout.rings:
        share = int(arch.sram_bytes * SHARES[ring.name]) // 64 * 64
        assert (ring.base, ring.slot_bytes, ring.slots) == (base, share, 2)
        base += 2 * ring.slot_bytes
    assert layout.scratch == (base, arch.sram_bytes - base)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["systolic-32", "systolic-128", "scalesim-128-os", "gemmini"])
def test_slots_never_shrink_as_the_sram_grows(name):
    """From the minimum up: every slot non-decreasing, each at least max(floor, share of the
    effective size x), the scratch at least max(floor, 10 % of x), all within sram_bytes;
    x = sram_bytes once every share exceeds its floor, below sram_bytes somewhere before."""
    arch = _arch(name)
    floors = _floors(_graph("prefill-128"), arch)
    minimum = floors.minimum_bytes()
    shares_win = max(max(floors.slot(r) / SHARES[r] for r in SHARES), _up(floors.scratch.bytes) / 0.1) + 64
    before, degraded = None, 0
    for size in range(minimum, int(2 * shares_win), 4 * 64 + 3):
        layout = plan_sram(dataclasses.replace(arch, sram_bytes=size), DType(arch.dtype), floors)
        x, slots = layout.effective_bytes, [r.slot_bytes for r in layout.rings]
        for ring in layout.rings:
            assert ring.slot_bytes == max(floors.slot(ring.name), int(x * SHARES[ring.name]) // 64 * 64)
        assert layout.scratch[1] >= max(_up(floors.scratch.bytes), int(x * 0.1))
        assert layout.scratch[0] + layout.scratch[1] == size and x <= size
        assert before is None or all(s >= b for s, b in zip(slots, before)), size
        assert x == size or size < shares_win, size
        before, degraded = slots, degraded + (x < size)
    assert degraded and effective_bytes(minimum, floors) < minimum


def test_acc_floor_still_states_its_minimum():
    with pytest.raises(CompileError, match=r"systolic-128: acc_bytes = 512 cannot hold one fold's "
                                           r"partial sums \(double-buffered\); the minimum is 1,024 bytes"):
        PIPELINE.run(_graph("decode-128"), _arch("systolic-128", "acc_bytes=512"), until="sram")
