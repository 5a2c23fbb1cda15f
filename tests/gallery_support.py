"""Helpers shared by the tests/test_gallery_*.py files (not a test module itself).

`synthetic_weights` writes a demo-size synthetic weight image (numpy only, no trained model);
`generate` makes real exhibits through the CLI; `write_clip_bank` a real .qcv of synthetic clips; `fill_gallery` inserts many archive rows with tiny
files directly, for tests and measurements of the contact sheet that need hundreds of exhibits
but not hundreds of renders.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from installation.exhibit import png_bytes
from installation.files import write_atomic
from installation.gallery import Gallery, NewExhibit
from quantum.source import EntropySource

TINY_RGB = np.zeros((64, 64, 3), dtype=np.uint8)
START = datetime(2025, 1, 1, tzinfo=UTC)


def synthetic_weights(folder: Path) -> Path:
    from models import weightimage

    path = folder / "synthetic-demo.qcw"
    path.write_bytes(weightimage.encode(weightimage.synthetic("demo", seed=7)))
    return path


def generate(run_qcat, weights: Path, count: int, *extra: str) -> list[dict]:
    r = run_qcat("generate", "--count", count, "--engine", "numpy", "--weights", weights,
                 "--json", *extra)
    assert r.code == 0, r.err
    return json.loads(r.out)["generated"]


def fill_gallery(gallery: Gallery, n: int, *, start: datetime = START) -> None:
    """`n` rows, one minute apart from `start`, alternating moods, every third one os-fallback.
    Each row gets its own (tiny, identical-looking) 64-px and 512-px PNG files."""
    small = png_bytes(TINY_RGB)
    big = png_bytes(TINY_RGB, 8)
    for i in range(n):
        stem = f"fill-{i:06d}"
        png_sha = write_atomic(gallery.path(f"{stem}.png"), small)
        big_sha = write_atomic(gallery.path(f"{stem}-512.png"), big)
        gallery.add(NewExhibit(
            draw_id=1_000_000 + i,
            created=(start + timedelta(minutes=i)).isoformat(timespec="milliseconds"),
            entropy_hex="00" * 203,
            source=EntropySource.OS_FALLBACK if i % 3 == 0 else "anu",
            provenance={"segments": [{"request_time": "2025-01-01T00:00:00Z"}]},
            model_sha256="ab" * 32, model_path="/nowhere.qcw", model_size="demo", engine="numpy",
            image_sha256="cd" * 32, png_path=f"{stem}.png", png_sha256=png_sha,
            big_png_path=f"{stem}-512.png", big_png_sha256=big_sha, wav_path=None,
            wav_sha256=None, verdict_code=i, mood="motivated" if i % 2 else "demotivated",
            verdict_text=f"Verdict number {i} <b>escaped</b>."))


def write_clip_bank(path: Path) -> Path:
    """A real .qcv file with short synthetic clips (no espeak-ng needed)."""
    from phrases.clipbank import N_CLIPS
    from phrases.clipbank import write_clip_bank as write

    rng = np.random.default_rng(3)
    clips = [rng.integers(0, 4096, size=40 + i, dtype=np.uint16) for i in range(N_CLIPS)]
    path.parent.mkdir(parents=True, exist_ok=True)  # writers never create folders themselves
    return write(path, clips, sample_rate=8000, gap_ms=10, gap_samples=80, provenance={"t": 1})
