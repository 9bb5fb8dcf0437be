"""GPU comparison columns for every simulation report.

The same graph the accelerator ran goes through the GPU baseline model (sim/gpu.py) for
each chosen GPU preset; the report shows the GPU's time and energy and the accelerator's
speedup (GPU time / accelerator time) and energy-efficiency ratio (GPU energy /
accelerator energy). A calibration JSON measured on a real GPU (baselines/measure_gpu.py)
adds a calibrated row for the preset it was measured on. Under a quantisation recipe the GPU
runs the graph's kernels narrowed as tessel/gpu_quant.py says (the accelerator's run is its own).
In mode "hf" the GPU runs what a Hugging Face generate iteration of the same model and phase
launches instead (tessel/gpu_hf.py), not the graph's kernels.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from arch import ArchError, load_arch
from arch.gpu import GpuArch
from compiler.ir import Graph, GraphError
from sim.gpu import calibrate, gpu_baseline, load_calibration
from sim.result import GpuComparison, SimResult
from arch.links import load_link
from compiler.parallel.schedule import pipeline_schedule
from sim.collectives import collective_cost
from tessel.gpu_hf import hf_kernels
from tessel.gpu_kernels import HALF_BYTES, graph_kernels, rank_work

if TYPE_CHECKING:                      # the recipes load ml_dtypes: imported only when asked
    from compiler.frontend import ModelConfig
    from compiler.phase import Phase
    from compiler.quant import Recipe

__all__ = ["GPU_PRESETS", "compare_gpus", "compare_gpus_on_plan", "parse_gpus", "resident_bytes"]

GPU_PRESETS = ("gpu-t4", "gpu-v100", "gpu-a100-40gb", "gpu-a100-80gb", "gpu-rtx-a6000",
               "gpu-h100-sxm", "gpu-h200")
# Words of a measured device name -> the preset it was measured on.
_DEVICE_WORDS = (("H200", "gpu-h200"), ("H100", "gpu-h100-sxm"), ("A6000", "gpu-rtx-a6000"),
                 ("A100", "gpu-a100-80gb"), ("V100", "gpu-v100"), ("T4", "gpu-t4"))


def parse_gpus(text: str | None) -> tuple[str, ...]:
    """'t4,h200' or 'gpu-t4' -> presets; 'none' -> no comparison; None -> all presets."""
    if text is None:
        return GPU_PRESETS
    if text == "none":
        return ()
    names = []
    for word in text.split(","):
        name = word.strip() if word.strip().startswith("gpu-") else f"gpu-{word.strip()}"
        if name not in GPU_PRESETS:
            raise ArchError(f"--gpu: unknown GPU '{word.strip()}' (one of "
                            f"{', '.join(p.removeprefix('gpu-') for p in GPU_PRESETS)}, or none)")
        names.append(name)
    return tuple(names)


def _calibrated(path: Path):
    measured = load_calibration(path)
    for word, preset in _DEVICE_WORDS:
        if word in measured.gpu_name:
            return calibrate(load_arch(preset), measured)
    raise ArchError(f"{path}: no GPU preset matches the measured device '{measured.gpu_name}'")


def compare_gpus(graph: Graph, result: SimResult, gpus: Sequence[str], mode: str = "graph",
                 calibration: Path | None = None, recipe: Recipe | None = None,
                 n_layers: int | None = None, attention: str = "unfused",
                 hf: tuple[ModelConfig, Phase] | None = None,
                 routers: frozenset[str] = frozenset()) -> dict[str, GpuComparison]:
    """Per GPU: time, energy, and the accelerator's speedup and energy efficiency against it;
    the GPU under `recipe` when one is given (`n_layers`: the model's, for its exceptions;
    `routers`: a routed graph's router linears, which the recipe leaves at full precision);
    attention unfused or fused (tessel.gpu_kernels.ATTENTION; fused runs in fp16 only);
    mode "hf": the Hugging Face operators of `hf`'s model config and phase."""
    archs = [load_arch(name) for name in gpus]
    if calibration is not None:
        archs.append(_calibrated(calibration))
    if not archs:
        return {}
    if mode == "hf":
        if hf is None:
            raise GraphError("--gpu-mode hf: the Hugging Face operator list needs a model config and phase")
        kernels, resident, width = hf_kernels(*hf), resident_bytes(graph), "in fp16"
    elif recipe is None:
        kernels, resident, width = graph_kernels(graph, attention=attention), resident_bytes(graph), "in fp16"
    else:
        from tessel.gpu_quant import narrowing, resident_bytes as narrow_bytes
        narrow = narrowing(graph, recipe, n_layers, routers)
        kernels, resident = graph_kernels(graph, narrow, attention), narrow_bytes(narrow)
        width = f"under recipe {recipe.name}"
    table = {}
    for gpu in archs:
        base = gpu_baseline(kernels, gpu, mode)
        table[gpu.name] = GpuComparison(
            mode=mode, time_s=base.time_s, energy_j=base.energy_j, avg_power_w=base.avg_power_w,
            speedup=base.time_s / result.time_s if result.time_s else None,
            energy_efficiency=base.energy_j / result.energy_j if result.energy_j else None,
            memory_note=_memory_note(gpu, resident, width), recipe=recipe.name if recipe else "",
            attention=attention)
    return table


def compare_gpus_on_plan(parts: Sequence[Graph], plan, microbatches: int, time_s: float,
                         energy_j: float, gpus: Sequence[str], mode: str = "graph",
                         attention: str = "unfused") -> dict[str, GpuComparison]:
    """A parallel plan on a node of each GPU. A stage's ranks run their own graph's kernels
    (alike under tensor parallelism: its first rank's are priced; under expert parallelism each
    rank's, as routed, and the slowest sets the stage's time) and every collective as NCCL does
    on the GPU's link (`GpuArch.link`, sim/collectives.py) in the stream after the kernels
    before it (no overlap, as in a plain Megatron forward); a stage hands its hidden state to
    the next by a send on the link; micro-batches follow GPipe's forward schedule
    (compiler/parallel/schedule.py). Energy: every GPU's kernels, idle power whenever it is not
    computing (collectives, the pipeline bubble), and the bits on the links.
    `time_s`/`energy_j`: the node's."""
    if mode == "hf":
        raise GraphError("--gpu-mode hf: not with a parallel plan (the Hugging Face generate loop "
                         "is modelled on one GPU)")
    table = {}
    priced = plan.tp if plan.ep > 1 else 1          # ranks whose kernels differ
    stages = [[parts[plan.device(s, r)] for r in range(priced)] for s in range(plan.pp)]
    work = [[rank_work(g, attention) for g in ranks] for ranks in stages]
    resident = max(resident_bytes(p) for p in parts)
    for name in gpus:
        gpu = load_arch(name)
        link = load_link(gpu.link)
        stage_s, busy_s, busy_j, link_j = [], 0.0, 0.0, 0.0
        for s, stage_work in enumerate(work):
            rank_s = []
            for kernels, collectives in stage_work:
                base = gpu_baseline(kernels, gpu, mode)
                busy_s += plan.tp // priced * microbatches * base.time_s
                busy_j += plan.tp // priced * microbatches * base.energy_j
                costs = [collective_cost(link, kind, nbytes, group)
                         for kind, nbytes, group in collectives]
                if s < plan.pp - 1:
                    hidden = stages[s][0].outputs[0]
                    costs.append(collective_cost(link, "send_recv",
                                                 stages[s][0][hidden].type.numel * HALF_BYTES, 2))
                rank_s.append(base.time_s + sum(c.seconds for c in costs))
                link_j += plan.tp // priced * microbatches * sum(c.energy_j for c in costs)
            stage_s.append(max(rank_s))
        total_s = float(pipeline_schedule(stage_s, microbatches).makespan_s)
        total_j = busy_j + link_j + gpu.idle_w * max(0.0, plan.devices * total_s - busy_s)
        table[gpu.name] = GpuComparison(
            mode=mode, time_s=total_s, energy_j=total_j,
            avg_power_w=total_j / total_s / plan.devices,
            speedup=total_s / time_s if time_s else None,
            energy_efficiency=total_j / energy_j if energy_j else None,
            memory_note=_memory_note(gpu, resident), attention=attention)
    return table


def resident_bytes(graph: Graph) -> int:
    """What must sit in GPU memory for one pass, in fp16: every parameter (all experts of a
    mixture-of-experts model, routed to or not) and every input (tokens, KV caches)."""
    return sum(op.type.numel * min(op.type.dtype.itemsize, HALF_BYTES)
               for op in graph.ops if op.kind.is_source)


def _memory_note(gpu: GpuArch, resident: int, width: str = "in fp16") -> str:
    """One line when the model does not fit: the time shown is the roofline's, on a GPU that
    would have to hold it (a real one would need several, or offloading, which we do not model)."""
    if resident <= gpu.mem_gb * 2**30:          # a datasheet's "80 GB" of HBM is 80 GiB
        return ""
    return (f"{gpu.name} holds {gpu.mem_gb:g} GiB; the weights and inputs need "
            f"{resident / 2**30:.3g} GiB {width}: its figures assume they fit "
            "(no offloading or multi-GPU model)")
