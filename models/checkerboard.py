"""How strongly images carry the 2-pixel checkerboard that stride-2 transposed convolutions leave.

A ConvTranspose2d with kernel 4 and stride 2 computes each output pixel from one of four "phases"
(even/odd row × even/odd column), each with its own 2×2 share of the kernel. When those shares
differ, a flat region comes out as a faint grid with a period of two pixels (Odena et al. 2016,
"Deconvolution and checkerboard artifacts"). This module measures that grid, so a training
recipe can be judged by a number instead of squinting at sample sheets.

`checkerboard_level(images)`: for every 8×8 tile of every channel, the amplitude of the three
2-pixel-periodic patterns (rows (-1)^y, columns (-1)^x, diagonal (-1)^(x+y)), measured on second
differences so that smooth ramps and shading score 0 and a sharp edge scores little, then the
mean over tiles, channels and images, in grey levels (0..255). A pure checkerboard of ±A grey
levels scores A; a smooth image scores 0; the procedural training cats themselves score about
the level their anti-aliased edges give (report it beside a model's figure as the baseline).

numpy only: the runtime side may call it too (variety and artefact reports, the sample sheets).
"""

from __future__ import annotations

import numpy as np

TILE = 8  # pixels: small enough that a pattern whose sign drifts across the image still counts
# A second difference of ±A·(-1)^i is ∓4A·(-1)^i; along both axes 16A. Dividing by these gains
# makes each component read in the pattern's own amplitude.
AXIS_GAIN = 4.0
DIAGONAL_GAIN = 16.0


def _second_difference(x: np.ndarray, axis: int) -> np.ndarray:
    """x[i-1] - 2 x[i] + x[i+1] along `axis` (that axis shrinks by 2): zero on any straight ramp."""
    n = x.shape[axis]
    a = np.take(x, range(0, n - 2), axis=axis)
    b = np.take(x, range(1, n - 1), axis=axis)
    c = np.take(x, range(2, n), axis=axis)
    return a - 2.0 * b + c


def _alternating(n: int) -> np.ndarray:
    return np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


def checkerboard_map(images: np.ndarray) -> np.ndarray:
    """Per tile amplitudes: images (N, H, W, C) uint8 or float in grey levels (H and W multiples
    of TILE) -> float64 (N, C, H/TILE, W/TILE), each the tile's 2-pixel-pattern amplitude."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:
        x = x[None]
    n, h, w, c = x.shape
    if h % TILE or w % TILE:
        raise ValueError(f"images must be a multiple of {TILE} pixels on a side, not {h}×{w}")
    # (N, C, tiles_y, TILE, tiles_x, TILE): every tile measured on its own pixels only
    t = x.transpose(0, 3, 1, 2).reshape(n, c, h // TILE, TILE, w // TILE, TILE)
    dy = _second_difference(t, axis=3)  # (…, TILE-2, …, TILE)
    dx = _second_difference(t, axis=5)  # (…, TILE, …, TILE-2)
    dyx = _second_difference(dy, axis=5)  # (…, TILE-2, …, TILE-2)
    sy = _alternating(TILE - 2)[:, None, None]  # over axis 3, broadcast over tiles_x and axis 5
    sx = _alternating(TILE - 2)
    rows = (dy * sy).mean(axis=(3, 5)) / AXIS_GAIN
    cols = (dx * sx).mean(axis=(3, 5)) / AXIS_GAIN
    diag = (dyx * sy * sx).mean(axis=(3, 5)) / DIAGONAL_GAIN
    return np.sqrt(rows**2 + cols**2 + diag**2)


def checkerboard_level(images: np.ndarray) -> float:
    """The mean 2-pixel checkerboard amplitude of images (N, H, W, C) in grey levels (0..255);
    a float image in [-1, 1] must be mapped to 0..255 first (`models.train.to_images`)."""
    return float(checkerboard_map(images).mean())
