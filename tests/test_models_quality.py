"""The quality yardstick itself: PSNR and SSIM give the textbook answers."""

from __future__ import annotations

import math

import numpy as np

from models import quality


def test_psnr_known_values():
    a = np.zeros((64, 64, 3), np.uint8)
    assert quality.psnr(a, a) == quality.PSNR_CAP_DB
    b = a.copy()
    b[...] = 16  # MSE 256
    assert math.isclose(quality.psnr(a, b), 10 * math.log10(255**2 / 256), rel_tol=1e-12)
    assert math.isclose(quality.psnr(a, b), 24.0484, abs_tol=1e-4)


def test_ssim_is_one_for_identical_and_drops_with_noise():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64, 3)).astype(np.float64)
    assert math.isclose(quality.ssim(a, a), 1.0, abs_tol=1e-12)
    slight = np.clip(a + rng.normal(0, 2, a.shape), 0, 255)
    heavy = np.clip(a + rng.normal(0, 40, a.shape), 0, 255)
    assert 1.0 > quality.ssim(a, slight) > quality.ssim(a, heavy) > 0
    # a brightness shift alone hurts SSIM far less than structure noise of the same MSE
    shifted = np.clip(a + 10, 0, 255)
    assert quality.ssim(a, shifted) > quality.ssim(a, np.clip(a + rng.normal(0, 10, a.shape), 0,
                                                                255))


def test_float_pixels_use_the_int8_mapping():
    t = np.array([-1.0, -0.5, 0.0, 0.5, 1.0]).reshape(1, 1, 1, 5)
    assert quality.float_pixels(np.repeat(t, 3, axis=1))[0, 0, :, 0].tolist() == [
        0.0, 64.0, 128.0, 192.0, 255.0]
