"""The die unit's data: synthetic die faces with 1-6 pips, as in the seed log (DESIGN §10).

Each face is drawn at 128x128 (`RENDER_SIZE`), rotated by a random angle, scaled so that nothing is
clipped at that angle, and box-downscaled to 32x32 (`FACE_SIZE`) greyscale: the 4x4 box average is
the anti-aliasing, and 32x32 is what the die's generator makes (1 KB a face). A face is a light die
with a brighter rim on a black background (an OLED pixel that is off) with dark pips; pips vary in
size and shape (round to slightly elliptical), the die in corner rounding and rim width, its grey
level and its position within the slack the rotation leaves.

Everything is deterministic by seed: the same (pips, seed) give the same bytes on every machine,
so the judge's training and evaluation sets are named by their seeds (`models.die_judge`).

numpy and PIL only, never torch: the appliance judges generated faces with these helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

RENDER_SIZE = 128
FACE_SIZE = 32
PIP_COUNTS = (1, 2, 3, 4, 5, 6)
# Pixels left free between the rotated die and the frame at 128x128 (so the anti-aliased edge
# never touches the border after the 4x downscale either).
FRAME_MARGIN = 4
# The die's side as a fraction of the largest side that fits at its angle.
SCALE_RANGE = (0.80, 1.0)
# Corner radius of the die outline, as a fraction of its side.
CORNER_RANGE = (0.06, 0.22)
# Width of the bright rim (the die's outline), as a fraction of its side.
RIM_RANGE = (0.02, 0.07)
# Grey level of the die's face inside the rim; the rim itself is white (255).
FACE_GREY_RANGE = (180, 235)
# Pip radius as a fraction of the side, and how elliptical a pip may be (axis ratio 1 +- this).
PIP_RADIUS_RANGE = (0.075, 0.105)
PIP_ELLIPTICITY = 0.15
# Pip centres sit at these multiples of the side from the die's centre (the standard layout grid).
PIP_OFFSET = 0.27
# Threshold of the 1-bit (OLED) version, as a fraction of full scale.
ONE_BIT_THRESHOLD = 0.5

# Standard pip layouts on a 3x3 grid of (column, row) in {-1, 0, 1}.
LAYOUTS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((0, 0),),
    2: ((-1, -1), (1, 1)),
    3: ((-1, -1), (0, 0), (1, 1)),
    4: ((-1, -1), (1, -1), (-1, 1), (1, 1)),
    5: ((-1, -1), (1, -1), (0, 0), (-1, 1), (1, 1)),
    6: ((-1, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (1, 1)),
}


@dataclass(frozen=True)
class FaceStyle:
    """The random choices behind one face (all lengths in pixels at `RENDER_SIZE`)."""

    pips: int
    angle_deg: float
    side: float
    centre: tuple[float, float]
    corner: float
    rim: float
    face_grey: int
    pip_radius: tuple[float, ...]  # one per pip
    pip_aspect: tuple[float, ...]  # y radius / x radius, one per pip


def largest_side(angle_deg: float, size: int = RENDER_SIZE, margin: int = FRAME_MARGIN) -> float:
    """The side of the largest square that, rotated by `angle_deg`, fits in the frame with
    `margin` pixels to spare (a rounded square is smaller still, so it fits too)."""
    a = math.radians(angle_deg)
    return (size - 2 * margin) / (abs(math.cos(a)) + abs(math.sin(a)))


def draw_styles(pips: np.ndarray, seed: int) -> list[FaceStyle]:
    """The random style of each face; one generator per call so a batch is reproducible."""
    counts = np.asarray(pips, dtype=np.int64).reshape(-1)
    bad = sorted({int(c) for c in counts if int(c) not in LAYOUTS})
    if bad:
        raise ValueError(f"pip counts must be 1 to 6, got {bad}")
    rng = np.random.default_rng(seed)
    n = len(counts)
    angles = rng.uniform(0.0, 360.0, n)
    scales = rng.uniform(*SCALE_RANGE, n)
    shifts = rng.uniform(-1.0, 1.0, (n, 2))
    corners = rng.uniform(*CORNER_RANGE, n)
    rims = rng.uniform(*RIM_RANGE, n)
    greys = rng.integers(FACE_GREY_RANGE[0], FACE_GREY_RANGE[1] + 1, n)
    radii = rng.uniform(*PIP_RADIUS_RANGE, (n, 6))
    aspects = 1.0 + rng.uniform(-PIP_ELLIPTICITY, PIP_ELLIPTICITY, (n, 6))
    styles = []
    for i, count in enumerate(counts):
        side = largest_side(angles[i]) * scales[i]
        # The rotated die's half extent; the rest of the frame (minus the margin) is slack.
        a = math.radians(angles[i])
        half = side * (abs(math.cos(a)) + abs(math.sin(a))) / 2
        slack = max(0.0, RENDER_SIZE / 2 - FRAME_MARGIN - half)
        centre = (RENDER_SIZE / 2 + shifts[i, 0] * slack, RENDER_SIZE / 2 + shifts[i, 1] * slack)
        k = int(count)
        styles.append(FaceStyle(
            pips=k, angle_deg=float(angles[i]), side=float(side),
            centre=(float(centre[0]), float(centre[1])), corner=float(corners[i] * side),
            rim=float(rims[i] * side), face_grey=int(greys[i]),
            pip_radius=tuple(float(r * side) for r in radii[i, :k]),
            pip_aspect=tuple(float(x) for x in aspects[i, :k])))
    return styles


def render_large(style: FaceStyle) -> np.ndarray:
    """One face at full resolution: uint8 (RENDER_SIZE, RENDER_SIZE), before the downscale.

    Drawn upright on a canvas centred on the die, then rotated about that centre (bilinear), so
    the pip layout is exactly the standard one in the die's own frame.
    """
    size = RENDER_SIZE
    im = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(im)
    c = size / 2
    h = style.side / 2
    box = (c - h, c - h, c + h, c + h)
    d.rounded_rectangle(box, radius=style.corner, fill=255)
    rim = style.rim
    d.rounded_rectangle((c - h + rim, c - h + rim, c + h - rim, c + h - rim),
                        radius=max(0.0, style.corner - rim), fill=style.face_grey)
    step = PIP_OFFSET * style.side
    for (gx, gy), r, aspect in zip(LAYOUTS[style.pips], style.pip_radius, style.pip_aspect,
                                   strict=True):
        x, y = c + gx * step, c + gy * step
        rx, ry = r / math.sqrt(aspect), r * math.sqrt(aspect)  # same area as the round pip
        d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=0)
    # Rotate about the canvas centre and move the die's centre to style.centre in one affine map
    # (PIL's transform takes the inverse: output pixel -> input pixel).
    a = math.radians(style.angle_deg)
    cos, sin = math.cos(a), math.sin(a)
    ox, oy = style.centre
    inverse = (cos, sin, c - cos * ox - sin * oy,
               -sin, cos, c + sin * ox - cos * oy)
    im = im.transform((size, size), Image.Transform.AFFINE, inverse,
                      resample=Image.Resampling.BILINEAR, fillcolor=0)
    return np.asarray(im, dtype=np.uint8)


def downscale(large: np.ndarray) -> np.ndarray:
    """(..., 128, 128) uint8 -> (..., 32, 32) uint8 by 4x4 box average (rounded)."""
    f = RENDER_SIZE // FACE_SIZE
    shape = large.shape[:-2] + (FACE_SIZE, f, FACE_SIZE, f)
    mean = large.reshape(shape).astype(np.uint16).sum(axis=(-1, -3))
    return ((mean + (f * f) // 2) // (f * f)).astype(np.uint8)


def render_batch(pips: np.ndarray, seed: int) -> np.ndarray:
    """Faces for the given pip counts: uint8 (N, 32, 32), 0 (off) .. 255 (lit)."""
    styles = draw_styles(pips, seed)
    out = np.empty((len(styles), FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    for i, style in enumerate(styles):
        out[i] = downscale(render_large(style))
    return out


def dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 32, 32), labels int64 (n,) in 1..6): counts balanced (n // 6 each, the
    rest spread), shuffled by the same seed."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng([seed, 1])  # a stream apart from the styles' stream
    labels = np.resize(np.array(PIP_COUNTS, dtype=np.int64), n)
    rng.shuffle(labels)
    return render_batch(labels, seed), labels


def balanced(per_count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_count` faces of each count in order 1..6 (what a per-count accuracy table wants)."""
    labels = np.repeat(np.array(PIP_COUNTS, dtype=np.int64), per_count)
    return render_batch(labels, seed), labels


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 faces -> float32 in [0, 1] (what the judge reads)."""
    return np.asarray(images, dtype=np.float32) / 255.0


def one_bit(images: np.ndarray, threshold: float = ONE_BIT_THRESHOLD) -> np.ndarray:
    """What the die's 1-bit OLED shows: uint8 faces (or floats in [0, 1]) thresholded at half
    scale, returned as uint8 0 or 255 so they go wherever a greyscale face goes."""
    arr = np.asarray(images)
    scaled = arr / 255.0 if arr.dtype == np.uint8 else arr
    return np.where(scaled >= threshold, 255, 0).astype(np.uint8)


def grid(images: np.ndarray, cols: int, pad: int = 1, pad_value: int = 96) -> np.ndarray:
    """Tile (N, H, W) uint8 faces into one greyscale picture, row-major, `cols` per row."""
    n, h, w = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), pad_value, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = images[i]
    return out


def sample_sheet(seed: int, per_row: int = 12) -> np.ndarray:
    """The docs' picture: one row per pip count (1 at the top), `per_row` faces each; uint8."""
    images, _ = balanced(per_row, seed)
    return grid(images, cols=per_row)
