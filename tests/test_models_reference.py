"""The golden integer reference: its helpers against int8.md's scalar formulas, its fast
float64-matmul accumulation against a plain int64 gather, and its end-to-end contract."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import reference as ref
from models import weightimage as wi

# ---- scalar transliterations of ../shared/reference/int8.md (unbounded Python ints) ----------


def srdhm_scalar(a: int, b: int) -> int:
    if a == b == -(2**31):
        return 2**31 - 1
    return (a * b + (1 << 30)) >> 31


def srdhm_gemmlowp(a: int, b: int) -> int:
    """gemmlowp's own form: nudge, then a division that truncates toward zero."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    return -((-v) >> 31) if v < 0 else v >> 31


def rdbpot_scalar(x: int, e: int) -> int:
    m = (1 << e) - 1
    return (x >> e) + ((x & m) > ((m >> 1) + (x < 0)))


def mbqm_scalar(x: int, m: int, s: int) -> int:
    return rdbpot_scalar(srdhm_scalar(x * (1 << max(s, 0)), m), max(-s, 0))


def test_round_half_away_is_c_round():
    xs = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999999999999994, -0.49999999999999994,
                   2.4999999999999996, 1e300, -0.0, 0.0, 127.5, -128.5, 4503599627370495.5])
    want = [1, -1, 2, -2, 3, -3, 0, 0, 2, 1e300, 0, 0, 128, -129, 4503599627370496]
    assert ref.round_half_away(xs).tolist() == want
    assert np.round(2.5) == 2  # the numpy pitfall this helper exists for


def test_srdhm_floor_form_equals_gemmlowp_and_mbqm_matches_scalar():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.integers(-(2**31), 2**31, 4000), rng.integers(-5000, 5000, 4000),
                        [0, 1, -1, 2**31 - 1, -(2**31), 2**30, -(2**30)]])
    m = np.concatenate([rng.integers(2**30, 2**31, x.size - 3), [0, 2**31 - 1, 2**30]])
    s = rng.integers(-31, 1, x.size)
    got = ref.mbqm(x, m, s)
    for xi, mi, si, g in zip(x.tolist(), m.tolist(), s.tolist(), got.tolist(), strict=True):
        assert srdhm_scalar(xi, mi) == srdhm_gemmlowp(xi, mi)
        assert g == mbqm_scalar(xi, mi, si), (xi, mi, si)
    assert ref.srdhm(np.int64(-(2**31)), np.int64(-(2**31))) == 2**31 - 1


def test_double_rounding_differs_from_single_rounding_sometimes():
    # int8.md: the two schemes disagree in a few percent of cases, so the choice matters.
    rng = np.random.default_rng(2)
    x = rng.integers(-(2**20), 2**20, 20000)
    m = rng.integers(2**30, 2**31, 20000)
    s = rng.integers(-12, -1, 20000)
    double = ref.mbqm(x, m, s)
    single = (x * m + (1 << (30 - s))) >> (31 - s)
    assert 0.001 < np.mean(double != single) < 0.1


def test_quantize_multiplier_known_values():
    assert ref.quantize_multiplier(0.5) == (2**30, 0)
    assert ref.quantize_multiplier(0.25) == (2**30, -1)
    assert ref.quantize_multiplier(0.75) == (3 * 2**29, 0)
    assert ref.quantize_multiplier(0.0) == (0, 0)
    assert ref.quantize_multiplier(2.0**-40) == (0, 0)  # shift < -31: multiplier 0
    q, s = ref.quantize_multiplier(1 - 2**-40)  # rounds up to 2^31: halved, shift + 1
    assert (q, s) == (2**30, 1)
    m, s = ref.quantize_multipliers(np.array([1 - 2**-40, 3.0, 0.1]))
    assert m.tolist()[:2] == [2**31 - 1, 2**31 - 1] and s.tolist()[:2] == [0, 0]  # capped
    assert abs(m[2] * 2.0 ** (int(s[2]) - 31) - 0.1) < 1e-9


