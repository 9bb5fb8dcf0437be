"""Hypothesis strategies for ISA values: canonical operands of every field kind, and random
nested loop bodies in `.tasm` text."""

from __future__ import annotations

from hypothesis import strategies as st

from isa import A32, A40, Addr, E, F32, Flag, Instr, OpSpec, Queue, U
from isa.fields import S
from isa.fields import AddressKind, FieldKind

SPACES = ("dram", "sram", "acc", "hbm")


def operand(kind: FieldKind, spaces: tuple[str, ...] = SPACES) -> st.SearchStrategy:
    if isinstance(kind, Flag):
        return st.integers(0, 1)
    if isinstance(kind, (U, S)):                 # S is a U with signed bounds
        return st.integers(*kind.bounds)
    if isinstance(kind, E):
        return st.sampled_from(kind.names).map(lambda name: kind.coerce("e", name))
    if isinstance(kind, AddressKind):
        units = st.integers(0, (1 << kind.addr_bits) - 1)
        return st.builds(Addr, st.sampled_from(spaces), units.map(lambda u: u * kind.granule))
    if kind is F32:
        return st.floats(width=32, allow_nan=False)
    raise AssertionError(f"no strategy for {kind!r}")


def instruction(spec: OpSpec, spaces: tuple[str, ...] = SPACES) -> st.SearchStrategy[Instr]:
    queues = st.builds(Queue, st.sampled_from(sorted(spec.units)), st.integers(0, 4095))
    fields = st.fixed_dictionaries({f.name: operand(f.kind, spaces) for f in spec.fields})
    return st.builds(lambda q, f: Instr.make(spec.mnemonic, q, **f), queues, fields)


# ---- loop bodies -------------------------------------------------------------------------------

ROW_BYTES = 64


def _strides(draw, depth: int, choices: list[int], signed: bool = False) -> str:
    """One stride suffix per enclosing loop (`+=0` where it does not move)."""
    signs = st.sampled_from(["+", "-"] if signed else ["+"])
    return "".join(f"{draw(signs)}={draw(st.sampled_from(choices))}" for _ in range(depth))


def _load(draw, depth: int) -> list[str]:
    rows = draw(st.integers(1, 2))
    return [f"dma0 load dst=sram[{draw(st.sampled_from([0, 0x200, 0x800, 0xe00])):#x}]"
            f"{_strides(draw, depth, [0, 64, 128, 256, 1024])} "
            f"src=dram[{draw(st.integers(0, 64)) * 64:#x}]{_strides(draw, depth, [0, 64, 320], True)}"
            f" rows={rows} row_bytes={ROW_BYTES}"]


def _store(draw, depth: int) -> list[str]:
    rows = draw(st.integers(1, 2))
    return [f"dma1 store dst=dram[{draw(st.integers(0, 1000)) * 64:#x}]"
            f"{_strides(draw, depth, [0, 64, 128, 256, 1024])} src=sram[{draw(st.integers(0, 63)) * 64:#x}]"
            f"{_strides(draw, depth, [0, 64, 320], True)} rows={rows} row_bytes={ROW_BYTES}"]


def _sync(draw, depth: int) -> list[str]:
    sem = draw(st.integers(0, 3))
    return [f"dma1 signal sem={sem}", f"dma0 wait sem={sem}"]


LOOP_ITEMS = {"load": _load, "store": _store, "sync": _sync}


@st.composite
def loop_body(draw, depth: int = 0, items=LOOP_ITEMS, marks: bool = False) -> list[str]:
    """Lines of random, possibly nested loops (at most 3 deep) of the `items` kinds, with
    `.op` marks when `marks`."""
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        if marks and draw(st.booleans()):
            lines.append(f".op op{draw(st.integers(0, 3))}")
        kind = draw(st.sampled_from(sorted(items) + (["loop"] if depth < 3 else [])))
        if kind == "loop":
            lines += [f".loop count={draw(st.integers(1, 4))}",
                      *draw(loop_body(depth + 1, items, marks)), ".endloop"]
        else:
            lines += items[kind](draw, depth)
    return lines
