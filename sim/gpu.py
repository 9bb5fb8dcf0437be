"""GPU baseline: a per-kernel roofline with calibrated efficiencies and fixed overheads.

    time = max(flops / (eff_compute(m, n, k) x peak), bytes / (eff_bw(bytes) x BW))
           + overhead(mode, kind)

A preset with a `tiled_gemm` table (the A100s, H100, H200) prices its GEMM, GEMV and
attention-matmul kernels by tile and wave quantisation instead (sim/gpu_gemm.py, fitted to
Vidur's per-operator measurements); the curve eff_compute serves the other presets.

A vector kind the preset lists in `vector_frac` streams at its own measured rate and ramp (the
Llama-family RMSNorm, RoPE and SiLU-gate: tools/gpu_vector_fit.py); a fused attention kernel
computes at the preset's FlashAttention rate (`fused_attention`, tessel sim --gpu-attention).
eager: a PyTorch-style framework pays a per-operator fixed cost (LLMCompass's A100 constants);
graph: a compiled runtime or CUDA graph pays one launch per kernel; hf: the operators a Hugging
Face eager generate step runs (tessel/gpu_hf.py), each at its eager cost. A quantised kernel
(tessel/gpu_quant.py) multiplies at its format's tensor-core rate (`GpuArch.tensor_tops`) on
the same efficiency curve, its dequantisation instructions added to the compute term.
Energy: each kernel draws idle + (TDP - idle) x utilization, utilization being the fraction
of its binding roofline (at its format's peak) it achieves. The model reads plain `Kernel` descriptors, never a compiler graph
(tessel.gpu_kernels builds them); constants live in the presets, arch/configs/gpu-*.toml.
Cited measurements it is held to: `CALIBRATION` (tests/sim/test_gpu.py, docs/validation.md).
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from arch.config import ArchError
from arch.gpu import KERNEL_KINDS, MATRIX_KINDS, TENSOR_FORMATS, GpuArch, MemoryEfficiency
from sim.gpu_gemm import OPERAND_BYTES, kernel_terms

__all__ = ["Kernel", "KernelTime", "GpuResult", "gpu_baseline", "kernel_time", "floor_s",
           "compute_efficiency", "memory_time_s", "peak_ops_per_s", "dequant_s", "MODES",
           "MMA_FORMATS", "CALIBRATION",
           "CALIBRATION_TOLERANCE", "CalibrationPoint", "Measured", "MeasuredKernel",
           "CalibrationError", "load_calibration", "calibrate"]

Mode = Literal["eager", "graph", "hf"]
# hf: Hugging Face eager generate (tessel/gpu_hf.py's operator lists) at the eager costs
MODES = ("eager", "graph", "hf")
MMA_FORMATS = ("fp16", *TENSOR_FORMATS)     # what a matrix kernel's MACs run at
FLOPS_PER_FMA = 2       # peak_tflops_fp32 = lanes x clock x 2: one fused multiply-add is 2 FLOPs
TILED_KINDS = ("gemm", "gemv", "attention-matmul")   # priced by sim/gpu_gemm.py where fitted


@dataclass(frozen=True, slots=True)
class Kernel:
    """One GPU kernel: its work, and for matrix kinds the per-batch GEMM shape m x k . k x n.
    `mma`: the tensor-core format its MACs run at (fp16, or a low-precision TENSOR_FORMATS key);
    `dequant_ops`: CUDA-core instructions it adds to unpack, convert or rescale narrow operands."""

    name: str
    kind: str
    flops: int
    bytes: int
    m: int = 1
    n: int = 1
    k: int = 1
    batch: int = 1
    mma: str = "fp16"
    dequant_ops: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KERNEL_KINDS:
            raise ValueError(f"kernel '{self.name}': kind must be one of "
                             f"{', '.join(KERNEL_KINDS)}, got {self.kind!r}")
        if self.mma not in MMA_FORMATS or self.mma != "fp16" and self.kind not in MATRIX_KINDS:
            raise ValueError(f"kernel '{self.name}': mma must be fp16, or one of "
                             f"{', '.join(TENSOR_FORMATS)} for a matrix kind, got {self.mma!r} "
                             f"({self.kind})")
        for field in ("flops", "bytes", "dequant_ops"):
            if getattr(self, field) < 0:
                raise ValueError(f"kernel '{self.name}': {field} must be non-negative, "
                                 f"got {getattr(self, field)}")
        for field in ("m", "n", "k", "batch"):
            if getattr(self, field) < 1:
                raise ValueError(f"kernel '{self.name}': {field} must be positive, "
                                 f"got {getattr(self, field)}")


@dataclass(frozen=True, slots=True)
class KernelTime:
    name: str
    kind: str
    time_s: float
    compute_s: float          # flops at the shape's achievable rate
    memory_s: float           # bytes at the achievable bandwidth, plus the ramp
    overhead_s: float
    bound: str                # "compute" or "memory": the larger of the two terms
    utilization: float        # datasheet floor / time
    energy_j: float


@dataclass(frozen=True)
class GpuResult:
    gpu: str
    mode: str
    time_s: float
    energy_j: float
    kernels: tuple[KernelTime, ...]
    assumptions: tuple[str, ...]

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.time_s if self.time_s else 0.0

    @property
    def compute_bound(self) -> int:
        return sum(k.bound == "compute" for k in self.kernels)

    @property
    def memory_bound(self) -> int:
        return sum(k.bound == "memory" for k in self.kernels)

    def to_json(self) -> dict:
        return {"gpu": self.gpu, "mode": self.mode, "time_s": self.time_s,
                "energy_j": self.energy_j, "avg_power_w": self.avg_power_w,
                "compute_bound": self.compute_bound, "memory_bound": self.memory_bound,
                "kernels": [asdict(k) for k in self.kernels],
                "assumptions": list(self.assumptions)}


def compute_efficiency(kernel: Kernel, gpu: GpuArch) -> float:
    """Fraction of peak FLOP/s: saturating in each GEMM dimension; a fused attention at its
    preset's FlashAttention rate, saturating in the query rows sharing a KV head (m); vector
    kernels get the asymptote (they are bandwidth-bound long before it matters)."""
    g = gpu.gemm
    if kernel.kind == "attention":
        return gpu.fused_attention.max_frac * kernel.m / (kernel.m + g.m_half)
    if kernel.kind not in MATRIX_KINDS:
        return g.max_frac
    return (g.max_frac * kernel.m / (kernel.m + g.m_half) * kernel.n / (kernel.n + g.nk_half)
            * kernel.k / (kernel.k + g.nk_half))


def memory_time_s(n_bytes: int, gpu: GpuArch, kind: str = "") -> float:
    """Bytes at the streaming efficiency plus the fixed ramp of a kernel (eff_bw(bytes)): the
    kind's own (`GpuArch.vector_frac`, `vector_ramp_us`) where the preset measured it."""
    if kind in gpu.vector_frac:
        frac, ramp_us = gpu.vector_frac[kind], gpu.vector_ramp_us[kind]
    else:
        frac, ramp_us = gpu.memory.max_frac, gpu.memory.ramp_us
    return n_bytes / (frac * gpu.mem_bw_bytes_per_s) + ramp_us * 1e-6


