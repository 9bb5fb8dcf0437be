"""Tessel: compile transformer graphs to one tile ISA and simulate them on accelerators."""

__version__ = "0.1.0"
