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


# ---- pim row words in loops (the row protocol: isa/rows.py, isa/row_loops.py) ------------------
# Rows from a few bases and unit strides, so that an act and a later rd/wr often name the same
# row, and sometimes the same row in all but some iterations; banks 0-3 of queues pim0 and pim1.

def _row(draw, depth: int) -> str:
    """A row operand: a base of 20 or 21, a stride of -1, 0 or 1 per enclosing loop (3 deep,
    4 iterations each: it stays in 11..30)."""
    moves = "".join(draw(st.sampled_from(["+=0", "+=1", "-=1", "+=0"])) for _ in range(depth))
    return f"{draw(st.sampled_from([20, 21]))}{moves}"


def _pim(draw) -> tuple[str, int]:
    return f"pim{draw(st.integers(0, 1))}", draw(st.integers(0, 3))


def _gemv(draw, depth: int) -> list[str]:
    queue, _ = _pim(draw)
    return [f"{queue} pim.act_all row={_row(draw, depth)}",
            f"{queue} pim.mac_all col=0 ncols=1 gb=0", f"{queue} pim.pre_all"]


def _bank(draw, depth: int) -> list[str]:
    (queue, bank), row = _pim(draw), _row(draw, depth)
    access = draw(st.sampled_from(["rd", "wr"]))
    operand = "dst=abuf[0x0]" if access == "rd" else "src=abuf[0x0]"
    return [f"{queue} pim.act bank={bank} row={row}",
            f"{queue} pim.{access} bank={bank} row={draw(st.sampled_from([row, _row(draw, depth)]))} "
            f"col=0 ncols=1 {operand}", f"{queue} pim.pre bank={bank}"]


def _reopen(draw, depth: int) -> list[str]:
    """Leaves a bank open for what follows (the next iteration)."""
    queue, bank = _pim(draw)
    return [f"{queue} pim.pre bank={bank}", f"{queue} pim.act bank={bank} row={_row(draw, depth)}"]


def _access(draw, depth: int) -> list[str]:
    (queue, bank), ncols = _pim(draw), draw(st.sampled_from([1, 1, 0]))
    return [draw(st.sampled_from([
        f"{queue} pim.rd bank={bank} row={_row(draw, depth)} col=0 ncols={ncols} dst=abuf[0x0]",
        f"{queue} pim.wr bank={bank} row={_row(draw, depth)} col=0 ncols={ncols} src=abuf[0x0]",
        f"{queue} pim.mac bank={bank} col=0 ncols={ncols} gb=0",
        f"{queue} pim.mac_all col=0 ncols={ncols} gb=0"]))]


def _close(draw, depth: int) -> list[str]:
    queue, bank = _pim(draw)
    return [draw(st.sampled_from([f"{queue} pim.pre bank={bank}", f"{queue} pim.pre_all"]))]


def _open(draw, depth: int) -> list[str]:
    queue, bank = _pim(draw)
    return [draw(st.sampled_from([f"{queue} pim.act bank={bank} row={_row(draw, depth)}",
                                  f"{queue} pim.act_all row={_row(draw, depth)}"]))]


PIM_ROW_ITEMS = {"gemv": _gemv, "bank": _bank, "reopen": _reopen, "access": _access,
                 "close": _close, "open": _open}
