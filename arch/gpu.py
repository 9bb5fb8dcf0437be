"""GPUs as baselines (not an ISA target): datasheet rates plus the calibrated efficiencies
of the per-kernel roofline in `sim.gpu`.

The datasheet half (peak rates, bandwidth, power, L2, SMs, clock) comes from
reference/gpu.md; the model half (GEMM and memory efficiency curves, launch and eager
overheads) is fitted to the measurements cited there, and each preset says which.
"""
from __future__ import annotations

from dataclasses import dataclass

from arch.config import ArchError, choice, link_names, within
from arch.limits import (BANDWIDTH_GBPS, CLOCK_MHZ, FRACTION, GPU_MEMORY_GB, HALF_POINT, HOST_TIME_US,
                         L2_MB, ON_CHIP_TBPS, POWER_W, TFLOPS, TILE_K_ELEMENTS, TOPS, UNITS)

__all__ = ["GpuArch", "GemmEfficiency", "TiledGemm", "MemoryEfficiency", "FusedAttention", "KERNEL_KINDS",
           "MATRIX_KINDS", "VECTOR_KINDS", "TENSOR_FORMATS", "GEMV_MAX_M"]

# The kernel kinds the baseline model distinguishes; every preset prices each one in eager mode.
# "attention" is one FlashAttention-style kernel (tessel sim --gpu-attention fused); rmsnorm, rope
# and silu-gate are the Llama-family vector kernels, priced apart from GPT-2's (vector_frac).
KERNEL_KINDS = ("gemm", "gemv", "attention-matmul", "elementwise", "layernorm", "softmax",
                "embedding", "copy", "attention", "rmsnorm", "rope", "silu-gate")
MATRIX_KINDS = ("gemm", "gemv", "attention-matmul", "attention")      # run on tensor cores
# mma.sync m16n8k16 (Ampere/Hopper tensor cores) covers 16 rows: up to 16 rows a matmul
# fills one row tile and streams its weights like a matrix-vector product (kind "gemv").
GEMV_MAX_M = 16
VECTOR_KINDS = tuple(k for k in KERNEL_KINDS if k not in MATRIX_KINDS)  # bandwidth-bound
# Low-precision tensor-core formats a preset may rate (`tensor_tops`): the format a GEMM whose
# weights and activations are both quantised multiplies in (tessel/gpu_quant.py picks it).
TENSOR_FORMATS = ("fp8", "int8", "int4")


@dataclass(frozen=True, slots=True)
class GemmEfficiency:
    """Fraction of the dense tensor peak a matrix kernel of shape (m, n, k) reaches:
    max_frac * m/(m + m_half) * n/(n + nk_half) * k/(k + nk_half)."""

    max_frac: float = within(FRACTION)  # asymptote for very large GEMMs
    m_half: float = within(HALF_POINT)  # rows at which tile fill reaches half (GEMV-like below)
    nk_half: float = within(HALF_POINT)  # columns / depth at which tiles and the K pipeline reach half


@dataclass(frozen=True, slots=True)
class TiledGemm:
    """The fitted half of the tiled GEMM model (sim/gpu_gemm.py) for one GPU: a preset that has
    it prices its GEMMs by tile and wave quantisation instead of the `gemm` curve. Fitted to
    public per-operator measurements by tools/gpu_gemm_fit.py (docs/validation.md)."""

    clock_frac: float = within(FRACTION)     # sustained tensor rate under load / datasheet FP16 dense
    k_half: float = within(TILE_K_ELEMENTS)  # a tile's fixed cost (prologue, epilogue), elements of K
    operand_tbps: float = within(ON_CHIP_TBPS)  # L2 + shared-memory bandwidth feeding the tensor cores
    mem_frac: float = within(FRACTION)       # achieved / datasheet DRAM bandwidth
    ramp_us: float = within(HOST_TIME_US)    # fixed device time of one kernel
    floor_us: float = within(HOST_TIME_US)   # no kernel is shorter
    splitk_us: float = within(HOST_TIME_US)  # fixed cost of a split-K reduction
    streamk_us: float = within(HOST_TIME_US)  # fixed cost of stream-K's fix-up (large: never chosen)


@dataclass(frozen=True, slots=True)
class MemoryEfficiency:
    """Achieved DRAM bandwidth: time = bytes / (max_frac x BW) + ramp, so a kernel that
    moves B bytes reaches max_frac * B / (B + ramp x max_frac x BW) of the datasheet figure."""

    max_frac: float = within(FRACTION)  # streaming efficiency of a large transfer
    ramp_us: float = within(HOST_TIME_US)  # device-side fixed time of one kernel (fill, drain, tail)


