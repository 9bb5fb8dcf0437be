"""PIM DRAM (PIM-GPT / GDDR6-AiM style): the architecture dataclass.

`channels` GDDR6 channels of `banks` banks (in `bank_groups` groups) with a MAC unit per
bank that multiplies one column burst (`burst_bytes`, 16 BF16 lanes) with the channel's
global buffer per column command; a small host ASIC does softmax, layer norm, GELU and the
rest. DRAM timing is in DRAM clock cycles (`tck_ns`); sources: reference/pim.md.

Memory spaces seen by programs:
- `dram`  channels*banks*rows*row_bytes bytes, off-chip. Byte address
  ((row*channels + channel)*banks + bank)*row_bytes + byte_in_row: row-interleaved, so
  DRAM row r of every bank of every channel is one contiguous block (a matrix spread over
  all banks is one dense symbol) and a linear buffer spreads over every channel.
- `gbuf`  the per-channel global buffers, channels*gbuf_bytes bytes, off-chip (they sit on
  the DRAM die, behind the channel). Channel c's buffer is gbuf[c*gbuf_bytes, (c+1)*gbuf_bytes);
  the `gb` field of pim.wrgb / pim.mac / pim.mac_all on queue pimC is an offset inside it.
- `abuf`  the host ASIC's buffer, on-chip.
Queues: pim0..pim{channels-1} (one per channel), asic0 (the ASIC's vector unit), dma0 and
dma1 (the ASIC's loads and stores over the channels' I/O, sharing its bandwidth).
"""
from __future__ import annotations

from dataclasses import dataclass

import isa
from arch.config import ArchError, choice, within
from arch.limits import (BANDWIDTH_GBPS, BURST_BYTES, CLOCK_MHZ, DEVICE_POWER_MW, DRAM_CYCLES, ENERGY_PJ,
                         LANES, ON_CHIP_BYTES, OPTIONAL_DRAM_CYCLES, PIM_BANKS, PIM_CHANNELS, PIM_ROWS, PIPELINE_CYCLES,
                         POWER_W, REFRESH_CYCLES, ROW_BYTES, STANDBY_POWER_MW, TCK_NS)
from isa.opcodes import RED_FUNCS, VEC_FUNCS

__all__ = ["PimArch", "PimTiming", "PimAsic", "PimEnergy", "ASIC_FUNCS", "DTYPE_BYTES"]

# Every vec/red function the host ASIC needs a latency for (the ISA's function names).
ASIC_FUNCS = tuple(dict.fromkeys(VEC_FUNCS + RED_FUNCS))
DTYPE_BYTES = {"bf16": 2}


@dataclass(frozen=True, slots=True)
class PimTiming:
    """DRAM command timing, every value in DRAM clock cycles (tCK)."""

    tRCD_RD: int = within(DRAM_CYCLES)  # ACT -> RD, same bank
    tRCD_WR: int = within(DRAM_CYCLES)  # ACT -> WR, same bank
    tRCD_MAC: int = within(DRAM_CYCLES)  # ACT -> MAC, same bank
    tRP: int = within(DRAM_CYCLES)  # PRE -> ACT, same bank
    tRAS: int = within(DRAM_CYCLES)  # ACT -> PRE, same bank
    tRC: int = within(DRAM_CYCLES)  # ACT -> ACT, same bank; ACT_ALL waits tRC after any ACT
    tCCD_S: int = within(DRAM_CYCLES)  # column -> column, different bank groups
    tCCD_L: int = within(DRAM_CYCLES)  # column -> column, same bank group (all-bank commands: all groups)
    tRRD_S: int = within(DRAM_CYCLES)  # ACT -> ACT, banks of different bank groups
    tRRD_L: int = within(DRAM_CYCLES)  # ACT -> ACT, another bank of the same group (ACT_ALL: every group)
    tFAW: int = within(DRAM_CYCLES)  # at most four ACTs in any tFAW window
    tRTP: int = within(DRAM_CYCLES)  # RD / MAC -> PRE, same bank
    tCWL: int = within(DRAM_CYCLES)  # WR -> its data on the pins (write latency)
    tBL: int = within(DRAM_CYCLES)  # one burst on the pins
    tWR: int = within(DRAM_CYCLES)  # write recovery: the write's last data -> PRE (WR -> PRE = tCWL + tBL + tWR)
    tCL: int = within(DRAM_CYCLES)  # RD -> data (RD's data is back tCL + tBL after it)
    tRFC: int = within(DRAM_CYCLES)  # REF -> any command
    tREFI: int = within(REFRESH_CYCLES)  # one all-bank REF due every tREFI
    tMODCH: int = within(OPTIONAL_DRAM_CYCLES)  # MODE (bank <-> register mode) -> any command; 0: no modes
    tRDMAC_PRE: int = within(OPTIONAL_DRAM_CYCLES)  # RDMAC -> PRE, same bank (0: no wait, the result is in registers)
    WR_GB: int = within(DRAM_CYCLES)  # WRGB -> its data usable by MAC
    RD_MAC: int = within(DRAM_CYCLES)  # RDMAC -> its data back at the host (the MAC-result latency)

    @property
    def wr_to_pre(self) -> int:
        """WR -> PRE of the same bank: the write's data goes out tCWL later, takes tBL, and the
        bank needs tWR after its last beat (JEDEC's write recovery, from the end of the burst)."""
        return self.tCWL + self.tBL + self.tWR


