"""The cat DCGAN in PyTorch: generator (what the units run, int8) and discriminator (training only).

The PyTorch DCGAN example layout (DESIGN §5): bias-free ConvTranspose2d + BatchNorm + ReLU, Tanh
out, nz = 100, 64×64 RGB. Sizes: `full` (ngf = 128, exactly 12,654,592 conv weights, the
installation's) and `demo` (ngf = 32, trains on a CPU and ships with qcat). The layer shapes come
from `models.weightimage.generator_layout`, the one place the runtime also reads them.

Checkpoints (`save_checkpoint` / `load_checkpoint`) are plain dicts saved with torch.save:
kind, size, nz, ngf, the state dicts, optimizer states, progress and training history.

Imports torch: only training, quantization and export use this module, never the runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from installation.errors import FormatError, InputError
from installation.files import atomic_path
from models.weightimage import IMAGE_CHANNELS, NZ, SIZES, generator_layout

CHECKPOINT_KIND = "qcat-cat-dcgan"
CHECKPOINT_VERSION = 1
INIT_STD = 0.02  # DCGAN paper: weights ~ N(0, 0.02), BN gamma ~ N(1, 0.02)
LEAK = 0.2  # discriminator LeakyReLU slope
BN_EPS = 1e-5


def width_of(size: str) -> int:
    if size not in SIZES:
        raise InputError(f"unknown model size {size!r}", hint=f"use one of {', '.join(SIZES)}")
    return SIZES[size]


class Generator(nn.Module):
    """z: (N, nz, 1, 1) float -> image (N, 3, 64, 64) in [-1, 1]."""

    def __init__(self, nz: int = NZ, ngf: int = SIZES["demo"]) -> None:
        super().__init__()
        self.nz, self.ngf = nz, ngf
        layers: list[nn.Module] = []
        shapes = generator_layout(nz, ngf, IMAGE_CHANNELS)
        for i, s in enumerate(shapes):
            layers.append(nn.ConvTranspose2d(s.c_in, s.c_out, 4, s.stride, s.padding, bias=False))
            if i < len(shapes) - 1:
                layers += [nn.BatchNorm2d(s.c_out, eps=BN_EPS), nn.ReLU(True)]
            else:
                layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)

    def convs(self) -> list[nn.ConvTranspose2d]:
        return [m for m in self.main if isinstance(m, nn.ConvTranspose2d)]

    def bns(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.main if isinstance(m, nn.BatchNorm2d)]

    def conv_weight_count(self) -> int:
        return sum(c.weight.numel() for c in self.convs())


class Discriminator(nn.Module):
    """image (N, 3, 64, 64) -> logit (N,): real vs generated (training only)."""

    def __init__(self, ndf: int = SIZES["demo"]) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(IMAGE_CHANNELS, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(LEAK, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(LEAK, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(LEAK, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(LEAK, True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def init_weights(module: nn.Module) -> None:
    """The DCGAN initialisation (applied with `model.apply`)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


def make_models(size: str, seed: int) -> tuple[Generator, Discriminator]:
    """A freshly initialised generator and discriminator, deterministic by seed."""
    ngf = width_of(size)
    torch.manual_seed(seed)
    g, d = Generator(NZ, ngf), Discriminator(ngf)
    g.apply(init_weights)
    d.apply(init_weights)
    return g, d


def save_checkpoint(path: Path, ckpt: dict[str, Any]) -> None:
    """Write atomically: a killed training run never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, **ckpt}, tmp)


def new_checkpoint(size: str, seed: int, g: Generator, d: Discriminator | None = None,
                   **extra: Any) -> dict[str, Any]:
    ckpt: dict[str, Any] = {"size": size, "nz": g.nz, "ngf": g.ngf, "seed": seed,
                            "generator": g.state_dict(), "epoch": 0, "history": []}
    if d is not None:
        ckpt["discriminator"] = d.state_dict()
    ckpt.update(extra)
    return ckpt


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint dict (or a bare generator state dict, wrapped); FormatError if foreign."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist",
                         hint="make one with `qcat models init cat` or `qcat models train cat`")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign file
        raise FormatError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__})",
                          hint="point at a file written by `qcat models train cat`") from None
    if isinstance(obj, dict) and obj.get("kind") == CHECKPOINT_KIND:
        return obj
    if isinstance(obj, dict) and any(k.startswith("main.0.") for k in obj):
        # a bare generator state dict (models/shipped/cat-demo.pt)
        ngf = int(obj["main.0.weight"].shape[1]) // 8
        size = next((n for n, w in SIZES.items() if w == ngf), "custom")
        return {"kind": CHECKPOINT_KIND, "size": size, "nz": int(obj["main.0.weight"].shape[0]),
                "ngf": ngf, "generator": obj, "epoch": None, "history": []}
    raise FormatError(f"{path} is not a qcat cat checkpoint",
                      hint="point at a file written by `qcat models train cat`")


def generator_from(ckpt: dict[str, Any]) -> Generator:
    g = Generator(int(ckpt["nz"]), int(ckpt["ngf"]))
    try:
        g.load_state_dict(ckpt["generator"])
    except (RuntimeError, KeyError) as exc:
        raise FormatError(f"the checkpoint's generator does not fit the DCGAN layout: "
                          f"{str(exc).splitlines()[0]}") from None
    g.eval()
    return g


def training_commands(ckpt: dict[str, Any]) -> list[str]:
    """The commands that trained a checkpoint, first run first (each resume appends its own)."""
    commands = [str(c) for c in ckpt.get("commands") or []]
    if not commands and ckpt.get("command"):
        commands = [str(ckpt["command"])]
    return commands


def set_threads(n: int) -> None:
    """CPU threads torch may use (benchmarks and the float engine use one, training more)."""
    torch.set_num_threads(max(1, n))


def generate_float(generator: nn.Module, z: np.ndarray) -> np.ndarray:
    """The float model, no autograd: z (nz,) -> float64 (3, 64, 64) in [-1, 1], or a batch
    z (N, nz) -> (N, 3, 64, 64)."""
    z = np.asarray(z, dtype=np.float32)
    batch = z if z.ndim == 2 else z[None, :]
    with torch.inference_mode():
        y = generator(torch.from_numpy(batch)[:, :, None, None]).double().numpy()
    return y if z.ndim == 2 else y[0]
