"""The cat DCGAN in PyTorch: generator (what the units run, int8) and discriminator (training only).

The PyTorch DCGAN example layout (DESIGN §5): bias-free ConvTranspose2d + BatchNorm + ReLU, Tanh
out, nz = 100, 64×64 RGB. Sizes: `full` (ngf = 128, exactly 12,654,592 conv weights, the
installation's) and `demo` (ngf = 32, trains on a CPU and ships with qcat). The layer shapes come
from `models.weightimage.generator_layout`, the one place the runtime also reads them.

The generator's layers are fixed by the C engine, the numpy reference, the weight image and
quantization; what training may change is only how it is initialised (`init_generator`: the
DCGAN normal init, then every stride-2 layer made checkerboard-free, `phase_equal_init_`). The
discriminator is training-only and free: spectral normalisation on every conv, no BatchNorm (it
would leak batch statistics between real and generated images), and a minibatch standard
deviation channel before the last conv so it can see a batch that lacks variety (mode collapse).

Checkpoints (`save_checkpoint` / `load_checkpoint`) are plain dicts saved with torch.save:
kind, size, nz, ngf, the state dicts, optimizer states, progress and training history. Version 2
(the SN/R1/DiffAugment/EMA recipe of `models.train`): "generator" holds the moving average of the
generator's weights, the one every consumer (quantization, export, the torch engine) loads, and
"generator_raw" the weights the optimizer trains, for resuming. Version 1 checkpoints and bare
state dicts (the shipped `cat-demo.pt`) load the same way: "generator" is their only generator.

Imports torch: only training, quantization and export use this module, never the runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from installation.errors import FormatError, InputError
from installation.files import atomic_path
from models.weightimage import IMAGE_CHANNELS, NZ, SIZES, generator_layout

CHECKPOINT_KIND = "qcat-cat-dcgan"
CHECKPOINT_VERSION = 2  # 2: the EMA generator in "generator", the trained one in "generator_raw"
INIT_STD = 0.02  # DCGAN paper: weights ~ N(0, 0.02), BN gamma ~ N(1, 0.02)
LEAK = 0.2  # discriminator LeakyReLU slope
BN_EPS = 1e-5
# A 4×4 stride-2 kernel built as (3×3 kernel) * (2×2 box) has 36 terms over 16 taps: drawing the
# 3×3 kernel with INIT_STD / 1.5 keeps the taps' mean variance at INIT_STD² (2.25 terms a tap).
PHASE_EQUAL_STD = INIT_STD / 1.5
MBSTD_GROUP = 4  # images per minibatch-stddev group (ProGAN/StyleGAN use 4)
MBSTD_EPS = 1e-8


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


class MinibatchStddev(nn.Module):
    """Appends one channel: the standard deviation of every feature across a group of images,
    averaged to one number per group (Karras et al. 2018, ProGAN §3). A generator that draws the
    same cat again and again gives small numbers here, which the discriminator learns to punish.

    x: (N, C, H, W) -> (N, C + 1, H, W). Images i, i + N/G, i + 2N/G, ... form a group of G (the
    largest divisor of N up to `group`, so any batch size works; a group of 1 gives ~0)."""

    def __init__(self, group: int = MBSTD_GROUP) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(k for k in range(1, min(self.group, n) + 1) if n % k == 0)
        y = x.reshape(g, n // g, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(MBSTD_EPS).sqrt()  # (N/G, C, H, W)
        y = y.mean(dim=(1, 2, 3)).reshape(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w)
        return torch.cat([x, y.reshape(n, 1, h, w)], dim=1)


def _sn_conv(c_in: int, c_out: int, stride: int, padding: int) -> nn.Module:
    """A 4×4 conv whose weight is divided by its top singular value (Miyato et al. 2018): the
    discriminator stays about 1-Lipschitz, so its gradients cannot explode and it cannot
    overpower the generator by growing its weights."""
    conv = nn.Conv2d(c_in, c_out, 4, stride, padding)
    return nn.utils.parametrizations.spectral_norm(conv)


class Discriminator(nn.Module):
    """image (N, 3, 64, 64) -> logit (N,): real vs generated (training only).

    64 -> 32 -> 16 -> 8 -> 4 with LeakyReLU, spectral norm on every conv, no BatchNorm, the
    minibatch-stddev channel at 4×4, then one 4×4 conv to the logit."""

    def __init__(self, ndf: int = SIZES["demo"]) -> None:
        super().__init__()
        self.main = nn.Sequential(
            _sn_conv(IMAGE_CHANNELS, ndf, 2, 1), nn.LeakyReLU(LEAK),
            _sn_conv(ndf, ndf * 2, 2, 1), nn.LeakyReLU(LEAK),
            _sn_conv(ndf * 2, ndf * 4, 2, 1), nn.LeakyReLU(LEAK),
            _sn_conv(ndf * 4, ndf * 8, 2, 1), nn.LeakyReLU(LEAK),
            MinibatchStddev(),
            _sn_conv(ndf * 8 + 1, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.main if isinstance(m, nn.Conv2d)]


def init_weights(module: nn.Module) -> None:
    """The DCGAN initialisation (applied with `model.apply`); the discriminator keeps PyTorch's
    default init, which spectral normalisation rescales anyway."""
    if isinstance(module, nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


@torch.no_grad()
def phase_equal_init_(conv: nn.ConvTranspose2d, std: float = PHASE_EQUAL_STD) -> None:
    """Make a 4×4 stride-2 transposed conv start free of checkerboard (ICNR, Aitken et al. 2017,
    applied to transposed convolution): its kernel becomes a random 3×3 kernel convolved with a
    2×2 box, which is exactly nearest-neighbour upsampling followed by a 3×3 conv. Each output
    phase then sums the same nine taps, so a flat input gives a flat output (no 2-pixel grid);
    training starts from a smooth upsampler instead of having to unlearn a random grid."""
    if conv.stride != (2, 2) or conv.kernel_size != (4, 4):
        raise ValueError(f"phase-equal init is for 4×4 stride-2 layers, not {conv}")
    c_in, c_out = conv.weight.shape[:2]
    small = torch.randn(c_in * c_out, 1, 3, 3, device=conv.weight.device) * std
    box = torch.ones(1, 1, 2, 2, device=conv.weight.device)
    # a full 2-D convolution: pad 3×3 by 1 and correlate with the (symmetric) box -> 4×4
    kernel = F.conv2d(F.pad(small, (1, 1, 1, 1)), box)
    conv.weight.copy_(kernel.reshape(c_in, c_out, 4, 4))


def init_generator(g: Generator) -> None:
    """DCGAN init, then every stride-2 layer phase-equal (the first, 1×1 -> 4×4, has no phases)."""
    g.apply(init_weights)
    for conv in g.convs():
        if conv.stride == (2, 2):
            phase_equal_init_(conv)


def make_models(size: str, seed: int) -> tuple[Generator, Discriminator]:
    """A freshly initialised generator and discriminator, deterministic by seed."""
    ngf = width_of(size)
    torch.manual_seed(seed)
    g, d = Generator(NZ, ngf), Discriminator(ngf)
    init_generator(g)
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
    """The checkpoint's generator in eval mode: in a version 2 checkpoint the moving average of
    the trained weights (smoother, fewer artefacts: what is quantized and shipped), in older
    checkpoints and bare state dicts their one generator."""
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