@dataclass(frozen=True, slots=True)
class PimAsic:
    """The host ASIC beside the PIM DRAM: vector unit and buffer."""

    clock_mhz: float = within(CLOCK_MHZ)
    vector_lanes: int = within(LANES)
    buffer_bytes: int = within(ON_CHIP_BYTES)
    latency_cycles: dict[str, int] = within(PIPELINE_CYCLES)  # pipeline depth per vec/red function


@dataclass(frozen=True, slots=True)
class PimEnergy:
    """Powers of the GDDR6-PIM device (CENT power calculator) and per-action energies."""

    p_act_mw: float = within(DEVICE_POWER_MW)  # E per bank activated = P_ACT * tRC
    p_rd_mw: float = within(DEVICE_POWER_MW)  # E per MAC_ALL = 3 * P_RD * tCCD_L
    p_wr_mw: float = within(DEVICE_POWER_MW)
    p_act_standby_mw: float = within(STANDBY_POWER_MW)
    p_pre_standby_mw: float = within(STANDBY_POWER_MW)
    io_pj_per_bit: float = within(ENERGY_PJ)  # host <-> PIM over the GDDR6 DQ pins
    asic_op_pj: float = within(ENERGY_PJ)   # one element operation on the ASIC
    asic_static_w: float = within(POWER_W)
