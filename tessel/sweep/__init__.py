"""Design-space sweeps: a TOML spec of architecture parameters, models and phases, evaluated
point by point (timing only) in a local process pool or on a Dask cluster, with results in a
resumable SQLite store, a CSV and a Pareto plot. docs/sweeps.md describes the spec format.
"""
from tessel.sweep.params import SweepError
from tessel.sweep.runner import Summary, default_out_dir, run_sweep
from tessel.sweep.spec import SweepSpec, load_spec

__all__ = ["SweepError", "SweepSpec", "Summary", "load_spec", "run_sweep", "default_out_dir"]
