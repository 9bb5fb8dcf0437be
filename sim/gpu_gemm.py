"""A GEMM kernel-time model built from the mechanisms of a tiled tensor-core kernel (issue 21).

`sim.gpu` prices the matrix kernels (GEMM, GEMV, attention matmuls) of a preset that has a
`tiled_gemm` table with it (kernel_terms), and the rest with its smooth efficiency curve.
tools/gpu_gemm_fit.py fits the parameters to Vidur's per-operator measurements and
docs/validation.md reports its fit and held-out errors.

A GEMM (m x k) @ (k x n) runs as one kernel that cuts C into tiles of tile_m x tile_n, one
thread block (CTA) each, and walks K in steps of TILE_K. Candidates, for every tile shape:

    data-parallel, split s in SPLITS (s = 1: no split; s > 1: split-K)
        tiles   = batch x ceil(m / tile_m) x ceil(n / tile_n)  tile quantisation along M and N
        waves   = ceil(tiles x s / SMs)                         the last partial wave paid in full
        compute = waves x 2 tile_m tile_n (k_s + k_half) / rate_sm,   k_s = ceil(k / (s TILE_K)) TILE_K
        t       = max(compute, memory) + [s > 1] (splitk_us + 2 s batch m n 4 B / (mem_frac x BW))
    stream-K (Osama et al., PPoPP 2023: the K iterations of all tiles spread evenly over the SMs)
        compute = 2 tile_m tile_n (ceil(tiles x ceil(k / TILE_K) / SMs) TILE_K
                                   + (ceil(tiles / SMs) + 1) k_half) / rate_sm + streamk_us
        t       = max(compute, memory)
    rate_sm = min(clock_frac x peak / SMs,                      sustained clock under load
                  operand_tbps / SMs x 2 tile_m tile_n / ((tile_m + tile_n) operand_bytes))
    memory  = bytes / (mem_frac x BW)          a plain GEMM's: dtype_bytes (mk + kn + mn)
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
`arch.gpu.TiledGemm` is fitted per GPU; the datasheet numbers (SMs, FP16 dense peak, bandwidth)
come from the arch presets (arch/configs/gpu-*.toml, reference/gpu.md). Fitted and validated on
fp16/bf16 GEMMs only. A batched kernel (attention's per-head matmuls) is its batch's tiles in
one launch; a low-precision kernel (tessel/gpu_quant.py) runs at its format's tensor-core rate
with OPERAND_BYTES-wide operands; both are extrapolations of the fp16 fit.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arch.config import ArchError, build
from arch.gpu import GpuArch, TiledGemm

__all__ = ["TILE_SHAPES", "SPLITS", "TILE_K", "PARTIAL_BYTES", "OPERAND_BYTES", "Config", "CONFIGS",
           "GemmTime", "config_times_s", "gemm_time_s", "gemm_kernel", "kernel_terms",
           "datasheet_floor_s", "load_params"]

# Thread-block tiles (tile_m, tile_n): cuBLAS tile sizes from 256x128 down to 64x64, as NVIDIA's
# "Matrix Multiplication Background User's Guide" (DU-09799-001, section 2.3, "Typical tile
# dimensions in cuBLAS and performance") compares them, and CUTLASS's Ampere FP16 tensor-op
# threadblock shapes; and 16-row tiles for a few rows (a GEMV-like batch), one tensor-core MMA
# high (mma.sync m16n8k16), as weight-only kernels such as Marlin tile a batch of 16 or fewer.
# 256x64 and 64x256 are left out: adding them did not change the fit. The 16-row tiles barely
# change it either (held-out mean A100 7.0 -> 6.9 %); they keep a GEMV whose weights a recipe
# narrows from paying for 64 rows of tensor-core work (docs/validation.md, Quantised GEMMs).
TILE_SHAPES = ((256, 128), (128, 256), (128, 128), (128, 64), (64, 128), (64, 64), (16, 128), (16, 256))
SPLITS = (1, 2, 4, 8, 16)      # split-K factors tried (1 = no split); assumption: powers of two
TILE_K = 32                    # K step of one main-loop iteration (CUTLASS sm80 FP16 tiles: 32 or 64)
PARTIAL_BYTES = 4              # split-K partial sums are fp32 (cuBLAS/CUTLASS accumulate in fp32)
# bytes of one operand element as the tensor cores read it, by the format they multiply in
OPERAND_BYTES = {"fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


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
class GemmTime:
    """One GEMM's modelled kernel time and the configuration the oracle picked."""

    time_s: float
    config: Config
    waves: int            # of the picked configuration (stream-K: ceil(tiles / SMs))
    bound: str            # "compute", "memory" or "floor"


