"""Design-space sweep specs (TOML), run by `tessel sweep` (tessel/sweep/, docs/sweeps.md)."""
