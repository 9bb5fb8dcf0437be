"""Hypothesis strategies for ISA values: canonical operands of every field kind."""

from __future__ import annotations

from hypothesis import strategies as st

from isa import A32, A40, Addr, E, F32, Flag, Instr, OpSpec, Queue, U
from isa.fields import S
from isa.fields import AddressKind, FieldKind

SPACES = ("dram", "sram", "acc", "hbm")


def operand(kind: FieldKind, spaces: tuple[str, ...] = SPACES) -> st.SearchStrategy:
    if isinstance(kind, Flag):
        return st.integers(0, 1)
    if isinstance(kind, U):
        return st.integers(0, (1 << kind.bits) - 1)
    if isinstance(kind, S):
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
