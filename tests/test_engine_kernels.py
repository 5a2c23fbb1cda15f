"""The engine's compute kernels on shapes the shipped models never have, byte for byte.

The demo and full models have c_in a multiple of 8 and even widths everywhere, so they never run
the tails of the unit's scalar kernels (cat_engine.c, CAT_SCALAR_KERNELS: 8 MACs per step over
c_in, two output pixels per pass) nor the generic path with more than one tap. This model does:
c_in 13, 11, 9, 19 (tails of 5, 3, 1, 3 after whole steps; 9 and 11 also below one step), a
stride-1 padding-1 layer (up to 16 taps per pixel through the generic path), an odd input width
(5: two pixel pairs and a single pixel per row), ReLU zero points near both ends, multipliers
over the whole Q31 range with shifts from 0 to -31, and a Tanh layer.

Real parts: the weight image is written to disk by models.weightimage and read by the compiled
engine; the host engine (ctypes, -O3: the vectorized kernels) and the rv32 build under QEMU (the
unit's scalar kernels; skipped without QEMU) are compared with models.reference on every layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware import cat_qemu as cq
from models import reference, weightimage
from tests.cross_support import require_qemu
from tests.weight_support import assert_c_equals_reference

# (c_in, c_out, h_in, h_out, stride, padding): 1x1 -> 4x4 -> 5x5 -> 10x10 -> 20x20.
ODD_SHAPES = ((13, 11, 1, 4, 1, 0), (11, 9, 4, 5, 1, 1), (9, 19, 5, 10, 2, 1),
              (19, 3, 10, 20, 2, 1))
CALIBRATION_LATENTS = 8
LATENTS = 12
FILL = 0.9  # of the output range the calibration latents reach: some clamp, most do not


def odd_model(seed: int = 5) -> weightimage.WeightImage:
    """A calibrated int8 generator of ODD_SHAPES (as weightimage.synthetic calibrates its own)."""
    rng = np.random.default_rng(seed)
    nz = ODD_SHAPES[0][0]
    img = weightimage.WeightImage("custom", nz, 8, 0.04, int(rng.integers(-8, 9)), [],
                                  np.zeros(256, np.int8), {"tool": "tests.test_engine_kernels"},
                                  image_size=ODD_SHAPES[-1][3], channels=ODD_SHAPES[-1][1])
    x = reference.quantize_latent(rng.standard_normal((CALIBRATION_LATENTS, nz)), img)[:, :, None,
                                                                                       None]
    in_zp = img.latent_zp
    for i, (c_in, c_out, h_in, h_out, stride, pad) in enumerate(ODD_SHAPES):
        last = i == len(ODD_SHAPES) - 1
        act = weightimage.ACT_TANH if last else weightimage.ACT_RELU
        # ReLU zero points near the bottom (the DCGAN's) and near the top of the int8 range.
        out_zp = int(rng.integers(-10, 11)) if last else (-120 if i % 2 == 0 else 90)
        w = rng.integers(-127, 128, (c_out, 4, 4, c_in), dtype=np.int8)
        lay = weightimage.Layer(c_in, c_out, h_in, h_out, 4, stride, pad, act, in_zp, out_zp,
                                0.1, 0.1, w, np.zeros(c_out, np.int32), np.zeros(c_out, np.int32),
                                np.zeros(c_out, np.int32))
        if last:
            img.tanh_table = reference.make_tanh_table(3.0 / 127, out_zp)
        acc = reference.accumulate(lay, x)
        limit = weightimage.acc_bias_limit(c_in) // 2
        lay.bias = np.clip(np.round(rng.normal(0.0, 0.5, c_out) * (acc.std(axis=(0, 2, 3)) + 1)),
                           -limit, limit).astype(np.int32)
        peak = np.abs(acc + lay.bias[None, :, None, None]).max(axis=(0, 2, 3)) + 1.0
        span = (127 - out_zp) if act == weightimage.ACT_RELU else 127
        lay.multiplier, lay.shift = reference.quantize_multipliers(FILL * span / peak)
        if i == 1:
            # The extremes of the constants the engine admits: a zero multiplier, the largest
            # Q31 one with no shift, and the deepest shift (-31).
            lay.multiplier[:3] = (0, 2**31 - 1, 2**30)
            lay.shift[:3] = (0, 0, -31)
        img.layers.append(lay)
        x = reference.requantize(lay, acc + lay.bias[None, :, None, None].astype(np.int64),
                                 img.tanh_table)
        in_zp = out_zp
    return img


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, weightimage.WeightImage,
                                                           np.ndarray]:
    path = tmp_path_factory.mktemp("odd") / "odd.qcw"
    weightimage.save(odd_model(), path)
    img = weightimage.load(path)  # what the engines read: the file
    rng = np.random.default_rng(21)
    latents = [reference.quantize_latent(rng.standard_normal(img.nz) * 2.0, img)
               for _ in range(LATENTS - 2)]
    latents += [np.full(img.nz, -128, np.int8), np.full(img.nz, 127, np.int8)]
    return path, img, np.stack(latents).astype(np.int8)


def test_odd_model_is_not_degenerate(odd) -> None:
    """The shapes really reach the paths they are for, and the layers are not all clamped."""
    _path, img, latents = odd
    assert [lay.c_in % 8 for lay in img.layers] == [5, 3, 1, 3]
    assert img.layers[2].h_in % 2 == 1 and img.layers[1].stride == 1 == img.layers[1].padding
    for i, out in enumerate(reference.run_batch(img, latents)):
        values = np.unique(out)
        assert len(values) > 20, f"layer {i + 1} takes only {len(values)} values"


def test_host_engine_equals_reference_on_odd_shapes(odd) -> None:
    path, img, latents = odd
    assert_c_equals_reference(path, img, latents)


@pytest.mark.slow
def test_rv32_scalar_kernels_equal_reference_on_odd_shapes(odd, tmp_path: Path) -> None:
    """The unit's kernels, as rv32 code under QEMU, and their host build (-DCAT_SCALAR_KERNELS=1,
    make qemu-cat-host) render the reference's images."""
    require_qemu()
    path, img, latents = odd
    run = cq.render(path, latents.tobytes(), tmp_path, jobs=1)
    ref = b"".join(reference.to_rgb(last).tobytes()
                   for last in reference.run_batch(img, latents)[-1])
    for name, ours in (("rv32 under QEMU", run.qemu_images), ("host build", run.host_images)):
        where = cq.first_difference(ours, ref, img.image_size)
        assert where is None, f"{name} differs from the reference: {where}"
