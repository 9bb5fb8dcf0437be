"""Design-space sweeps: a TOML spec of architecture parameters, models and phases (or a
`[serve]` workload, serving figures as objectives), evaluated point by point (timing only) in
a local process pool or on a Dask cluster, with results in a resumable SQLite store, a CSV and
a Pareto plot. docs/sweeps.md describes the spec format.
"""
from importlib import import_module

from tessel.sweep.params import SweepError

__all__ = ["SweepError", "SweepSpec", "Summary", "load_spec", "run_sweep", "default_out_dir"]

# The runner and the spec loader (process pools, Dask, SQLite, TOML) load on first use, so
# `tessel sim`, which only names SweepError, does not pay for them at start-up.
_LAZY = {"Summary": "runner", "default_out_dir": "runner", "run_sweep": "runner",
         "SweepSpec": "spec", "load_spec": "spec"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"tessel.sweep.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tessel.sweep' has no attribute {name!r}")