def gather_int64(lay: wi.Layer, x: np.ndarray) -> np.ndarray:
    """docs/formats.md's formula read literally: per output pixel, taps with integral
    iy = (oy + p - ky) / s inside the input, all in int64."""
    c_in, h, _ = x.shape
    xs = x.astype(np.int64) - lay.in_zp
    w = lay.weights.astype(np.int64)
    out = np.zeros((lay.c_out, lay.h_out, lay.h_out), dtype=np.int64)
    for oy in range(lay.h_out):
        for ox in range(lay.h_out):
            acc = lay.bias.astype(np.int64).copy()
            for ky in range(lay.kernel):
                ny = oy + lay.padding - ky
                if ny % lay.stride or not 0 <= ny // lay.stride < h:
                    continue
                for kx in range(lay.kernel):
                    nx = ox + lay.padding - kx
                    if nx % lay.stride or not 0 <= nx // lay.stride < h:
                        continue
                    acc += w[:, ky, kx, :] @ xs[:, ny // lay.stride, nx // lay.stride]
            out[:, oy, ox] = acc
    return out


def test_fast_accumulation_equals_the_literal_gather():
    img = wi.synthetic("demo", seed=3)
    rng = np.random.default_rng(3)
    x = ref.quantize_latent(rng.standard_normal((2, 100)), img)[:, :, None, None]
    for i, lay in enumerate(img.layers[:4]):  # layer 4 (32 -> 64) is slow in pure loops
        fast = ref.accumulate(lay, x)
        for n in range(2):
            slow = gather_int64(lay, x[n])
            diff = np.argwhere(fast[n] != slow)
            assert diff.size == 0, f"layer {i}: first mismatch at {diff[0]}"
        x = ref.requantize(lay, fast, img.tanh_table)


def test_accumulation_is_exact_at_the_extremes():
    # all weights +-127 and inputs at -128 with zero point 127: |x - zp| = 255, the largest sums
    img = wi.synthetic("full", seed=0)
    lay = img.layers[1]  # 1024 -> 512
    lay = wi.Layer(**{**lay.__dict__, "in_zp": 127})
    lay.weights = np.full_like(lay.weights, 127)
    lay.weights[1::2] = -127
    x = np.full((1, 1024, 4, 4), -128, dtype=np.int8)
    acc = ref.accumulate(lay, x)
    taps = np.array([[1, 2, 2, 2, 2, 2, 2, 1]]).T @ np.array([[1, 2, 2, 2, 2, 2, 2, 1]])
    want = (taps * 1024 * 127 * -255)[None, :, :] * np.where(np.arange(512) % 2, -1, 1)[:, None,
                                                                                          None]
    assert np.array_equal(acc[0] - lay.bias[:, None, None], want)
    assert np.abs(acc).max() < 2**31


def test_requantize_relu_and_tanh():
    lay = wi.Layer(1, 2, 1, 4, 4, 1, 0, wi.ACT_RELU, 0, -100, 1.0, 1.0,
                   np.zeros((2, 4, 4, 1), np.int8), np.zeros(2, np.int32),
                   np.array([2**30, 2**30], np.int32), np.array([0, -1], np.int32))
    acc = np.array([[[[-1000, 0, 5, 1000]], [[-1000, 0, 5, 1000]]]], dtype=np.int64)
    out = ref.requantize(lay, acc, np.zeros(256, np.int8))
    # x * 0.5 rounded away (3 for 5), then +(-100), clamped to [-100, 127]
    assert out[0, 0, 0].tolist() == [-100, -100, -97, 127]
    # x * 0.25 with double rounding: srdhm(5) = 3 (2.5 rounded), then 3 / 2 -> 2; single
    # rounding of 1.25 would give 1. This is the case int8.md warns about.
    assert out[0, 1, 0].tolist() == [-100, -100, -98, 127]
    table = ref.make_tanh_table(1 / 32, 4)
    assert table[4 + 128] == 0 and table[127 + 128] == 127 and table[0] == -128
    assert table[32 + 4 + 128] == round(128 * math.tanh(1.0))


def test_latent_quantization_uses_the_stored_f32_scale():
    img = wi.synthetic("demo", seed=0)
    z = np.array([0.0, 1.0, -1.0, 100.0, -100.0])
    q = ref.quantize_latent(z, img)
    scale = float(np.float32(img.latent_scale))
    assert q.tolist()[:3] == [img.latent_zp, img.latent_zp + round(1 / scale),
                              img.latent_zp - round(1 / scale)]
    assert q.tolist()[3:] == [127, -128]


def test_render_end_to_end_shapes_and_determinism():
    img = wi.decode(wi.encode(wi.synthetic("demo", seed=5)))
    entropy = bytes(range(200))
    rgb, layers = ref.render(img, entropy)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert [a.shape for a in layers] == [(256, 4, 4), (128, 8, 8), (64, 16, 16), (32, 32, 32),
                                        (3, 64, 64)]
    assert np.array_equal(rgb, ref.to_rgb(layers[-1]))
    assert rgb[5, 9, 1] == int(layers[-1][1, 5, 9]) + 128
    rgb2, _ = ref.render(img, entropy)
    assert np.array_equal(rgb, rgb2)
    assert len(np.unique(rgb)) > 50  # a synthetic model uses the range, not one colour


def test_batch_equals_one_at_a_time():
    img = wi.synthetic("demo", seed=6)
    q = ref.quantize_latent(np.random.default_rng(6).standard_normal((5, 100)), img)
    batch = ref.run_batch(img, q)
    for n in range(5):
        single = ref.run(img, q[n])
        for a, b in zip(batch, single, strict=True):
            assert np.array_equal(a[n], b)


# ---- the one mismatch reporter ----------------------------------------------------------------


def test_first_mismatch_names_layer_channel_pixel_and_values():
    """Layers count from 1 (the third layer, index 2, is "layer 3"), channels and pixels from 0;
    the sentence is the CMSIS-NN one."""
    img = wi.synthetic("demo", 0)
    good = ref.run(img, ref.quantize_latent(np.ones(100), img))
    bad = [a.copy() for a in good]
    bad[2][17, 5, 9] = np.int8(int(bad[2][17, 5, 9]) ^ 1)
    bad[2][20, 0, 0] = np.int8(int(bad[2][20, 0, 0]) ^ 1)
    bad[3][0, 0, 0] = np.int8(int(bad[3][0, 0, 0]) ^ 1)  # a later layer never hides the first
    mm = ref.first_mismatch(bad, good)
    ours, theirs = int(bad[2][17, 5, 9]), int(good[2][17, 5, 9])
    assert mm == ref.Mismatch(layer=3, channel=17, pixel=(5, 9), ours=ours, theirs=theirs,
                              differ=2, of=64 * 16 * 16)
    assert mm.describe("C", "reference") == (
        f"layer 3, channel 17, pixel (5, 9): C {ours}, reference {theirs}; 2 of 16,384 differ")
    assert mm.as_dict() == {"layer": 3, "channel": 17, "pixel": [5, 9], "ours": ours,
                            "theirs": theirs, "differ": 2, "of": 16_384}
    assert ref.first_mismatch(good, [a.copy() for a in good]) is None
    # the very first layer is layer 1
    bad = [a.copy() for a in good]
    bad[0][1, 2, 3] ^= 1
    assert ref.first_mismatch(bad, good).layer == 1


def test_first_mismatch_refuses_outputs_of_different_models():
    """Different layer counts or shapes are an engine bug, not a difference to report."""
    good = ref.run(wi.synthetic("demo", 0), np.zeros(100, np.int8))
    with pytest.raises(ValueError, match="compared 4 layers with 5"):
        ref.first_mismatch(good[:4], good)
    with pytest.raises(ValueError, match="layer 2: shapes"):
        ref.first_mismatch([good[0], good[1][:3, :, :2]] + good[2:], good)
