"""Hardware descriptions: frozen dataclasses loaded from TOML presets in arch/configs/.

Each target's architecture (systolic array, PIM DRAM, three-tier dataflow) is described
here and turned into an `isa.MachineView` for the program verifier. The presets arrive
with their targets (see the open issues); nothing in this package is a placeholder.
"""
