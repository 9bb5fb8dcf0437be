"""The project's import structure, read from the source (nothing is imported):

- no import cycle among the project's modules (type-checking and function-level imports
  included: a cycle there is still a contract that leaks);
- no module takes another module's underscore name (`from m import _x`, `m._x`, or a
  private module `m._x` of another package);
- the layering of DESIGN.md: `isa` imports nothing of ours, `arch` only `isa`, `compiler`
  never `sim` or `tessel`, `sim` never `compiler` or `tessel`.
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("isa", "arch", "compiler", "sim", "tessel", "rtl_models", "sweeps")
MAY_IMPORT = {"isa": set(), "arch": {"isa"}, "compiler": {"isa", "arch"}, "sim": {"isa", "arch"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The project module `name` refers to (a module, or the package holding a name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _imports(module: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported project module, the name taken from it or None, line) for every import."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    found.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if not _resolve(base):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:
                    found.append((full, None, node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
    return found


IMPORTS = {m: _imports(m, p) for m, p in MODULES.items()}


def _same_package(a: str, b: str) -> bool:
    return a.rpartition(".")[0] == b.rpartition(".")[0]


def test_no_import_cycles() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module, found in IMPORTS.items():
        for target, _, _ in found:
            resolved = _resolve(target)
            if resolved != module and not module.startswith(resolved + "."):
                graph.add_edge(module, resolved)      # a package's own parents are not edges
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.slow
def test_no_module_takes_another_modules_private_names() -> None:
    bad = []
    for module, found in IMPORTS.items():
        for target, name, line in found:
            private_module = [p for p in target.split(".") if _is_private(p)]
            if private_module and not _same_package(target, module):
                bad.append(f"{module}:{line} imports private module {target}")
            if name and _is_private(name) and _resolve(target) != module:
                bad.append(f"{module}:{line} imports {target}.{name}")
        tree = ast.parse(MODULES[module].read_text())
        aliases = {a.asname or a.name: a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                   for a in n.names if _resolve(a.name)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _is_private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                bad.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_layers_import_only_what_they_may(layer: str) -> None:
    allowed = MAY_IMPORT[layer] | {layer}
    bad = [f"{m}:{line} imports {t}" for m, found in IMPORTS.items() if m.split(".")[0] == layer
           for t, _, line in found if t.split(".")[0] not in allowed]
    assert not bad, "\n".join(bad)
