"""The GPU baseline: datasheet floor, monotonicity, modes, energy, the cited measurements
(sim.gpu.CALIBRATION) and measured calibration files."""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from arch import ArchError, GpuArch, load_arch, preset_names
from compiler.cost import graph_cost
from compiler.frontend import PRESETS, build_graph
from compiler.phase import decode, prefill
from sim.gpu import (CALIBRATION, CALIBRATION_TOLERANCE, CalibrationError, Kernel, calibrate,
                     floor_s, gpu_baseline, kernel_time, load_calibration)
from tessel.gpu_kernels import generation, graph_kernels, model_kernels, pass_cost, predict

ROOT = Path(__file__).parents[2]
GPUS = [p for p in preset_names() if p.startswith("gpu-")]
PHASES = {"prefill-128": prefill(128), "decode-128": decode(128)}


@pytest.fixture(scope="module")
def gpt2_kernels() -> dict[str, list[Kernel]]:
    return {name: graph_kernels(build_graph(PRESETS["gpt2"], phase)) for name, phase in PHASES.items()}


def test_every_datasheet_gpu_has_a_preset():
    assert GPUS == ["gpu-a100-40gb", "gpu-a100-80gb", "gpu-h100-sxm", "gpu-h200",
                    "gpu-rtx-a6000", "gpu-t4", "gpu-v100"]
    assert all(isinstance(load_arch(p), GpuArch) for p in GPUS)


@pytest.mark.parametrize("override, message", [
    ("idle_w=500", r"gpu-a100-80gb.toml with --set idle_w=500: field 'idle_w' must be below tdp_w"),
    ("gemm.max_frac=1.5", r"--set gemm.max_frac=1.5: field 'gemm.max_frac' must be a number above 0 "
                          r"and at most 1, got 1.5"),
    ("eager_overhead_us.gemm=1",
     r"gpu-a100-80gb.toml with --set eager_overhead_us.gemm=1: field 'eager_overhead_us.gemm' must "
     r"be at least graph_overhead_us.gemm \(5.0\), got 1.0$"),
    ("graph_overhead_us={}", r"--set graph_overhead_us={}: missing field 'graph_overhead_us.gemm'"),
    ("sms=0", "--set sms=0: field 'sms' must be an integer from 1 to 65536 units, got 0"),
    ("tensor_tops.fp4=100", r"gpu-a100-80gb.toml with --set tensor_tops.fp4=100: unknown field "
                            r"'tensor_tops.fp4' \(tensor-core formats: fp8, int8, int4\)$"),
    ("tensor_tops.int8=0", r"--set tensor_tops.int8=0: field 'tensor_tops.int8' must be a number "
                           r"above 0 and at most 200000 TOPS, got 0$"),
    ("tensor_tops=5", r"--set tensor_tops=5: field 'tensor_tops' must be a table, got 5$"),
    ("vector_frac.gemm=0.5", r"with --set vector_frac.gemm=0.5: unknown field 'vector_frac.gemm' "
                             r"\(vector kinds: elementwise, layernorm, softmax, embedding, copy, "
                             r"rmsnorm, rope, silu-gate\)$"),
    ("vector_frac.softmax=0.5", r"with --set vector_frac.softmax=0.5: missing field "
                                r"'vector_ramp_us.softmax' \(vector_frac names softmax: a kind streams "
                                r"at its own rate only with both\)$"),
    ("vector_frac.rope=1.5", r"--set vector_frac.rope=1.5: field 'vector_frac.rope' must be a number "
                             r"above 0 and at most 1, got 1.5$"),
    ("vector_ramp_us.rope=-1", r"--set vector_ramp_us.rope=-1: field 'vector_ramp_us.rope' must be "
                               r"a number from 0 to 1000000 us"),
    ("fused_attention.max_frac=0", r"--set fused_attention.max_frac=0: field "
                                   r"'fused_attention.max_frac' must be a number above 0 and at most 1"),
    ("fused_attention={}", r"--set fused_attention={}: missing field 'fused_attention.max_frac'$"),
])
def test_bad_fields_are_rejected_by_name(override, message):
    with pytest.raises(ArchError, match=message):
        load_arch("gpu-a100-80gb", [override])


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    return modules + [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]


