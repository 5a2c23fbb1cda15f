"""The C engine is byte-identical to the numpy golden reference on every layer (promise F1).

Compiled C really runs (the host library through its ctypes binding) on synthetic `demo` and
`full` weight images and on the trained demo model shipped with qcat, for well over 100 latents
in all: pseudo-random exhibits, the extreme entropies (all 0x00 / all 0xFF bytes) and int8 latents
pinned at -128 / 127. A mismatch is reported like CMSIS-NN: latent, layer, channel, pixel, values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware.cat_engine import CatEngine
from models import reference, weightimage
from quantum.latent import LATENT_BYTES, latent_from_entropy

DEMO_SEEDS = (11, 12, 13)
DEMO_LATENTS_PER_MODEL = 30  # 90 latents over three random demo models
FULL_LATENTS = 4  # the full model is 16x the work: a few latents suffice
SHIPPED_LATENTS = 20


def _latents(img: weightimage.WeightImage, n: int, seed: int) -> np.ndarray:
    """n int8 latents from pseudo-random exhibit bytes, plus the extremes first."""
    rng = np.random.default_rng(seed)
    entropies = [bytes(LATENT_BYTES), b"\xff" * LATENT_BYTES]
    entropies += [rng.bytes(LATENT_BYTES) for _ in range(n - len(entropies) - 2)]
    out = [reference.quantize_latent(latent_from_entropy(e), img) for e in entropies]
    out.append(np.full(img.nz, -128, np.int8))
    out.append(np.where(np.arange(img.nz) % 2 == 0, 127, -128).astype(np.int8))
    return np.stack(out)


def _assert_identical(path: Path, img: weightimage.WeightImage, latents: np.ndarray,
                      threaded: bool = True) -> None:
    golden = reference.run_batch(img, latents)
    with CatEngine(path, threaded=threaded) as eng:
        for i, latent in enumerate(latents):
            got = eng.generate(latent, layers=True)
            assert got.layers is not None
            mm = reference.first_mismatch(got.layers, [layer[i] for layer in golden])
            assert mm is None, f"{path.name}, latent {i}: {mm.describe('C', 'reference')}"
            want_rgb = reference.to_rgb(golden[-1][i])
            assert got.rgb.tobytes() == want_rgb.tobytes(), f"latent {i}: RGB differs"


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, weightimage.WeightImage]]:
    folder = tmp_path_factory.mktemp("demo")
    out = []
    for seed in DEMO_SEEDS:
        img = weightimage.synthetic("demo", seed=seed)
        path = folder / f"demo-{seed}.qcw"
        weightimage.save(img, path)
        out.append((path, weightimage.load(path)))  # what the engines read: the file
    return out


def test_demo_synthetic_every_layer_identical(demo_models) -> None:
    for k, (path, img) in enumerate(demo_models):
        _assert_identical(path, img, _latents(img, DEMO_LATENTS_PER_MODEL, seed=100 + k))


def test_full_synthetic_every_layer_identical(tmp_path: Path) -> None:
    img = weightimage.synthetic("full", seed=5)
    path = tmp_path / "full.qcw"
    weightimage.save(img, path)
    img = weightimage.load(path)
    assert img.conv_weights == 12_654_592  # the installation's model, DESIGN §5
    _assert_identical(path, img, _latents(img, FULL_LATENTS, seed=7))


def test_shipped_demo_model_identical() -> None:
    path = weightimage.SHIPPED_DEMO
    if not path.exists():
        pytest.skip(f"the trained demo model is not shipped yet ({path})")
    img = weightimage.load(path)
    _assert_identical(path, img, _latents(img, SHIPPED_LATENTS, seed=3))


def test_synchronous_reads_give_the_same_bytes(demo_models) -> None:
    """Without the prefetch thread the engine reads after computing; same result."""
    path, img = demo_models[0]
    _assert_identical(path, img, _latents(img, 6, seed=9), threaded=False)


def test_two_engines_share_nothing(demo_models) -> None:
    """Interleaved renders from two instances on two models: each matches its own reference."""
    (pa, ia), (pb, ib) = demo_models[0], demo_models[1]
    la, lb = _latents(ia, 4, seed=1), _latents(ib, 4, seed=2)
    with CatEngine(pa) as ea, CatEngine(pb) as eb:
        for i in range(4):
            ra, rb = ea.generate(la[i]), eb.generate(lb[i])
            assert ra.rgb.tobytes() == reference.to_rgb(reference.run(ia, la[i])[-1]).tobytes()
            assert rb.rgb.tobytes() == reference.to_rgb(reference.run(ib, lb[i])[-1]).tobytes()


def test_progress_reports_every_slice(demo_models) -> None:
    path, img = demo_models[0]
    seen: list[tuple[int, int, str]] = []
    with CatEngine(path) as eng:
        eng.generate(_latents(img, 4, 0)[0], progress=lambda d, t, n: seen.append((d, t, n)))
    total = sum(lay.c_out for lay in img.layers)
    assert [d for d, _, _ in seen] == list(range(1, total + 1))
    assert {t for _, t, _ in seen} == {total}
    assert seen[0][2] == "layer 1" and seen[-1][2] == f"layer {len(img.layers)}"


def test_engines_render_c_equals_numpy(demo_models) -> None:
    """The appliance's one entry point gives the same image and layers for c and numpy."""
    from installation import engines

    path, img = demo_models[1]
    for latent in _latents(img, 4, seed=21):
        c = engines.render("c", path, latent, layers=True)
        ref = engines.render("numpy", path, latent, layers=True)
        assert c.rgb.shape == (64, 64, 3) and c.rgb.dtype == np.uint8
        assert c.rgb.tobytes() == ref.rgb.tobytes()
        assert c.layers is not None and ref.layers is not None
        assert reference.first_mismatch(c.layers, ref.layers) is None
    # Cached: the same opened engine serves the next render.
    assert engines.c_engine(path) is engines.c_engine(path)