def peak_ops_per_s(gpu: GpuArch, kind: str, mma: str = "fp16", who: str = "") -> float:
    """The datasheet rate a kernel's work runs at: by kind (FP16 tensor or FP32 vector), or
    the low-precision tensor-core rate of `mma`; one the preset lacks is refused naming `who`."""
    if mma == "fp16":
        return gpu.peak_flops_per_s(kind)
    if mma not in gpu.tensor_tops:
        rates = ", ".join(gpu.tensor_tops) or "none"
        raise ArchError(f"{gpu.name}: {who or 'a kernel'} multiplies in {mma} on the tensor cores, "
                        f"but the preset has no field 'tensor_tops.{mma}' (its low-precision "
                        f"rates: {rates})")
    return gpu.tensor_tops[mma] * 1e12


def _peak(kernel: Kernel, gpu: GpuArch) -> float:
    return peak_ops_per_s(gpu, kernel.kind, kernel.mma, f"kernel '{kernel.name}'")


def dequant_s(kernel: Kernel, gpu: GpuArch) -> float:
    """The kernel's dequantisation instructions at the CUDA cores' full issue rate (one per
    FP32 lane per cycle), in series with its tensor-core work."""
    return kernel.dequant_ops * FLOPS_PER_FMA / gpu.peak_flops_per_s("elementwise")


