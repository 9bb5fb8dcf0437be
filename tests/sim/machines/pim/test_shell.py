"""A PIM program with loops is timed from its executed shell (PimMachine.start_shell: compact
instruction objects in executed order, the moving rows and columns read as arrays) with every
report field equal to its unrolled equivalent's, refreshes and MAC modes included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isa
from arch import load_arch
from isa import assemble, unroll, verify
from sim.simulate import simulate
from tessel.targets import TARGETS

# refreshes every 1100 cycles (the least the preset allows), so a short random program meets several at every phase
ARCH = load_arch("pim-gpt", ["timing.tREFI=1100", "channels=2"])
MACHINE = TARGETS["pim"].machine(ARCH)
HEADER = (".target pim\n.isa 3\n.spaces dram gbuf abuf\n.op start\n"
          "asic0 vcfg rows=1 cols=32 dtype=bf16 out=bf16 imm=0.0\n")


def _moves(draw, depth: int, choices: list[int]) -> str:
    return "".join(f"+={draw(st.sampled_from(choices))}" for _ in range(depth))


def _gemv_row(draw, depth: int, channel: int) -> list[str]:
    """One DRAM row of a GEMV: every bank closed, the row opened, some columns multiplied, the
    partial sums read out; the row and the first column may move with the loops."""
    q = f"pim{channel}"
    col = draw(st.integers(0, 16))
    return [f"{q} pim.pre_all",
            f"{q} pim.act_all row={draw(st.integers(0, 40))}{_moves(draw, depth, [0, 1, 3])}",
            f"{q} pim.mac_all col={col}{_moves(draw, depth, [0, 1, 4])} "
            f"ncols={draw(st.integers(0, 8))} gb=0",
            f"{q} pim.rdmac_all dst=abuf[{draw(st.integers(0, 31)) * 64:#x}]"]


def _bank_write(draw, depth: int, channel: int) -> list[str]:
    """One bank closed, opened at a (moving) row and written: a KV append."""
    q, bank = f"pim{channel}", draw(st.integers(0, 15))
    row, moves = draw(st.integers(0, 40)), _moves(draw, depth, [0, 1, 2])
    return [f"{q} pim.pre bank={bank}", f"{q} pim.act bank={bank} row={row}{moves}",
            f"{q} pim.wr bank={bank} row={row}{moves} col={draw(st.integers(0, 60))} ncols=2 "
            f"src=abuf[0x0]"]


def _fill(draw, depth: int, channel: int) -> list[str]:
    return [f"pim{channel} pim.wrgb gb=0 src=abuf[{draw(st.integers(0, 31)) * 64:#x}] "
            f"bytes={draw(st.sampled_from([32, 64, 256]))}"]


def _mode(draw, depth: int, channel: int) -> list[str]:
    return [f"pim{channel} pim.qmode fmt={draw(st.sampled_from(['bf16', 'int8', 'int4']))}"]


def _handoff(draw, depth: int, channel: int) -> list[str]:
    """A channel's reads handed to the DMA (a pim signal waits for them) and back."""
    sem = draw(st.integers(0, 3))
    return [f"pim{channel} signal sem={sem}", f"dma0 wait sem={sem}",
            f"dma0 store dst=dram[0x100000] src=abuf[0x0] rows=1 row_bytes=64",
            f"dma0 signal sem={sem + 4}", f"pim{channel} wait sem={sem + 4}"]


def _vector(draw, depth: int, channel: int) -> list[str]:
    """An ASIC add under a vector configuration that may change between its iterations (a
    vcfg before or after it in the loop body), its operands moving: the same instruction
    object priced under several configurations."""
    vcfg = f"asic0 vcfg rows={draw(st.integers(1, 4))} cols={draw(st.sampled_from([16, 64, 200]))} " \
           "dtype=bf16 out=bf16 imm=0.0"
    add = (f"asic0 vec func=add bcast=none dst=abuf[0x2000]{_moves(draw, depth, [0, 0x800])} "
           "a=abuf[0x0] b=abuf[0x1000]")
    return [vcfg, add] if draw(st.booleans()) else [add, vcfg]


def _mark(draw, depth: int, channel: int) -> list[str]:
    """An op mark, named per iteration inside loops, before a GEMV row: a burst of a
    channel's rows never runs across one (each op keeps its own span, busy cycles and
    events)."""
    return [f".op op{draw(st.integers(0, 9))}" + (".{+0}" if depth else ""),
            *_gemv_row(draw, depth, channel)]


ITEMS = {"row": _gemv_row, "write": _bank_write, "fill": _fill, "mode": _mode, "handoff": _handoff,
         "vector": _vector, "mark": _mark}


@st.composite
def _body(draw, depth: int = 0) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(sorted(ITEMS) + (["loop"] if depth < 2 else [])))
        if kind == "loop":
            lines += [f".loop count={draw(st.integers(1, 5))}",
                      *("  " + line for line in draw(_body(depth + 1))), ".endloop"]
        else:
            lines += ITEMS[kind](draw, depth, draw(st.integers(0, 1)))
    return lines


