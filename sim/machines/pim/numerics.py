"""Numeric model of the ISA's PIM extension (docs/isa.md, pim.*) over a `Memory`.

Per channel (the pim queue's index): the open row of every bank and one MAC accumulator per
bank. Arithmetic as documented for the GDDR6-AiM-style MAC unit (docs/pim.md): each column
command multiplies 16 BF16 weight lanes by 16 BF16 global-buffer lanes (products exact in
fp32), sums them with a 4-level fp32 adder tree, and adds the sum into the bank's fp32
accumulator, one column after another; `pim.rdmac*` returns the fp32 accumulator and clears it.
In an N-bit mode (`pim.qmode`) a column is 256/N packed integer codes (isa/packing.py) against
as many BF16 inputs: each code x input is exact in fp32 (at most 8 + 8 significant bits), and
the column's products are summed by the same adder tree, 256/N wide.
DRAM addresses follow arch.pim's row-interleaved map (`PimArch.dram_address`).
"""
from __future__ import annotations

import numpy as np

from arch.pim import PimArch
from isa import Addr, Instr
from isa.packing import unpack_rows
from isa.qformats import mode_bits
from sim.functional import FunctionalError, Memory

__all__ = ["PimNumerics"]

def _bf16(raw: np.ndarray) -> np.ndarray:
    """uint8 bytes of BF16 values -> float32 (exact)."""
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _tree_sum(products: np.ndarray) -> np.ndarray:
    """Sum the last axis (a power of two) pairwise in fp32, as an adder tree does."""
    while products.shape[-1] > 1:
        products = products[..., 0::2] + products[..., 1::2]
    return products[..., 0]


class PimNumerics:
    """Handlers for FunctionalExecutor(models=...): `PimNumerics(arch, memory).models()`."""

    def __init__(self, arch: PimArch, memory: Memory) -> None:
        self.arch, self.memory = arch, memory
        self.open = np.full((arch.channels, arch.banks), -1, np.int64)
        self.acc = np.zeros((arch.channels, arch.banks), np.float32)
        self.lanes = arch.burst_bytes // 2
        self.bits = [16] * arch.channels          # each channel's MAC mode: 16 (BF16) or N

    def models(self) -> dict:
        return {"pim.act": self.act, "pim.act_all": self.act_all, "pim.pre": self.pre,
                "pim.pre_all": self.pre_all, "pim.wrgb": self.wrgb, "pim.mac": self.mac,
                "pim.mac_all": self.mac_all, "pim.rdmac": self.rdmac,
                "pim.rdmac_all": self.rdmac_all, "pim.wr": self.wr, "pim.rd": self.rd,
                "pim.qmode": self.qmode}

    def qmode(self, ins: Instr) -> None:
        self.bits[ins.queue.index] = mode_bits(ins["fmt"])

    # -- rows ----------------------------------------------------------------------------
    def act(self, ins: Instr) -> None:
        self.open[ins.queue.index, ins["bank"]] = ins["row"]

    def act_all(self, ins: Instr) -> None:
        self.open[ins.queue.index, :] = ins["row"]

    def pre(self, ins: Instr) -> None:
        self.open[ins.queue.index, ins["bank"]] = -1

    def pre_all(self, ins: Instr) -> None:
        self.open[ins.queue.index, :] = -1

    # -- data movement -------------------------------------------------------------------
    def wrgb(self, ins: Instr) -> None:
        ch, a = ins.queue.index, self.arch
        if ins["gb"] + ins["bytes"] > a.gbuf_bytes:
            raise FunctionalError(f"gbuf bytes {ins['gb']}..{ins['gb'] + ins['bytes']} exceed "
                                  f"the {a.gbuf_bytes}-byte global buffer")
        data = self.memory.read_bytes(ins["src"], ins["bytes"])
        self.memory.write_bytes(Addr("gbuf", ch * a.gbuf_bytes + ins["gb"]), data)

    def _cells(self, ins: Instr) -> tuple[Addr, int]:
        a = self.arch
        at = a.dram_address(ins.queue.index, ins["bank"], ins["row"], ins["col"] * a.burst_bytes)
        return Addr("dram", at), ins["ncols"] * a.burst_bytes

    def wr(self, ins: Instr) -> None:
        addr, size = self._cells(ins)
        self.memory.write_bytes(addr, self.memory.read_bytes(ins["src"], size))

    def rd(self, ins: Instr) -> None:
        addr, size = self._cells(ins)
        self.memory.write_bytes(ins["dst"], self.memory.read_bytes(addr, size))

    # -- MAC -----------------------------------------------------------------------------
    def _mac(self, ch: int, banks: np.ndarray, ins: Instr) -> None:
        a, bits = self.arch, self.bits[ch]
        lanes = a.burst_bytes * 8 // bits
        rows = self.open[ch, banks]
        if (rows < 0).any():
            raise FunctionalError(f"bank {int(banks[np.argmax(rows < 0)])} has no open row")
        col, ncols, gb = ins["col"], ins["ncols"], ins["gb"]
        if gb + ncols * lanes * 2 > a.gbuf_bytes:
            raise FunctionalError(f"gbuf bytes {gb}..{gb + ncols * lanes * 2} exceed the "
                                  f"{a.gbuf_bytes}-byte global buffer")
        x = _bf16(self.memory.read_bytes(Addr("gbuf", ch * a.gbuf_bytes + gb),
                                         ncols * lanes * 2)).reshape(ncols, lanes)
        lo, hi = col * a.burst_bytes, (col + ncols) * a.burst_bytes
        if len(banks) == a.banks and (rows == rows[0]).all():      # one contiguous row block
            block = self.memory.read_bytes(Addr("dram", a.dram_address(ch, 0, int(rows[0]))),
                                           a.banks * a.row_bytes).reshape(a.banks, a.row_bytes)
            raw = np.ascontiguousarray(block[:, lo:hi])
        else:
            raw = np.stack([self.memory.read_bytes(
                Addr("dram", a.dram_address(ch, int(b), int(r), lo)), hi - lo)
                for b, r in zip(banks, rows)])
        if bits == 16:
            w = _bf16(raw.reshape(-1)).reshape(len(banks), ncols, lanes)
        else:                                   # the codes, exact as fp32
            w = unpack_rows(raw.reshape(len(banks), ncols, a.burst_bytes), bits,
                            lanes).astype(np.float32)
        column_sums = _tree_sum(w * x)                               # [banks, ncols] fp32
        start = self.acc[ch, banks][:, None]
        self.acc[ch, banks] = np.cumsum(np.concatenate([start, column_sums], axis=1),
                                        axis=1, dtype=np.float32)[:, -1]

    def mac(self, ins: Instr) -> None:
        self._mac(ins.queue.index, np.array([ins["bank"]]), ins)

    def mac_all(self, ins: Instr) -> None:
        self._mac(ins.queue.index, np.arange(self.arch.banks), ins)

    def rdmac(self, ins: Instr) -> None:
        ch, b = ins.queue.index, ins["bank"]
        self.memory.write_bytes(ins["dst"], self.acc[ch, b:b + 1].copy())
        self.acc[ch, b] = 0

    def rdmac_all(self, ins: Instr) -> None:
        ch = ins.queue.index
        self.memory.write_bytes(ins["dst"], self.acc[ch].copy())
        self.acc[ch] = 0
