"""How close the int8 generator is to the float one: PSNR and SSIM over many latents.

The float model (BatchNorm in eval mode, float32) is the yardstick; its output t in [-1, 1] is
mapped to pixels exactly as the int8 output is (128·t + 128, clamped to 0..255, *not* rounded),
so the figure measures quantization, not a different pixel mapping. Latents are made the way
exhibits make them, from seeded entropy bytes (`quantum.latent`).

`psnr` and `ssim` are numpy only; `measure` imports torch inside (the float model needs it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from installation.progress import ProgressCallback
from models import reference
from models.weightimage import WeightImage
from quantum.latent import LATENT_BYTES, latent_from_entropy

PEAK = 255.0
PSNR_CAP_DB = 99.0  # identical images: report this instead of infinity
# SSIM (Wang et al. 2004) with its usual constants and an 8×8 uniform window on 64×64 images.
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_WINDOW = 8
BATCH = 64


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images of equal shape on the 0..255 scale."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * np.log10(PEAK**2 / mse))


def _box(x: np.ndarray, w: int) -> np.ndarray:
    """Mean over every w×w window (valid positions) of (H, W, C) images, via cumulative sums."""
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0), (0, 0))), axis=0), axis=1)
    return (c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]) / (w * w)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) images on 0..255, per channel, uniform window."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    mx, my = _box(x, SSIM_WINDOW), _box(y, SSIM_WINDOW)
    vx = _box(x * x, SSIM_WINDOW) - mx * mx
    vy = _box(y * y, SSIM_WINDOW) - my * my
    cov = _box(x * y, SSIM_WINDOW) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def entropy_latents(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([latent_from_entropy(rng.bytes(LATENT_BYTES)) for _ in range(n)])


def float_pixels(t: np.ndarray) -> np.ndarray:
    """Float model output (N, 3, H, W) in [-1, 1] -> (N, H, W, 3) float pixels, int8 mapping."""
    return np.clip(128.0 * np.asarray(t, np.float64) + 128.0, 0.0, 255.0).transpose(0, 2, 3, 1)


def measure(img: WeightImage, g: Any, n: int = 256, seed: int = 0,
            progress: ProgressCallback | None = None) -> dict[str, Any]:
    """PSNR/SSIM of the int8 model `img` against the float generator `g` over n latents."""
    from models.cat import generate_float  # the float model is torch's; this module is not

    z = entropy_latents(n, seed)
    psnrs, ssims = [], []
    g.eval()
    for start in range(0, n, BATCH):
        zb = z[start:start + BATCH]
        ref = float_pixels(generate_float(g, zb))
        out = reference.run_batch(img, reference.quantize_latent(zb, img))[-1]
        pix = (out.astype(np.int16) + 128).transpose(0, 2, 3, 1)
        for k in range(len(zb)):
            psnrs.append(psnr(pix[k], ref[k]))
            ssims.append(ssim(pix[k], ref[k]))
        if progress:
            progress(min(n, start + BATCH), n, f"PSNR so far {np.mean(psnrs):.2f} dB")
    p = np.array(psnrs)
    return {"latents": n, "seed": seed, "psnr_db_mean": round(float(p.mean()), 3),
            "psnr_db_min": round(float(p.min()), 3), "psnr_db_median": round(float(np.median(p)), 3),
            "ssim_mean": round(float(np.mean(ssims)), 5), "model_size": img.model_size}
