"""The golden integer reference of the cat generator: the contract every engine matches exactly.

Runs an int8 DCGAN generator from a `WeightImage` alone (no float model, no torch) and returns
every layer's int8 output, with exactly the arithmetic docs/formats.md writes down and
../shared/reference/int8.md explains: int32 accumulators, TFLite's QuantizeMultiplier, gemmlowp's
double-rounding requantization (SRDHM then a rounding divide by a power of two, ties away from
zero), ReLU as a clamp at the output zero point, Tanh as an int8 -> int8 table.

The integer helpers (`round_half_away`, `quantize_multiplier(s)`, `srdhm`, `rdbpot`, `mbqm`,
`make_tanh_table`) live here and only here: quantization and the synthetic models reuse them, so
there is one definition of the arithmetic in Python. Likewise `first_mismatch` and its
`Mismatch.describe()` are the one way every comparison against this reference (`qcat engine
compare`, the exhibit's F1 check, the tests) names a difference, with layers counted from 1.

Speed: numpy has no integer BLAS, so the int8 x int8 products are summed by float64 matmuls. Every
partial sum is an integer of magnitude < 2^31 < 2^53, so float64 holds it exactly whatever the
summation order; the requantization itself is done in int64.

Must never import torch, textual or `installation.*` (other than the leaf `installation.errors`
through `quantum.latent`): this module is on the runtime path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.weightimage import ACT_RELU, ACT_TANH, Layer, WeightImage
from quantum.latent import latent_from_entropy

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# The largest multiplier below 1 that QuantizeMultiplier keeps at shift 0 (q_fixed = 2^31 - 1);
# larger ones would need a left shift, which the weight image refuses.
MAX_MULTIPLIER = (2**31 - 1) / 2**31
# Bound on the float64 partial-product buffer of one chunk of latents (elements), so a batch of
# the full model does not allocate gigabytes.
CHUNK_ELEMENTS = 1 << 23
TANH_OUT_SCALE = 128  # the last layer's output is tanh * 128 (scale 1/128, zero point 0)


# --------------------------------------------------------------------------------------------
# Exact integer helpers


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """C's round(): to nearest, ties away from zero, exact for every double.

    (floor(|x| + 0.5) is not: for 0.49999999999999994 the addition itself rounds up to 1.)
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    f = np.floor(a)
    return np.copysign(f + (a - f >= 0.5), x)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: m = q_fixed * 2^(shift - 31), q_fixed in [2^30, 2^31)."""
    if m == 0.0:
        return 0, 0
    if not (m > 0.0 and math.isfinite(m)):
        raise ValueError(f"requantization multiplier {m} is not a positive finite number")
    q, shift = math.frexp(m)
    q_fixed = int(math.floor(q * 2**31 + 0.5))  # q * 2^31 is exact; +0.5 is exact below 2^31
    if q_fixed == 2**31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel QuantizeMultiplier, capped below 1 so no left shift is ever needed."""
    m = np.minimum(np.asarray(m, dtype=np.float64), MAX_MULTIPLIER)
    pairs = [quantize_multiplier(float(v)) for v in m.ravel()]
    mult = np.array([p[0] for p in pairs], dtype=np.int64).reshape(m.shape)
    shift = np.array([p[1] for p in pairs], dtype=np.int64).reshape(m.shape)
    return mult.astype(np.int32), shift.astype(np.int32)


