"""How varied the generated cats are: near twins, attribute coverage, and a Fréchet distance.

Why: a GAN can score well on int8-vs-float PSNR while drawing the same five cats over and over
(mode collapse). Three measures, each computed the same way for generated cats and for the
training data, so the data's figure is the reference:

- `near_twin_rate`: the share of images whose nearest *other* image is within RMS 0.05 (pixels on
  0..1). Exact over all pairs (a Gram matrix, then the few pairs near the threshold re-measured
  directly), not a sample.
- attribute coverage: a small multi-head CNN (`AttributeClassifier`) reads the nine procedural
  attributes (`models.data.ATTRIBUTES`) off an image. Per attribute, the total-variation distance
  between the predicted-label distributions of generated and data cats (both through the same
  classifier, so its own bias cancels), and every value it never predicts for a generated cat.
- `frechet_distance` between the two sets in the classifier's 128-wide penultimate feature space
  (FID's formula with our own small network instead of Inception; numpy only, no scipy).

The classifier is trained with torch in `models.attr_train` and shipped as a small `.npz`
(`models/shipped/cat-attributes.npz`, docs/formats.md); this module is its forward pass, the same
pattern as `models.die_judge`. It never imports torch: it is on the appliance's runtime path.

Network (x: (N, 3, 64, 64) float32 in [0, 1]):

    conv1 3x3 3->16, pad 1, ReLU, maxpool 2     -> (N, 16, 32, 32)
    conv2 3x3 16->32, pad 1, ReLU, maxpool 2    -> (N, 32, 16, 16)
    conv3 3x3 32->48, pad 1, ReLU, maxpool 2    -> (N, 48, 8, 8)
    conv4 3x3 48->64, pad 1, ReLU, maxpool 2    -> (N, 64, 4, 4)
    flatten (C, H, W order, as torch)           -> (N, 1024)
    fc1 1024->128, ReLU                         -> the features (Fréchet distance)
    heads 128->49                               -> logits, one slice per attribute in table order
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from installation.errors import FormatError, UsageError
from installation.progress import ProgressCallback
from models import data, npznet

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SHIPPED_CLASSIFIER = SHIPPED_DIR / "cat-attributes.npz"
FORMAT = "qcat-cat-attributes"
VERSION = 1
RETRAIN_HINT = "retrain it with `qcat models train attributes --out FILE`"
# A classifier file is about 1 MB; anything far bigger is not one.
MAX_FILE_BYTES = 16 * 1024 * 1024
BATCH = 256  # images per numpy batch: bounds the im2col temporaries to about 100 MB
TWIN_RMS = 0.05  # two images closer than this RMS (pixels on 0..1) are near twins
# The goals a shipped cat model meets (`goals_met`): its near-twin rate at most this far above the
# data's own, and every value of every attribute generated at least once.
NEAR_TWIN_MARGIN = 0.05
# Pairs whose Gram-matrix distance lies within this relative band of the threshold are
# re-measured directly, so rounding in the Gram trick can never move an image across it.
TWIN_RECHECK_BAND = 1e-6
FEATURES = 128
DEFAULT_DATA_SEED = 0  # `qcat models train cat` draws its procedural cats from seed 0
DEFAULT_EVAL_SEED = 3_000_017  # held-out cats for the classifier's accuracy: no training seed
ATTRIBUTE_SIZES = {name: len(values) for name, values in data.ATTRIBUTES.items()}
OUTPUTS = sum(ATTRIBUTE_SIZES.values())
# (name, weight shape) in forward order.
LAYERS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("conv1", (16, 3, 3, 3)),
    ("conv2", (32, 16, 3, 3)),
    ("conv3", (48, 32, 3, 3)),
    ("conv4", (64, 48, 3, 3)),
    ("fc1", (FEATURES, 1024)),
    ("heads", (OUTPUTS, FEATURES)),
)
CONVS = ("conv1", "conv2", "conv3", "conv4")


def head_slices() -> dict[str, slice]:
    """Which logits belong to which attribute (table order)."""
    out, start = {}, 0
    for name, size in ATTRIBUTE_SIZES.items():
        out[name] = slice(start, start + size)
        start += size
    return out


class AttributeClassifier(npznet.NpzNet):
    """The cat attribute classifier's weights and provenance (`load`, `save`: models.npznet);
    a file trained on other attributes than `data.ATTRIBUTES` is refused."""

    WHAT = "cat attribute classifier"
    FORMAT = FORMAT
    VERSION = VERSION
    LAYERS = LAYERS
    SHIPPED = SHIPPED_CLASSIFIER
    HINT = RETRAIN_HINT
    MAX_FILE_BYTES = MAX_FILE_BYTES

    @classmethod
    def check(cls, provenance: dict[str, Any], name: str) -> None:
        expected = {k: list(v) for k, v in data.ATTRIBUTES.items()}
        if provenance.get("attributes") != expected:
            raise FormatError(f"{name} was trained on other cat attributes than this qcat draws",
                              hint=RETRAIN_HINT)

    def run(self, images: np.ndarray,
            progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, 64, 64, 3) images (uint8, or float in [0, 1]) -> float32 features (N, 128) and
        logits (N, 49)."""
        x = _as_input(images)
        feats = np.empty((len(x), FEATURES), dtype=np.float32)
        logits = np.empty((len(x), OUTPUTS), dtype=np.float32)
        for start in range(0, len(x), BATCH):
            feats[start:start + BATCH], logits[start:start + BATCH] = \
                self._forward(x[start:start + BATCH])
            if progress:
                progress(min(len(x), start + BATCH), len(x), "reading attributes")
        return feats, logits

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Each attribute's predicted value index: {name: int64 (N,)}."""
        return decode_logits(self.run(images)[1])

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights
        for layer in CONVS:
            x = npznet.maxpool2(np.maximum(npznet.conv3x3(x, w[f"{layer}.weight"], w[f"{layer}.bias"]), 0))
        feats = np.maximum(x.reshape(len(x), -1) @ w["fc1.weight"].T + w["fc1.bias"], 0)
        return feats, feats @ w["heads.weight"].T + w["heads.bias"]


