"""Architecture presets and files: `load_arch("systolic-128", ["rows=64"])` reads a preset
name or a .toml path, applies `--set key=value` overrides (dotted keys reach nested tables)
and builds the dataclass of the file's `target`, validated (arch/config.py).
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

from arch.config import CONFIG_DIR, ArchError, build, target_of
from arch.dataflow import DataflowArch
from arch.gpu import GpuArch
from arch.pim import PimArch
from arch.systolic import SystolicArch

__all__ = ["ARCH_CLASSES", "load_arch", "preset_names", "with_overrides"]

# The description class of each `target` a config file may name (each class's own `target`
# field says which it is).
ARCH_CLASSES: dict[str, type] = {target_of(c): c for c in (SystolicArch, PimArch, DataflowArch, GpuArch)}


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def _read(spec: str | Path) -> tuple[str, dict]:
    path = Path(spec)
    if path.suffix != ".toml":
        if str(spec) not in preset_names():
            raise ArchError(f"unknown architecture '{spec}': not a preset "
                            f"({', '.join(preset_names())}) or a .toml file")
        path = CONFIG_DIR / f"{spec}.toml"
    try:
        text = path.read_text()
    except OSError as e:
        raise ArchError(f"{spec}: cannot read ({e.strerror})") from None
    try:
        return str(path), tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ArchError(f"{path}: invalid TOML: {e}") from None


def _override(source: str, table: dict, assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ArchError(f"--set {assignment}: expected key=value")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()                       # a bare word such as os or bf16
    *parents, leaf = key.strip().split(".")
    node = table
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ArchError(f"--set {assignment}: '{p}' is not a table in {source}")
    node[leaf] = value


def load_arch(spec: str | Path, overrides: Sequence[str] = ()) -> Any:
    """A preset name or a .toml path, with `key=value` overrides, as a validated dataclass."""
    source, table = _read(spec)
    for assignment in overrides:
        _override(source, table, assignment)
    target = table.get("target")
    if target not in ARCH_CLASSES:
        known = ", ".join(sorted(ARCH_CLASSES)) or "none registered"
        raise ArchError(f"{source}: field 'target' must be one of {known}, got {target!r}")
    return build(ARCH_CLASSES[target], table, source)


def with_overrides(table: Mapping[str, Any], source: str, overrides: Sequence[str]) -> dict:
    """A copy of an architecture table (e.g. the one a program file records) as plain nested
    dicts, with `key=value` overrides applied as `load_arch` applies them; `source` names the
    table in errors."""
    def plain(node: Mapping[str, Any]) -> dict:
        return {k: plain(v) if isinstance(v, Mapping) else v for k, v in node.items()}

    copy = plain(table)
    for assignment in overrides:
        _override(source, copy, assignment)
    return copy
