"""Request traces as CSV files: ours and the public Azure LLM inference trace.

Two headers are read (columns in any order, nothing else):

    arrival_s,prompt_tokens,output_tokens          ours: seconds from the trace's start
    TIMESTAMP,ContextTokens,GeneratedTokens        Azure/AzurePublicDataset, as published:
                                                   TIMESTAMP like 2023-11-16 18:15:46.6805900,
                                                   arrival = seconds since the first row

Requests are numbered 0, 1, ... in file order. Anything malformed is refused, before a
request is built, with one line naming the file, the line (the header is line 1), the
column and the value: `trace.csv: line 7, column prompt_tokens: 'abc' is not a positive
integer`. Arrivals may repeat but never go backwards. `write_trace` writes our format,
atomically; floats as Python writes them, so a trace reads back exactly.
"""
from __future__ import annotations

import csv
import io
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from tessel.files import atomic_write
from tessel.serve.errors import ServeError
from tessel.serve.workload import Request

__all__ = ["read_trace", "write_trace", "OURS", "AZURE"]

OURS = ("arrival_s", "prompt_tokens", "output_tokens")
AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")

_DIGITS = re.compile(r"[0-9]+")
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?")
_EPOCH = datetime(1970, 1, 1)


def read_trace(path: str | Path) -> list[Request]:
    """The requests of a trace file, in file order (see the module docstring)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")   # Excel writes a byte-order mark
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ServeError(f"{name}: cannot read the trace ({reason})") from None
    rows = csv.reader(io.StringIO(text))
    header = next((row for row in rows if any(cell.strip() for cell in row)), None)
    if header is None:
        raise ServeError(f"{name}: empty file, expected a header {','.join(OURS)} or {','.join(AZURE)}")
    header_line = rows.line_num
    columns, (time_column, prompt_column, output_column) = _columns(name, header_line, header)
    azure = time_column == AZURE[0]
    requests: list[Request] = []
    first = previous = None
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        line = rows.line_num
        if len(row) != len(columns):
            raise ServeError(f"{name}: line {line}: expected {len(columns)} fields, got {len(row)}")
        cells = dict(zip(columns, (cell.strip() for cell in row)))

        def refuse(column: str, why: str) -> ServeError:
            return ServeError(f"{name}: line {line}, column {column}: '{cells[column]}' {why}")

        moment = (_azure_ns if azure else _seconds)(cells[time_column], lambda why: refuse(time_column, why))
        prompt_tokens = _positive(cells[prompt_column], lambda why: refuse(prompt_column, why))
        output_tokens = _positive(cells[output_column], lambda why: refuse(output_column, why))
        if previous is not None and moment < previous:
            raise refuse(time_column, "is earlier than the line before: arrivals must not go backwards")
        first = moment if first is None else first
        previous = moment
        arrival_s = (moment - first) / 1e9 if azure else moment
        requests.append(Request(len(requests), arrival_s, prompt_tokens, output_tokens))
    if not requests:
        raise ServeError(f"{name}: no requests after the header")
    return requests


def _columns(name: str, line: int, cells: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The header's names in file order and the format they are, checked to be exactly one."""
    header = tuple(cell.strip() for cell in cells)
    expected = AZURE if set(header) & set(AZURE) else OURS
    if not set(header) & set(expected):
        raise ServeError(f"{name}: line {line}: unknown header '{','.join(header)}', expected "
                         f"{','.join(OURS)} or {','.join(AZURE)}")
    for column in header:
        if column not in expected:
            raise ServeError(f"{name}: line {line}: unknown column '{column}' (expected {','.join(expected)})")
    for column in expected:
        if column not in header:
            raise ServeError(f"{name}: line {line}: missing column {column} (expected {','.join(expected)})")
    if len(header) != len(expected):
        raise ServeError(f"{name}: line {line}: a column appears twice (expected {','.join(expected)})")
    return header, expected


def _positive(text: str, refuse: Callable[[str], ServeError]) -> int:
    if not _DIGITS.fullmatch(text) or int(text) < 1:
        raise refuse("is not a positive integer")
    return int(text)


def _seconds(text: str, refuse: Callable[[str], ServeError]) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise refuse("is not a finite number of seconds >= 0")
    return value


def _azure_ns(text: str, refuse: Callable[[str], ServeError]) -> int:
    """Nanoseconds since 1970 of a TIMESTAMP (digits past the ninth are not read: the trace has seven)."""
    match = _TIMESTAMP.fullmatch(text)
    why = "is not a timestamp like 2023-11-16 18:15:46.6805900"
    if match is None:
        raise refuse(why)
    *fields, fraction = match.groups()
    try:
        moment = datetime(*(int(f) for f in fields))
    except ValueError:
        raise refuse(why) from None
    whole_s = (moment - _EPOCH).days * 86_400 + (moment - _EPOCH).seconds
    return whole_s * 1_000_000_000 + int((fraction or "0")[:9].ljust(9, "0"))


def write_trace(requests: Iterable[Request], path: str | Path) -> None:
    """Write requests in our format (arrival_s,prompt_tokens,output_tokens), atomically."""
    lines = [",".join(OURS)]
    lines += [f"{r.arrival_s!r},{r.prompt_tokens},{r.output_tokens}" for r in requests]
    atomic_write(path, ("\n".join(lines) + "\n").encode())
