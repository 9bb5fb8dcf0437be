"""Build a Verilog design with Icarus and run one cocotb test module on it, JSON in and out.

The pytest side calls `run_cocotb`, handing the testbench its inputs (cases, operands) as one
JSON object; the cocotb side reads them with `load_inputs()`, loops over the cases in a single
simulator run (start-up is the slow part) and hands back what it measured with
`write_results()`. Comparison against the Python models stays on the pytest side.

Builds go to `rtl_models/build/<toplevel>-<parameters>[-waves]/` (git-ignored), one folder per
parameter set, compiled once and reused until a source's content changes (a stamp file holds
the sources' hash). `WAVES=1` in the environment records an FST waveform there
(`<toplevel>.fst`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BUILD_ROOT", "run_cocotb", "load_inputs", "write_results", "missing_tools",
           "Bench", "BenchRun", "run_bench"]

RTL_DIR = Path(__file__).resolve().parent
BUILD_ROOT = RTL_DIR / "build"
_INPUTS_ENV = "RTL_INPUTS_JSON"
_RESULTS_ENV = "RTL_RESULTS_JSON"


def missing_tools() -> str | None:
    """Why the RTL tests cannot run here (no Icarus Verilog, no cocotb), or None."""
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        return "Icarus Verilog (iverilog, vvp) is not installed; `make rtl-tools` installs it"
    try:
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        return "cocotb is not installed; `pip install -e '.[test]'` installs it"
    return None


def _waves_requested() -> bool:
    return os.environ.get("WAVES", "").strip().lower() in ("1", "true", "yes", "on")


def run_cocotb(*, toplevel: str, sources: Sequence[Path], test_module: str, inputs: Any,
               parameters: Mapping[str, int] | None = None,
               env: Mapping[str, str] | None = None,
               build_dir: Path | None = None) -> dict:
    """Build `toplevel` from `sources` with `parameters`, run every cocotb test in
    `test_module` (a dotted module name) in one simulator process and return the JSON object
    the testbench wrote with `write_results`. `inputs` must be JSON-serialisable; `env` adds
    environment variables for the simulator (cocotb's runner lets os.environ win on a clash);
    `build_dir` replaces BUILD_ROOT.

    Raises RuntimeError when the simulation fails or writes no results.
    """
    from cocotb_tools.runner import get_runner

    params = dict(parameters or {})
    waves = _waves_requested()
    tag = "-".join(f"{k}{v}" for k, v in sorted(params.items())) or "default"
    work = (build_dir or BUILD_ROOT) / f"{toplevel}-{tag}{'-waves' if waves else ''}"
    work.mkdir(parents=True, exist_ok=True)
    inputs_path, results_path = work / "inputs.json", work / "results.json"
    inputs_path.write_text(json.dumps(inputs))
    results_path.unlink(missing_ok=True)

    paths = [Path(s).resolve() for s in sources]
    stamp = hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()
    stamp_file = work / "build.stamp"
    fresh = not stamp_file.is_file() or stamp_file.read_text() != stamp
    sim = get_runner("icarus")
    sim.build(sources=paths, hdl_toplevel=toplevel, parameters=params, build_dir=work,
              always=fresh, timescale=("1ns", "1ps"), waves=waves)
    stamp_file.write_text(stamp)
    extra_env = {**(env or {}), _INPUTS_ENV: str(inputs_path), _RESULTS_ENV: str(results_path)}
    try:
        sim.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=work,
                 test_dir=work, results_xml=str(work / "results.xml"), extra_env=extra_env,
                 waves=waves)
    except SystemExit as exc:  # cocotb's runner exits when a test fails under pytest
        raise RuntimeError(f"cocotb run of {test_module} on {toplevel} {params} failed "
                           f"(exit status {exc.code}); log above, results in {work}") from exc
    if not results_path.exists():
        raise RuntimeError(f"{test_module} on {toplevel} {params} wrote no results "
                           f"({results_path} is missing)")
    return json.loads(results_path.read_text())


def load_inputs() -> Any:
    """Cocotb side: the `inputs` object handed to `run_cocotb`."""
    return json.loads(Path(os.environ[_INPUTS_ENV]).read_text())


def write_results(results: Any) -> None:
    """Cocotb side: hand `results` (JSON-serialisable) back to `run_cocotb`."""
    Path(os.environ[_RESULTS_ENV]).write_text(json.dumps(results))


@dataclass(frozen=True, slots=True)
class Bench:
    """A block: rtl_models/<toplevel>.v with `parameters`, driven by rtl_models/tb_<toplevel>.py."""

    toplevel: str
    parameters: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BenchRun:
    results: dict


def run_bench(bench: Bench, stimulus: Any) -> BenchRun:
    """Build the block if needed and run every case of `stimulus` in one simulation."""
    return BenchRun(run_cocotb(toplevel=bench.toplevel, sources=[RTL_DIR / f"{bench.toplevel}.v"],
                               test_module=f"rtl_models.tb_{bench.toplevel}", inputs=stimulus,
                               parameters=bench.parameters))