def test_sim_never_imports_the_compiler():
    modules = imported_modules(ROOT / "sim" / "gpu.py")
    assert not [m for m in modules if m.split(".")[0] in ("compiler", "tessel")]


def test_kernels_follow_the_graph(gpt2_kernels):
    decode_ks = gpt2_kernels["decode-128"]
    block = [k for k in decode_ks if k.name.startswith("h.3.")]
    assert [k.kind for k in block] == [
        "layernorm", "gemv", "copy", "copy", "attention-matmul", "softmax", "attention-matmul",
        "gemv", "elementwise", "layernorm", "gemv", "elementwise", "gemv", "elementwise"]
    scores = next(k for k in block if k.name.endswith("scores"))
    assert (scores.m, scores.n, scores.k, scores.batch) == (1, 129, 64, 12)
    fc = next(k for k in gpt2_kernels["prefill-128"] if k.name == "h.0.mlp.c_fc")
    assert (fc.kind, fc.m, fc.n, fc.k) == ("gemm", 128, 3072, 768)
    compiler_bytes = {op.name: op.bytes for op in graph_cost(build_graph(PRESETS["gpt2"], decode(128))).ops}
    assert all(k.bytes * 2 == pytest.approx(compiler_bytes[k.name], abs=1) for k in decode_ks)


@pytest.mark.parametrize("phase", PHASES.values(), ids=PHASES)
def test_model_kernels_equal_the_whole_graphs_kernels(phase):
    config = PRESETS["gpt2-medium"]
    assert model_kernels(config, phase) == graph_kernels(build_graph(config, phase))
    gpu = load_arch("gpu-a100-80gb")
    whole = gpu_baseline(graph_kernels(build_graph(config, phase)), gpu, "eager")
    assert pass_cost(config, phase, gpu, "eager") == pytest.approx((whole.time_s, whole.energy_j))


@pytest.mark.parametrize("preset", GPUS)
def test_no_kernel_beats_the_datasheet_floor(preset, gpt2_kernels):
    gpu = load_arch(preset)
    for kernels in gpt2_kernels.values():
        for mode in ("eager", "graph"):
            for k, t in zip(kernels, gpu_baseline(kernels, gpu, mode).kernels):
                assert t.time_s >= floor_s(k, gpu) > 0
                assert t.compute_s >= k.flops / gpu.peak_flops_per_s(k.kind)
                assert t.memory_s >= k.bytes / gpu.mem_bw_bytes_per_s
                assert 0 < t.utilization <= 1


# Dense tensor-core peaks per format, TFLOP/s or TOPS: reference/gpu.md's datasheet table and
# reference/quant.md's tensor-core table. None: the GPU has no tensor cores for the format.
DATASHEET_PEAKS = {
    "gpu-t4": {"fp16": 65, "fp8": None, "int8": 130, "int4": 260},
    "gpu-v100": {"fp16": 125, "fp8": None, "int8": None, "int4": None},     # INT8 by DP4A only
    "gpu-a100-40gb": {"fp16": 312, "fp8": None, "int8": 624, "int4": 1248},
    "gpu-a100-80gb": {"fp16": 312, "fp8": None, "int8": 624, "int4": 1248},
    "gpu-rtx-a6000": {"fp16": 154.8, "fp8": None, "int8": 309.7, "int4": None},  # no INT4 figure
    "gpu-h100-sxm": {"fp16": 989.4, "fp8": 1979, "int8": 1979, "int4": None},
    "gpu-h200": {"fp16": 989, "fp8": 1979, "int8": 1979, "int4": None},
}
RECIPES = ("w8a8", "w4a4kv4", "fp8", "w4a16:g128", "w4a8", "kv:bfp8", "w4a4:g128+kv:int8")


