"""Verilog models of the timing-critical blocks and the cocotb testbenches that hold the
simulator's timing formulas to them cycle for cycle.
"""
