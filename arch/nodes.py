"""Node presets: several devices of one preset joined by a link (arch/configs/nodes/*.toml), as
papers and vendors deploy them (`dgx-h100`, `sn40l-8`, `pim-cxl-32`, `tpu-v4-8`; docs/links.md
lists their sources). A node names its device preset (and overrides of it, `[set]`), the number
of devices and the link preset; `tessel sim --node` and `tessel compare --nodes` read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arch.config import CONFIG_DIR, ArchError, link_names
from arch.presets import load_arch, preset_names, read_table

__all__ = ["NodePreset", "load_node", "node_names", "NODE_DIR"]

NODE_DIR = CONFIG_DIR / "nodes"
_FIELDS = ("name", "device", "devices", "link", "set")


@dataclass(frozen=True, slots=True)
class NodePreset:
    name: str
    device: str                       # a device preset (arch/configs/<device>.toml)
    devices: int
    link: str                         # a link preset (arch/configs/links/<link>.toml)
    device_set: tuple[str, ...] = ()  # KEY=VALUE overrides of the device preset

    def overrides(self, more: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The node's overrides of its device preset, then the caller's (`--set`)."""
        return [*self.device_set, *more]


def node_names() -> list[str]:
    return sorted(p.stem for p in NODE_DIR.glob("*.toml"))


def load_node(spec: str | Path) -> NodePreset:
    """A node preset name or a .toml path, checked: every field known and of its type, the
    device and link presets existing, at least one device."""
    path, table = read_table(spec, "node", NODE_DIR, node_names())
    unknown = [k for k in table if k not in _FIELDS]
    if unknown:
        raise ArchError(f"{path}: unknown field '{unknown[0]}' (fields: {', '.join(_FIELDS)})")
    for field, kind in (("name", str), ("device", str), ("devices", int), ("link", str)):
        value = table.get(field)
        if type(value) is not kind:
            raise ArchError(f"{path}: field '{field}' must be a{'n integer' if kind is int else ' string'}, "
                            f"got {value!r}")
    if table["devices"] < 1:
        raise ArchError(f"{path}: field 'devices' must be at least 1, got {table['devices']}")
    if table["device"] not in preset_names():
        raise ArchError(f"{path}: field 'device' must be a device preset "
                        f"({', '.join(preset_names())}), got {table['device']!r}")
    if table["link"] not in link_names():
        raise ArchError(f"{path}: field 'link' must be a link preset ({', '.join(link_names())}), "
                        f"got {table['link']!r}")
    overrides = table.get("set", {})
    if not isinstance(overrides, dict):
        raise ArchError(f"{path}: field 'set' must be a table of device fields, got {overrides!r}")
    assignments = tuple(_assignments(overrides))
    try:                                  # each override must build the device (checked now)
        load_arch(table["device"], assignments)
    except ArchError as e:
        raise ArchError(f"{path}: [set] {e}") from None
    return NodePreset(table["name"], table["device"], table["devices"], table["link"],
                      assignments)


def _assignments(table: dict, prefix: str = "") -> list[str]:
    """A `[set]` table (nested tables: dotted keys) as `--set` arguments."""
    out = []
    for key, value in table.items():
        if isinstance(value, dict):
            out += _assignments(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={_text(value)}")
    return out


def _text(value: object) -> str:
    """A TOML value as `--set` reads it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)