def floor_s(kernel: Kernel, gpu: GpuArch) -> float:
    """The datasheet floor: no kernel beats max(flops / peak, bytes / BW), peak being its
    format's tensor-core rate."""
    return max(kernel.flops / _peak(kernel, gpu), kernel.bytes / gpu.mem_bw_bytes_per_s)


def overhead_s(kind: str, mode: Mode, gpu: GpuArch) -> float:
    table = gpu.eager_overhead_us if mode in ("eager", "hf") else gpu.graph_overhead_us
    return table[kind] * 1e-6


def device_terms(kernel: Kernel, gpu: GpuArch) -> tuple[float, float]:
    """(compute, memory) seconds of the kernel on the device: a GEMM, GEMV or attention matmul
    by tile and wave quantisation where the preset has `tiled_gemm` (sim/gpu_gemm.py), else by
    the efficiency curve and the streaming bandwidth."""
    if _tiled(kernel, gpu):
        compute, memory = kernel_terms(kernel.m, kernel.n, kernel.k, kernel.batch, kernel.bytes,
                                       _peak(kernel, gpu), OPERAND_BYTES[kernel.mma], gpu, gpu.tiled_gemm)
    else:
        compute = kernel.flops / (compute_efficiency(kernel, gpu) * _peak(kernel, gpu))
        memory = memory_time_s(kernel.bytes, gpu, kernel.kind)
    return compute + (dequant_s(kernel, gpu) if kernel.dequant_ops else 0.0), memory


def kernel_time(kernel: Kernel, gpu: GpuArch, mode: Mode) -> KernelTime:
    compute, memory = device_terms(kernel, gpu)
    overhead = overhead_s(kernel.kind, mode, gpu)
    time = max(compute, memory) + overhead
    utilization = floor_s(kernel, gpu) / time
    power_w = min(gpu.tdp_w, gpu.idle_w + (gpu.tdp_w - gpu.idle_w) * utilization)
    return KernelTime(kernel.name, kernel.kind, time, compute, memory, overhead,
                      "compute" if compute >= memory else "memory", utilization, power_w * time)


