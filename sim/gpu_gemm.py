"""A GEMM kernel-time model built from the mechanisms of a tiled tensor-core kernel (issue 21).

Not wired into the baseline yet: `sim.gpu` still prices GEMMs with its smooth efficiency curve.
This model is the candidate to replace it; tools/gpu_gemm_fit.py fits its parameters to Vidur's
per-operator measurements and docs/validation.md reports its fit and held-out errors.

A GEMM (m x k) @ (k x n) runs as one kernel that cuts C into tiles of tile_m x tile_n, one
thread block (CTA) each, and walks K in steps of TILE_K. Candidates, for every tile shape:

    data-parallel, split s in SPLITS (s = 1: no split; s > 1: split-K)
        tiles   = ceil(m / tile_m) x ceil(n / tile_n)          tile quantisation along M and N
        waves   = ceil(tiles x s / SMs)                         the last partial wave paid in full
        compute = waves x 2 tile_m tile_n (k_s + k_half) / rate_sm,   k_s = ceil(k / (s TILE_K)) TILE_K
        t       = max(compute, memory) + [s > 1] (splitk_us + 2 s m n 4 B / (mem_frac x BW))
    stream-K (Osama et al., PPoPP 2023: the K iterations of all tiles spread evenly over the SMs)
        compute = 2 tile_m tile_n (ceil(tiles x ceil(k / TILE_K) / SMs) TILE_K
                                   + (ceil(tiles / SMs) + 1) k_half) / rate_sm + streamk_us
        t       = max(compute, memory)
    rate_sm = min(clock_frac x peak / SMs,                      sustained clock under load
                  operand_tbps / SMs x 2 tile_m tile_n / ((tile_m + tile_n) dtype_bytes))
    memory  = dtype_bytes (mk + kn + mn) / (mem_frac x BW)
    time    = max(min over candidates of t + ramp_us, floor_us)

k_s / (k_s + k_half) is the efficiency of a tile's inner loop: k_half is its prologue and
epilogue (fill the pipeline, write C) in units of K. The operand term is the bandwidth that feeds
the tensor cores from L2 and shared memory: a tile does 2 tile_m tile_n FLOPs per
(tile_m + tile_n) operand elements, so smaller tiles need more bandwidth per FLOP ("larger tiles
have more data reuse", NVIDIA's Matrix Multiplication Background User's Guide). Split-K partials
are fp32, written and read back once.

The minimum over candidates is an oracle: it assumes the library picks the fastest configuration,
as cuBLAS's heuristic tries to. Where the heuristic picks a slower kernel the model is too fast,
never too slow, by that choice; docs/validation.md counts those points.

Assumed, not measured: one CTA resident per SM (the guide's A100 example: 256x128 tiles, one
per SM, a wave of 108); the tile set and TILE_K below; fp32 split-K partials. Every parameter of
`GemmParams` is fitted per GPU; the datasheet numbers (SMs, FP16 dense peak, bandwidth) come from
the arch presets (arch/configs/gpu-*.toml, reference/gpu.md). Validated for fp16/bf16 only: the
rate is the preset's FP16 dense peak whatever dtype_bytes says.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from arch.gpu import GpuArch

__all__ = ["TILE_SHAPES", "SPLITS", "TILE_K", "PARTIAL_BYTES", "Config", "CONFIGS", "GemmParams",
           "GemmTime", "ParamsError", "config_times_s", "gemm_time_s", "gemm_kernel",
           "datasheet_floor_s", "load_params"]

# Thread-block tiles (tile_m, tile_n): cuBLAS tile sizes from 256x128 down to 64x64, as NVIDIA's
# "Matrix Multiplication Background User's Guide" (DU-09799-001, section 2.3, "Typical tile
# dimensions in cuBLAS and performance") compares them, and CUTLASS's Ampere FP16 tensor-op
# threadblock shapes. 256x64 and 64x256 are left out: adding them did not change the fit.
TILE_SHAPES = ((256, 128), (128, 256), (128, 128), (128, 64), (64, 128), (64, 64))
SPLITS = (1, 2, 4, 8, 16)      # split-K factors tried (1 = no split); assumption: powers of two
TILE_K = 32                    # K step of one main-loop iteration (CUTLASS sm80 FP16 tiles: 32 or 64)
PARTIAL_BYTES = 4              # split-K partial sums are fp32 (cuBLAS/CUTLASS accumulate in fp32)


class ParamsError(ValueError):
    """Bad GEMM-model parameters; the message names the field (and the file) at fault."""


@dataclass(frozen=True, slots=True)
class Config:
    """One way to run the kernel: a tile shape, and a split-K factor or stream-K."""

    tile_m: int
    tile_n: int
    split: int = 1
    stream_k: bool = False

    def __str__(self) -> str:
        scheme = "stream-K" if self.stream_k else f"split-K {self.split}" if self.split > 1 else "no split"
        return f"{self.tile_m}x{self.tile_n}, {scheme}"


CONFIGS = tuple(c for tm, tn in TILE_SHAPES
                for c in (*(Config(tm, tn, s) for s in SPLITS), Config(tm, tn, 1, True)))


@dataclass(frozen=True, slots=True)
class GemmParams:
    """The fitted half of the model for one GPU (tools/gpu_gemm_fit.py)."""

    clock_frac: float     # sustained tensor rate under load / the datasheet FP16 dense rate
    k_half: float         # a tile's fixed cost (prologue, epilogue) in elements of K
    operand_tbps: float   # L2 + shared-memory bandwidth feeding the tensor cores, whole GPU
    mem_frac: float       # achieved / datasheet DRAM bandwidth for operands and result
    ramp_us: float        # fixed time of one kernel (first tile's start, last tile's drain)
    floor_us: float       # no kernel is shorter
    splitk_us: float      # fixed cost of a split-K reduction (besides its partials' bytes)
    streamk_us: float     # fixed cost of stream-K's fix-up; a large value: not used on this GPU

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParamsError(f"GemmParams.{f.name} must be a finite number, got {value!r}")
        for name in ("clock_frac", "mem_frac"):
            if not 0 < getattr(self, name) <= 1:
                raise ParamsError(f"GemmParams.{name} must be above 0 and at most 1, "
                                  f"got {getattr(self, name)!r}")
        if self.operand_tbps <= 0:
            raise ParamsError(f"GemmParams.operand_tbps must be positive, got {self.operand_tbps!r}")
        for name in ("k_half", "ramp_us", "floor_us", "splitk_us", "streamk_us"):
            if getattr(self, name) < 0:
                raise ParamsError(f"GemmParams.{name} must be non-negative, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class GemmTime:
    """One GEMM's modelled kernel time and the configuration the oracle picked."""

    time_s: float
    config: Config
    waves: int            # of the picked configuration (stream-K: ceil(tiles / SMs))
    bound: str            # "compute", "memory" or "floor"


