"""Weight images for the engines' format tests: the same integer model in each format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from models import weightimage as wi


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
    out = {}
    for name, img in images.items():
        out[name] = folder / f"{size}-{name}.qcw"
        wi.save(img, out[name])
    return out