def gpu_baseline(kernels: Iterable[Kernel], gpu: GpuArch, mode: Mode = "graph") -> GpuResult:
    """Time and energy of running `kernels` one after another on `gpu`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    kernels = tuple(kernels)
    times = tuple(kernel_time(k, gpu, mode) for k in kernels)
    return GpuResult(gpu.name, mode, sum(t.time_s for t in times),
                     sum(t.energy_j for t in times), times,
                     assumptions(gpu, mode, sorted({k.mma for k in kernels} - {"fp16"}),
                                 any(k.dequant_ops for k in kernels),
                                 any(k.kind == "attention" for k in kernels)))


def assumptions(gpu: GpuArch, mode: Mode, formats: Iterable[str] = (),
                dequantised: bool = False, fused: bool = False) -> tuple[str, ...]:
    fixed = (f"eager per-operator costs (us) {gpu.eager_overhead_us}" if mode in ("eager", "hf")
             else f"launch per kernel (us) {gpu.graph_overhead_us}")
    narrow = [f"{f} GEMMs at {gpu.tensor_tops[f]} TOPS dense, same GEMM model" for f in formats]
    narrow += ["dequantisation: CUDA-core instructions at the FP32 lanes' issue rate, in series "
               "with the tensor cores"] if dequantised else []
    own = [f"{k} at {gpu.vector_frac[k]} of BW + {gpu.vector_ramp_us[k]} us" for k in gpu.vector_frac]
    return (f"{gpu.name}: {gpu.peak_tflops_fp16} TFLOP/s fp16 dense, {gpu.mem_bw_gbps} GB/s",
            ("Hugging Face eager generate: transformers' operators one at a time (tessel/gpu_hf.py), "
             "in fp16 (fp32 where it upcasts)" if mode == "hf" else
             "kernels run one at a time, in fp16/bf16, unfused but for SiLU-gate")
            + (" and attention (FlashAttention-style, at "
               f"{gpu.fused_attention.max_frac} of the tensor peak x m/(m+{gpu.gemm.m_half}))"
               if fused else "")
            + (" except where a recipe narrows them" if narrow else ""), *narrow,
            _gemm_assumption(gpu),
            f"bandwidth efficiency {gpu.memory.max_frac}, {gpu.memory.ramp_us} us ramp per kernel"
            + (f"; by kind: {', '.join(own)}" if own else ""),
            fixed,
            f"power idle {gpu.idle_w} W + (TDP {gpu.tdp_w} W - idle) x utilization")


def _gemm_assumption(gpu: GpuArch) -> str:
    t = gpu.tiled_gemm
    if t is None:
        return (f"GEMM efficiency {gpu.gemm.max_frac} x m/(m+{gpu.gemm.m_half}) x "
                f"n/(n+{gpu.gemm.nk_half}) x k/(k+{gpu.gemm.nk_half})")
    return (f"GEMMs by tile and wave quantisation (sim/gpu_gemm.py, fitted to Vidur's measurements): "
            f"sustained {t.clock_frac} of peak, operands at {t.operand_tbps} TB/s, {t.mem_frac} of BW, "
            f"{t.ramp_us} us ramp, {t.floor_us} us floor per kernel")


# --- cited measurements the model is held to (reference/gpu.md) ------------------------------

@dataclass(frozen=True, slots=True)
class CalibrationPoint:
    """One cited measurement: a workload on a preset, timed as `mode` ("eager", "graph", "hf",
    or "device" = kernel time without host overhead), measured as a time or a [lo, hi] range.
    Workloads: ("gemm", m, n, k), ("copy", bytes), ("decode", model, kv),
    ("generation", model, prompt, new_tokens); () when the source names no workload."""

    key: str
    what: str
    gpu: str
    mode: str
    workload: tuple
    measured_s: tuple[float, float]
    source: str
    known_miss: str = ""

    def error(self, predicted_s: float) -> float:
        """Relative error against the measurement (0 inside a measured range)."""
        lo, hi = self.measured_s
        return min(0.0, predicted_s / lo - 1) if predicted_s < lo else max(0.0, predicted_s / hi - 1)


def _gemm_s(m: int, n: int, k: int, tflops: float) -> float:
    return 2 * m * n * k / (tflops * 1e12)


def _at(seconds: float) -> tuple[float, float]:
    return (seconds, seconds)


_LLMC = "LLMCompass artifact, real-hardware CSVs (reference/gpu.md)"
_FT = "FasterTransformer, A100-80GB, FP16, batch 1 (reference/gpu.md)"
_A100, _H100, _H200 = "gpu-a100-80gb", "gpu-h100-sxm", "gpu-h200"
_GEMV_BYTES = 2 * (12288 + 12288 * 12288 + 12288)            # fp16 x, W, y of 1x12288x12288
_GPT2_FLOOR_S = {"gpu-a100-80gb": 0.12e-3, "gpu-t4": 0.78e-3}  # 248 MB of fp16 weights / BW
CALIBRATION_TOLERANCE = 0.25     # |error| a point must meet unless it is a listed known miss
CALIBRATION: tuple[CalibrationPoint, ...] = (
    CalibrationPoint("a100-gemm-m64", "A100 FP16 GEMM 64x12288x12288", _A100, "eager",
                     ("gemm", 64, 12288, 12288), _at(0.190e-3), _LLMC),
    *(CalibrationPoint(f"a100-gemm-m{m}", f"A100 FP16 GEMM {m}x12288x12288 ({t} TFLOP/s)", _A100,
                       "eager", ("gemm", m, 12288, 12288), _at(_gemm_s(m, 12288, 12288, t)), _LLMC)
      for m, t in ((128, 193), (512, 253), (8192, 287))),
    *(CalibrationPoint(f"a100-gemm-{m}x{n}x{k}", f"A100 FP16 GEMM {m}x{n}x{k} ({t} TFLOP/s)", _A100,
                       "eager", ("gemm", m, n, k), _at(_gemm_s(m, n, k, t)), _LLMC)
      for m, n, k, t in ((8192, 8192, 8192, 277.6), (16384, 16384, 16384, 293),
                         (8192, 128, 128, 8.7))),
    CalibrationPoint("h200-gemm-8192", "H200 BF16 GEMM 8192^3 (770-800 TFLOP/s)", _H200, "device",
                     ("gemm", 8192, 8192, 8192),
                     (_gemm_s(8192, 8192, 8192, 800), _gemm_s(8192, 8192, 8192, 770)),
                     "PyTorch on an H200 (reference/gpu.md)"),
    CalibrationPoint("h200-copy", "H200 device copy of 1 GiB (4.3 TB/s read + write)", _H200,
                     "device", ("copy", 2 * 2**30), _at(2 * 2**30 / 4.3e12),
                     "PyTorch on an H200 (reference/gpu.md); 1 GiB is our assumption"),
    CalibrationPoint("h100-gemv-stream", "H100 weight streaming, GEMV 1x12288x12288 (78-84 % BW)",
                     _H100, "device", ("gemm", 1, 12288, 12288),
                     (_GEMV_BYTES / 3.35e12 / 0.84, _GEMV_BYTES / 3.35e12 / 0.78),
                     "per-kernel weight streaming on H100 (reference/gpu.md); shape assumed"),
    *(CalibrationPoint(f"ft-{model}-{p}-{n}", f"FT {model.upper()} in {p} / out {n}", _A100,
                       "graph", ("generation", model, p, n), _at(ms * 1e-3), _FT)
      for model, p, n, ms in (("gpt-1.3b", 128, 8, 36.76), ("gpt-1.3b", 512, 32, 135.85),
                              ("gpt-6.7b", 128, 8, 98.29), ("gpt-6.7b", 512, 32, 384.70),
                              ("gpt-20b", 80, 200, 5609))),
    CalibrationPoint("ft-gpt-1.3b-token", "FT GPT-1.3B decode per token (~30 % of BW), KV 128", _A100,
                     "graph", ("decode", "gpt-1.3b", 128), _at(2 * 1.3e9 / (0.30 * 2039e9)), _FT),
    CalibrationPoint("ft-gpt-20b-token", "FT GPT-20B decode per token (~28 ms), KV 180", _A100, "graph",
                     ("decode", "gpt-20b", 180), _at(28e-3), _FT),
    CalibrationPoint("hf-gpt2-v100", "HF GPT-2 124M greedy decode per token, V100, KV 128", "gpu-v100",
                     "hf", ("decode", "gpt2", 128), _at(78.04 / 6400),
                     "Hugging Face transformers, batch 1 (reference/gpu.md); priced as HF's own "
                     "operators, 26 per block and a generate step (tessel/gpu_hf.py)"),
    *(CalibrationPoint(f"gpt2-floor-{gpu[4:]}", f"GPT-2 124M eager decode, 10-100x the "
                       f"{floor * 1e3:.2f} ms floor, {gpu[4:].upper()}", gpu, "eager",
                       ("decode", "gpt2", 128), (10 * floor, 100 * floor), "reference/gpu.md")
      for gpu, floor in _GPT2_FLOOR_S.items()),
    CalibrationPoint("kernel-looping-21pct", "decode uses ~21 % of peak BW end to end",
                     "unspecified", "graph", (), (0.0, 0.0), "kernel looping paper (reference/gpu.md)",
                     known_miss="the reference names no model, GPU or batch to evaluate"),
)


# --- measured calibration files (baselines/measure_gpu.py) -----------------------------------

HOST_BOUND_RATIO = 2.0   # an eager call at 2x its CUDA-graph time is paced by the host


class CalibrationError(ValueError):
    """A malformed calibration JSON; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class MeasuredKernel:
    kernel: Kernel
    eager_us: float        # per call, eager PyTorch loop
    graph_us: float        # per kernel, replayed in a CUDA graph


