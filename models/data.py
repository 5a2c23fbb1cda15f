"""Training data for the cat DCGAN: procedural cartoon cat faces with known attributes, or a
folder of face crops.

The procedural set is the embedded default so qcat trains with nothing downloaded. Every cat is
drawn from nine categorical attributes (`ATTRIBUTES`: fur colour, coat pattern, eye colour, eye
shape, pose, head size, place in a 3×3 grid, expression, background), each chosen uniformly, then
from continuous jitter (exact shades, proportions, where the pupils look). Why attributes: a
generator trained on these cats can be checked for *variety* by a classifier that reads the same
attributes back (`models.variety`), and the labels are free because we drew them.

Image `i` of seed `s` is always the same pixels: every random choice, the attributes first, comes
from `default_rng([s, i])`, so `cat_attributes(s, i)` is the label of `cat_face(s, i)` without
drawing it. Poses use the viewer's left and right ("three-quarter-left": the face turned towards
the left edge of the picture; "tilt-left": the top of the head leans left).

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
K = float(SUPERSAMPLE)  # drawing units are pixels of the 64-pixel picture, scaled by K
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Every attribute and its values, in the order they are drawn (each uniformly) and labelled.
# The variety classifier's heads follow this table; changing it means retraining that classifier.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "fur": ("ginger", "grey", "black", "white", "brown", "cream", "silver", "blue"),
    "pattern": ("plain", "tabby", "tuxedo", "calico", "points", "patch", "muzzle"),
    "eye_colour": ("green", "gold", "blue", "copper", "odd"),
    "eye_shape": ("round", "almond", "half-closed"),
    "pose": ("frontal", "tilt-left", "tilt-right", "three-quarter-left", "three-quarter-right"),
    "size": ("small", "medium", "large"),
    "position": ("top-left", "top", "top-right", "left", "centre", "right",
                 "bottom-left", "bottom", "bottom-right"),
    "expression": ("neutral", "happy", "surprised", "sleepy"),
    "background": ("light", "dark", "gradient", "two-tone", "texture"),
}

RGB = tuple[int, int, int]
# fur colour -> (fur, darker shade for stripes and outline)
FURS: dict[str, tuple[RGB, RGB]] = {
    "ginger": ((232, 142, 62), (172, 82, 32)),
    "grey": ((146, 146, 150), (88, 88, 93)),
    "black": ((46, 43, 47), (18, 17, 20)),
    "white": ((242, 238, 230), (196, 190, 180)),
    "brown": ((128, 92, 66), (78, 52, 36)),
    "cream": ((238, 214, 170), (196, 156, 104)),
    "silver": ((204, 208, 216), (126, 130, 142)),
    "blue": ((104, 118, 142), (60, 70, 90)),
}
FUR_JITTER = 10  # each channel of the fur shifts by up to this much
IRIS: dict[str, RGB] = {
    "green": (112, 192, 72), "gold": (236, 200, 52), "blue": (92, 162, 232),
    "copper": (212, 118, 40),
}
ODD_EYES = ("blue", "gold")  # "odd": one eye of each, as in white odd-eyed cats
SIZE_RX = {"small": 12.5, "medium": 16.0, "large": 19.5}  # head half-width, pixels
TILT_DEG = (12.0, 22.0)  # head tilt range for the tilt poses
WOBBLE_DEG = 5.0  # the small tilt every other pose has
TURN_SHIFT = 0.3  # three-quarter: features slide this share of the half-width towards the turn
FAR_SCALE = 0.7  # three-quarter: the far eye and ear are foreshortened to this width
EDGE_MARGIN = 1.5  # pixels kept between the head (ears included) and the picture's edge
PLACE_JITTER = 1.5  # pixels a head wanders inside its grid place
WHITE: RGB = (246, 244, 238)
CHARCOAL: RGB = (52, 50, 54)
INNER_EAR: RGB = (240, 170, 180)
NOSES: tuple[RGB, ...] = ((236, 128, 150), (200, 100, 110), (120, 84, 84))
LINE: RGB = (40, 30, 32)
PUPIL: RGB = (14, 12, 16)
MOUTH_INSIDE: RGB = (120, 40, 50)
TONGUE: RGB = (236, 120, 140)
BLUSH = (246, 130, 150, 110)
CALICO_COLOURS: tuple[RGB, ...] = ((232, 142, 62), (40, 36, 40), WHITE)


def _draw_attributes(rng: np.random.Generator) -> dict[str, str]:
    """The first draws of every cat: one uniform choice per attribute, in table order."""
    return {name: values[int(rng.integers(len(values)))] for name, values in ATTRIBUTES.items()}


def cat_attributes(seed: int, index: int) -> dict[str, str]:
    """The attributes of `cat_face(seed, index)`, without drawing it."""
    return _draw_attributes(np.random.default_rng([seed, index]))


def attribute_codes(attributes: dict[str, str]) -> dict[str, int]:
    """Attribute values as their indices in `ATTRIBUTES` (the classifier's labels)."""
    return {name: ATTRIBUTES[name].index(attributes[name]) for name in ATTRIBUTES}


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> RGB:
    """(1 - t)·a + t·b, per channel."""
    r, g, bl = (int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


def _luma(c: tuple[int, ...]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _pt(x: float, y: float) -> tuple[float, float]:
    return (x * K, y * K)


def _ellipse(d: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float,
             fill: tuple[int, ...]) -> None:
    d.ellipse([_pt(x - rx, y - ry), _pt(x + rx, y + ry)], fill=fill)


def _background(rng: np.random.Generator, kind: str) -> Image.Image:
    """The backdrop, (big, big) RGB: a plain light or dark wall, a gradient, a two-tone wall and
    floor, or a soft mottled texture."""
    big = SIZE * SUPERSAMPLE
    if kind == "light":
        return Image.new("RGB", (big, big), tuple(int(v) for v in rng.integers(185, 252, 3)))
    if kind == "dark":
        return Image.new("RGB", (big, big), tuple(int(v) for v in rng.integers(18, 90, 3)))
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / (big - 1)
    if kind == "gradient":
        a = rng.integers(150, 256, 3).astype(np.float32)
        b = rng.integers(40, 200, 3).astype(np.float32)
        theta = _u(rng, 0, 2 * math.pi)
        t = (xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta)
        t = (t - t.min()) / (t.max() - t.min())
        arr = a + (b - a) * t[..., None]
    elif kind == "two-tone":
        wall = rng.integers(120, 250, 3).astype(np.float32)
        floor = wall * _u(rng, 0.45, 0.75) + rng.integers(-20, 21, 3)
        split = _u(rng, 0.5, 0.8)
        arr = np.where((yy < split)[..., None], wall, floor)
    else:  # texture: a base colour with low-frequency noise, bicubically enlarged
        base = rng.integers(90, 230, 3).astype(np.float32)
        cells = int(rng.integers(4, 9))
        noise = rng.normal(0, 1, (cells, cells)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(noise, "F").resize(
            (big, big), Image.Resampling.BICUBIC), dtype=np.float32)
        arr = base + smooth[..., None] * _u(rng, 14, 28) * np.array([1.0, 0.95, 0.9], np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _eye_outline(x: float, y: float, half_w: float, shape: str, er: float,
                 outer: int) -> tuple[list[tuple[float, float]], float, float]:
    """The eye's outline in pixels (upper arc left to right, lower arc back), and its top and
    bottom. `outer` is +1 when the outer corner is to the right (the cat's left eye)."""
    if shape == "round":
        up, low, slant = er * 0.95, er * 0.95, 0.0
    elif shape == "almond":
        half_w *= 1.12
        up, low, slant = er * 0.72, er * 0.58, er * 0.3
    else:  # half-closed: a flat upper lid over the lower half of the eye
        up, low, slant = er * 0.22, er * 0.62, er * 0.08
    steps = np.linspace(0.0, math.pi, 14)
    xs = -np.cos(steps) * half_w
    tilt = -slant * xs * outer / half_w  # outer corner up, inner corner down
    upper = [(x + a, y - up * math.sin(t) + s) for a, t, s in zip(xs, steps, tilt, strict=True)]
    lower = [(x + a, y + low * math.sin(t) + s) for a, t, s in
             zip(xs[::-1], steps[::-1], tilt[::-1], strict=True)]
    return upper + lower, y - up - slant, y + low + slant


def _draw_eye(face: Image.Image, x: float, y: float, er: float, width: float, shape: str,
              iris: RGB, pupil_kind: str, pupil_size: float, look: tuple[float, float],
              lid: float, outer: int) -> None:
    """One eye: a dark rim, the iris (darker at its edge), a round or slit pupil and two
    highlights, clipped to the eye's shape; `lid` > 0 lowers the upper lid over that share."""
    half_w = er * width
    outline, top, bottom = _eye_outline(x, y, half_w, shape, er, outer)
    d = ImageDraw.Draw(face)
    rim = [(x + (px - x) * 1.16, y + (py - y) * 1.22) for px, py in outline]
    d.polygon([_pt(*q) for q in rim], fill=LINE + (255,))
    big = SIZE * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    md = ImageDraw.Draw(mask)
    md.polygon([_pt(*q) for q in outline], fill=255)
    lid_y = top + (bottom - top) * lid
    if lid > 0:
        md.rectangle([_pt(0, 0), _pt(SIZE, lid_y)], fill=0)
    layer = Image.new("RGBA", (big, big), _mix(iris, (0, 0, 0), 0.35) + (255,))
    ld = ImageDraw.Draw(layer)
    cx, cy = x + look[0] * er * 0.3, y + look[1] * er * 0.2
    _ellipse(ld, cx, cy, er * width * 0.82, er * 0.82, iris + (255,))
    _ellipse(ld, cx - er * 0.1, cy + er * 0.25, er * width * 0.45, er * 0.4,
             _mix(iris, (255, 255, 230), 0.3) + (255,))
    if pupil_kind == "slit":
        _ellipse(ld, cx, cy, er * width * 0.16 * pupil_size, er * 0.85, PUPIL + (255,))
    else:
        _ellipse(ld, cx, cy, er * width * 0.42 * pupil_size, er * 0.42 * pupil_size,
                 PUPIL + (255,))
    _ellipse(ld, cx - er * width * 0.3, cy - er * 0.32, er * 0.2, er * 0.2, (255, 255, 255, 255))
    _ellipse(ld, cx + er * width * 0.22, cy + er * 0.2, er * 0.09, er * 0.09,
             (255, 255, 255, 255))
    face.paste(layer, (0, 0), mask)
    if lid > 0:
        d.line([_pt(x - half_w * 1.1, lid_y + 0.3), _pt(x + half_w * 1.1, lid_y + 0.3)],
               fill=LINE + (255,), width=max(1, int(0.9 * K)))


def _place(rng: np.random.Generator, position: str, rx: float, ry: float,
           ear_h: float) -> tuple[float, float]:
    """The head centre for a place in the 3×3 grid: the outer columns and rows put the head
    (ears included) against that edge, the middle halfway between; a little jitter on top."""
    index = ATTRIBUTES["position"].index(position)
    row, col = divmod(index, 3)
    xs = (EDGE_MARGIN + rx, SIZE / 2, SIZE - EDGE_MARGIN - rx)
    top = EDGE_MARGIN + ry + ear_h * 0.62
    bottom = SIZE - EDGE_MARGIN - ry
    ys = (top, (top + bottom) / 2, bottom)
    return (xs[col] + _u(rng, -PLACE_JITTER, PLACE_JITTER),
            ys[row] + _u(rng, -PLACE_JITTER, PLACE_JITTER))


def _render(seed: int, index: int) -> tuple[np.ndarray, dict[str, str]]:
    """Draw cat (seed, index): its (64, 64, 3) uint8 pixels and its attributes."""
    rng = np.random.default_rng([seed, index])
    att = _draw_attributes(rng)
    big = SIZE * SUPERSAMPLE
    canvas = _background(rng, att["background"])

    fur_base, dark = FURS[att["fur"]]
    fur: RGB = tuple(int(np.clip(c + rng.integers(-FUR_JITTER, FUR_JITTER + 1), 0, 255))
                for c in fur_base)  # type: ignore[assignment]
    light_fur = _luma(fur) > 165
    outline = _mix(fur, dark, 0.7)
    pattern = att["pattern"]
    rx = SIZE_RX[att["size"]] * _u(rng, 0.95, 1.05)
    ry = rx * _u(rng, 0.84, 0.92)
    ear_h = ry * _u(rng, 0.85, 1.1)
    cx, cy = _place(rng, att["position"], rx, ry, ear_h)
    turn = {"three-quarter-left": -1, "three-quarter-right": 1}.get(att["pose"], 0)
    fx = cx + turn * rx * TURN_SHIFT  # where the features are centred
    contrast = WHITE if not light_fur else CHARCOAL  # tuxedo / patch marking colour
    points = _mix(fur, (20, 14, 10), 0.62)
    ear_fill = points if pattern == "points" else fur
    if pattern == "tuxedo" and light_fur:
        ear_fill = CHARCOAL

    # the shoulders, below the head and never tilted with it
    body = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    bd = ImageDraw.Draw(body)
    bx = cx - turn * rx * 0.15
    _ellipse(bd, bx, cy + ry * 2.75, rx * 1.25 + 0.8, ry * 2.0 + 0.8, outline + (255,))
    _ellipse(bd, bx, cy + ry * 2.75, rx * 1.25, ry * 2.0, _mix(fur, dark, 0.15) + (255,))
    if pattern == "tuxedo":
        chest = WHITE if not light_fur else _mix(fur, WHITE, 0.3)
        _ellipse(bd, bx, cy + ry * 2.2, rx * 0.45, ry * 1.2, chest + (255,))
    canvas.paste(body, (0, 0), body)

    face = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(face)
    # ears: the far one of a three-quarter view is foreshortened
    for side in (-1, 1):
        far = turn == side
        span = FAR_SCALE if far else (1.08 if turn else 1.0)
        shift = turn * rx * 0.12
        base_out = cx + shift + side * rx * (0.98 if not far else 0.8)
        base_in = base_out - side * rx * 0.72 * span
        tip = (base_out - side * rx * 0.2 * span, cy - ry - ear_h * (0.55 if not far else 0.45))
        out_y, in_y = cy - ry * 0.3, cy - ry * 0.93
        d.polygon([_pt(base_out + side * 0.8, out_y), _pt(base_in, in_y - 0.6),
                   _pt(tip[0] + side * 0.3, tip[1] - 0.9)], fill=outline + (255,))
        d.polygon([_pt(base_out, out_y), _pt(base_in, in_y), _pt(*tip)], fill=ear_fill + (255,))
        inner = [_pt(base_out - side * 2.6 * span, out_y - ry * 0.1),
                 _pt(base_in + side * 2.4 * span, in_y + ry * 0.06),
                 _pt(tip[0] - side * 0.6 * span, tip[1] + ear_h * 0.28)]
        d.polygon(inner, fill=_mix(INNER_EAR, ear_fill, 0.25) + (255,))
    # head, with the far cheek and muzzle bulging past the outline in a three-quarter view
    hx = cx + turn * rx * 0.04
    _ellipse(d, hx, cy, rx + 0.8, ry + 0.8, outline + (255,))
    if turn:
        _ellipse(d, fx + turn * rx * 0.62, cy + ry * 0.32, rx * 0.36 + 0.8, ry * 0.34 + 0.8,
                 outline + (255,))
    _ellipse(d, hx, cy, rx, ry, fur + (255,))
    if turn:
        _ellipse(d, fx + turn * rx * 0.62, cy + ry * 0.32, rx * 0.36, ry * 0.34, fur + (255,))

    # coat pattern, clipped to the head
    marks = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    md = ImageDraw.Draw(marks)
    stripe_w = max(1, int(rx / 8 * K))
    if pattern == "tabby":
        for j in (-1, 0, 1):
            x = fx + j * rx * 0.2
            md.line([_pt(x - j * 0.6, cy - ry * 1.02), _pt(x + j * rx * 0.05, cy - ry * 0.5)],
                    fill=dark + (255,), width=stripe_w)
        for side in (-1, 1):
            for j in range(3):
                y = cy + (j - 0.6) * ry * 0.22
                md.line([_pt(hx + side * rx * 1.02, y), _pt(hx + side * rx * 0.7, y + 0.6)],
                        fill=dark + (255,), width=stripe_w)
    elif pattern == "tuxedo":
        blaze = [_pt(fx, cy - ry * 0.55), _pt(fx + rx * 0.16, cy - ry * 0.05),
                 _pt(fx + rx * 0.95, cy + ry * 0.9), _pt(fx - rx * 0.95, cy + ry * 0.9),
                 _pt(fx - rx * 0.16, cy - ry * 0.05)]
        if light_fur:
            _ellipse(md, hx, cy, rx * 1.3, ry * 1.3, CHARCOAL + (255,))
            md.polygon(blaze, fill=fur + (255,))
        else:
            md.polygon(blaze, fill=WHITE + (255,))
    elif pattern == "calico":
        colours = sorted(CALICO_COLOURS,
                         key=lambda c: -sum(abs(a - b) for a, b in zip(c, fur, strict=True)))
        for j in range(int(rng.integers(3, 5))):
            colour = colours[j % 2]
            px, py = hx + _u(rng, -0.8, 0.8) * rx, cy + _u(rng, -0.9, 0.6) * ry
            _ellipse(md, px, py, rx * _u(rng, 0.28, 0.5), ry * _u(rng, 0.25, 0.45),
                     colour + (255,))
    elif pattern == "points":
        for j, alpha in enumerate((70, 120, 190)):
            grow = 1.0 - j * 0.22
            _ellipse(md, fx, cy + ry * 0.22, rx * 0.68 * grow, ry * 0.62 * grow,
                     points + (alpha,))
    elif pattern == "patch":
        side = 1 if rng.random() < 0.5 else -1
        px, py = fx + side * rx * 0.42, cy - ry * 0.25
        _ellipse(md, px, py, rx * _u(rng, 0.38, 0.52), ry * _u(rng, 0.42, 0.58),
                 contrast + (255,))
    head_mask = Image.new("L", (big, big), 0)
    hm = ImageDraw.Draw(head_mask)
    _ellipse(hm, hx, cy, rx, ry, (255,))
    if turn:
        _ellipse(hm, fx + turn * rx * 0.62, cy + ry * 0.32, rx * 0.36, ry * 0.34, (255,))
    face.paste(marks, (0, 0), Image.fromarray(np.minimum(
        np.asarray(marks)[..., 3], np.asarray(head_mask)), "L"))

    # whisker pads and chin
    if pattern in ("muzzle", "tuxedo") and not light_fur:
        pad = WHITE
    elif pattern == "points":
        pad = _mix(points, fur, 0.25)
    else:
        pad = _mix(fur, (255, 250, 245), 0.35)
    my = cy + ry * 0.42
    for side in (-1, 1):
        squeeze = FAR_SCALE if turn == side else 1.0
        _ellipse(d, fx + side * rx * 0.17 * squeeze, my, rx * 0.23 * squeeze, ry * 0.2,
                 pad + (255,))
    _ellipse(d, fx, my + ry * 0.17, rx * 0.16, ry * 0.12, pad + (255,))

    # eyes
    expression = att["expression"]
    if att["eye_colour"] == "odd":
        irises = (IRIS[ODD_EYES[0]], IRIS[ODD_EYES[1]])
    else:
        irises = (IRIS[att["eye_colour"]],) * 2
    irises = (_mix(irises[0], (128, 128, 128), _u(rng, -0.1, 0.15)),
              _mix(irises[1], (128, 128, 128), _u(rng, -0.1, 0.15)))
    er = rx * _u(rng, 0.24, 0.3)
    ex = rx * _u(rng, 0.38, 0.46)
    ey = cy - ry * _u(rng, 0.08, 0.2)
    pupil_kind = "slit" if rng.random() < 0.4 else "round"
    pupil_size = _u(rng, 0.7, 1.2)
    if expression == "surprised":
        pupil_kind, pupil_size = "round", 1.45
    look = (_u(rng, -1, 1) + turn * 0.8, _u(rng, -1, 1))
    lid = _u(rng, 0.45, 0.6) if expression == "sleepy" else 0.0
    for k_side, side in enumerate((-1, 1)):
        far = turn == side
        width = FAR_SCALE if far else (1.05 if turn else 1.0)
        x = fx + side * ex * (0.72 if far else (1.08 if turn else 1.0))
        _draw_eye(face, x, ey, er, width, att["eye_shape"], irises[k_side], pupil_kind,
                  pupil_size, look, lid, outer=side)

    # nose, mouth, cheeks
    nx, ny = fx + turn * rx * 0.06, my - ry * 0.12
    nw = rx * 0.13
    nose = NOSES[int(rng.integers(len(NOSES)))]
    d.polygon([_pt(nx - nw, ny - nw * 0.75), _pt(nx + nw, ny - nw * 0.75),
               _pt(nx, ny + nw * 0.6)], fill=nose + (255,))
    line_w = max(1, int(0.8 * K))
    mw = rx * 0.12  # half-width of one side of the mouth
    top = ny + nw * 0.6
    if expression == "surprised":
        d.line([_pt(nx, top), _pt(nx, top + ry * 0.08)], fill=LINE + (255,), width=line_w)
        oy = top + ry * 0.22
        _ellipse(d, nx, oy, rx * 0.12, ry * 0.15, LINE + (255,))
        _ellipse(d, nx, oy, rx * 0.09, ry * 0.12, MOUTH_INSIDE + (255,))
        _ellipse(d, nx, oy + ry * 0.06, rx * 0.07, ry * 0.05, TONGUE + (255,))
    else:
        drop = ry * (0.1 if expression != "sleepy" else 0.06)
        d.line([_pt(nx, top), _pt(nx, top + drop)], fill=LINE + (255,), width=line_w)
        wide = 1.5 if expression == "happy" else 1.0
        curl = ry * (0.14 if expression == "happy" else 0.08)
        for side in (-1, 1):
            x0, x1 = nx, nx + side * mw * wide * 2
            xm = (x0 + x1) / 2
            y0 = top + drop
            pts = [_pt(x0, y0), _pt(xm, y0 + curl), _pt(x1, y0 - curl * (0.6 if wide > 1 else 0.1))]
            d.line(pts, fill=LINE + (255,), width=line_w, joint="curve")
        if expression == "happy":
            for side in (-1, 1):
                squeeze = FAR_SCALE if turn == side else 1.0
                _ellipse(d, fx + side * ex * 1.05 * squeeze, ey + er * 1.6, rx * 0.12, ry * 0.07,
                         BLUSH)
    # whiskers: pale on dark fur, dark on pale fur; shorter on the far side
    wc = (250, 250, 250, 230) if _luma(pad) < 150 else (50, 45, 45, 230)
    for side in (-1, 1):
        length = rx * (0.55 if turn == side else 0.85)
        for j in (-1, 0, 1):
            x0 = fx + side * rx * 0.3
            y0 = my + j * ry * 0.09
            d.line([_pt(x0, y0), _pt(x0 + side * length, y0 + j * ry * 0.16 - ry * 0.04)],
                   fill=wc, width=max(1, int(0.45 * K)))

    if att["pose"] == "tilt-left":
        angle = _u(rng, *TILT_DEG)
    elif att["pose"] == "tilt-right":
        angle = -_u(rng, *TILT_DEG)
    else:
        angle = _u(rng, -WOBBLE_DEG, WOBBLE_DEG)
    face = face.rotate(angle, resample=Image.Resampling.BICUBIC, center=_pt(cx, cy))
    canvas.paste(face, (0, 0), face)
    pixels = np.asarray(canvas.resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.uint8)
    return pixels, att


def cat_face(seed: int, index: int) -> np.ndarray:
    """One procedural cat face, (64, 64, 3) uint8, the same forever for (seed, index)."""
    return _render(seed, index)[0]


def procedural(n: int, seed: int = 0,
               progress: ProgressCallback | None = None) -> np.ndarray:
    """n procedural cat faces: (n, 64, 64, 3) uint8."""
    return procedural_with_attributes(n, seed, progress)[0]


def procedural_with_attributes(n: int, seed: int = 0, progress: ProgressCallback | None = None,
                               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n procedural cat faces and their labels: (n, 64, 64, 3) uint8, and for each attribute
    an int64 (n,) array of value indices into `ATTRIBUTES[name]`."""
    out = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    labels = {name: np.empty(n, dtype=np.int64) for name in ATTRIBUTES}
    for i in range(n):
        out[i], att = _render(seed, i)
        for name, code in attribute_codes(att).items():
            labels[name][i] = code
        if progress and (i % 256 == 0 or i == n - 1):
            progress(i + 1, n, "drawing cats")
    return out, labels


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