def _shape(m, n, k, dtype_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (m, n, k)))
    for name, a in zip("mnk", arrays):
        if not (np.all(a >= 1) and np.all(a == np.floor(a))):
            raise ValueError(f"GEMM {name} must be positive integers, got {a.ravel()[:4].tolist()}")
    if dtype_bytes not in (1, 2, 4):
        raise ValueError(f"dtype_bytes must be 1, 2 or 4, got {dtype_bytes!r}")
    return arrays


def _memory_s(m, n, k, gpu: GpuArch, p: GemmParams, dtype_bytes: int) -> np.ndarray:
    return dtype_bytes * (m * k + k * n + m * n) / (p.mem_frac * gpu.mem_bw_bytes_per_s)


def _rate_sm(c: Config, gpu: GpuArch, p: GemmParams, dtype_bytes: int) -> float:
    """FLOP/s of one SM running a tile of `c`: the sustained clock, or the operand bandwidth."""
    flops_per_byte = 2 * c.tile_m * c.tile_n / ((c.tile_m + c.tile_n) * dtype_bytes)
    return min(p.clock_frac * gpu.peak_flops_per_s("gemm"), p.operand_tbps * 1e12 * flops_per_byte) / gpu.sms


def _waves(c: Config, tiles: np.ndarray, sms: int) -> np.ndarray:
    return np.ceil(tiles / sms) if c.stream_k else np.ceil(tiles * c.split / sms)


def _terms(m, n, k, gpu: GpuArch, p: GemmParams, dtype_bytes: int):
    """Per configuration (axis 0): its compute time, including a split-K reduction or the
    stream-K fix-up, and the memory time they overlap with."""
    memory = _memory_s(m, n, k, gpu, p, dtype_bytes)
    compute = np.empty((len(CONFIGS), *m.shape))
    for i, c in enumerate(CONFIGS):
        tiles = np.ceil(m / c.tile_m) * np.ceil(n / c.tile_n)
        s_per_k = 2 * c.tile_m * c.tile_n / _rate_sm(c, gpu, p, dtype_bytes)   # one tile, per unit of K
        if c.stream_k:
            depth = (np.ceil(tiles * np.ceil(k / TILE_K) / gpu.sms) * TILE_K
                     + (np.ceil(tiles / gpu.sms) + 1) * p.k_half)
            compute[i] = depth * s_per_k + p.streamk_us * 1e-6
        else:
            k_split = np.ceil(k / (c.split * TILE_K)) * TILE_K
            compute[i] = _waves(c, tiles, gpu.sms) * (k_split + p.k_half) * s_per_k
    return compute, memory


