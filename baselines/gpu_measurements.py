"""Public per-operator GPU measurements (Vidur's profiling CSVs) as typed records, and an honest
split of their GEMMs into a fitting part and a held-out part (issue 21, Deliver 2).

Standalone: the standard library only, like measure_gpu.py beside it. The fixtures and their
provenance (source files, commits, which rows) are in data/vidur/README.md.

    rows = load_gpu("a100")                 # one ProfileRow per profiled (model, tp, num_tokens)
    points = gemm_points(rows)              # four GemmPoints per row: QKV, output, up, down
    split = split_gemms(all_gemm_points())  # split.fit, split.held_out (every GPU, one rule)

Shapes (M x K @ K x N, fp16) follow Vidur's mlp profiler, which times one tensor-parallel shard
of each projection on one GPU (head_dim = n_embd / n_head, tp = num_tensor_parallel_workers):
    attn_pre_proj   fused QKV  K = n_embd,                N = (n_head + 2 n_kv_head) head_dim / tp
    attn_post_proj  output     K = n_head head_dim / tp,  N = n_embd
    mlp_up_proj     gate+up    K = n_embd,                N = 2 n_expanded_embd / tp (gated MLP;
                                                              n_expanded_embd / tp otherwise)
    mlp_down_proj   down       K = n_expanded_embd / tp,  N = n_embd
with M = num_tokens.
"""
from __future__ import annotations

import csv
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

__all__ = ["DATA_DIR", "GPUS", "COLUMNS", "GEMM_OPS", "OTHER_OPS", "HELD_OUT_MODELS", "NEAR_RATIO",
           "MeasurementError", "ModelDims", "ProfileRow", "GemmPoint", "GemmSplit", "RowSplit",
           "load_rows", "load_gpu", "gemm_shapes", "gemm_points", "all_gemm_points", "near_shapes",
           "split_gemms", "split_rows"]

DATA_DIR = Path(__file__).resolve().parent / "data" / "vidur"
GPUS = ("a100", "h100", "a40")          # Vidur device SKUs: A100 80 GB, H100 80 GB, A40
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
OTHER_OPS = ("emb", "input_layernorm", "attn_rope", "post_attention_layernorm", "mlp_act", "add")
TP_DEGREES = (1, 2, 4, 8)               # Vidur's --num_tensor_parallel_workers default

# Held out: whole models that the fit never sees. Llama-3-8B (GQA, 14336-wide MLP) and
# internlm-20b (5120-wide, MHA) sit between the fitted Llama-2-7B (4096) and Llama-2-70B (8192).
HELD_OUT_MODELS = ("meta-llama/Meta-Llama-3-8B", "internlm/internlm-20b")
# Two weight shapes are near-duplicates when K and N both agree within this ratio; a held-out
# model's GEMM whose (K, N) is near a fitted (K, N) goes to the fitting part instead.
NEAR_RATIO = 1.15

_MODEL_COLS = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size")
COLUMNS = (("model",) + _MODEL_COLS + ("use_gated_mlp", "num_tensor_parallel_workers", "num_tokens")
           + tuple(f"{op}_{stat}_ms" for op in GEMM_OPS for stat in ("median", "min"))
           + tuple(f"{op}_median_ms" for op in OTHER_OPS))


class MeasurementError(ValueError):
    """A fixture file that does not have the expected form; the message names file, line, column."""


