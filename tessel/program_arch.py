"""Which architecture a program file is simulated on.

A compiled program records the architecture it was made for (`isa.Program.arch`, its whole
field table). `tessel sim PROGRAM` rebuilds and uses it. `--arch`/`--set` that give another
architecture are an error naming both, unless `--override-arch` says so; the report's
assumptions then name both. A program that records none (hand-written `.tasm`, or a `.tbin`
assembled from one) runs on `--arch`, or on its target's default preset as compiling does,
and the report says which (docs/isa.md, "Program files").
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import isa
from arch import TargetArch
from tessel.errors import UsageError
from tessel.targets import Target

__all__ = ["program_arch"]

_LISTED = 3                                 # differing fields named in a message


def program_arch(program: isa.Program, path: Path, where: Target, spec: str | None,
                 overrides: Sequence[str], override: bool) -> tuple[TargetArch, str]:
    """The architecture to simulate `program` (read from `path`) on, and the report line
    that says where it came from."""
    given = " ".join([*([f"--arch {spec}"] if spec else []), *(f"--set {o}" for o in overrides)])
    if override and not given:
        raise UsageError("--override-arch needs --arch or --set (the architecture to simulate on)")
    if program.arch is None:
        arch = where.load_arch(spec, overrides)
        chosen = given or "the target's default preset (--arch chooses another)"
        return arch, f"{path} records no architecture: simulated on {arch.name}, {chosen}"
    recorded = where.recorded_arch(program.arch, f"{path}: recorded architecture")
    by = f" by tessel {program.tool_version}" if program.tool_version else ""
    same = f"architecture {recorded.name}, recorded in the program (compiled{by})"
    if not given:
        return recorded, same
    chosen = (where.load_arch(spec, overrides) if spec else
              where.recorded_arch(program.arch, f"{path}: recorded architecture", overrides))
    changes = _differences(recorded, chosen)
    if not changes:
        return recorded, same
    listed = ", ".join(changes[:_LISTED]) + (f" and {len(changes) - _LISTED} more"
                                              if len(changes) > _LISTED else "")
    if not override:
        raise UsageError(f"{path} was compiled for {recorded.name}; with {given} the "
                         f"architecture differs ({listed}): add --override-arch to simulate "
                         f"it on that one")
    return chosen, (f"compiled for {recorded.name}{by}, simulated on {chosen.name} "
                    f"({given}, --override-arch): {listed}")


def _differences(before: TargetArch, after: TargetArch) -> list[str]:
    """`field old -> new` for every field (dotted inside tables) but the name that differs."""
    old, new = _flat(dataclasses.asdict(before)), _flat(dataclasses.asdict(after))
    keys = [k for k in {**old, **new} if k != "name" and old.get(k) != new.get(k)]
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys]


def _flat(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
