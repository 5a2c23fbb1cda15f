"""A unit's SD card for tests, built as a folder from its parts (not by `qcat sd build`, which
another part of qcat owns): the shipped demo weight image, a synthetic clip bank, a reserve of
seeded random exhibits whose latents and verdicts are computed exactly as the exhibit path does
(quantum.latent, then models.reference.quantize_latent), an empty journal and a manifest.

`golden_sha256(card, i)` is the SHA-256 of the numpy reference render of record i's latent: what
an offline exhibit's journal entry must carry (F1).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware import cardfmt
from installation.files import write_atomic
from models.weightimage import SHIPPED_DEMO
from tests.gallery_support import write_clip_bank

LEASE_ID = bytes(range(16))
CARD_ID = bytes(range(16, 32))


@dataclass(frozen=True)
class BuiltCard:
    path: Path
    header: cardfmt.ReserveHeader
    records: list[cardfmt.Record]

    @property
    def weights(self) -> Path:
        return self.path / cardfmt.WEIGHTS

    def file(self, name: str) -> Path:
        return self.path / name

    def journal(self) -> cardfmt.Journal:
        """The journal as the controller's reader judges it (with the card's reserve)."""
        header, states = cardfmt.read_reserve(self.file(cardfmt.RESERVE).read_bytes())
        return cardfmt.read_journal(self.file(cardfmt.JOURNAL).read_bytes(), header, states)


def record_of(index: int, raw: bytes, weights: Path = SHIPPED_DEMO) -> cardfmt.Record:
    """A reserve record from an exhibit's 203 bytes, as installation/exhibit.py computes them."""
    from installation.engines import weight_image
    from models.reference import quantize_latent
    from quantum.latent import latent_from_entropy, verdict_code

    latent = quantize_latent(latent_from_entropy(raw[:200]), weight_image(weights))
    return cardfmt.Record(index, verdict_code(raw[200:]).code, raw,
                          np.asarray(latent, dtype=np.int8).tobytes())


def make_card(folder: Path, records: int = 3, *, seed: int = 0, serial: str = "cat-07",
              weights: Path = SHIPPED_DEMO) -> BuiltCard:
    """A complete card in `folder` (created), its reserve holding `records` seeded exhibits."""
    folder.mkdir(parents=True, exist_ok=True)
    weight_bytes = weights.read_bytes()
    write_atomic(folder / cardfmt.WEIGHTS, weight_bytes)
    write_clip_bank(folder / cardfmt.CLIPS)
    rng = random.Random(f"card:{seed}")
    recs = [record_of(i, rng.randbytes(cardfmt.RAW_BYTES), weights) for i in range(records)]
    header = cardfmt.ReserveHeader(LEASE_ID, CARD_ID, serial, records,
                                   hashlib.sha256(weight_bytes).digest())
    write_atomic(folder / cardfmt.RESERVE, cardfmt.pack_reserve(header, recs))
    write_atomic(folder / cardfmt.JOURNAL, cardfmt.empty_journal(LEASE_ID, CARD_ID, records))
    files = {}
    for name in (cardfmt.WEIGHTS, cardfmt.CLIPS, cardfmt.RESERVE, cardfmt.JOURNAL):
        data = (folder / name).read_bytes()
        entry = {"bytes": len(data), "format": cardfmt.FILE_FORMATS[name], "format_version": 1}
        if name != cardfmt.JOURNAL:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
        files[name] = entry
    manifest = {"format": cardfmt.MANIFEST_FORMAT, "version": cardfmt.VERSION,
                "qcat_version": "test", "created": "2024-01-01T00:00:00Z",
                "card_id": CARD_ID.hex(), "unit": serial, "lease_id": LEASE_ID.hex(),
                "reserve_records": records, "files": files}
    write_atomic(folder / cardfmt.MANIFEST, cardfmt.pack_manifest(manifest))
    return BuiltCard(folder, header, recs)


def golden_sha256(card: BuiltCard, index: int) -> bytes:
    """SHA-256 of the numpy reference's image of record `index` (what the unit must journal)."""
    from installation.engines import render

    latent = np.frombuffer(card.records[index].latent, dtype=np.int8)
    return hashlib.sha256(render("numpy", card.weights, latent).rgb.tobytes()).digest()