def _shape(m, n, k, dtype_bytes: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (m, n, k)))
    for name, a in zip("mnk", arrays):
        if not (np.all(a >= 1) and np.all(a == np.floor(a))):
            raise ValueError(f"GEMM {name} must be positive integers, got {a.ravel()[:4].tolist()}")
    if dtype_bytes not in (0.5, 1, 2, 4):
        raise ValueError(f"dtype_bytes must be 0.5, 1, 2 or 4, got {dtype_bytes!r}")
    return arrays


# CONFIGS as columns, for computing every configuration at once
_TILE_M = np.array([c.tile_m for c in CONFIGS], dtype=np.float64)
_TILE_N = np.array([c.tile_n for c in CONFIGS], dtype=np.float64)
_SPLIT = np.array([c.split for c in CONFIGS], dtype=np.float64)
_STREAM_K = np.array([c.stream_k for c in CONFIGS])


def _rate_sm(tile_m, tile_n, sms: int, p: TiledGemm, peak: float, operand_bytes: float):
    """FLOP/s of one SM running a tile_m x tile_n tile: the sustained clock, or the operand
    bandwidth."""
    flops_per_byte = 2 * tile_m * tile_n / ((tile_m + tile_n) * operand_bytes)
    return np.minimum(p.clock_frac * peak, p.operand_tbps * 1e12 * flops_per_byte) / sms


def _waves(c: Config, tiles, sms: int):
    return np.ceil(tiles / sms) if c.stream_k else np.ceil(tiles * c.split / sms)


def _times(m, n, k, batch, n_bytes, peak: float, operand_bytes: float, sms: int, dram_bps: float,
           p: TiledGemm):
    """Per configuration (axis 0): its compute time (with stream-K's fix-up) and its split-K
    reduction, which follows the split kernel (fp32 partials written and read back, plus a fixed
    cost); and, unstacked, the memory time of the kernel's `n_bytes`, which every configuration
    overlaps with its compute. All configurations at once: CONFIGS along axis 0. The chip: its
    SMs and its datasheet DRAM bandwidth in bytes/s."""
    column = (-1,) + (1,) * np.ndim(m)
    tm, tn, split, stream_k = (a.reshape(column) for a in (_TILE_M, _TILE_N, _SPLIT, _STREAM_K))
    bandwidth = p.mem_frac * dram_bps
    memory = n_bytes / bandwidth
    tiles = batch * np.ceil(m / tm) * np.ceil(n / tn)
    s_per_k = 2 * tm * tn / _rate_sm(tm, tn, sms, p, peak, operand_bytes)   # one tile, per unit of K
    streamed = ((np.ceil(tiles * np.ceil(k / TILE_K) / sms) * TILE_K
                 + (np.ceil(tiles / sms) + 1) * p.k_half) * s_per_k + p.streamk_us * 1e-6)
    waves = np.ceil(tiles * split / sms)
    split_k = waves * (np.ceil(k / (split * TILE_K)) * TILE_K + p.k_half) * s_per_k
    compute = np.where(stream_k, streamed, split_k)
    reduce = np.where((split > 1) & ~stream_k,
                      p.splitk_us * 1e-6 + 2 * split * batch * m * n * PARTIAL_BYTES / bandwidth, 0.0)
    return compute, memory, reduce


def _fp16_times(m, n, k, gpu: GpuArch, p: TiledGemm, dtype_bytes: float):
    m, n, k = _shape(m, n, k, dtype_bytes)
    return _times(m, n, k, 1, dtype_bytes * (m * k + k * n + m * n), gpu.peak_flops_per_s("gemm"),
                  dtype_bytes, gpu.sms, gpu.mem_bw_bytes_per_s, p)


def config_times_s(m, n, k, gpu: GpuArch, p: TiledGemm, dtype_bytes: float = 2) -> np.ndarray:
    """Time of every configuration in CONFIGS (axis 0), before the ramp and the floor, of GEMMs
    whose operands and result are `dtype_bytes` wide, at the FP16 dense rate."""
    compute, memory, reduce = _fp16_times(m, n, k, gpu, p, dtype_bytes)
    return np.maximum(compute, memory) + reduce


