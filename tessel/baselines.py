"""GPU comparison columns for every simulation report.

The same graph the accelerator ran goes through the GPU baseline model (sim/gpu.py) for
each chosen GPU preset; the report shows the GPU's time and energy and the accelerator's
speedup (GPU time / accelerator time) and energy-efficiency ratio (GPU energy /
accelerator energy). A calibration JSON measured on a real GPU (baselines/measure_gpu.py)
adds a calibrated row for the preset it was measured on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from arch import ArchError, load_arch
from arch.gpu import GpuArch
from compiler.ir import Graph
from sim.gpu import calibrate, gpu_baseline, load_calibration
from sim.result import GpuComparison, SimResult
from arch.links import load_link
from sim.collectives import collective_cost
from tessel.gpu_kernels import HALF_BYTES, graph_kernels, rank_work

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
                 calibration: Path | None = None) -> dict[str, GpuComparison]:
    """Per GPU: time, energy, and the accelerator's speedup and energy efficiency against it."""
    archs = [load_arch(name) for name in gpus]
    if calibration is not None:
        archs.append(_calibrated(calibration))
    if not archs:
        return {}
    kernels = graph_kernels(graph)
    resident = resident_bytes(graph)
    table = {}
    for gpu in archs:
        base = gpu_baseline(kernels, gpu, mode)
        table[gpu.name] = GpuComparison(
            mode=mode, time_s=base.time_s, energy_j=base.energy_j, avg_power_w=base.avg_power_w,
            speedup=base.time_s / result.time_s if result.time_s else None,
            energy_efficiency=base.energy_j / result.energy_j if result.energy_j else None,
            memory_note=_memory_note(gpu, resident))
    return table


def compare_gpus_on_plan(parts: Sequence[Graph], devices: int, time_s: float, energy_j: float,
                         gpus: Sequence[str], mode: str = "graph") -> dict[str, GpuComparison]:
    """A tensor-parallel plan on a node of each GPU: each rank runs its own graph's kernels
    (the ranks' work is alike: rank 0's are priced) and every all-reduce as NCCL does on the
    GPU's link (`GpuArch.link`, sim/collectives.py), in the stream after the kernels before it
    (no overlap, as in a plain Megatron forward). Energy: every GPU's kernels, its idle power
    while the all-reduces run, and the bits on the links. `time_s`/`energy_j`: the node's."""
    table = {}
    kernels, collectives = rank_work(parts[0])
    resident = max(resident_bytes(p) for p in parts)
    for name in gpus:
        gpu = load_arch(name)
        link = load_link(gpu.link)
        base = gpu_baseline(kernels, gpu, mode)
        costs = [collective_cost(link, "all_reduce", nbytes, ranks) for nbytes, ranks in collectives]
        comm_s = sum(c.seconds for c in costs)
        total_s = base.time_s + comm_s
        total_j = devices * (base.energy_j + gpu.idle_w * comm_s) + sum(c.energy_j for c in costs)
        table[gpu.name] = GpuComparison(
            mode=mode, time_s=total_s, energy_j=total_j, avg_power_w=total_j / total_s / devices,
            speedup=total_s / time_s if time_s else None,
            energy_efficiency=total_j / energy_j if energy_j else None,
            memory_note=_memory_note(gpu, resident))
    return table


def resident_bytes(graph: Graph) -> int:
    """What must sit in GPU memory for one pass, in fp16: every parameter (all experts of a
    mixture-of-experts model, routed to or not) and every input (tokens, KV caches)."""
    return sum(op.type.numel * min(op.type.dtype.itemsize, HALF_BYTES)
               for op in graph.ops if op.kind.is_source)


def _memory_note(gpu: GpuArch, resident: int) -> str:
    """One line when the model does not fit: the time shown is the roofline's, on a GPU that
    would have to hold it (a real one would need several, or offloading, which we do not model)."""
    if resident <= gpu.mem_gb * 2**30:          # a datasheet's "80 GB" of HBM is 80 GiB
        return ""
    return (f"{gpu.name} holds {gpu.mem_gb:g} GiB; the weights and inputs need "
            f"{resident / 2**30:.3g} GiB in fp16: its figures assume they fit "
            "(no offloading or multi-GPU model)")
