"""Training data for the cat DCGAN: procedural cartoon cat faces, or a folder of face crops.

The procedural set is the embedded default so qcat trains with nothing downloaded: a head with
ears, eyes and pupils, a nose, a mouth and whiskers, in several fur colours and patterns (plain,
tabby stripes, patches, a white muzzle), with small pose, position and scale jitter. Image `i` of
seed `s` is always the same pixels (every random choice comes from `default_rng([s, i])`).

`load_folder` reads any folder of face crops (e.g. AFHQ cats a user downloads themselves),
centre-crops them square and resizes to 64×64.

Arrays are uint8 (N, 64, 64, 3). numpy + Pillow only: no torch here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from installation.errors import InputError
from installation.files import atomic_path
from installation.progress import ProgressCallback

SIZE = 64
SUPERSAMPLE = 3  # draw at 3x and downsample: smooth edges like a real photo crop
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# (fur, darker shade for stripes/outline) in RGB
FURS = [
    ((230, 140, 60), (170, 80, 30)),    # ginger
    ((150, 150, 155), (90, 90, 95)),    # grey
    ((45, 42, 45), (15, 15, 18)),       # black
    ((240, 236, 228), (190, 185, 175)),  # white
    ((130, 95, 70), (80, 55, 40)),      # brown
    ((235, 210, 165), (190, 150, 100)),  # cream
    ((110, 105, 100), (55, 50, 45)),    # dark tabby
]
EYES = [(120, 190, 60), (230, 200, 50), (90, 160, 220), (220, 140, 40), (160, 200, 120)]
PATTERNS = ("plain", "tabby", "patch", "muzzle")
NOSE = (235, 130, 150)
INNER_EAR = (240, 170, 180)


def _jitter(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def cat_face(seed: int, index: int) -> np.ndarray:
    """One procedural cat face, (64, 64, 3) uint8, the same forever for (seed, index)."""
    rng = np.random.default_rng([seed, index])
    big = SIZE * SUPERSAMPLE
    k = big / 64.0  # drawing units: a 64-pixel canvas, scaled
    bg = tuple(int(v) for v in rng.integers(150, 256, 3))
    canvas = Image.new("RGB", (big, big), bg)
    face = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(face)
    fur: tuple[int, ...]
    fur, dark = FURS[int(rng.integers(len(FURS)))]
    fur = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in fur)
    pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    scale = _jitter(rng, 0.88, 1.08)
    cx, cy = 32 + _jitter(rng, -3, 3), 35 + _jitter(rng, -2, 3)
    rx, ry = 21 * scale * _jitter(rng, 0.95, 1.08), 18 * scale * _jitter(rng, 0.95, 1.08)

    def p(x: float, y: float) -> tuple[float, float]:
        return (x * k, y * k)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
        return [p(x0, y0), p(x1, y1)]

    # ears: outer triangles of fur, inner pink triangles
    ear_h = 17 * scale * _jitter(rng, 0.85, 1.15)
    ear_spread = _jitter(rng, 0.55, 0.75)
    for side in (-1, 1):
        base_out = cx + side * rx * 0.98
        base_in = cx + side * rx * 0.25
        tip = (cx + side * rx * ear_spread * 1.25, cy - ry - ear_h * 0.55)
        d.polygon([p(base_out, cy - ry * 0.35), p(base_in, cy - ry * 0.92), p(*tip)], fill=fur)
        inner = [p(base_out - side * 3.2 * scale, cy - ry * 0.45),
                 p(base_in + side * 3.5 * scale, cy - ry * 0.85),
                 p(tip[0] - side * 1.2 * scale, tip[1] + 4.5 * scale)]
        d.polygon(inner, fill=INNER_EAR)
    # head
    d.ellipse(box(cx - rx, cy - ry, cx + rx, cy + ry), fill=fur)
    if pattern == "tabby":
        for j in (-1, 0, 1):
            x = cx + j * 4 * scale
            d.line([p(x, cy - ry + 1), p(x + j * 1.5, cy - ry * 0.45)], fill=dark,
                   width=max(1, int(2.2 * k * scale)))
        for side in (-1, 1):
            for j in range(2):
                y = cy + (j * 4 - 1) * scale
                d.line([p(cx + side * rx, y), p(cx + side * rx * 0.72, y + 1)], fill=dark,
                       width=max(1, int(1.8 * k * scale)))
    elif pattern == "patch":
        other, _ = FURS[int(rng.integers(len(FURS)))]
        side = 1 if rng.random() < 0.5 else -1
        px, py = cx + side * rx * 0.45, cy - ry * 0.35
        d.ellipse(box(px - rx * 0.45, py - ry * 0.5, px + rx * 0.45, py + ry * 0.45), fill=other)
    muzzle = (245, 240, 235) if pattern == "muzzle" else tuple(min(255, c + 25) for c in fur)
    my = cy + ry * 0.38
    d.ellipse(box(cx - rx * 0.42, my - ry * 0.3, cx + rx * 0.42, my + ry * 0.42), fill=muzzle)
    # eyes
    eye = EYES[int(rng.integers(len(EYES)))]
    ex, ey = rx * _jitter(rng, 0.36, 0.46), cy - ry * _jitter(rng, 0.05, 0.2)
    er = 4.6 * scale * _jitter(rng, 0.9, 1.15)
    slit = _jitter(rng, 0.25, 0.9)  # pupil width relative to the eye
    look = _jitter(rng, -1.0, 1.0)
    for side in (-1, 1):
        x = cx + side * ex
        d.ellipse(box(x - er, ey - er * 0.95, x + er, ey + er * 0.95), fill=(20, 20, 20))
        d.ellipse(box(x - er * 0.86, ey - er * 0.82, x + er * 0.86, ey + er * 0.82), fill=eye)
        pw = er * slit * 0.55
        d.ellipse(box(x + look - pw, ey - er * 0.78, x + look + pw, ey + er * 0.78),
                  fill=(10, 10, 10))
        d.ellipse(box(x + look - er * 0.35 - 0.9, ey - er * 0.45 - 0.9, x + look - er * 0.35 + 0.9,
                      ey - er * 0.45 + 0.9), fill=(255, 255, 255))
    # nose and mouth
    ny = my - ry * 0.12
    nw = 2.6 * scale
    d.polygon([p(cx - nw, ny - 1.6 * scale), p(cx + nw, ny - 1.6 * scale), p(cx, ny + 1.4 * scale)],
              fill=NOSE)
    line = max(1, int(0.9 * k))
    mouth_dark = (60, 40, 40)
    d.line([p(cx, ny + 1.4 * scale), p(cx, ny + 3.2 * scale)], fill=mouth_dark, width=line)
    for side in (-1, 1):
        d.arc(box(cx + (side - 1) * 2.2 * scale + (0 if side < 0 else 0), ny + 1.5 * scale,
                  cx + (side + 1) * 2.2 * scale, ny + 5.0 * scale), 0, 180, fill=mouth_dark,
              width=line)
    # whiskers
    wc = (250, 250, 250) if sum(fur) < 300 else (40, 40, 40)
    for side in (-1, 1):
        for j in (-1, 0, 1):
            x0 = cx + side * rx * 0.3
            y0 = ny + 2.5 * scale + j * 1.6 * scale
            x1 = cx + side * (rx + 5 * scale)
            y1 = y0 + j * 3.0 * scale - 1.0
            d.line([p(x0, y0), p(x1, y1)], fill=wc, width=max(1, int(0.5 * k)))
    # pose: a small tilt about the head centre
    angle = _jitter(rng, -12, 12)
    face = face.rotate(angle, resample=Image.Resampling.BICUBIC, center=p(cx, cy))
    canvas.paste(face, (0, 0), face)
    if rng.random() < 0.5:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(canvas.resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.uint8)


def procedural(n: int, seed: int = 0,
               progress: ProgressCallback | None = None) -> np.ndarray:
    """n procedural cat faces: (n, 64, 64, 3) uint8."""
    out = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = cat_face(seed, i)
        if progress and (i % 256 == 0 or i == n - 1):
            progress(i + 1, n, "drawing cats")
    return out


def load_folder(folder: Path, limit: int | None = None,
                progress: ProgressCallback | None = None) -> np.ndarray:
    """Every image under `folder` (recursively), centre-cropped square and resized to 64×64."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"data folder {folder} does not exist",
                         hint="pass a folder of face images, or `--data procedural`")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if limit:
        files = files[:limit]
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}",
                         hint="pass a folder of face images, or `--data procedural`")
    out = np.empty((len(files), SIZE, SIZE, 3), dtype=np.uint8)
    kept = 0
    for i, f in enumerate(files):
        try:
            with Image.open(f) as opened:
                im = opened.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize(
                (SIZE, SIZE), Image.Resampling.LANCZOS)
            out[kept] = np.asarray(im, dtype=np.uint8)
            kept += 1
        except (OSError, ValueError):
            continue  # an unreadable file in a big folder is skipped, not fatal
        if progress and (i % 256 == 0 or i == len(files) - 1):
            progress(i + 1, len(files), "loading images")
    if kept == 0:
        raise InputError(f"none of the {len(files)} images under {folder} could be read")
    return out[:kept]


def grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one (rows*(H+pad)+pad, ...) uint8 picture."""
    n, h, w, _ = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h,
            pad + c * (w + pad):pad + c * (w + pad) + w] = images[i]
    return out


def save_png(path: Path, rgb: np.ndarray, scale: int = 1) -> None:
    """Write an RGB uint8 array as PNG atomically (optionally enlarged, nearest neighbour)."""
    path = Path(path)
    im = Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB")
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