def _results(program: isa.Program) -> tuple[dict, dict]:
    """The timing-only reports of the unrolled program and of the compact one, the compact one
    timed without unrolling (isa.unroll may not be called)."""
    flat = simulate(unroll(program), MACHINE, functional=False).result.to_json()

    def refused(_):
        raise AssertionError("the compact PIM program was unrolled")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(isa, "unroll", refused)
        compact = simulate(program, MACHINE, functional=False).result.to_json()
    return compact, flat


@settings(max_examples=60, deadline=None, database=None)
@given(lines=_body())
@pytest.mark.slow        # about 1 s
def test_a_pim_loop_program_times_from_its_shell_as_unrolled(lines):
    program = assemble(HEADER + "\n".join(lines) + "\n")
    try:
        verify(program, ARCH.machine_view())
    except ValueError:
        return                              # the verifier's own equivalence: tests/isa
    compact, flat = _results(program)
    assert compact == flat


def test_moving_rows_and_modes_time_from_the_shell_as_unrolled():
    """A GEMV whose rows move, under a 4-bit MAC mode, with refreshes in the middle of it."""
    program = assemble(HEADER + "\n".join([
        "pim0 pim.qmode fmt=int4", "pim0 pim.wrgb gb=0 src=abuf[0x0] bytes=256",
        ".loop count=6", *("  " + line for line in [
            "pim0 pim.pre_all", "pim0 pim.act_all row=3+=2", "pim0 pim.mac_all col=0 ncols=8 gb=0",
            "pim0 pim.rdmac_all dst=abuf[0x100]+=0x40",
            ".loop count=3", "  pim1 pim.pre_all", "  pim1 pim.act_all row=9+=1+=1",
            "  pim1 pim.mac_all col=4+=8+=8 ncols=4 gb=0", "  pim1 pim.rdmac_all dst=abuf[0x800]",
            ".endloop"]), ".endloop", "pim0 halt"]) + "\n")
    compact, flat = _results(program)
    assert compact == flat
    assert compact["dram_commands"]["REF"] > 0 and compact["instructions"] == 100


def test_an_op_mark_between_one_channels_commands_splits_their_burst():
    """A channel's commands on either side of an op mark are two bursts: each op keeps its
    own span, busy cycles, MACs and energy, as unrolled."""
    program = assemble(HEADER + "\n".join([
        ".loop count=3", *("  " + line for line in [
            "pim0 pim.pre_all", "pim0 pim.act_all row=3+=1", ".op rows.{+0}",
            "pim0 pim.mac_all col=0 ncols=8 gb=0", "pim0 pim.rdmac_all dst=abuf[0x100]"]),
        ".endloop", "pim0 halt"]) + "\n")
    compact, flat = _results(program)
    assert compact == flat
    assert [op["macs"] for op in compact["ops"] if op["name"].startswith("rows.")] == [2048] * 3


def test_bursts_after_a_halt_never_issue():
    """A channel's rows after its queue's `halt` never issue: their bursts add no DRAM
    commands and no MAC cycles (the target report's utilisation), as unrolled."""
    rows = [".loop count=2", "  pim0 pim.pre_all", "  pim0 pim.act_all row=3+=1",
            "  pim0 pim.mac_all col=0 ncols=8 gb=0", "  pim0 pim.rdmac_all dst=abuf[0x100]",
            ".endloop"]
    program = assemble(HEADER + "\n".join([*rows, "pim0 halt", *rows]) + "\n")
    compact, flat = _results(program)
    assert compact == flat and compact["dram_commands"]["MAC_ALL"] == 2 * 8


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 12), st.sampled_from([1, 3, 2 ** 20, 2 ** 40]),
       st.integers(0, 2 ** 32))
def test_unique_rows_equals_numpy_by_rows(n, k, span, seed):
    """The moved plans' distinct keys (`unique_rows`, one code per row) are numpy's unique by
    rows, inverse included, for spans small and large (past int64's room: ranks per column;
    past that too, with many columns: numpy's own)."""
    import numpy as np
    from sim.machines.pim.planning import unique_rows
    values = np.random.default_rng(seed).integers(-span, span, size=(n, k))
    distinct, inverse = unique_rows(values)
    want, want_inverse = np.unique(values, axis=0, return_inverse=True)
    assert np.array_equal(distinct, want) and np.array_equal(inverse, want_inverse.ravel())


@pytest.mark.parametrize("inner", [0, 1])
def test_a_row_a_loop_moves_out_of_range_is_the_unrolled_programs_error(inner):
    """A row moved past its field's range (a program the verifier refuses first) stops the
    shell with the error the unroller gives, whether one loop moves it (built with the others
    of its opcode) or two do (built on its own)."""
    program = assemble(HEADER + "\n".join([
        ".loop count=4", "  .loop count=2", "    pim1 pim.pre_all",
        f"    pim1 pim.act_all row=5+={inner}-=2", "  .endloop", ".endloop",
        "pim0 halt"]) + "\n")
    with pytest.raises(isa.IsaError) as unrolled:
        unroll(program)
    with pytest.raises(isa.IsaError) as shell:
        MACHINE.start_shell(program)
    assert str(shell.value) == str(unrolled.value) and "row" in str(shell.value)