def test_presets_rate_the_datasheet_formats():
    for preset in GPUS:
        gpu, peaks = load_arch(preset), DATASHEET_PEAKS[preset]
        assert gpu.peak_tflops_fp16 == peaks["fp16"]
        assert gpu.tensor_tops == {f: peaks[f] for f in ("fp8", "int8", "int4") if peaks[f]}, preset


@pytest.fixture(scope="module")
def quant_kernels() -> dict[tuple[str, str], list[Kernel]]:
    from tessel.gpu_quant import narrowing
    graphs = {name: build_graph(PRESETS["gpt2"], phase) for name, phase in PHASES.items()}
    return {(r, name): graph_kernels(g, narrowing(g, r)) for r in RECIPES for name, g in graphs.items()}


@pytest.mark.parametrize("preset", GPUS)
def test_no_quantised_kernel_beats_its_datasheet_floor(preset, quant_kernels):
    gpu, peaks = load_arch(preset), DATASHEET_PEAKS[preset]
    for (recipe, _), kernels in quant_kernels.items():
        needed = {k.mma for k in kernels}
        if any(peaks[f] is None for f in needed):
            with pytest.raises(ArchError, match=rf"{preset}: kernel '.*' multiplies in .*, but the "
                                                r"preset has no field 'tensor_tops\.(fp8|int4|int8)'"):
                gpu_baseline(kernels, gpu)
            continue
        for mode in ("eager", "graph"):
            for k, t in zip(kernels, gpu_baseline(kernels, gpu, mode).kernels):
                peak = (peaks[k.mma] if k.kind in ("gemm", "gemv", "attention-matmul")
                        else gpu.peak_tflops_fp32) * 1e12
                floor = max(k.flops / peak, k.bytes / (gpu.mem_bw_gbps * 1e9))
                assert t.time_s >= floor_s(k, gpu) == pytest.approx(floor) and floor > 0, (recipe, k)
                assert t.compute_s >= k.flops / peak and t.memory_s >= k.bytes / (gpu.mem_bw_gbps * 1e9)
                assert 0 < t.utilization <= 1


def test_quantised_kernels_are_checked():
    gpu = load_arch("gpu-a100-80gb")
    with pytest.raises(ArchError, match=r"^gpu-a100-80gb: kernel 'x' multiplies in fp8 on the tensor "
                                        r"cores, but the preset has no field 'tensor_tops.fp8' \(its "
                                        r"low-precision rates: int8, int4\)$"):
        kernel_time(Kernel("x", "gemm", 2, 6, mma="fp8"), gpu, "graph")
    with pytest.raises(ValueError, match=r"kernel 'x': mma must be fp16, or one of fp8, int8, int4 "
                                         r"for a matrix kind, got 'int8' \(copy\)"):
        Kernel("x", "copy", 0, 8, mma="int8")
    with pytest.raises(ValueError, match="kernel 'x': dequant_ops must be non-negative, got -1"):
        Kernel("x", "gemm", 2, 6, dequant_ops=-1)
    # the same work at int8 takes half the tensor-core time (on the curve; by tiles, half the time
    # besides the kernel's ramp); dequantisation adds to it
    ramp = gpu.tiled_gemm.ramp_us * 1e-6
    for arch, fixed in ((gpu, ramp), (dataclasses.replace(gpu, tiled_gemm=None), 0.0)):
        fp16 = kernel_time(Kernel("x", "gemm", 2 * 8192**3, 6 * 8192**2, 8192, 8192, 8192), arch, "graph")
        int8 = kernel_time(Kernel("x", "gemm", 2 * 8192**3, 3 * 8192**2, 8192, 8192, 8192, mma="int8"),
                           arch, "graph")
        assert int8.compute_s - fixed == pytest.approx((fp16.compute_s - fixed) / 2)
        slower = kernel_time(Kernel("x", "gemm", 2 * 8192**3, 3 * 8192**2, 8192, 8192, 8192, mma="int8",
                                    dequant_ops=10**9), arch, "graph")
        assert slower.compute_s == pytest.approx(int8.compute_s + 10**9 / (108 * 64 * 1410e6), rel=1e-3)


