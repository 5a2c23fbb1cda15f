"""Cats in the terminal: an RGB image drawn with half-block characters in 24-bit colour.

Each character cell shows two pixels, the upper one as the foreground of '▀' and the lower one as
the background, so a 64×64 cat takes 64 columns × 32 rows. `plain=True` gives a greyscale ASCII
fallback for terminals without colour (and for logs).
"""

from __future__ import annotations

import numpy as np

UPPER_HALF = "\u2580"
RESET = "\x1b[0m"
ASCII_RAMP = " .:-=+*#%@"


def halfblocks(rgb: np.ndarray, indent: int = 0) -> str:
    """rgb: (H, W, 3) uint8 with H even -> lines of coloured half blocks."""
    h, w, _ = rgb.shape
    pad = " " * indent
    lines = []
    for y in range(0, h - 1, 2):
        cells = []
        for x in range(w):
            t = rgb[y, x]
            b = rgb[y + 1, x]
            cells.append(f"\x1b[38;2;{t[0]};{t[1]};{t[2]}m\x1b[48;2;{b[0]};{b[1]};{b[2]}m{UPPER_HALF}")
        lines.append(pad + "".join(cells) + RESET)
    return "\n".join(lines)


def ascii_art(rgb: np.ndarray, width: int = 32) -> str:
    """A greyscale character picture, `width` columns wide (rows are half as tall as wide)."""
    h, w, _ = rgb.shape
    step = max(1, w // width)
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lines = []
    for y in range(0, h, step * 2):
        row = grey[y, ::step]
        lines.append("".join(ASCII_RAMP[min(len(ASCII_RAMP) - 1, int(v / 256 * len(ASCII_RAMP)))]
                             for v in row))
    return "\n".join(lines)


def side_by_side(blocks: list[str], gap: int = 2) -> str:
    """Join several multi-line pictures horizontally (equal heights assumed)."""
    split = [b.splitlines() for b in blocks]
    height = max(len(s) for s in split)
    out = []
    for i in range(height):
        out.append((" " * gap).join(s[i] if i < len(s) else "" for s in split))
    return "\n".join(out)


BIT_CELLS = (" ", "\u2584", UPPER_HALF, "\u2588")  # (upper lit, lower lit) -> cell: none, lower, upper, both


def bit_lines(bits: np.ndarray) -> list[str]:
    """A 1-bit picture (H, W) of 0/1, H even -> H/2 lines of W plain half-block characters (no
    colour: a die's OLED face reads the same on any terminal and in the TUI's Text cells)."""
    b = np.asarray(bits).astype(bool)
    return ["".join(BIT_CELLS[2 * int(top) + int(bottom)] for top, bottom in zip(b[y], b[y + 1],
                                                                                 strict=True))
            for y in range(0, b.shape[0] - 1, 2)]
