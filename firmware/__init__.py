"""Firmware: the C99 cores of both units (int8 cat engine with SD streaming, die engine, framing),
their host build with a ctypes binding, the RISC-V cross builds and the unit simulators.
"""