@dataclass(frozen=True, slots=True)
class PimArch:
    name: str
    target: str = choice("pim")
    dtype: str = choice("bf16")             # MAC operand type
    channels: int = within(PIM_CHANNELS)
    banks: int = within(PIM_BANKS)          # per channel
    bank_groups: int = within(PIM_BANKS)    # per channel; bank b in group b // (banks/bank_groups)
    rows: int = within(PIM_ROWS)            # per bank
    row_bytes: int = within(ROW_BYTES)
    burst_bytes: int = within(BURST_BYTES)  # one column access (a MAC command's operand)
    macs_per_bank_per_access: int = within(LANES)
    tck_ns: float = within(TCK_NS)          # DRAM clock period
    gbuf_bytes: int = within(ROW_BYTES)     # global buffer, per channel
    io_bw_gbps: float = within(BANDWIDTH_GBPS)  # host <-> PIM, per channel (GB/s = 1e9 bytes/s)
    timing: PimTiming
    asic: PimAsic
    energy: PimEnergy

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, value: object, expected: str) -> None:
            if not ok:
                raise ArchError(f"field '{field}' must be {expected}, got {value!r}")

        t = self.timing
        need(self.row_bytes % self.burst_bytes == 0, "row_bytes", self.row_bytes,
             f"a multiple of burst_bytes ({self.burst_bytes})")
        lanes_bytes = self.macs_per_bank_per_access * DTYPE_BYTES[self.dtype]
        need(self.burst_bytes == lanes_bytes, "burst_bytes", self.burst_bytes,
             f"macs_per_bank_per_access x {self.dtype} bytes ({lanes_bytes})")
        need(self.banks % self.bank_groups == 0, "bank_groups", self.bank_groups,
             f"a divisor of banks ({self.banks})")
        need(self.gbuf_bytes % self.burst_bytes == 0, "gbuf_bytes", self.gbuf_bytes,
             f"a multiple of burst_bytes ({self.burst_bytes})")
        need(t.tRAS <= t.tRC, "timing.tRAS", t.tRAS, f"at most timing.tRC ({t.tRC})")
        need(t.tRDMAC_PRE <= t.tRAS, "timing.tRDMAC_PRE", t.tRDMAC_PRE,
             f"at most timing.tRAS ({t.tRAS}): a read of an earlier row's results cannot hold "
             "a later row open")
        need(t.tRRD_S <= t.tRRD_L, "timing.tRRD_L", t.tRRD_L,
             f"at least timing.tRRD_S ({t.tRRD_S}): a bank of the same group is never nearer")
        # Longest refresh-and-reopen sequence: commands must fit between refreshes.
        busy = (2 * t.tMODCH + max(t.tRAS, t.tRTP, t.wr_to_pre) + max(t.tRP, t.tRC) + t.tRFC
                + self.banks * max(t.tRRD_L, t.tFAW) + max(t.tRCD_RD, t.tRCD_WR, t.tRCD_MAC))
        need(t.tREFI > busy, "timing.tREFI", t.tREFI,
             f"more than the longest refresh-and-reopen sequence ({busy} cycles)")
        missing = [f for f in ASIC_FUNCS if f not in self.asic.latency_cycles]
        if missing:
            raise ArchError(f"missing field 'asic.latency_cycles.{missing[0]}'")
        unknown = sorted(set(self.asic.latency_cycles) - set(ASIC_FUNCS))
        if unknown:
            raise ArchError(f"unknown field 'asic.latency_cycles.{unknown[0]}'")

    # ---- geometry ------------------------------------------------------------------------
    @property
    def columns(self) -> int:
        """Column bursts per row."""
        return self.row_bytes // self.burst_bytes

    @property
    def banks_per_group(self) -> int:
        return self.banks // self.bank_groups

    def bank_group(self, bank: int) -> int:
        return bank // self.banks_per_group

    @property
    def dram_bytes(self) -> int:
        return self.channels * self.banks * self.rows * self.row_bytes

    @property
    def row_block_bytes(self) -> int:
        """Bytes of one DRAM row across every bank of every channel (one address block)."""
        return self.channels * self.banks * self.row_bytes

    def dram_address(self, channel: int, bank: int, row: int, byte: int = 0) -> int:
        return ((row * self.channels + channel) * self.banks + bank) * self.row_bytes + byte

    # ---- rates ---------------------------------------------------------------------------
    @property
    def dram_clock_hz(self) -> float:
        return 1e9 / self.tck_ns

    @property
    def peak_macs_per_ns(self) -> float:
        """Every bank of every channel does one column of MACs per tCCD_L."""
        per_cycle = self.channels * self.banks * self.macs_per_bank_per_access
        return per_cycle / (self.timing.tCCD_L * self.tck_ns)

    @property
    def peak_internal_bw_gbps(self) -> float:
        """Bytes read by the bank MAC units per ns (= GB/s): one burst per bank per tCCD_L."""
        return self.channels * self.banks * self.burst_bytes / (self.timing.tCCD_L * self.tck_ns)

    @property
    def io_bw_total_gbps(self) -> float:
        return self.channels * self.io_bw_gbps

    # ---- energy (reference/pim.md: CENT power calculator) ---------------------------------
    @property
    def e_act_pj(self) -> float:
        """One bank activated: P_ACT x tRC (mW x ns = pJ)."""
        return self.energy.p_act_mw * self.timing.tRC * self.tck_ns

    @property
    def e_mac_all_pj(self) -> float:
        """One all-bank MAC column command (MAC16): 3 x P_RD x tCCD_L."""
        return 3 * self.energy.p_rd_mw * self.timing.tCCD_L * self.tck_ns

    @property
    def e_rd_pj(self) -> float:
        """One column burst read: P_RD x tCCD_L."""
        return self.energy.p_rd_mw * self.timing.tCCD_L * self.tck_ns

    @property
    def e_wr_pj(self) -> float:
        """One column burst written: P_WR x tCCD_L."""
        return self.energy.p_wr_mw * self.timing.tCCD_L * self.tck_ns

    def summary(self) -> str:
        """One line for reports."""
        return (f"{self.channels} channels x {self.banks} banks, {self.row_bytes} B rows, "
                f"{self.macs_per_bank_per_access} MACs/bank/column, ASIC {self.asic.vector_lanes} "
                f"lanes at {self.asic.clock_mhz:g} MHz")

    @property
    def pim_queues(self) -> tuple[str, ...]:
        """One queue per channel, its DRAM commands in order."""
        return tuple(f"pim{c}" for c in range(self.channels))

    @property
    def queues(self) -> tuple[str, ...]:
        """The machine's unit queues, in the order programs end them (one halt each)."""
        return ("dma0", "dma1", "asic0") + self.pim_queues

    def machine_view(self) -> isa.MachineView:
        """What the program verifier needs to know of this machine (layout: module docstring)."""
        spaces = (isa.MemorySpace("dram", self.dram_bytes, on_chip=False),
                  isa.MemorySpace("gbuf", self.channels * self.gbuf_bytes, on_chip=False),
                  isa.MemorySpace("abuf", self.asic.buffer_bytes, on_chip=True))
        limits = {"bank": self.banks, "row": self.rows, "col": self.columns,
                  "gbuf_bytes": self.gbuf_bytes, "pim_burst_bytes": self.burst_bytes}
        return isa.MachineView({s.name: s for s in spaces}, frozenset(self.queues), limits,
                               target="pim")