def decode_logits(logits: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 49) logits -> {attribute: int64 (N,) argmax within its slice}."""
    return {name: logits[:, s].argmax(axis=1).astype(np.int64)
            for name, s in head_slices().items()}


def _as_input(images: np.ndarray) -> np.ndarray:
    """Images -> float32 (N, 3, 64, 64) in [0, 1]; uint8 is scaled by 1/255."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != (data.SIZE, data.SIZE, 3):
        raise ValueError(f"cats must be (N, 64, 64, 3), got {arr.shape}")
    x = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# --------------------------------------------------------------------------------------------
# The measures (numpy only)


def _flat_unit(images: np.ndarray) -> np.ndarray:
    """Images -> float64 (N, D) on 0..1 (uint8 is divided by 255; floats are taken as given)."""
    arr = np.asarray(images)
    flat = arr.reshape(len(arr), -1).astype(np.float64)
    return flat / 255.0 if arr.dtype == np.uint8 else flat


def nearest_other_rms(images: np.ndarray) -> np.ndarray:
    """For each image, the RMS pixel difference (0..1 scale) to its nearest *other* image:
    float64 (N,). Squared distances come from the Gram matrix (|a|² + |b|² − 2a·b, float64);
    pairs near the twin threshold are re-measured directly so the rate is exact."""
    x = _flat_unit(images)
    n, dim = x.shape
    if n < 2:
        raise ValueError("the nearest other image needs at least two images")
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(d2, np.inf)
    threshold = dim * TWIN_RMS**2
    near = np.argwhere(np.abs(d2 - threshold) <= TWIN_RECHECK_BAND * threshold)
    for i, j in near:
        if i < j:
            exact = float(np.sum((x[i] - x[j]) ** 2))
            d2[i, j] = d2[j, i] = exact
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0) / dim)


def near_twin_rate(images: np.ndarray, rms: float = TWIN_RMS) -> float:
    """Share of images whose nearest other image is within RMS `rms` (pixels on 0..1)."""
    return float(np.mean(nearest_other_rms(images) < rms))


def label_distribution(codes: np.ndarray, n_values: int) -> np.ndarray:
    """Value indices (N,) -> the share of each value, float64 (n_values,)."""
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) == 0:
        raise ValueError("a distribution needs at least one label")
    return np.bincount(codes, minlength=n_values).astype(np.float64) / len(codes)


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance of two distributions over the same values: ½·Σ|p − q|."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"distributions of different shapes {p.shape} and {q.shape}")
    return float(0.5 * np.abs(p - q).sum())


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues from
    rounding are taken as zero)."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (N, D) and (M, D):
    |μa − μb|² + tr(Σa + Σb − 2(Σa Σb)^½). tr (Σa Σb)^½ is computed as the trace of
    (Σa^½ Σb Σa^½)^½, a symmetric PSD matrix with the same eigenvalues, so numpy's `eigh`
    suffices and the answer is real."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"feature sets must be (N>=2, D) alike, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = np.linalg.eigvalsh((root_a @ cov_b @ root_a + (root_a @ cov_b @ root_a).T) / 2)
    trace_root = float(np.sqrt(np.maximum(cross, 0.0)).sum())
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                  - 2.0 * trace_root)
    return max(value, 0.0)