@dataclass(frozen=True, slots=True)
class ModelDims:
    """The model columns of a Vidur row (a transformer block's widths)."""
    n_head: int
    n_kv_head: int
    n_embd: int
    n_expanded_embd: int
    vocab_size: int
    use_gated_mlp: bool

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One profiled (model, tp, num_tokens) on one GPU: per-operator kernel times in ms.

    median_ms holds every operator of GEMM_OPS + OTHER_OPS; min_ms the GEMM_OPS only."""
    gpu: str
    model: str
    dims: ModelDims
    tp: int
    num_tokens: int
    median_ms: Mapping[str, float]        # read-only views
    min_ms: Mapping[str, float]
    source: str                          # "file:line" of the fixture row


@dataclass(frozen=True, slots=True)
class GemmPoint:
    """One measured fp16 GEMM, (m x k) @ (k x n), kernel time in ms."""
    gpu: str
    model: str
    tp: int
    op: str
    m: int
    k: int
    n: int
    median_ms: float
    min_ms: float

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    @property
    def bytes_fp16(self) -> int:
        return 2 * (self.m * self.k + self.k * self.n + self.m * self.n)


@dataclass(frozen=True, slots=True)
class GemmSplit:
    fit: tuple[GemmPoint, ...]
    held_out: tuple[GemmPoint, ...]


@dataclass(frozen=True, slots=True)
class RowSplit:
    fit: tuple[ProfileRow, ...]
    held_out: tuple[ProfileRow, ...]


def _positive_int(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) > 0 else None


def _positive_ms(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _parse(path: Path, line: int, column: str, text: str, parse, expected: str):
    value = parse(text)
    if value is None:
        raise MeasurementError(f"{path}:{line}: column '{column}': expected {expected}, got {text!r}")
    return value


def load_rows(path: str | Path, gpu: str | None = None) -> list[ProfileRow]:
    """Read one fixture CSV; refuse a malformed file with the file, line and column at fault."""
    path = Path(path)
    gpu = gpu or path.stem
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise MeasurementError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise MeasurementError(f"{path}: not UTF-8 text (byte {e.start})") from None
    records = list(csv.reader(text.splitlines()))
    if not text.strip():
        raise MeasurementError(f"{path}:1: empty file, expected the header {','.join(COLUMNS)}")
    header = tuple(records[0])
    if header != COLUMNS:
        missing = [c for c in COLUMNS if c not in header]
        bad = missing[0] if missing else next(h for h, c in zip(header, COLUMNS) if h != c)
        raise MeasurementError(f"{path}:1: column '{bad}': header must be {','.join(COLUMNS)}")
    return [_row(path, gpu, line, record) for line, record in enumerate(records[1:], start=2)]


def _row(path: Path, gpu: str, line: int, record: list[str]) -> ProfileRow:
    """One validated fixture row; errors name the file, the line and the column."""
    if len(record) != len(COLUMNS):
        raise MeasurementError(f"{path}:{line}: expected {len(COLUMNS)} columns, got {len(record)}")
    cell = dict(zip(COLUMNS, record))
    ints = {c: _parse(path, line, c, cell[c], _positive_int, "a positive integer")
            for c in _MODEL_COLS + ("num_tokens",)}
    gated = _parse(path, line, "use_gated_mlp", cell["use_gated_mlp"],
                   {"True": True, "False": False}.get, "True or False")
    tp = _parse(path, line, "num_tensor_parallel_workers", cell["num_tensor_parallel_workers"],
                lambda t: int(t) if t in {str(d) for d in TP_DEGREES} else None, "one of 1, 2, 4, 8")
    if not cell["model"]:
        raise MeasurementError(f"{path}:{line}: column 'model': expected a model name, got ''")
    dims = ModelDims(*(ints[c] for c in _MODEL_COLS), gated)
    if dims.n_embd % dims.n_head or dims.n_head % tp or dims.n_kv_head % tp or dims.n_expanded_embd % tp:
        raise MeasurementError(f"{path}:{line}: column 'num_tensor_parallel_workers': "
                               f"{tp} does not divide the model's heads and widths")
    median = {op: _parse(path, line, f"{op}_median_ms", cell[f"{op}_median_ms"], _positive_ms,
                         "a positive time in ms") for op in GEMM_OPS + OTHER_OPS}
    minimum = {op: _parse(path, line, f"{op}_min_ms", cell[f"{op}_min_ms"], _positive_ms,
                          "a positive time in ms") for op in GEMM_OPS}
    for op in GEMM_OPS:
        if minimum[op] > median[op]:
            raise MeasurementError(f"{path}:{line}: column '{op}_min_ms': {minimum[op]} exceeds "
                                   f"the median {median[op]}")
    return ProfileRow(gpu, cell["model"], dims, tp, ints["num_tokens"], MappingProxyType(median),
                      MappingProxyType(minimum), f"{path.name}:{line}")


@functools.lru_cache(maxsize=None)
def _load_gpu_cached(gpu: str) -> tuple[ProfileRow, ...]:
    return tuple(load_rows(DATA_DIR / f"{gpu}.csv", gpu))


def load_gpu(gpu: str) -> list[ProfileRow]:
    """The committed rows of one GPU ('a100', 'h100' or 'a40')."""
    if gpu not in GPUS:
        raise MeasurementError(f"unknown GPU {gpu!r}; expected one of {', '.join(GPUS)}")
    return list(_load_gpu_cached(gpu))


def gemm_shapes(dims: ModelDims, tp: int) -> dict[str, tuple[int, int]]:
    """(K, N) of each projection GEMM of one tensor-parallel shard, as Vidur profiles it."""
    hd = dims.head_dim
    up = (2 if dims.use_gated_mlp else 1) * dims.n_expanded_embd
    return {"attn_pre_proj": (dims.n_embd, (dims.n_head + 2 * dims.n_kv_head) * hd // tp),
            "attn_post_proj": (dims.n_head * hd // tp, dims.n_embd),
            "mlp_up_proj": (dims.n_embd, up // tp),
            "mlp_down_proj": (dims.n_expanded_embd // tp, dims.n_embd)}


def gemm_points(rows) -> list[GemmPoint]:
    """The four projection GEMMs of every row, in row order."""
    return [GemmPoint(r.gpu, r.model, r.tp, op, r.num_tokens, k, n, r.median_ms[op], r.min_ms[op])
            for r in rows for op, (k, n) in gemm_shapes(r.dims, r.tp).items()]


def all_gemm_points() -> list[GemmPoint]:
    """Every committed GEMM point of every GPU, in GPUS order."""
    return gemm_points(r for gpu in GPUS for r in load_gpu(gpu))


def near_shapes(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two weight shapes (K, N) agree within NEAR_RATIO in both K and N."""
    return all(max(x, y) <= NEAR_RATIO * min(x, y) for x, y in zip(a, b))


