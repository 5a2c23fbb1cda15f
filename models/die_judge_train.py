"""Train the judge (the die face pip classifier) with torch and export it for numpy.

Why a separate module: torch is allowed only in training modules (pyproject's import contract);
the appliance runs the exported weights with `models.die_judge`, which must match this network's
argmax (tests/test_die_judge.py checks it).

Data: `models.dice` renders from the training seed (and a validation set from the seed after it);
both seeds are written into the file's provenance ("seeds_used") so evaluation refuses them.
Augmentation makes the judge fit for generated faces, not only clean renders: small shifts,
Gaussian noise, and a random share of the batch thresholded to 1 bit (the OLED's view) at a
jittered threshold.
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
from models import dice
from models.die_judge import FORMAT, LAYERS, VERSION, DieJudge
from models.fit import fit_one_cycle

DEFAULT_EPOCHS = 10
DEFAULT_SEED = 1
DEFAULT_TRAIN_FACES = 16_000
VALIDATION_FACES = 1_200
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
# Augmentation: shift up to this many pixels each way; noise sigma drawn up to this; this share of
# each batch thresholded to 1 bit at 0.5 +- THRESHOLD_JITTER.
MAX_SHIFT = 2
MAX_NOISE = 0.08
ONE_BIT_SHARE = 0.4
THRESHOLD_JITTER = 0.1


class JudgeNet(nn.Module):
    """The torch twin of the numpy forward pass in models.die_judge (same layer names)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(256, 6)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 1, 32, 32) in [0, 1]
        for conv in (self.conv1, self.conv2, self.conv3):
            x = self.pool(torch.relu(conv(x)))
        return self.fc(x.flatten(1))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x: (N, 1, 32, 32) float in [0, 1] -> a shifted, noisy, partly 1-bit copy."""
    n = x.shape[0]
    s = MAX_SHIFT
    padded = nn.functional.pad(x, (s, s, s, s))
    dx = torch.randint(0, 2 * s + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * s + 1, (n,), generator=gen)
    rows = (dy[:, None, None] + torch.arange(32)[None, :, None]).expand(n, 32, 32)
    cols = (dx[:, None, None] + torch.arange(32)[None, None, :]).expand(n, 32, 32)
    out = padded[torch.arange(n)[:, None, None], 0, rows, cols][:, None]
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * MAX_NOISE
    out = (out + torch.randn(out.shape, generator=gen) * sigma).clamp(0, 1)
    threshold = 0.5 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * THRESHOLD_JITTER
    binary = torch.rand(n, 1, 1, 1, generator=gen) < ONE_BIT_SHARE
    return torch.where(binary, (out >= threshold).float(), out)


def _accuracy(model: JudgeNet, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        right = sum(int((model(x[i:i + 512]).argmax(1) == y[i:i + 512]).sum())
                    for i in range(0, len(x), 512))
    model.train()
    return right / len(x)


def to_judge(model: JudgeNet, provenance: dict[str, Any]) -> DieJudge:
    """The numpy judge holding this network's weights."""
    state = model.state_dict()
    weights = {f"{layer}.{part}": state[f"{layer}.{part}"].detach().cpu().numpy()
               .astype(np.float32).reshape(shape if part == "weight" else shape[:1])
               for layer, shape in LAYERS for part in ("weight", "bias")}
    return DieJudge(weights, provenance)


def train(epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED,
          faces: int = DEFAULT_TRAIN_FACES, command: str = "",
          progress: ProgressCallback | None = None) -> tuple[DieJudge, JudgeNet]:
    """Train from scratch (short enough not to need resuming); returns the numpy judge (with
    provenance) and the torch model it came from."""
    if epochs < 1 or faces < 6:
        raise ValueError("epochs must be at least 1 and faces at least 6")
    started = time.monotonic()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_seed, val_seed = seed, seed + 1
    images, labels = dice.dataset(faces, train_seed)
    val_images, val_labels = dice.dataset(VALIDATION_FACES, val_seed)
    x = torch.from_numpy(dice.to_float(images))[:, None]
    y = torch.from_numpy(labels - 1)
    vx = torch.from_numpy(dice.to_float(val_images))[:, None]
    vx1 = torch.from_numpy(dice.to_float(dice.one_bit(val_images)))[:, None]
    vy = torch.from_numpy(val_labels - 1)

    model = JudgeNet()
    history = fit_one_cycle(
        model, x, y, epochs=epochs, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
        gen=gen, loss_of=nn.CrossEntropyLoss(), augment=augment, progress=progress,
        validate=lambda: {"val_grey": _accuracy(model, vx, vy),
                          "val_one_bit": _accuracy(model, vx1, vy)})
    provenance = {
        "format": FORMAT, "version": VERSION, "tool": f"qcat {__version__}",
        "command": command, "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seed": seed, "epochs": epochs, "train_faces": faces, "train_seed": train_seed,
        "validation_faces": VALIDATION_FACES, "validation_seed": val_seed,
        "seeds_used": [train_seed, val_seed], "torch": torch.__version__,
        "accuracy_grey": history[-1]["val_grey"], "accuracy_one_bit": history[-1]["val_one_bit"],
        "history": history, "train_seconds": round(time.monotonic() - started, 1),
        "augmentation": {"max_shift": MAX_SHIFT, "max_noise": MAX_NOISE,
                         "one_bit_share": ONE_BIT_SHARE, "threshold_jitter": THRESHOLD_JITTER},
    }
    judge = to_judge(model, provenance)
    judge.provenance["parameters"] = judge.parameter_count()
    return judge, model