def test_eager_never_beats_graph_mode(gpt2_kernels):
    for preset in GPUS:
        gpu = load_arch(preset)
        for kernels in gpt2_kernels.values():
            eager, graph = gpu_baseline(kernels, gpu, "eager"), gpu_baseline(kernels, gpu, "graph")
            assert eager.time_s > graph.time_s
            assert all(e.time_s >= g.time_s for e, g in zip(eager.kernels, graph.kernels))


@pytest.mark.parametrize("phase", PHASES.values(), ids=PHASES)
def test_time_grows_with_model_size(phase):
    gpu = load_arch("gpu-a100-80gb")
    for mode in ("eager", "graph"):       # pass_cost == the whole graph's (tested above)
        times = [pass_cost(PRESETS[m], phase, gpu, mode)[0]
                 for m in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")]
        assert times == sorted(times) and len(set(times)) == 4


def test_time_grows_with_sequence_length():
    gpu, config = load_arch("gpu-h100-sxm"), PRESETS["gpt2"]
    for mode in ("eager", "graph"):
        prefills = [pass_cost(config, prefill(s), gpu, mode)[0] for s in (16, 64, 128, 512, 1024)]
        decodes = [pass_cost(config, decode(kv), gpu, mode)[0] for kv in (1, 64, 256, 1023)]
        assert prefills == sorted(prefills) and decodes == sorted(decodes)
        assert len(set(prefills)) == 5 and len(set(decodes)) == 4


def test_bound_counts_and_energy(gpt2_kernels):
    gpu = load_arch("gpu-a100-80gb")
    curve = gpu_baseline(gpt2_kernels["decode-128"], dataclasses.replace(gpu, tiled_gemm=None), "graph")
    assert curve.memory_bound == len(curve.kernels)            # batch-1 decode streams weights
    # by tiles, a one-row GEMV still runs whole 64-row tiles: GPT-2's small ones are as long
    # on the tensor cores as on DRAM; the LM head's 77 MB stream is not
    result = gpu_baseline(gpt2_kernels["decode-128"], gpu, "graph")
    assert result.compute_bound + result.memory_bound == len(result.kernels)
    assert next(k for k in result.kernels if k.name == "lm_head").bound == "memory"
    assert gpu.idle_w < result.avg_power_w < gpu.tdp_w
    assert result.energy_j == pytest.approx(sum(k.energy_j for k in result.kernels))
    big = kernel_time(Kernel("big", "gemm", 2 * 8192**3, 6 * 8192**2, 8192, 8192, 8192), gpu, "graph")
    assert big.bound == "compute"
    assert big.energy_j / big.time_s == pytest.approx(gpu.idle_w + (gpu.tdp_w - gpu.idle_w)
                                                      * big.utilization)
    assert json.loads(json.dumps(result.to_json()))["memory_bound"] == result.memory_bound


def test_generation_is_one_prefill_then_growing_decodes():
    gpu, config = load_arch("gpu-a100-80gb"), PRESETS["gpt2"]
    run = generation(config, 100, 3, gpu, "graph")
    assert run.prefill_s == pass_cost(config, prefill(100), gpu, "graph")[0]
    assert run.decode_s == tuple(pass_cost(config, decode(kv), gpu, "graph")[0] for kv in (100, 101, 102))
    assert run.time_s == pytest.approx(run.prefill_s + sum(run.decode_s))


def test_bad_kernels_and_modes_are_rejected():
    with pytest.raises(ValueError, match="kernel 'x': kind must be one of gemm, .*, got 'conv'"):
        Kernel("x", "conv", 1, 1)
    with pytest.raises(ValueError, match="kernel 'x': bytes must be non-negative, got -1"):
        Kernel("x", "copy", 0, -1)
    with pytest.raises(ValueError, match="mode must be one of eager, graph, hf, got 'jit'"):
        gpu_baseline([], load_arch("gpu-t4"), "jit")


# --- per-kind vector streaming (tools/gpu_vector_fit.py) ------------------------------------

def test_a_kind_with_its_own_rate_streams_at_it_and_the_rest_on_memory():
    gpu, n_bytes = load_arch("gpu-a100-80gb"), 64 * 2**20
    for kind in ("rmsnorm", "rope", "silu-gate", "layernorm", "elementwise"):
        own = kind in gpu.vector_frac
        frac = gpu.vector_frac[kind] if own else gpu.memory.max_frac
        ramp_us = gpu.vector_ramp_us[kind] if own else gpu.memory.ramp_us
        timed = kernel_time(Kernel("x", kind, 0, n_bytes), gpu, "graph")
        assert timed.memory_s == pytest.approx(n_bytes / (frac * gpu.mem_bw_bytes_per_s) + ramp_us * 1e-6)
        assert timed.time_s - timed.overhead_s >= floor_s(Kernel("x", kind, 0, n_bytes), gpu)
    assert set(gpu.vector_frac) == {"rmsnorm", "rope", "silu-gate"}


def test_same_chip_presets_carry_the_fit_and_the_unmeasured_have_none():
    a100, h100 = load_arch("gpu-a100-80gb"), load_arch("gpu-h100-sxm")
    for name, fitted in (("gpu-a100-40gb", a100), ("gpu-h200", h100)):
        g = load_arch(name)
        assert (g.vector_frac, g.vector_ramp_us) == (fitted.vector_frac, fitted.vector_ramp_us)
    for name in ("gpu-t4", "gpu-v100", "gpu-rtx-a6000"):
        assert load_arch(name).vector_frac == load_arch(name).vector_ramp_us == {}


# --- the cited measurements ----------------------------------------------------------------

@pytest.mark.parametrize("point", CALIBRATION, ids=[p.key for p in CALIBRATION])
def test_cited_measurement_is_reproduced_or_listed(point):
    predicted = predict(point)
    if predicted is None:
        assert point.known_miss, f"{point.key}: no workload and no reason"
        return
    error = point.error(predicted)
    if point.known_miss:        # a listed miss that starts passing must leave the list
        assert abs(error) > CALIBRATION_TOLERANCE, f"{point.key} is within tolerance now"
    else:
        assert abs(error) <= CALIBRATION_TOLERANCE, f"{point.key}: {error:+.1%}"


def test_docs_carry_the_generated_table():
    spec = importlib.util.spec_from_file_location("gpu_table", ROOT / "tools" / "gpu_calibration_table.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.table() in (ROOT / "docs" / "validation.md").read_text()


# --- measured calibration files ------------------------------------------------------------

def synthetic_run(truth: GpuArch, kernels: list[Kernel]) -> dict:
    """What baselines/measure_gpu.py would write on a GPU that behaves exactly like `truth`."""
    rows = [{**dataclasses.asdict(k),
             "eager_us": kernel_time(k, truth, "eager").time_s * 1e6,
             "graph_us": kernel_time(k, truth, "graph").time_s * 1e6} for k in kernels]
    return {"schema": 1, "date": "2026-01-01", "gpu_name": "Synthetic A100", "torch_version": "0",
            "kernels": rows, "tokens_ms": {"gpt2-decode-kv128-graph": 1.5}}


def reference_gemms() -> list[Kernel]:
    """The shapes of reference/gpu.md that baselines/measure_gpu.py times as well."""
    shapes = ((64, 12288, 12288), (512, 12288, 12288), (8192, 8192, 8192), (8192, 128, 128))
    return [Kernel(f"ref.{m}x{n}x{k}", "gemv" if m <= 16 else "gemm", 2 * m * n * k,
                   2 * (m * k + k * n + m * n), m, n, k) for m, n, k in shapes]


@pytest.mark.parametrize("tiled", (False, True), ids=("curve", "tiled"))
def test_calibration_recovers_the_measured_gpu(tmp_path, gpt2_kernels, tiled):
    base = load_arch("gpu-a100-80gb")
    base = base if tiled else dataclasses.replace(base, tiled_gemm=None)
    graph = dict.fromkeys(base.graph_overhead_us, 3.0) | {"layernorm": 4.0, "gemv": 2.5}
    eager = dict(base.eager_overhead_us, gemm=30.0, layernorm=20.0, copy=15.0)
    truth = dataclasses.replace(base, graph_overhead_us=graph, eager_overhead_us=eager,
                                gemm=dataclasses.replace(base.gemm, max_frac=0.8),
                                memory=dataclasses.replace(base.memory, max_frac=0.7))
    if tiled:       # the GEMMs' own rates; without its GEMVs GPT-2 has no DRAM-bound kernel of
        # 4x the L2 that streams on `memory`, so that one is the preset's
        truth = dataclasses.replace(truth, memory=base.memory, tiled_gemm=dataclasses.replace(
            base.tiled_gemm, clock_frac=0.6, mem_frac=0.7))
    kernels = gpt2_kernels["prefill-128"] + gpt2_kernels["decode-128"] + reference_gemms()
    path = tmp_path / "run.json"
    path.write_text(json.dumps(synthetic_run(truth, kernels)))
    run = load_calibration(path)
    assert (run.gpu_name, run.tokens_ms) == ("Synthetic A100", {"gpt2-decode-kv128-graph": 1.5})
    tuned = calibrate(base, run)
    assert tuned.name == "gpu-a100-80gb@2026-01-01"
    if tiled:
        assert (tuned.tiled_gemm.clock_frac, tuned.tiled_gemm.mem_frac) == pytest.approx((0.6, 0.7), rel=1e-3)
        assert (tuned.memory.max_frac, tuned.gemm.max_frac) == (base.memory.max_frac, base.gemm.max_frac)
    else:
        assert tuned.memory.max_frac == pytest.approx(0.7, rel=1e-3)
        assert tuned.gemm.max_frac == pytest.approx(0.8, rel=1e-3)
    assert tuned.memory.ramp_us == base.memory.ramp_us
    measured = {k.kind for k in kernels}           # GPT-2's kinds; the others take the launch
    assert {k: tuned.graph_overhead_us[k] for k in measured} == pytest.approx(
        {k: graph[k] for k in measured}, abs=0.02)
    assert {k: tuned.eager_overhead_us[k] for k in measured} == pytest.approx(
        {k: eager[k] for k in measured}, abs=0.02)
    assert set(graph) - measured == {"attention", "rmsnorm", "rope", "silu-gate"}
    assert {k: tuned.graph_overhead_us[k] for k in set(graph) - measured} == pytest.approx(
        {k: 3.0 for k in set(graph) - measured}, abs=0.1)
    for k in kernels:
        assert kernel_time(k, tuned, "eager").time_s == pytest.approx(
            kernel_time(k, truth, "eager").time_s, rel=0.01)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("gpu_name"), "field 'gpu_name' must be a string, got None"),
    (lambda d: d["kernels"][0].update(eager_us=-1), r"field 'kernels\[0\].eager_us' must be a positive number"),
    (lambda d: d["kernels"][1].update(kind="conv"), r"kernels\[1\]: kernel '.*': kind must be one of"),
    (lambda d: d["tokens_ms"].update(x="fast"), "field 'tokens_ms.x' must be a positive number"),
])
def test_bad_calibration_files_are_rejected_by_field(tmp_path, gpt2_kernels, edit, message):
    data = synthetic_run(load_arch("gpu-t4"), gpt2_kernels["decode-128"][:3])
    edit(data)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=rf"run.json: {message}"):
        load_calibration(path)
    path.write_text("{")
    with pytest.raises(CalibrationError, match=r"run.json:1:2: invalid JSON"):
        load_calibration(path)


@pytest.mark.slow      # about 1 s: the fast tier stays under 30 s
def test_the_measure_script_is_never_imported():
    sources = [p for d in ("arch", "sim", "tessel") for p in (ROOT / d).rglob("*.py")]
    assert not [p for p in sources for m in imported_modules(p)
                if m.startswith("baselines") or m.endswith("measure_gpu")]
