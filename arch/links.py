"""Interconnect links between devices as architecture data: `load_link("nvlink4-h100")` reads a
preset of arch/configs/links/ (or a .toml path), applies `--set KEY=VALUE` overrides and builds
a validated `LinkArch` with the same machinery as the device presets (arch/config.py,
arch/presets.py). `sim/collectives.py` times collectives on it; docs/links.md lists the presets
and the source of every number.

A link description says how devices are joined (a switch, a ring or a torus), how fast each
device can send (links x line rate x achievable fraction), what a collective costs to start
and per step, and what a bit costs to move.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from arch.config import LINK_DIR, ArchError, choice, link_names, within
from arch.limits import BANDWIDTH_GBPS, ENERGY_PJ, FRACTION, HOST_TIME_US, LATENCY_NS, UNITS
from arch.presets import build_with_overrides, read_table

__all__ = ["LinkArch", "TOPOLOGIES", "LINK_DIR", "link_names", "load_link"]

TOPOLOGIES = ("switch", "ring", "torus")


@dataclass(frozen=True, slots=True)
class LinkArch:
    """One node's device-to-device interconnect.

    switch: every device is one hop from a switch (NVSwitch, a PCIe or CXL switch), so any two
    devices are one step apart and a device's traffic spreads over all its links; ring: each
    device has half its links to each of two neighbours; torus: `torus_dims` chips along each
    dimension with wrap-around, two links per dimension (one to each neighbour)."""

    name: str
    topology: str = choice(*TOPOLOGIES)
    torus_dims: dict[str, int] = within(UNITS)     # chips per torus dimension; {} unless a torus
    links_per_device: int = within(UNITS)
    link_bw_gbps: float = within(BANDWIDTH_GBPS)   # per link, per direction (1e9 bytes/s)
    efficiency: float = within(FRACTION)           # achievable fraction of line rate (bulk)
    base_latency_us: float = within(HOST_TIME_US)  # once per collective: launch and set-up
    step_latency_ns: float = within(LATENCY_NS)    # per algorithm step: one message to a neighbour
    in_network_reduction: bool                     # the switch reduces (NVLink SHARP / NVLS)
    reduction_latency_us: float = within(HOST_TIME_US)  # start-up of an in-network all-reduce
    energy_pj_per_bit: float = within(ENERGY_PJ)   # per bit moved from a device to the next

    def __post_init__(self) -> None:
        torus = self.topology == "torus"
        if torus and not self.torus_dims:
            raise ArchError("field 'torus_dims' must give the chips along each dimension of the "
                            "torus (e.g. {x = 4, y = 4, z = 4}), got {}")
        if not torus and self.torus_dims:
            raise ArchError(f"field 'torus_dims' must be {{}} for a {self.topology} topology, "
                            f"got {self.torus_dims}")
        short = [k for k, d in self.torus_dims.items() if d < 2]
        if short:
            raise ArchError(f"field 'torus_dims.{short[0]}' must be at least 2 chips (a dimension "
                            f"of one chip has no links), got {self.torus_dims[short[0]]}")
        if torus and self.links_per_device != 2 * len(self.torus_dims):
            raise ArchError(f"field 'links_per_device' must be {2 * len(self.torus_dims)} for a "
                            f"{len(self.torus_dims)}-dimensional torus (one link to each "
                            f"neighbour), got {self.links_per_device}")
        if self.topology == "ring" and self.links_per_device % 2:
            raise ArchError(f"field 'links_per_device' must be even for a ring (half to each "
                            f"neighbour), got {self.links_per_device}")
        if self.in_network_reduction and self.topology != "switch":
            raise ArchError(f"field 'in_network_reduction' needs a switch to reduce in, but the "
                            f"topology is {self.topology}")
        if not self.in_network_reduction and self.reduction_latency_us:
            raise ArchError(f"field 'reduction_latency_us' must be 0 without in_network_reduction, "
                            f"got {self.reduction_latency_us}")

    @property
    def devices(self) -> int | None:
        """Chips in the torus; None where the topology does not fix a device count."""
        return math.prod(self.torus_dims.values()) if self.topology == "torus" else None

    @property
    def device_bytes_per_s(self) -> float:
        """What one device achieves sending over all its links at once, in one direction."""
        return self.links_per_device * self.link_bw_gbps * 1e9 * self.efficiency


def load_link(spec: str | Path, overrides: Sequence[str] = ()) -> LinkArch:
    """A link preset name or a .toml path, with `key=value` overrides, as a validated LinkArch;
    errors are one line naming the file (or the `--set` argument), the field and the value."""
    path, table = read_table(spec, "link", LINK_DIR, link_names())
    return build_with_overrides(LinkArch, table, path, overrides)