def _reduce_s(m, n, gpu: GpuArch, p: GemmParams) -> np.ndarray:
    """Split-K's reduction per configuration (axis 0), after the split kernel: fp32 partials
    written and read back, plus a fixed cost."""
    return np.stack([np.zeros_like(m) if c.split == 1 else
                     p.splitk_us * 1e-6 + 2 * c.split * m * n * PARTIAL_BYTES / (p.mem_frac * gpu.mem_bw_bytes_per_s)
                     for c in CONFIGS])


def config_times_s(m, n, k, gpu: GpuArch, p: GemmParams, dtype_bytes: int = 2) -> np.ndarray:
    """Time of every configuration in CONFIGS (axis 0), before the ramp and the floor."""
    m, n, k = _shape(m, n, k, dtype_bytes)
    compute, memory = _terms(m, n, k, gpu, p, dtype_bytes)
    return np.maximum(compute, memory) + _reduce_s(m, n, gpu, p)


def gemm_time_s(m, n, k, gpu: GpuArch, p: GemmParams, dtype_bytes: int = 2) -> np.ndarray:
    """Kernel time in seconds (device time: no launch overhead) of GEMMs m x k . k x n;
    m, n, k broadcast like numpy arrays."""
    best = config_times_s(m, n, k, gpu, p, dtype_bytes).min(axis=0)
    return np.maximum(best + p.ramp_us * 1e-6, p.floor_us * 1e-6)


def gemm_kernel(m: int, n: int, k: int, gpu: GpuArch, p: GemmParams, dtype_bytes: int = 2) -> GemmTime:
    """One GEMM's time with the configuration that gives it and what bounds it."""
    m_, n_, k_ = _shape(m, n, k, dtype_bytes)
    compute, memory = _terms(m_, n_, k_, gpu, p, dtype_bytes)
    times = np.maximum(compute, memory) + _reduce_s(m_, n_, gpu, p)
    i = int(np.argmin(times))
    c = CONFIGS[i]
    time_s = float(max(times[i] + p.ramp_us * 1e-6, p.floor_us * 1e-6))
    bound = ("floor" if time_s == p.floor_us * 1e-6 else "compute" if compute[i] > memory else "memory")
    tiles = math.ceil(m / c.tile_m) * math.ceil(n / c.tile_n)
    return GemmTime(time_s, c, int(_waves(c, tiles, gpu.sms)), bound)


def datasheet_floor_s(m, n, k, gpu: GpuArch, dtype_bytes: int = 2) -> np.ndarray:
    """No GEMM beats max(flops / FP16 dense peak, bytes / datasheet bandwidth)."""
    m, n, k = _shape(m, n, k, dtype_bytes)
    return np.maximum(2 * m * n * k / gpu.peak_flops_per_s("gemm"),
                      dtype_bytes * (m * k + k * n + m * n) / gpu.mem_bw_bytes_per_s)


def load_params(path: str | Path) -> dict[str, GemmParams]:
    """The fitted parameters per GPU preset from tools/gpu_gemm_fit.py's JSON; errors name the
    file and the field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ParamsError(f"{path}: cannot read ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ParamsError(f"{path}: not a JSON file ({e})") from None
    gpus = data.get("params") if isinstance(data, dict) else None
    if not isinstance(gpus, dict) or not gpus:
        raise ParamsError(f"{path}: field 'params' must be a table of GPU presets, got {gpus!r}")
    names = [f.name for f in fields(GemmParams)]
    out = {}
    for gpu, table in gpus.items():
        if not isinstance(table, dict) or sorted(table) != sorted(names):
            got = sorted(table) if isinstance(table, dict) else table
            raise ParamsError(f"{path}: field 'params.{gpu}' must have exactly the fields "
                              f"{', '.join(names)}, got {got!r}")
        try:
            out[gpu] = GemmParams(**table)
        except ParamsError as e:
            raise ParamsError(f"{path}: params.{gpu}: {e}") from None
    return out
