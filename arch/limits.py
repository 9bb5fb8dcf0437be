"""The physically meaningful range of every numeric architecture field, with its reason.

Each numeric field of an architecture dataclass names one `Limit` (`within(CLOCK_MHZ)`), so a
value outside it — NaN, an infinity, 1e300 MHz, a 1e9-row array — is refused at load with the
range in the message instead of turning into a traceback, a hang or a meaningless figure.
The bounds are generous (about 10x beyond anything built or published) so that design-space
sweeps are never cut short, and tight enough that cycle counts stay integers the engine can
hold. docs/inputs.md shows `LIMITS` as a table (a test keeps the two equal).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

__all__ = ["Limit", "LIMITS", "markdown_rows"]


@dataclass(frozen=True, slots=True)
class Limit:
    """low <= value <= high (low < value when `low_open`), in `unit`, because `reason`."""

    name: str
    low: float
    high: float
    unit: str
    reason: str
    low_open: bool = False

    def holds(self, value: float) -> bool:
        """Finite and inside (compared without float conversion, so 10**400 is just too big)."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self, kind: str) -> str:
        """'an integer from 1 to 65536' / 'a number above 0 and at most 100000 pJ'."""
        unit = f" {self.unit}" if self.unit else ""
        if self.low_open:
            return f"{kind} above {_number(self.low)} and at most {_number(self.high)}{unit}"
        return f"{kind} from {_number(self.low)} to {_number(self.high)}{unit}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


# ---- clocks and time ---------------------------------------------------------------------
CLOCK_MHZ = Limit("clock", 1, 10_000, "MHz",
                  "1 MHz to 10 GHz; every compute clock in reference/ lies between HBM-PIM's "
                  "300 MHz (pim.md) and the H100's 1.98 GHz (gpu.md)")
TCK_NS = Limit("DRAM clock period", 0.1, 10, "ns",
               "0.1 ns (10 GHz) to 10 ns (100 MHz): GDDR6 runs at 0.5-0.57 ns, HBM2 at 1 ns, "
               "HBM3 at 0.625 ns (reference/pim.md)")
LATENCY_NS = Limit("memory latency", 0, 10_000, "ns",
                   "up to 10 us, 100x a DRAM access (about 100 ns); covers CXL- or "
                   "network-attached memory")
HOST_TIME_US = Limit("host time", 0, 1_000_000, "us",
                     "up to 1 s per launch or kernel; a kernel launch costs 4-6 us "
                     "(reference/gpu.md)")
PIPELINE_CYCLES = Limit("pipeline depth", 0, 4096, "cycles",
                        "4096 cycles, 40x the deepest unit in the presets (the PIM ASIC's "
                        "96-cycle GELU)")
DRAM_CYCLES = Limit("DRAM timing", 1, 8192, "tCK",
                    "8192 tCK is 819 ns even at tCK 0.1 ns, longer than a JEDEC refresh cycle "
                    "tRFC (hundreds of ns); the longest in reference/pim.md is 260 tCK (HBM2 tRFC)")
OPTIONAL_DRAM_CYCLES = Limit("DRAM timing that may be 0", 0, 8192, "tCK",
                             "0 turns the rule off (no mode switch; a precharge need not wait "
                             "for a MAC-result read); GDDR6-AiM's tMODCH is 32 tCK "
                             "(reference/pim.md); at most as DRAM timing")
REFRESH_CYCLES = Limit("refresh interval", 1, 1 << 17, "tCK",
                       "2^17 tCK holds JEDEC's 7.8 us tREFI at tCK 0.1 ns (78,000 tCK); "
                       "reference/pim.md's are 3333-6240 tCK")
# ---- sizes ---------------------------------------------------------------------------------
ARRAY_SIDE = Limit("array side", 1, 1 << 16, "PEs",
                   "2^16, 256x the largest systolic array built (TPU v1's 256 x 256, Jouppi "
                   "et al., ISCA 2017; preset tpu-v1)")
LANES = Limit("lanes", 1, 1 << 16, "lanes", "2^16 SIMD or MAC lanes, as the array side")
MACS_PER_PE = Limit("MACs per PE a cycle", 1, 16, "MACs",
                    "16 narrow products in one PE's lane a cycle; an int4 lane packs 2 "
                    "(rtl_models/systolic_array.v's int4 mode)")
UNITS = Limit("units", 1, 1 << 16, "units",
              "2^16 compute or memory units, 60x SN40L's 1040 PCUs (reference/dataflow.md)")
ON_CHIP_BYTES = Limit("on-chip memory", 1, 1 << 32, "bytes",
                      "4 GiB, 8x SN40L's 520 MB of on-chip SRAM (reference/dataflow.md)")
