"""Architecture presets and files: `load_arch("systolic-128", ["rows=64"])` reads a preset
name or a .toml path, applies `--set key=value` overrides (dotted keys reach nested tables)
and builds the dataclass of the file's `target`, validated (arch/config.py).
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

from arch.config import CONFIG_DIR, ArchError, build, table_class, target_of
from arch.dataflow import DataflowArch
from arch.gpu import GpuArch
from arch.limits import Limit
from arch.pim import PimArch
from arch.systolic import SystolicArch
from arch.toml_file import read_toml

__all__ = ["ARCH_CLASSES", "load_arch", "preset_names", "limit_fields", "build_with_overrides", "read_table"]

# The description class of each `target` a config file may name (each class's own `target`
# field says which it is).
ARCH_CLASSES: dict[str, type] = {target_of(c): c for c in (SystolicArch, PimArch, DataflowArch, GpuArch)}


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def _read(spec: str | Path) -> tuple[str, dict]:
    return read_table(spec, "architecture", CONFIG_DIR, preset_names())


def read_table(spec: str | Path, what: str, folder: Path, presets: list[str]) -> tuple[str, dict]:
    """(path, TOML table) of a preset named in `presets` (a file of `folder`) or a .toml path;
    one-line ArchErrors for an unknown name, an unreadable file or bad TOML."""
    path = Path(spec)
    if path.suffix != ".toml":
        if str(spec) not in presets:
            raise ArchError(f"unknown {what} '{spec}': not a preset "
                            f"({', '.join(presets)}) or a .toml file")
        path = folder / f"{spec}.toml"
    return str(path), read_toml(path, ArchError, shown=str(spec))


def _override(source: str, table: dict, assignment: str) -> str:
    """Apply one `key=value` to the file's table; returns the dotted key it wrote."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key or "" in key.split("."):
        raise ArchError(f"--set {assignment}: expected KEY=VALUE (dotted keys for tables)")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()                       # a bare word such as os or bf16
    *parents, leaf = key.split(".")
    node = table
    for depth, p in enumerate(parents):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            where = ".".join(parents[:depth + 1])
            raise ArchError(f"--set {assignment}: '{where}' is not a table in {source}")
    if leaf == "target" and not parents and value != table.get("target"):
        raise ArchError(f"--set {assignment}: the target is fixed by {source} "
                        f"({table.get('target')!r}); choose another --arch instead")
    node[leaf] = value
    return key


def load_arch(spec: str | Path, overrides: Sequence[str] = ()) -> Any:
    """A preset name or a .toml path, with `key=value` overrides, as a validated dataclass.

    An error in a field an override wrote names the `--set KEY=VALUE` argument; a cross-field
    error names the file and every override."""
    source, table = _read(spec)
    origins = {_override(source, table, a): f"--set {a}" for a in overrides}
    target = table.get("target")
    if target not in ARCH_CLASSES:
        known = ", ".join(sorted(ARCH_CLASSES)) or "none registered"
        raise ArchError(f"{source}: field 'target' must be one of {known}, got {target!r}")
    return build(ARCH_CLASSES[target], table, source, origins=origins)


def limit_fields() -> dict[Limit, list[str]]:
    """Each limit with the fields that declare it, as `target.dotted.field` (for the docs)."""
    out: dict[Limit, list[str]] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if table_class(hints[f.name]) is not None:
                walk(table_class(hints[f.name]), f"{prefix}{f.name}.")
            elif "limit" in f.metadata:
                out.setdefault(f.metadata["limit"], []).append(prefix + f.name)

    for target, cls in ARCH_CLASSES.items():
        walk(cls, f"{target}:")
    return out


def build_with_overrides(cls: type, table: Mapping[str, Any], source: str,
                         overrides: Sequence[str]) -> Any:
    """`cls` built from a copy of an architecture table (e.g. the one a program file records)
    with `key=value` overrides applied as `load_arch` applies them; `source` names the table
    in errors, and an error in an overridden field names its `--set` argument."""
    def plain(node: Mapping[str, Any]) -> dict:
        return {k: plain(v) if isinstance(v, Mapping) else v for k, v in node.items()}

    copy = plain(table)
    origins = {_override(source, copy, a): f"--set {a}" for a in overrides}
    return build(cls, copy, source, origins=origins)