@dataclass(frozen=True, slots=True)
class FusedAttention:
    """A FlashAttention-style kernel's two matmuls (sim/gpu.py, kind "attention"): they reach
    max_frac x m/(m + gemm.m_half) of the dense tensor peak, m being the query rows that share
    one KV head (a decode step's few rows fill a tile as little as a GEMV's)."""

    max_frac: float = within(FRACTION)  # at full row tiles (long prefill)


@dataclass(frozen=True, slots=True)
class GpuArch:
    name: str
    target: str = choice("gpu")
    peak_tflops_fp16: float = within(TFLOPS)  # dense tensor-core FP16/BF16 rate
    peak_tflops_fp32: float = within(TFLOPS)  # non-tensor FP32 rate (vector kernels)
    # dense tensor-core TOPS per low-precision format (TENSOR_FORMATS); a format left out has no
    # tensor cores on this GPU, and a recipe that needs them is refused
    tensor_tops: dict[str, float] = within(TOPS)
    mem_bw_gbps: float = within(BANDWIDTH_GBPS)  # GB/s = 1e9 bytes/s
    mem_gb: float = within(GPU_MEMORY_GB)
    tdp_w: float = within(POWER_W)
    idle_w: float = within(POWER_W)           # clocks up, no work
    l2_mb: float = within(L2_MB)
    sms: int = within(UNITS)
    boost_mhz: float = within(CLOCK_MHZ)
    link: str                                 # how several of it are joined (arch/links.py preset)
    # graph mode: fixed cost per kernel launch, by kind; eager mode: per operator, by kind
    graph_overhead_us: dict[str, float] = within(HOST_TIME_US)
    eager_overhead_us: dict[str, float] = within(HOST_TIME_US)
    gemm: GemmEfficiency
    memory: MemoryEfficiency
    # a vector kind (VECTOR_KINDS) listed here streams at its own measured rate:
    # time = bytes / (vector_frac[kind] x BW) + vector_ramp_us[kind]; one left out uses `memory`
    vector_frac: dict[str, float] = within(FRACTION)
    vector_ramp_us: dict[str, float] = within(HOST_TIME_US)
    fused_attention: FusedAttention
    # GEMMs by tile and wave quantisation (sim/gpu_gemm.py) where fitted; absent: the `gemm` curve
    tiled_gemm: TiledGemm | None = None

    def __post_init__(self) -> None:
        if self.link not in link_names():
            raise ArchError(f"field 'link' must be a link preset ({', '.join(link_names())}), "
                            f"got {self.link!r}")
        if self.idle_w >= self.tdp_w:
            raise ArchError(f"field 'idle_w' must be below tdp_w ({self.tdp_w}), got {self.idle_w}")
        unknown = sorted(set(self.tensor_tops) - set(TENSOR_FORMATS))
        if unknown:
            raise ArchError(f"unknown field 'tensor_tops.{unknown[0]}' (tensor-core formats: "
                            f"{', '.join(TENSOR_FORMATS)})")
        for table in ("graph_overhead_us", "eager_overhead_us"):
            kinds = getattr(self, table)
            missing = [k for k in KERNEL_KINDS if k not in kinds]
            if missing:
                raise ArchError(f"missing field '{table}.{missing[0]}'")
            unknown = sorted(set(kinds) - set(KERNEL_KINDS))
            if unknown:
                raise ArchError(f"unknown field '{table}.{unknown[0]}'")
        for table in ("vector_frac", "vector_ramp_us"):
            unknown = sorted(set(getattr(self, table)) - set(VECTOR_KINDS))
            if unknown:
                raise ArchError(f"unknown field '{table}.{unknown[0]}' (vector kinds: "
                                f"{', '.join(VECTOR_KINDS)})")
        unpaired = sorted(set(self.vector_frac) ^ set(self.vector_ramp_us))
        if unpaired:
            k = unpaired[0]
            have, lack = (("vector_frac", "vector_ramp_us") if k in self.vector_frac
                          else ("vector_ramp_us", "vector_frac"))
            raise ArchError(f"missing field '{lack}.{k}' ({have} names {k}: a kind streams at "
                            "its own rate only with both)")
        cheap = [k for k in KERNEL_KINDS if self.eager_overhead_us[k] < self.graph_overhead_us[k]]
        if cheap:                          # an eager operator launches its kernel too
            k = cheap[0]
            raise ArchError(f"field 'eager_overhead_us.{k}' must be at least graph_overhead_us.{k} "
                            f"({self.graph_overhead_us[k]}), got {self.eager_overhead_us[k]}")

    @property
    def mem_bw_bytes_per_s(self) -> float:
        return self.mem_bw_gbps * 1e9

    def peak_flops_per_s(self, kind: str) -> float:
        """Tensor-core rate for matrix kernels, the FP32 vector rate for the rest."""
        tflops = self.peak_tflops_fp16 if kind in MATRIX_KINDS else self.peak_tflops_fp32
        return tflops * 1e12
