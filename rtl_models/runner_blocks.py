"""Build and run the cocotb benches of the PIM bank, the DMA engine and the vector lane.

One bench = one Verilog design with one set of parameters, built into its own directory under
`BUILD_ROOT` (git-ignored) and rebuilt only when the source, the parameters or WAVES change.
A run is one simulator start: the pytest side writes every case into `stimulus.json`, the
cocotb module (rtl_models/tb_<block>.py) drives them all and writes `results.json`, and the
pytest side compares the results against the simulator's own functions. `WAVES=1` makes the
build and the run record `<toplevel>.fst` in the bench's directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Bench", "BenchRun", "run_bench", "read_stimulus", "write_results", "BUILD_ROOT",
           "STIMULUS_ENV", "RESULTS_ENV"]

RTL_DIR = Path(__file__).resolve().parent
BUILD_ROOT = RTL_DIR / "build" / "blocks"
STIMULUS_ENV = "RTL_STIMULUS"           # where the cocotb module reads its cases
RESULTS_ENV = "RTL_RESULTS"             # where it writes what it measured
_TRUE = ("1", "yes", "y", "on", "true", "enable")   # cocotb's reading of WAVES


@dataclass(frozen=True, slots=True)
class Bench:
    """A design (rtl_models/<toplevel>.v) with its parameters and its cocotb module."""

    toplevel: str
    tag: str                            # names the build directory of this parameter set
    parameters: Mapping[str, int] = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return RTL_DIR / f"{self.toplevel}.v"

    @property
    def tb_module(self) -> str:
        return f"rtl_models.tb_{self.toplevel}"

    @property
    def build_dir(self) -> Path:
        return BUILD_ROOT / self.tag


@dataclass(frozen=True, slots=True)
class BenchRun:
    """What one run measured, with its cost."""

    results: dict[str, Any]
    build_s: float
    run_s: float
    build_dir: Path


def _waves() -> bool:
    return os.environ.get("WAVES", "").strip().lower() in _TRUE


def _build(bench: Bench, runner, waves: bool) -> float:
    """Compile the design unless the build directory already holds this exact build."""
    stamp = json.dumps({"source": hashlib.sha256(bench.source.read_bytes()).hexdigest(),
                        "parameters": dict(bench.parameters), "waves": waves}, sort_keys=True)
    stamp_file = bench.build_dir / "build.stamp"
    fresh = not stamp_file.is_file() or stamp_file.read_text() != stamp
    t0 = time.perf_counter()
    runner.build(sources=[bench.source], hdl_toplevel=bench.toplevel, parameters=bench.parameters,
                 build_dir=bench.build_dir, always=fresh, waves=waves, timescale=("1ns", "1ps"))
    stamp_file.write_text(stamp)
    return time.perf_counter() - t0


def run_bench(bench: Bench, stimulus: Mapping[str, Any]) -> BenchRun:
    """Build `bench` if needed, run every case of `stimulus` in one simulation, return results."""
    from cocotb_tools.runner import get_runner

    runner = get_runner("icarus")
    waves = _waves()
    bench.build_dir.mkdir(parents=True, exist_ok=True)
    build_s = _build(bench, runner, waves)
    stimulus_file = bench.build_dir / "stimulus.json"
    results_file = bench.build_dir / "results.json"
    stimulus_file.write_text(json.dumps(stimulus))
    results_file.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        runner.test(test_module=bench.tb_module, hdl_toplevel=bench.toplevel,
                    build_dir=bench.build_dir, test_dir=bench.build_dir, waves=waves,
                    extra_env={STIMULUS_ENV: str(stimulus_file), RESULTS_ENV: str(results_file)})
    except SystemExit as e:             # how the cocotb runner reports a failed bench
        raise RuntimeError(f"cocotb bench {bench.tag} failed (exit {e.code}); its log is in the "
                           f"captured output, its files in {bench.build_dir}") from None
    run_s = time.perf_counter() - t0
    if not results_file.is_file():
        raise RuntimeError(f"cocotb bench {bench.tag} wrote no {results_file}")
    return BenchRun(json.loads(results_file.read_text()), build_s, run_s, bench.build_dir)


# ---- the cocotb side ----------------------------------------------------------------------

def read_stimulus() -> dict[str, Any]:
    """The cases of this run (inside the simulator: the file run_bench wrote)."""
    return json.loads(Path(os.environ[STIMULUS_ENV]).read_text())


def write_results(results: Mapping[str, Any]) -> None:
    """What the bench measured, for run_bench to hand back to the pytest side."""
    Path(os.environ[RESULTS_ENV]).write_text(json.dumps(results))
