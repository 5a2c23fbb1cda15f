"""How good the die decoder is: can people read the faces it draws, and are they many faces?

Why here and not in the command: the same measurement runs at the end of training (its figures go
into the shipped file's provenance), in `qcat models quality die` and in a test that holds the
shipped decoder to the goals, so all three must compute it the same way.

Faces are made exactly as the unit makes them: N latents per pip count, each from 8 seeded
pseudo-random entropy bytes through `latent_from_bytes` (the Gaussian table), run through the
integer golden reference (`die_reference.run`, which the C engine equals byte for byte). Then:

- `legibility`: the share of faces the judge (`models.die_judge`, trained on renders only, never
  on decoder output) reads as the intended count, per count, overall and the minimum;
- `distinct_fraction`: distinct face bitmaps among a count's N faces / N, per count and the
  minimum (a generated die, not six stored pictures);
- `mean_lit`: the mean share of lit pixels per count (a blank or full face is a broken model).

numpy only: this runs on the appliance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from installation.errors import UsageError
from installation.progress import ProgressCallback
from models import die_reference as ref
from models.die_judge import DieJudge

LEGIBILITY_GOAL = 0.99
DISTINCT_GOAL = 0.9
DEFAULT_PER_COUNT = 1000
DEFAULT_SEED = 0
# Faces per reference batch (bounds the float64 temporaries of the whole-map reference).
BATCH = 1000


def latents(per_count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_count` latents for each count 1..6 (in that order), each from its own 8 seeded
    entropy bytes through the unit's table: z (6 N, 8) int8, pips (6 N,) int64."""
    if per_count < 1:
        raise UsageError(f"the latents per pip count must be at least 1, not {per_count}")
    rng = np.random.default_rng(seed)
    n = per_count * ref.PIPS
    raw = np.frombuffer(rng.bytes(n * ref.NZ), dtype=np.uint8).reshape(n, ref.NZ)
    z = ref.gauss_table()[raw]  # = latent_from_bytes of each row, the table built once
    pips = np.repeat(np.arange(1, ref.PIPS + 1, dtype=np.int64), per_count)
    return z.astype(np.int8), pips


def faces(model: ref.DieModel, z: np.ndarray, pips: np.ndarray,
          progress: ProgressCallback | None = None) -> np.ndarray:
    """The integer reference's faces: (B, 32, 32) uint8 0/1."""
    out = np.empty((len(z), ref.FACE, ref.FACE), dtype=np.uint8)
    for start in range(0, len(z), BATCH):
        stop = min(start + BATCH, len(z))
        out[start:stop] = ref.run(model, z[start:stop], pips[start:stop])[-1][:, 0]
        if progress is not None:
            progress(stop, len(z), "faces")
    return out


def measure(model: ref.DieModel, judge: DieJudge, per_count: int = DEFAULT_PER_COUNT,
            seed: int = DEFAULT_SEED, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """The quality report (see the module docstring); `ok` when both goals hold for every
    count."""
    z, pips = latents(per_count, seed)
    bits = faces(model, z, pips, progress)
    read = judge.predict(bits * np.uint8(255))
    counts = [str(k) for k in range(1, ref.PIPS + 1)]
    legible: dict[str, float] = {}
    distinct: dict[str, float] = {}
    lit: dict[str, float] = {}
    for k in range(1, ref.PIPS + 1):
        sel = pips == k
        legible[str(k)] = float(np.mean(read[sel] == k))
        distinct[str(k)] = len({f.tobytes() for f in bits[sel]}) / per_count
        lit[str(k)] = float(bits[sel].mean())
    report: dict[str, Any] = {
        "faces": int(len(z)), "per_count": per_count, "seed": seed,
        "legibility": {"per_count": legible, "overall": float(np.mean(read == pips)),
                       "min": min(legible[c] for c in counts)},
        "distinct_fraction": {"per_count": distinct, "min": min(distinct[c] for c in counts)},
        "mean_lit": {"per_count": lit},
        "goals": {"legibility": LEGIBILITY_GOAL, "distinct_fraction": DISTINCT_GOAL},
    }
    report["ok"] = (report["legibility"]["min"] >= LEGIBILITY_GOAL
                    and report["distinct_fraction"]["min"] >= DISTINCT_GOAL)
    return report


def measure_file(decoder: Path, judge: Path | None = None, per_count: int = DEFAULT_PER_COUNT,
                 seed: int = DEFAULT_SEED,
                 progress: ProgressCallback | None = None) -> dict[str, Any]:
    """`measure` on a decoder file with a judge file (default: the shipped judge); the report
    names both."""
    model = ref.load(decoder)
    judge_model = DieJudge.load(judge)
    report = measure(model, judge_model, per_count, seed, progress)
    report["decoder"] = str(decoder)
    report["judge"] = str(judge) if judge is not None else "shipped"
    return report


def summary_table(report: dict[str, Any]) -> list[str]:
    """The report as a few aligned lines for people (the CLI prints them)."""
    counts = list(report["legibility"]["per_count"])
    lines = ["pips           " + " ".join(f"{k:>7}" for k in counts) + "      min"]
    for label, key in (("legibility", "legibility"), ("distinct", "distinct_fraction")):
        row = report[key]["per_count"]
        lines.append(f"{label:<14} " + " ".join(f"{100 * row[k]:6.2f}%" for k in counts)
                     + f"  {100 * report[key]['min']:6.2f}%")
    lit = report["mean_lit"]["per_count"]
    lines.append(f"{'lit pixels':<14} " + " ".join(f"{100 * lit[k]:6.2f}%" for k in counts))
    return lines


def sample_sheet(model: ref.DieModel, seed: int, per_row: int = 12) -> np.ndarray:
    """The docs' picture of generated faces: one row per pip count (1 at the top), `per_row`
    faces each from the same seeded entropy as `measure`; uint8 0 / 255 faces on a grey grid."""
    from models import dice

    z, pips = latents(per_row, seed)
    return dice.grid(faces(model, z, pips) * np.uint8(255), cols=per_row)