@dataclass(frozen=True)
class Measured:
    """One run of baselines/measure_gpu.py on one GPU."""

    date: str
    gpu_name: str
    torch_version: str
    kernels: tuple[MeasuredKernel, ...]
    tokens_ms: dict[str, float]       # per-token latencies, e.g. "gpt2-decode-kv128-graph"


def _finite(value: int | float) -> bool:
    """A number a float64 holds finitely (not NaN, not an infinity, not a 400-digit int)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def load_calibration(path: str | Path) -> Measured:
    """Read and validate a calibration JSON; errors name the file and the field."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as e:
        raise CalibrationError(f"{path}: cannot read calibration JSON ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise CalibrationError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise CalibrationError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None

    def get(table: Any, key: str, where: str, kind: type | tuple) -> Any:
        value = table.get(key) if isinstance(table, dict) else None
        numeric = kind in (float, int)
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and _finite(value) and value >= 0      # JSON's Infinity and NaN parse
              and (value > 0 or key in ("flops", "bytes"))) if numeric else isinstance(value, kind)
        if not ok:
            expected = {str: "a string", dict: "a table", list: "a list"}.get(kind, "a positive number")
            raise CalibrationError(f"{path}: field '{where}{key}' must be {expected}, got {value!r}")
        return value

    kernels = []
    for i, row in enumerate(get(data, "kernels", "", list)):
        where = f"kernels[{i}]."
        try:
            kernel = Kernel(get(row, "name", where, str), get(row, "kind", where, str),
                            *(int(get(row, f, where, int)) for f in ("flops", "bytes", "m", "n", "k", "batch")))
        except CalibrationError:
            raise
        except ValueError as e:                  # Kernel's own checks
            raise CalibrationError(f"{path}: {where.rstrip('.')}: {e}") from None
        kernels.append(MeasuredKernel(kernel, get(row, "eager_us", where, float),
                                      get(row, "graph_us", where, float)))
    tokens = get(data, "tokens_ms", "", dict)
    for key in tokens:
        get(tokens, key, "tokens_ms.", float)
    return Measured(get(data, "date", "", str), get(data, "gpu_name", "", str),
                    get(data, "torch_version", "", str), tuple(kernels), dict(tokens))


