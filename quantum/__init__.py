"""Quantum entropy: the ANU QRNG client, health tests, the SQLite byte pool that serves every
byte exactly once, export/import packs, Box-Muller latents and verdict codes.

Never imports torch, textual or the appliance layer (only the leaf `installation.errors`).
"""
