"""The safetensors format, read lazily: headers parsed here, tensor data memory-mapped.

A file is an 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data, each tensor's bytes
at begin..end of the data region, little-endian, row-major (huggingface/safetensors README).
Reading a header touches 8 + N bytes; a tensor's bytes are mapped (numpy.memmap) only when
the tensor is read, so checking a checkpoint's names and shapes reads no tensor data and a
run that never reads a weight holds none in memory. BF16 becomes float32 by shifting its
16 bits into the high half of a 32-bit word (exact); F16 and F64 are converted by numpy.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isa.jsontext import RepeatedKey, no_repeats

from compiler.ir import GraphError

__all__ = ["StoredTensor", "read_header", "read_tensor", "FLOAT_DTYPES"]

# bytes per element of every dtype the format defines
_ITEM_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_NUMPY = {"F16": "<f2", "BF16": "<u2", "F32": "<f4", "F64": "<f8"}
_MAX_HEADER_BYTES = 100_000_000   # the limit of the safetensors library itself


@dataclass(frozen=True, slots=True)
class StoredTensor:
    """Where one tensor's bytes are: `offset` from the start of `path`, `nbytes` long."""

    path: Path
    key: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def read_header(path: Path) -> dict[str, StoredTensor]:
    """The tensors a .safetensors file holds, from its header alone (the data is not read)."""
    def bad(why: str) -> GraphError:
        return GraphError(f"{path}: not a readable safetensors file ({why})")

    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            prefix = f.read(8)
            if len(prefix) < 8:
                raise bad(f"{size} bytes, shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if not 2 <= length <= min(_MAX_HEADER_BYTES, size - 8):
                raise bad(f"header length {length} does not fit a file of {size} bytes")
            text = f.read(length)
    except OSError as e:
        raise GraphError(f"{path}: cannot read ({e.strerror})") from None
    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=no_repeats)
    except UnicodeDecodeError as e:
        raise bad(f"header byte {e.start} is not UTF-8") from None
    except RepeatedKey as e:
        raise bad(f"tensor '{e.key}' appears twice in the header") from None
    except (json.JSONDecodeError, RecursionError):
        raise bad("the header is not valid JSON") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    data_start = 8 + length
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            if not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise bad("__metadata__ must map names to strings")
            continue
        tensors[key] = _entry(path, key, entry, data_start, size, bad)
    return tensors


def _entry(path: Path, key: str, entry: object, data_start: int, size: int, bad) -> StoredTensor:
    if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
        raise bad(f"tensor '{key}' must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _ITEM_BYTES:
        raise bad(f"tensor '{key}' has unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(_count(d) for d in shape)):
        raise bad(f"tensor '{key}' has shape {shape!r}, expected a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise bad(f"tensor '{key}' has data_offsets {offsets!r}, expected [begin, end]")
    nbytes = math.prod(shape) * _ITEM_BYTES[dtype]
    if offsets[1] - offsets[0] != nbytes:
        raise bad(f"tensor '{key}' of {dtype} {shape} needs {nbytes} bytes, its data_offsets "
                  f"{offsets} give {offsets[1] - offsets[0]}")
    if data_start + offsets[1] > size:
        raise bad(f"tensor '{key}' ends at byte {data_start + offsets[1]}, past the end of the "
                  f"{size}-byte file")
    return StoredTensor(path, key, dtype, tuple(shape), data_start + offsets[0], nbytes)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_tensor(t: StoredTensor, index: tuple = ()) -> np.ndarray:
    """The tensor, or its part `index` (basic indexing: an expert of a fused tensor), as
    float32: F32 stays a read-only memory map; the others convert only the part read."""
    if t.dtype not in FLOAT_DTYPES:
        raise GraphError(f"{t.path}: tensor '{t.key}' has dtype {t.dtype}, expected one of "
                         f"{', '.join(FLOAT_DTYPES)}")
    if t.nbytes == 0:
        return np.zeros(t.shape, np.float32)[index]
    try:
        raw = np.memmap(t.path, dtype=_NUMPY[t.dtype], mode="r", offset=t.offset,
                        shape=t.shape or (1,)).reshape(t.shape)[index]
    except (OSError, ValueError) as e:
        raise GraphError(f"{t.path}: cannot read tensor '{t.key}' ({e})") from None
    if t.dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw if t.dtype == "F32" else raw.astype(np.float32)
