"""The discrete-event simulator: per-target machine models, numpy execution of every
instruction, energy and statistics. It reads programs (isa.Program), never the compiler.
"""