OFF_CHIP_BYTES = Limit("off-chip memory", 1, 1 << 44, "bytes",
                       "16 TiB, 10x SN40L's 1.5 TB of DDR per socket (reference/dataflow.md)")
PIM_CHANNELS = Limit("PIM channels", 1, 1024, "channels",
                     "32x aim-32ch's 32; each channel is one queue of the program")
PIM_BANKS = Limit("banks per channel", 1, 256, "banks",
                  "GDDR6-AiM has 16 banks per channel (reference/pim.md); the ISA's bank "
                  "field is 8 bits")
PIM_ROWS = Limit("rows per bank", 1, 1 << 20, "rows",
                 "2^20, 64x GDDR6-AiM's 16 K rows (reference/pim.md); the ISA's row field is "
                 "24 bits")
ROW_BYTES = Limit("DRAM row or buffer", 1, 1 << 16, "bytes",
                  "64 KiB, 32x GDDR6-AiM's 2 KB row and global buffer (reference/pim.md); the "
                  "ISA's column and buffer-offset fields are 16 bits")
BURST_BYTES = Limit("column burst", 1, 1024, "bytes",
                    "32x GDDR6-AiM's 32-byte (256-bit) column (reference/pim.md)")
# ---- rates ---------------------------------------------------------------------------------
BANDWIDTH_GBPS = Limit("bandwidth", 0.1, 1_000_000, "GB/s",
                       "0.1 GB/s (below PC66 SDRAM's 0.53 GB/s) to 1 PB/s, 200x the H200's "
                       "4.8 TB/s (reference/gpu.md)")
TFLOPS = Limit("peak rate", 0, 100_000, "TFLOP/s",
               "100x the H100's 989 dense FP16 TFLOP/s (reference/gpu.md)", low_open=True)
TOPS = Limit("peak op rate", 0, 200_000, "TOPS",
             "100x the H100's 1979 dense FP8 and INT8 TOPS (reference/quant.md)", low_open=True)
FRACTION = Limit("efficiency", 0, 1, "", "a fraction of a peak rate", low_open=True)
ON_CHIP_TBPS = Limit("on-chip bandwidth", 0, 10_000, "TB/s",
                     "100x the A100's 108 SMs x 128 B per clock of shared memory at 1410 MHz, "
                     "19.5 TB/s (GA100 whitepaper)", low_open=True)
HALF_POINT = Limit("half-efficiency point", 0, 1 << 20, "elements",
                   "a GEMM dimension; 2^20 is 20x GPT-2's vocabulary", low_open=True)
TILE_K_ELEMENTS = Limit("tile fixed cost", 0, 1 << 20, "elements of K",
                        "as a GEMM dimension (HALF_POINT); 0 is no fixed cost")
# ---- capacities of GPUs ------------------------------------------------------------------
GPU_MEMORY_GB = Limit("GPU memory", 0, 100_000, "GB", "700x the H200's 141 GB (reference/gpu.md)",
                      low_open=True)
L2_MB = Limit("L2 cache", 0, 10_000, "MB", "200x the H100's 50 MB (reference/gpu.md)",
              low_open=True)
# ---- energy and power ---------------------------------------------------------------------
ENERGY_PJ = Limit("energy per action", 0, 100_000, "pJ",
                  "per action, byte or bit; 180x the costliest entry of reference/energy.md "
                  "(DDR3, 70 pJ/bit = 560 pJ/byte)", low_open=True)
POWER_W = Limit("power", 0, 10_000, "W",
                "14x the 700 W TDP of the H100 and H200 (reference/gpu.md)")
DEVICE_POWER_MW = Limit("DRAM device power", 0, 1_000_000, "mW",
                        "1 kW; GDDR6-PIM draws 66-553 mW per state (reference/pim.md)",
                        low_open=True)
STANDBY_POWER_MW = Limit("DRAM standby power", 0, 1_000_000, "mW",
                         "as DRAM device power; zero allowed (no standby cost)")

LIMITS: tuple[Limit, ...] = tuple(v for v in dict(globals()).values() if isinstance(v, Limit))


def markdown_rows(fields: Mapping[Limit, Sequence[str]]) -> list[str]:
    """One docs table row per limit: name, range, unit, the fields that use it, reason."""
    rows = []
    for limit in LIMITS:
        low = f"> {_number(limit.low)}" if limit.low_open else _number(limit.low)
        names = ", ".join(f"`{f}`" for f in fields.get(limit, ()))
        rows.append(f"| {limit.name} | {low} .. {_number(limit.high)} | {limit.unit} | {names} | "
                    f"{limit.reason} |")
    return rows