def calibrate(gpu: GpuArch, measured: Measured) -> GpuArch:
    """`gpu` with what the measurements pin down replaced, the rest kept from the preset:
    1. ramp: at most the fixed cost of a tiny vector kernel in a CUDA graph (their median);
    2. memory.max_frac: median over DRAM-bound transfers of at least 4x the L2;
    3. gemm.max_frac: median over compute-bound GEMMs with every dimension >= 1024 (the
       shape curve m_half, nk_half is kept);
    4. graph overhead per kind: CUDA-graph time minus modelled device time, median;
    5. eager overhead per kind: eager minus device time over host-bound calls, median.
    Steps 1 and 2 read the kinds that stream on `memory`; a kind with its own `vector_frac`
    keeps it. On a preset with `tiled_gemm` its matrix kernels tune that table's mem_frac and
    clock_frac instead (_calibrate_tiled), and steps 2 and 3 read the other kinds."""
    rows, l2_bytes, bw = measured.kernels, gpu.l2_mb * 2**20, gpu.mem_bw_bytes_per_s
    small = [r for r in rows if r.kernel.bytes < 4 * l2_bytes]
    tiny = [r.graph_us - r.kernel.bytes / (gpu.memory.max_frac * bw) * 1e6 for r in small
            if r.kernel.kind not in (*MATRIX_KINDS, *gpu.vector_frac) and r.kernel.bytes <= l2_bytes / 64]
    fixed_us = statistics.median(tiny) if tiny else None
    ramp_us = gpu.memory.ramp_us if fixed_us is None else min(gpu.memory.ramp_us, fixed_us)
    fixed_us = fixed_us or gpu.memory.ramp_us + statistics.median(gpu.graph_overhead_us.values())
    streams = [r.kernel.bytes / ((r.graph_us - fixed_us) * 1e-6 * bw) for r in rows
               if r.kernel.bytes >= 4 * l2_bytes and r.graph_us > fixed_us and not _tiled(r.kernel, gpu)
               and r.kernel.kind not in gpu.vector_frac and kernel_time(r.kernel, gpu, "graph").bound == "memory"]
    memory = MemoryEfficiency(min(1.0, statistics.median(streams)) if streams
                              else gpu.memory.max_frac, ramp_us)
    tuned = dataclasses.replace(gpu, memory=memory)
    launch_us = fixed_us - ramp_us
    if gpu.tiled_gemm is not None:
        tuned = _calibrate_tiled(tuned, rows, launch_us)
    ratios = [r.kernel.flops / ((r.graph_us - launch_us) * 1e-6 * gpu.peak_flops_per_s("gemm"))
              / (compute_efficiency(r.kernel, tuned) / tuned.gemm.max_frac) for r in rows
              if r.kernel.kind == "gemm" and min(r.kernel.m, r.kernel.n, r.kernel.k) >= 1024
              and kernel_time(r.kernel, tuned, "graph").bound == "compute" and not _tiled(r.kernel, gpu)]
    if ratios:
        tuned = dataclasses.replace(tuned, gemm=dataclasses.replace(
            tuned.gemm, max_frac=min(1.0, statistics.median(ratios))))
    graph, eager = {}, {}
    for kind in KERNEL_KINDS:
        ours = [r for r in small if r.kernel.kind == kind]
        device_us = [_device_s(r.kernel, tuned) * 1e6 for r in ours]
        graph[kind] = max(0.0, statistics.median(r.graph_us - d for r, d in zip(ours, device_us))
                          if ours else launch_us)
        host_bound = [r.eager_us - d for r, d in zip(ours, device_us)
                      if r.eager_us > HOST_BOUND_RATIO * r.graph_us]
        eager[kind] = max(graph[kind], statistics.median(host_bound) if host_bound
                          else gpu.eager_overhead_us[kind])
    return dataclasses.replace(tuned, name=f"{gpu.name}@{measured.date}",
                               graph_overhead_us=graph, eager_overhead_us=eager)