def split_gemms(points) -> GemmSplit:
    """Fit on every model but HELD_OUT_MODELS; hold out their GEMMs whose weight shape (K, N) is
    not within NEAR_RATIO of any fitted weight shape among `points` (pass all_gemm_points() so the
    rule sees every GPU's fitted shapes). Deterministic and order-preserving."""
    points = list(points)
    fitted = {(p.k, p.n) for p in points if p.model not in HELD_OUT_MODELS}
    unseen = {s: not any(near_shapes(s, f) for f in fitted)
              for s in {(p.k, p.n) for p in points if p.model in HELD_OUT_MODELS}}
    held = [p.model in HELD_OUT_MODELS and unseen[(p.k, p.n)] for p in points]
    return GemmSplit(tuple(p for p, h in zip(points, held) if not h),
                     tuple(p for p, h in zip(points, held) if h))


def split_rows(rows) -> RowSplit:
    """For the non-GEMM kernels (norms, RoPE, activation, add), whose cost follows n_embd: hold out
    HELD_OUT_MODELS' rows whose n_embd no fitted model has."""
    rows = list(rows)
    fitted = {r.dims.n_embd for r in rows if r.model not in HELD_OUT_MODELS}
    held = [r.model in HELD_OUT_MODELS and r.dims.n_embd not in fitted for r in rows]
    return RowSplit(tuple(r for r, h in zip(rows, held) if not h),
                    tuple(r for r, h in zip(rows, held) if h))