def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Saturating rounding doubling high multiply of int32 values (as int64 arrays)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    high = (a * b + (1 << 30)) >> 31  # floor shift: equals gemmlowp's nudge-and-truncate form
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rdbpot(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Rounding divide by 2^e, ties away from zero (gemmlowp RoundingDivideByPOT)."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def mbqm(x: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """MultiplyByQuantizedMultiplier with double rounding (TFLM default, CMSIS-NN)."""
    s = np.asarray(s, dtype=np.int64)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    return rdbpot(srdhm(np.asarray(x, dtype=np.int64) << left, m), right)


def make_tanh_table(pre_scale: float, pre_zp: int) -> np.ndarray:
    """int8[256]: out = table[q + 128] = clamp(round(128 * tanh((q - pre_zp) * pre_scale)))."""
    q = np.arange(-128, 128, dtype=np.float64)
    real = np.tanh((q - pre_zp) * float(pre_scale))
    return np.clip(round_half_away(real * TANH_OUT_SCALE), -128, 127).astype(np.int8)


# --------------------------------------------------------------------------------------------
# The generator


def quantize_latent(z: np.ndarray, img: WeightImage) -> np.ndarray:
    """int8 latent(s): clamp(round_half_away(z / latent_scale) + latent_zp), in float64.

    The scale is the f32 stored in the file, widened to double, so an in-memory image and its
    decoded file give the same latent.
    """
    scale = float(np.float32(img.latent_scale))
    q = round_half_away(np.asarray(z, dtype=np.float64) / scale) + img.latent_zp
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize_latent(latent_q: np.ndarray, img: WeightImage) -> np.ndarray:
    """The float latent the int8 one stands for: (q - latent_zp) * latent_scale, in float64 with
    the f32 scale of the file (what the float model is fed to compare like with like)."""
    scale = float(np.float32(img.latent_scale))
    return (np.asarray(latent_q, dtype=np.float64) - img.latent_zp) * scale


def _taps(size_in: int, size_out: int, k: int, stride: int, padding: int):
    """For each kernel index: (first input index, count, first output index) that are valid."""
    out = []
    for kk in range(k):
        lo = max(0, -((kk - padding) // stride))  # ceil((padding - kk) / stride)
        hi = min(size_in - 1, (size_out - 1 + padding - kk) // stride)
        if hi >= lo:
            out.append((kk, lo, hi - lo + 1, stride * lo - padding + kk))
    return out


def accumulate(lay: Layer, x: np.ndarray) -> np.ndarray:
    """int32 accumulators (as int64) of one layer: x (N, c_in, h_in, h_in) int8 ->
    acc (N, c_out, h_out, h_out) = bias[c] + sum of w * (x - in_zp) over the valid taps."""
    n, c_in, h, w = x.shape
    k, s, p, ho = lay.kernel, lay.stride, lay.padding, lay.h_out
    assert c_in == lay.c_in and h == lay.h_in, (x.shape, lay.c_in, lay.h_in)
    # xc: (c_in, N*H*W) float64; wm: (c_out*k*k, c_in) float64; both exact small integers.
    xc = (x.astype(np.float64) - lay.in_zp).transpose(1, 0, 2, 3).reshape(c_in, n * h * w)
    wm = lay.weights.reshape(lay.c_out * k * k, c_in).astype(np.float64)
    partial = (wm @ xc).reshape(lay.c_out, k, k, n, h, w)
    acc = np.zeros((lay.c_out, n, ho, ho), dtype=np.float64)
    taps = _taps(h, ho, k, s, p)
    for ky, iy, ny, oy in taps:
        for kx, ix, nx, ox in taps:
            acc[:, :, oy:oy + s * (ny - 1) + 1:s, ox:ox + s * (nx - 1) + 1:s] += \
                partial[:, ky, kx, :, iy:iy + ny, ix:ix + nx]
    out = acc.astype(np.int64).transpose(1, 0, 2, 3)
    return out + np.asarray(lay.bias, dtype=np.int64)[None, :, None, None]


def requantize(lay: Layer, acc: np.ndarray, tanh_table: np.ndarray) -> np.ndarray:
    """acc (N, c_out, H, W) int64 -> int8 output: MBQM, output zero point, ReLU or Tanh table."""
    per_channel = (None, slice(None), None, None)
    q = mbqm(acc, np.asarray(lay.multiplier, np.int64)[per_channel],
             np.asarray(lay.shift, np.int64)[per_channel]) + lay.out_zp
    if lay.activation == ACT_RELU:
        return np.clip(q, lay.out_zp, 127).astype(np.int8)
    if lay.activation == ACT_TANH:
        return np.asarray(tanh_table, np.int8)[np.clip(q, -128, 127) + 128]
    raise ValueError(f"unknown activation {lay.activation}")


def run_batch(img: WeightImage, latents_q: np.ndarray) -> list[np.ndarray]:
    """Every layer's int8 output for N int8 latents (N, nz): a list of (N, C, H, W) arrays."""
    latents_q = np.asarray(latents_q, dtype=np.int8)
    n = latents_q.shape[0]
    per_latent = max(lay.c_out * lay.kernel**2 * lay.h_in**2 for lay in img.layers)
    chunk = max(1, CHUNK_ELEMENTS // per_latent)
    outs: list[list[np.ndarray]] = [[] for _ in img.layers]
    for start in range(0, n, chunk):
        x = latents_q[start:start + chunk, :, None, None]
        for i, lay in enumerate(img.layers):
            x = requantize(lay, accumulate(lay, x), img.tanh_table)
            outs[i].append(x)
    return [np.concatenate(parts) for parts in outs]


def run(img: WeightImage, latent_q: np.ndarray) -> list[np.ndarray]:
    """Every layer's int8 output, shape (C, H, W), for one int8 latent (nz,)."""
    return [layer[0] for layer in run_batch(img, np.asarray(latent_q)[None, :])]


def to_rgb(last: np.ndarray) -> np.ndarray:
    """The last layer's output (3, 64, 64) int8 -> RGB888 (64, 64, 3) uint8, pixel = q + 128."""
    return (np.asarray(last, dtype=np.int16) + 128).astype(np.uint8).transpose(1, 2, 0).copy()


def render(img: WeightImage, entropy200: bytes) -> tuple[np.ndarray, list[np.ndarray]]:
    """One image from 200 bytes of entropy: (rgb (64, 64, 3) uint8, every layer's output)."""
    z = latent_from_entropy(entropy200)
    layers = run(img, quantize_latent(z, img))
    return to_rgb(layers[-1]), layers


@dataclass(frozen=True)
class Mismatch:
    """Where two engines' per-layer int8 outputs first differ, for people and for --json.

    `layer` counts from 1, as DESIGN §5's table, `qcat bench`, `qcat sd weights inspect` and the
    engine's progress do: every message about one fault names the same layer. `channel` and
    `pixel` (y, x) are array indices from 0 of the (C, H, W) output; `differ` of `of` values of
    that layer are unequal.
    """

    layer: int
    channel: int
    pixel: tuple[int, int]
    ours: int
    theirs: int
    differ: int
    of: int

    def describe(self, ours: str = "engine", theirs: str = "reference") -> str:
        """CMSIS-NN style: "layer 3, channel 17, pixel (5, 9): C -12, reference -11; 412 of
        65,536 differ" (with ours="C"): enough to find the bug without rerunning anything."""
        y, x = self.pixel
        return (f"layer {self.layer}, channel {self.channel}, pixel ({y}, {x}): "
                f"{ours} {self.ours}, {theirs} {self.theirs}; "
                f"{self.differ:,} of {self.of:,} differ")

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "channel": self.channel, "pixel": list(self.pixel),
                "ours": self.ours, "theirs": self.theirs, "differ": self.differ, "of": self.of}


def first_mismatch(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]) -> Mismatch | None:
    """None when every layer's (C, H, W) output is identical, else the first difference (lowest
    layer, then channel, row, column).

    Two engines running one model always agree on the number of layers and their shapes; when
    they do not, that is a bug in an engine, raised as ValueError rather than reported as data.
    """
    if len(ours) != len(theirs):
        raise ValueError(f"compared {len(ours)} layers with {len(theirs)}")
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.ndim != 3:
            raise ValueError(f"layer {index + 1}: shapes {a.shape} and {b.shape}, "
                             "expected one (C, H, W)")
        diff = np.argwhere(a != b)
        if diff.size:
            c, y, x = (int(v) for v in diff[0])
            return Mismatch(layer=index + 1, channel=c, pixel=(y, x), ours=int(a[c, y, x]),
                            theirs=int(b[c, y, x]), differ=len(diff), of=int(a.size))
    return None