def accuracy(classifier: AttributeClassifier, images: np.ndarray,
             labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Per attribute, the share of images whose value the classifier reads as `labels`."""
    predicted = classifier.predict(images)
    return {name: float(np.mean(predicted[name] == np.asarray(labels[name])))
            for name in data.ATTRIBUTES}


def evaluate(classifier: AttributeClassifier, n: int, seed: int = DEFAULT_EVAL_SEED,
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Held-out accuracy per attribute on `n` fresh procedural cats of `seed`. Refuses a seed the
    classifier was trained or validated on: accuracy on its training cats says little."""
    if n < 1:
        raise UsageError(f"the cats to read must be at least 1, not {n}")
    if seed in set(classifier.provenance.get("seeds_used", [])):
        raise UsageError(f"seed {seed} was used to train or validate this classifier, so it is "
                         "not held out", hint=f"pick another seed (the default is "
                                              f"{DEFAULT_EVAL_SEED})")
    images, labels = data.procedural_with_attributes(n, seed, progress)
    return {"cats": n, "seed": seed, "accuracy": accuracy(classifier, images, labels)}


def compare(generated: np.ndarray, reference: np.ndarray, classifier: AttributeClassifier,
            progress: ProgressCallback | None = None) -> dict[str, Any]:
    """The variety report of `generated` cats against `reference` (data) cats, both
    (N, 64, 64, 3) uint8: near-twin rates, per-attribute TV distance and the values never
    predicted for a generated cat, and the Fréchet distance of their features."""
    feats_g, logits_g = classifier.run(generated, progress)
    feats_r, logits_r = classifier.run(reference, progress)
    pred_g, pred_r = decode_logits(logits_g), decode_logits(logits_r)
    attributes: dict[str, Any] = {}
    for name, values in data.ATTRIBUTES.items():
        dist_g = label_distribution(pred_g[name], len(values))
        dist_r = label_distribution(pred_r[name], len(values))
        attributes[name] = {
            "tv_distance": round(tv_distance(dist_g, dist_r), 4),
            "missing": [v for v, share in zip(values, dist_g, strict=True) if share == 0],
            "generated": {v: round(float(s), 4) for v, s in zip(values, dist_g, strict=True)},
            "data": {v: round(float(s), 4) for v, s in zip(values, dist_r, strict=True)},
        }
    return {
        "generated": int(len(generated)), "data": int(len(reference)),
        "near_twin_rms": TWIN_RMS,
        "near_twin_rate_generated": round(near_twin_rate(generated), 4),
        "near_twin_rate_data": round(near_twin_rate(reference), 4),
        "fid": round(frechet_distance(feats_g, feats_r), 4),
        "fid_data_halves": round(frechet_distance(feats_r[::2], feats_r[1::2]), 4),
        "attributes": attributes,
        "classifier_accuracy": classifier.provenance.get("accuracy", {}),
    }


def generated_cats(img: Any, n: int, seed: int,
                   progress: ProgressCallback | None = None) -> np.ndarray:
    """n cats from the int8 reference of weight image `img`, from seeded entropy latents as
    exhibits make them: (n, 64, 64, 3) uint8."""
    from models import quality, reference

    z = quality.entropy_latents(n, seed)
    out = np.empty((n, data.SIZE, data.SIZE, 3), dtype=np.uint8)
    for start in range(0, n, quality.BATCH):
        last = reference.run_batch(img, reference.quantize_latent(z[start:start + quality.BATCH],
                                                                  img))[-1]
        out[start:start + len(last)] = (last.astype(np.int16) + 128).transpose(0, 2, 3, 1)
        if progress:
            progress(min(n, start + quality.BATCH), n, "generating cats")
    return out


def measure(img: Any, classifier: AttributeClassifier, n: int = 1000, seed: int = 0,
            data_seed: int = DEFAULT_DATA_SEED,
            progress: ProgressCallback | None = None) -> dict[str, Any]:
    """The variety of n int8 cats of `img` (entropy seed `seed`) against n training cats
    (procedural seed `data_seed`)."""
    if n < 2:
        raise UsageError(f"variety needs at least 2 cats, not {n}")
    generated = generated_cats(img, n, seed, progress)
    reference_cats = data.procedural(n, data_seed, progress)
    report = compare(generated, reference_cats, classifier, progress)
    report["seed"], report["data_seed"] = seed, data_seed
    report["goals"] = {"near_twin_margin": NEAR_TWIN_MARGIN, "missing_values": 0}
    report["ok"] = goals_met(report)
    return report


def goals_met(report: dict[str, Any]) -> bool:
    """Whether a variety report (`compare`'s) meets the goals a shipped model must: near twins at
    most NEAR_TWIN_MARGIN above the data's own rate, and no attribute value never generated."""
    twins_ok = (report["near_twin_rate_generated"]
                <= report["near_twin_rate_data"] + NEAR_TWIN_MARGIN)
    return twins_ok and not any(a["missing"] for a in report["attributes"].values())
