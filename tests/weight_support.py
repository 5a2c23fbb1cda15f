"""Weight images for the engines' format tests: the same integer model in each format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from firmware.cat_engine import CatEngine
from models import reference
from models import weightimage as wi


def write_all(images: dict[str, wi.WeightImage],
              folder: Path) -> dict[str, tuple[Path, wi.WeightImage]]:
    """Each image written to folder/<name>.qcw and read back (what the engines read)."""
    out = {}
    for name, img in images.items():
        path = folder / f"{name}.qcw"
        wi.save(img, path)
        out[name] = (path, wi.load(path))
    return out


def assert_c_equals_reference(path: Path, img: wi.WeightImage, lat: np.ndarray) -> None:
    """The host C engine == the numpy reference on every layer and the RGB bytes, naming the
    first mismatch."""
    golden = reference.run_batch(img, lat)
    with CatEngine(path) as eng:
        for i, latent in enumerate(lat):
            got = eng.generate(latent, layers=True)
            assert got.layers is not None
            mm = reference.first_mismatch(got.layers, [layer[i] for layer in golden])
            assert mm is None, f"{path.name}, latent {i}: {mm.describe('C', 'reference')}"
            assert got.rgb.tobytes() == reference.to_rgb(golden[-1][i]).tobytes()


def int4_variant(img: wi.WeightImage, layers: tuple[int, ...]) -> wi.WeightImage:
    """`img` with the chosen layers (from 1) squeezed to 4-bit weights (-7..7) by rescaling: a
    different integer model, but a valid one, for exactness tests without torch."""
    out = []
    for i, lay in enumerate(img.layers):
        if i + 1 in layers:
            w = np.clip(np.round(lay.weights.astype(np.float64) / 18), -7, 7).astype(np.int8)
            lay = dataclasses.replace(lay, weights=w, weight_bits=4, stored=None)
        else:
            lay = dataclasses.replace(lay, stored=None)
        out.append(lay)
    return dataclasses.replace(img, layers=out, version=wi.VERSION_INT4)


def format_variants(size: str, folder: Path) -> dict[str, Path]:
    """One model per format version, written to `folder`: "v1" (the shipped demo as it is, or
    the bench's uniform random full model, padded), "v2" (the demo re-encoded losslessly with
    Huffman; for full, a full-size model drawn from the demo's v2 weight frequencies), "v3"
    (the demo with layers 2-4 squeezed to 4 bits, Huffman; for full, drawn from that)."""
    demo = wi.load(wi.SHIPPED_DEMO)
    demo_v2 = wi.with_format(demo, wi.DEFAULT_VERSION, "huffman")
    demo_v3 = wi.with_format(int4_variant(demo, (2, 3, 4)), wi.VERSION_INT4, "huffman")
    if size == "demo":
        images = {"v1": wi.with_format(demo, wi.VERSION_PADDED, "raw"), "v2": demo_v2,
                  "v3": demo_v3}
    else:
        images = {"v1": wi.synthetic("full", seed=1),
                  "v2": wi.with_format(wi.synthetic("full", seed=1, like=demo_v2),
                                       wi.DEFAULT_VERSION, "huffman"),
                  "v3": wi.with_format(wi.synthetic("full", seed=1, like=demo_v3),
                                       wi.VERSION_INT4, "huffman")}
    written = write_all({f"{size}-{name}": img for name, img in images.items()}, folder)
    return {name: written[f"{size}-{name}"][0] for name in images}
