"""Per-instruction event counts (MACs, bytes per tier, DRAM commands...), stored once per
distinct vector of counts.

A program of 10^6-10^7 instructions has few distinct cost vectors (its instructions repeat),
so each instruction keeps a 4-byte row number into a table of the distinct vectors instead of
one float64 per event name (80 bytes an instruction for PIM's ten names). A column read back
is, value for value and in the same order, the dense array a sheet of one float64 per event
and instruction held, so every sum over it is bit-identical to the dense one.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

__all__ = ["EventRows", "Events"]

Counts = tuple[tuple[str, float], ...]      # (event name, count) pairs; absent names count 0


class EventRows:
    """The builder: cost functions set instruction i's counts; `freeze` gives the `Events`."""

    __slots__ = ("names", "rows", "_row_of", "_counts")

    def __init__(self, n: int, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.rows = np.zeros(n, np.int32)          # per instruction: its row (0: no events)
        self._row_of: dict[Counts, int] = {(): 0}
        self._counts: list[Counts] = [()]

    def row(self, counts: Counts) -> int:
        """The row of a vector of counts (interned: equal pairs share a row)."""
        found = self._row_of.get(counts)
        if found is None:
            unknown = [name for name, _ in counts if name not in self.names]
            if unknown:
                raise KeyError(f"unknown event {unknown[0]!r} (events: {' '.join(self.names)})")
            found = self._row_of[counts] = len(self._counts)
            self._counts.append(counts)
        return found

    def set(self, i: int, **counts: float) -> None:
        """Instruction i's counts of the named events (its other counts are kept)."""
        held = int(self.rows[i])
        merged = tuple(counts.items()) if not held else \
            tuple({**dict(self._counts[held]), **counts}.items())
        self.rows[i] = self.row(merged)

    def freeze(self) -> Events:
        table = np.zeros((len(self._counts), len(self.names)))
        column = {name: k for k, name in enumerate(self.names)}
        for r, counts in enumerate(self._counts):
            for name, value in counts:
                table[r, column[name]] = value
        return Events(self.names, table, self.rows)


class Events(Mapping[str, np.ndarray]):
    """Event name -> per-instruction counts (float64), read from the rows of distinct counts."""

    __slots__ = ("names", "_columns", "_rows", "_whole")

    def __init__(self, names: tuple[str, ...], table: np.ndarray, rows: np.ndarray) -> None:
        self.names = names
        self._columns = {name: np.ascontiguousarray(table[:, k]) for k, name in enumerate(names)}
        for column in self._columns.values():
            column.setflags(write=False)
        self._rows = rows
        rows.setflags(write=False)
        # the table's length when every count is a whole number and any sum of them over
        # the rows stays below 2**53 (exact in float64 in any order); else 0
        whole = bool(names) and np.array_equal(table, np.round(table)) and \
            float(np.abs(table).max(initial=0)) * max(len(rows), 1) < 2.0 ** 53
        self._whole = len(table) if whole else 0

    def __getitem__(self, name: str) -> np.ndarray:
        """The dense per-instruction counts of `name` (a fresh array)."""
        return self._columns[name][self._rows]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def total(self, name: str, at: slice | np.ndarray = slice(None)) -> float:
        """The sum of `name` over the instructions `at` (a slice, a boolean mask or ascending
        indices), in program order, exactly as the dense column's `sum` is."""
        column = self._columns[name]
        if not column.any():
            return 0.0
        return float(column[self._rows[at]].sum())

    def totals(self, at: slice | np.ndarray = slice(None)) -> dict[str, float]:
        """Every event's `total` over `at`. Where every count is a whole number (`_whole`),
        in one pass over the rows: how often each row occurs there, times the table; each
        sum is then exact and equals the dense column's `sum` whatever the order of adds."""
        if not self._whole:
            return {name: self.total(name, at) for name in self.names}
        uses = np.bincount(self._rows[at], minlength=self._whole)
        return {name: float(uses @ column) if column.any() else 0.0
                for name, column in self._columns.items()}

    @property
    def rows(self) -> np.ndarray:
        """Per instruction, its row of distinct counts (read-only)."""
        return self._rows

    def regrouped(self, rows: np.ndarray) -> Events:
        """The same table of distinct counts for other instructions: instruction i has row
        rows[i] (a compact program's instructions, each standing for all its instances)."""
        table = np.column_stack([self._columns[name] for name in self.names]) if self.names \
            else np.zeros((1, 0))
        return Events(self.names, table, np.array(rows, np.int32))

    def weighted_totals(self, weights: np.ndarray, at: slice = slice(None)) -> dict[str, float]:
        """Every event's sum over instructions `at` of weights[i] times instruction i's count:
        the totals of a compact program whose instruction i runs weights[i] times. Counts are
        whole numbers, so the sum is exact (below 2**53) and equals the unrolled `totals`."""
        rows, w = self._rows[at], np.asarray(weights)[at]
        return {name: float((self._columns[name][rows] * w).sum()) for name in self.names}
