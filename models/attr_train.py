"""Train the cat attribute classifier with torch and export it for numpy.

Why a separate module: torch is allowed only in training modules (pyproject's import contract);
the appliance runs the exported weights with `models.variety`, whose forward pass must equal this
network's (tests/test_cat_variety.py checks it to 1e-5).

Data: procedural cats and their attributes (`models.data.procedural_with_attributes`) from the
training seed, a validation set from the seed after it; both seeds go into the file's provenance
("seeds_used") so held-out evaluation refuses them. Augmentation: Gaussian pixel noise and a
little blur on part of each batch, so the classifier also reads the softer, noisier pictures a
generator draws rather than only crisp renders.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from installation import __version__
from installation.progress import ProgressCallback
from models import data
from models.fit import fit_one_cycle
from models.variety import (
    ATTRIBUTE_SIZES,
    FEATURES,
    FORMAT,
    LAYERS,
    OUTPUTS,
    VERSION,
    AttributeClassifier,
    head_slices,
)

DEFAULT_EPOCHS = 8
DEFAULT_SEED = 101  # training cats; validation uses DEFAULT_SEED + 1 (never the GAN's seed 0)
DEFAULT_TRAIN_CATS = 16_000
VALIDATION_CATS = 1_500
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
MAX_NOISE = 0.05  # pixel noise sigma drawn up to this (images on 0..1)
BLUR_SHARE = 0.3  # this share of each batch is blurred by a 3x3 box filter


class AttributeNet(nn.Module):
    """The torch twin of the numpy forward pass in models.variety (same layer names)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 48, 3, padding=1)
        self.conv4 = nn.Conv2d(48, 64, 3, padding=1)
        self.fc1 = nn.Linear(1024, FEATURES)
        self.heads = nn.Linear(FEATURES, OUTPUTS)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, 64, 64) in [0, 1] -> (features (N, 128), logits (N, 49))."""
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = self.pool(torch.relu(conv(x)))
        feats = torch.relu(self.fc1(x.flatten(1)))
        return feats, self.heads(feats)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 64, 64, 3) uint8 -> float32 (N, 3, 64, 64) in [0, 1], as models.variety reads them."""
    return torch.from_numpy(np.ascontiguousarray(
        images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A noisy, partly blurred copy of x (N, 3, 64, 64) in [0, 1]."""
    n = x.shape[0]
    blurred = nn.functional.avg_pool2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"),
                                       3, stride=1)
    pick = torch.rand(n, 1, 1, 1, generator=gen) < BLUR_SHARE
    out = torch.where(pick, blurred, x)
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * MAX_NOISE
    return (out + torch.randn(out.shape, generator=gen) * sigma).clamp(0, 1)


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean over attributes of each head's cross-entropy (labels: (N, 9) value indices)."""
    fn = nn.functional.cross_entropy
    return torch.stack([fn(logits[:, s], labels[:, k])
                        for k, s in enumerate(head_slices().values())]).mean()


def _accuracy(model: AttributeNet, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.eval()
    right = torch.zeros(len(ATTRIBUTE_SIZES))
    with torch.no_grad():
        for i in range(0, len(x), 512):
            logits = model(x[i:i + 512])[1]
            for k, s in enumerate(head_slices().values()):
                right[k] += (logits[:, s].argmax(1) == y[i:i + 512, k]).sum()
    model.train()
    return {name: round(float(right[k]) / len(x), 4) for k, name in enumerate(ATTRIBUTE_SIZES)}


def to_classifier(model: AttributeNet, provenance: dict[str, Any]) -> AttributeClassifier:
    """The numpy classifier holding this network's weights."""
    state = model.state_dict()
    weights = {f"{layer}.{part}": state[f"{layer}.{part}"].detach().cpu().numpy()
               .astype(np.float32).reshape(shape if part == "weight" else shape[:1])
               for layer, shape in LAYERS for part in ("weight", "bias")}
    return AttributeClassifier(weights, provenance)


def _labels(codes: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([codes[name] for name in data.ATTRIBUTES], axis=1))


def train(epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED,
          cats: int = DEFAULT_TRAIN_CATS, command: str = "",
          progress: ProgressCallback | None = None) -> tuple[AttributeClassifier, AttributeNet]:
    """Train from scratch (short enough not to need resuming); returns the numpy classifier
    (with provenance) and the torch model it came from."""
    if epochs < 1 or cats < 2:
        raise ValueError("epochs must be at least 1 and cats at least 2")
    started = time.monotonic()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_seed, val_seed = seed, seed + 1
    images, codes = data.procedural_with_attributes(cats, train_seed, progress)
    val_images, val_codes = data.procedural_with_attributes(VALIDATION_CATS, val_seed, progress)
    x, y = to_tensor(images), _labels(codes)
    vx, vy = to_tensor(val_images), _labels(val_codes)
    del images, val_images

    model = AttributeNet()
    history = fit_one_cycle(
        model, x, y, epochs=epochs, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
        gen=gen, loss_of=lambda out, labels: _loss(out[1], labels), augment=augment,
        progress=progress, validate=lambda: {"validation": _accuracy(model, vx, vy)})
    provenance = {
        "format": FORMAT, "version": VERSION, "tool": f"qcat {__version__}",
        "command": command, "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seed": seed, "epochs": epochs, "train_cats": cats, "train_seed": train_seed,
        "validation_cats": VALIDATION_CATS, "validation_seed": val_seed,
        "seeds_used": [train_seed, val_seed], "torch": torch.__version__,
        "attributes": {k: list(v) for k, v in data.ATTRIBUTES.items()},
        "accuracy": history[-1]["validation"], "history": history,
        "train_seconds": round(time.monotonic() - started, 1),
        "augmentation": {"max_noise": MAX_NOISE, "blur_share": BLUR_SHARE},
    }
    classifier = to_classifier(model, provenance)
    classifier.provenance["parameters"] = classifier.parameter_count()
    return classifier, model
