"""The judge: a small CNN that reads the pip count of a 32x32 die face, run in numpy.

Why: the die's generator (a CVAE on the CH32V003) is only as good as the faces people can read, and
"readable" is measured by this classifier, as in the seed log (DESIGN §10). It judges greyscale
renders and the 1-bit faces the OLED shows. The weights are trained with torch in
`models.die_judge_train` and shipped as a small `.npz` (`models/shipped/die-judge.npz`, format in
docs/formats.md); this module is the forward pass the appliance runs, so it never imports torch.

Network (x: (N, 1, 32, 32) float32 in [0, 1]):

    conv1 3x3 1->8, pad 1, ReLU, maxpool 2      -> (N, 8, 16, 16)
    conv2 3x3 8->16, pad 1, ReLU, maxpool 2     -> (N, 16, 8, 8)
    conv3 3x3 16->16, pad 1, ReLU, maxpool 2    -> (N, 16, 4, 4)
    flatten (C, H, W order, as torch)           -> (N, 256)
    fc 256->6                                   -> logits for 1..6 pips
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from installation.errors import UsageError
from installation.progress import ProgressCallback
from models import npznet

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SHIPPED_JUDGE = SHIPPED_DIR / "die-judge.npz"
FORMAT = "qcat-die-judge"
VERSION = 1
RETRAIN_HINT = "retrain it with `qcat models train judge --out FILE`"
# A judge file is a few tens of KB; anything far bigger is not one.
MAX_FILE_BYTES = 4 * 1024 * 1024
# Faces judged per numpy batch (bounds the im2col temporaries to a few tens of MB).
BATCH = 512
# The evaluation seed `qcat models quality judge` uses by default: never one training draws from.
DEFAULT_EVAL_SEED = 2_000_003
# (name, weight shape) in forward order; "c" layers are 3x3 convolutions, "fc" the last layer.
LAYERS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("conv1", (8, 1, 3, 3)),
    ("conv2", (16, 8, 3, 3)),
    ("conv3", (16, 16, 3, 3)),
    ("fc", (6, 256)),
)
CLASSES = 6  # logits index k means k + 1 pips


class DieJudge(npznet.NpzNet):
    """The die judge's weights and provenance (`load`, `save`: models.npznet)."""

    WHAT = "die judge"
    FORMAT = FORMAT
    VERSION = VERSION
    LAYERS = LAYERS
    SHIPPED = SHIPPED_JUDGE
    HINT = RETRAIN_HINT
    MAX_FILE_BYTES = MAX_FILE_BYTES

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, 32, 32) faces (uint8 0..255 or float in [0, 1]) -> float32 (N, 6) logits."""
        x = _as_input(images)
        out = np.empty((len(x), CLASSES), dtype=np.float32)
        for start in range(0, len(x), BATCH):
            out[start:start + BATCH] = self._forward(x[start:start + BATCH])
        return out

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The pip count the judge reads on each face: int64 (N,) in 1..6."""
        return self.logits(images).argmax(axis=1).astype(np.int64) + 1

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of faces whose pip count the judge reads as `labels` (1..6)."""
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(images) or len(labels) == 0:
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        return float(np.mean(self.predict(images) == labels))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        w = self.weights
        for layer in ("conv1", "conv2", "conv3"):
            x = npznet.maxpool2(np.maximum(npznet.conv3x3(x, w[f"{layer}.weight"], w[f"{layer}.bias"]), 0))
        flat = x.reshape(len(x), -1)
        return flat @ w["fc.weight"].T + w["fc.bias"]


def _as_input(images: np.ndarray) -> np.ndarray:
    """Faces -> float32 (N, 1, 32, 32) in [0, 1]; uint8 is scaled by 1/255."""
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3 or arr.shape[1:] != (32, 32):
        raise ValueError(f"faces must be (N, 32, 32), got {arr.shape}")
    x = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return x[:, None]


def evaluate(judge: DieJudge, per_count: int, seed: int,
             render: Callable[[int, int], tuple[np.ndarray, np.ndarray]] | None = None,
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Held-out accuracy on `per_count` fresh renders of each count (seed `seed`), greyscale and
    1-bit, per count and overall. Refuses a seed the judge was trained or validated on, since
    accuracy on training faces says nothing about legibility."""
    from models import dice

    if per_count < 1:
        raise UsageError(f"the faces per count must be at least 1, not {per_count}")
    used = set(judge.provenance.get("seeds_used", []))
    if seed in used:
        raise UsageError(f"seed {seed} was used to train or validate this judge, so it is not "
                         "held out", hint=f"pick another seed (the default is {DEFAULT_EVAL_SEED})")
    images, labels = (render or dice.balanced)(per_count, seed)
    if progress:
        progress(1, 3, "rendered")
    report: dict[str, Any] = {"faces": int(len(labels)), "per_count": per_count, "seed": seed}
    for kind, faces in (("grey", images), ("one_bit", dice.one_bit(images))):
        predicted = judge.predict(faces)
        right = predicted == labels
        report[kind] = {
            "overall": float(right.mean()),
            "per_count": {str(k): float(right[labels == k].mean()) for k in dice.PIP_COUNTS},
        }
        if progress:
            progress(2 if kind == "grey" else 3, 3, kind)
    return report