def _tiled(kernel: Kernel, gpu: GpuArch) -> bool:
    return gpu.tiled_gemm is not None and kernel.kind in TILED_KINDS


def _calibrate_tiled(gpu: GpuArch, rows: Sequence[MeasuredKernel], launch_us: float) -> GpuArch:
    """A tiled preset's GEMM rates from the measured GEMMs, as calibrate's steps 2 and 3 do for the
    curve: mem_frac from memory-bound ones moving at least 4x the L2, clock_frac from
    compute-bound ones with every dimension >= 1024, each scaled by the median ratio of modelled to
    measured device time (less the ramp, which the model's terms both carry)."""
    p, ramp_us = gpu.tiled_gemm, gpu.tiled_gemm.ramp_us

    def ratio(bound: str, r: MeasuredKernel) -> float | None:
        compute, memory = device_terms(r.kernel, gpu)
        measured_us = r.graph_us - launch_us - ramp_us
        modelled_us = (compute if bound == "compute" else memory) * 1e6 - ramp_us
        if measured_us <= 0 or modelled_us <= 0 or (compute >= memory) != (bound == "compute"):
            return None
        return modelled_us / measured_us

    memory = [x for r in rows if _tiled(r.kernel, gpu) and r.kernel.bytes >= 4 * gpu.l2_mb * 2**20
              and (x := ratio("memory", r)) is not None]
    compute = [x for r in rows if _tiled(r.kernel, gpu) and min(r.kernel.m, r.kernel.n, r.kernel.k) >= 1024
               and (x := ratio("compute", r)) is not None]
    tuned = dataclasses.replace(
        p, mem_frac=min(1.0, p.mem_frac * statistics.median(memory)) if memory else p.mem_frac,
        clock_frac=min(1.0, p.clock_frac * statistics.median(compute)) if compute else p.clock_frac)
    return dataclasses.replace(gpu, tiled_gemm=tuned)


def _device_s(kernel: Kernel, gpu: GpuArch) -> float:
    timed = kernel_time(kernel, gpu, "graph")
    return timed.time_s - timed.overhead_s
