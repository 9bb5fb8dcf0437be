"""Design-space sweeps: spec files and the runner (local process pool or Dask)."""