def gemm_time_s(m, n, k, gpu: GpuArch, p: TiledGemm, dtype_bytes: float = 2) -> np.ndarray:
    """Kernel time in seconds (device time: no launch overhead) of GEMMs m x k . k x n;
    m, n, k broadcast like numpy arrays."""
    best = config_times_s(m, n, k, gpu, p, dtype_bytes).min(axis=0)
    return np.maximum(best + p.ramp_us * 1e-6, p.floor_us * 1e-6)


def kernel_terms(m: int, n: int, k: int, batch: int, n_bytes: float, peak: float,
                 operand_bytes: float, gpu: GpuArch, p: TiledGemm) -> tuple[float, float]:
    """One matrix kernel of sim/gpu.py (`batch` GEMMs m x k . k x n moving `n_bytes` in all, its
    MACs at `peak` FLOP/s): (compute, memory) seconds of the configuration the oracle picks, each
    with the ramp, the larger raised to the floor, so that max(compute, memory) is gemm_time_s's
    time and the larger still says what bounds the kernel. Cached: a model's layers repeat
    their shapes."""
    return _kernel_terms(m, n, k, batch, n_bytes, peak, operand_bytes, gpu.sms, gpu.mem_bw_bytes_per_s, p)


@functools.lru_cache(maxsize=1 << 16)
def _kernel_terms(m: int, n: int, k: int, batch: int, n_bytes: float, peak: float, operand_bytes: float,
                  sms: int, dram_bps: float, p: TiledGemm) -> tuple[float, float]:
    return _picked(*_times(float(m), float(n), float(k), batch, n_bytes, peak, operand_bytes,
                           sms, dram_bps, p), p)[1:]


def _picked(compute, memory, reduce, p: TiledGemm) -> tuple[int, float, float]:
    """The oracle's configuration for one kernel (an index into CONFIGS) and its (compute,
    memory) seconds, each with the split-K reduction and the ramp, the larger raised to the
    floor."""
    i = int(np.argmin(np.maximum(compute, memory) + reduce))
    fixed, floor = reduce[i] + p.ramp_us * 1e-6, p.floor_us * 1e-6
    c, m = float(compute[i] + fixed), float(memory + fixed)
    return (i, max(c, floor), m) if c >= m else (i, c, max(m, floor))


def gemm_kernel(m: int, n: int, k: int, gpu: GpuArch, p: TiledGemm, dtype_bytes: float = 2) -> GemmTime:
    """One GEMM's time with the configuration that gives it and what bounds it."""
    compute, memory, reduce = _fp16_times(m, n, k, gpu, p, dtype_bytes)
    i, compute_s, memory_s = _picked(compute, memory, reduce, p)
    c = CONFIGS[i]
    time_s = max(compute_s, memory_s)
    bound = ("floor" if time_s == p.floor_us * 1e-6 else "compute" if compute[i] > memory else "memory")
    tiles = math.ceil(m / c.tile_m) * math.ceil(n / c.tile_n)
    return GemmTime(time_s, c, int(_waves(c, tiles, gpu.sms)), bound)


def datasheet_floor_s(m, n, k, gpu: GpuArch, dtype_bytes: float = 2) -> np.ndarray:
    """No GEMM beats max(flops / FP16 dense peak, bytes / datasheet bandwidth)."""
    m, n, k = _shape(m, n, k, dtype_bytes)
    return np.maximum(2 * m * n * k / gpu.peak_flops_per_s("gemm"),
                      dtype_bytes * (m * k + k * n + m * n) / gpu.mem_bw_bytes_per_s)


def load_params(path: str | Path) -> dict[str, TiledGemm]:
    """The fitted parameters per GPU preset from tools/gpu_gemm_fit.py's JSON, each checked as a
    preset's `tiled_gemm` table is; errors name the file and the field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ArchError(f"{path}: cannot read ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArchError(f"{path}: not a JSON file ({e})") from None
    gpus = data.get("params") if isinstance(data, dict) else None
    if not isinstance(gpus, dict) or not gpus:
        raise ArchError(f"{path}: field 'params' must be a table of GPU presets, got {gpus!r}")
    return {gpu: build(TiledGemm, table, str(path), f"params.{gpu}.") for gpu, table in gpus.items()}
