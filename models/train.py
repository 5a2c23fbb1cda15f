"""Training the cat DCGAN (`qcat models train cat`): resumable, deterministic by seed.

The standard DCGAN recipe (Adam 2e-4, beta1 0.5, BCE on logits) with one-sided label smoothing.
Checkpoints are written atomically every `CHECKPOINT_EVERY_S` seconds and at each epoch's end,
holding the position inside the epoch, so a killed run resumes where it stopped (the batch order
of epoch e and the noise of step t are functions of the seed, not of the run's history).
A sample grid PNG of a fixed set of latents is written after every epoch.

Imports torch (training only). Library code: progress goes through the callback, never printed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from installation.progress import ProgressCallback
from models import cat, data

LEARNING_RATE = 2e-4
BETA1 = 0.5
BATCH_SIZE = 64
REAL_LABEL = 0.9  # one-sided label smoothing keeps the discriminator from winning outright
CHECKPOINT_EVERY_S = 120.0
SAMPLE_GRID = 64  # latents in each epoch's sample grid (8×8)
SAMPLE_SEED = 1234  # the grid's fixed latents


def pick_device(want: str = "auto") -> torch.device:
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(want)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 64, 64, 3) -> float (N, 3, 64, 64) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_images(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, 64, 64) in [-1, 1] -> uint8 (N, 64, 64, 3), rounding like the int8 path."""
    y = ((x.detach().cpu().clamp(-1, 1) + 1.0) * 127.5).round()
    return y.permute(0, 2, 3, 1).to(torch.uint8).numpy()


def sample_latents(n: int, nz: int, seed: int = SAMPLE_SEED) -> torch.Tensor:
    return torch.randn(n, nz, 1, 1, generator=torch.Generator().manual_seed(seed))


def train(out: Path, images: np.ndarray, *, size: str = "demo", epochs: int = 10, seed: int = 0,
          batch_size: int = BATCH_SIZE, resume: bool = True, samples_dir: Path | None = None,
          device: str = "auto", command: str = "", data_desc: str = "",
          progress: ProgressCallback | None = None,
          checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> dict[str, Any]:
    """Train (or continue training) a cat DCGAN to `epochs` epochs; returns the checkpoint."""
    out = Path(out)
    dev = pick_device(device)
    g, d = cat.make_models(size, seed)
    opt_g = torch.optim.Adam(g.parameters(), lr=LEARNING_RATE, betas=(BETA1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=LEARNING_RATE, betas=(BETA1, 0.999))
    ckpt = cat.new_checkpoint(size, seed, g, d, batch=0, step=0, command=command,
                              data=data_desc, n_images=len(images), batch_size=batch_size)
    if resume and out.exists():
        ckpt = cat.load_checkpoint(out)
        g.load_state_dict(ckpt["generator"])
        d.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        seed, batch_size = ckpt["seed"], ckpt["batch_size"]
        # Every run that trained this checkpoint is part of its provenance, not only the first.
        commands = cat.training_commands(ckpt)
        if command and command not in commands[-1:]:
            commands.append(command)
        ckpt["commands"] = commands
    g.to(dev).train()
    d.to(dev).train()
    loss_fn = nn.BCEWithLogitsLoss()
    n = len(images)
    n_batches = max(1, n // batch_size)
    total = epochs * n_batches
    fixed = sample_latents(SAMPLE_GRID, g.nz).to(dev)

    def snapshot(epoch: int, batch: int, step: int) -> None:
        ckpt.update(generator=g.state_dict(), discriminator=d.state_dict(),
                    opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict(), epoch=epoch,
                    batch=batch, step=step, epochs_target=epochs)
        cat.save_checkpoint(out, ckpt)

    last_save = time.monotonic()
    step = int(ckpt.get("step", 0))
    for epoch in range(int(ckpt["epoch"]), epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        sums = np.zeros(4)
        first = int(ckpt.get("batch", 0)) if epoch == ckpt["epoch"] else 0
        for b in range(first, n_batches):
            real = to_tensor(images[order[b * batch_size:(b + 1) * batch_size]]).to(dev)
            bs = real.shape[0]
            noise = torch.Generator().manual_seed(seed * 1_000_003 + step)
            z = torch.randn(bs, g.nz, 1, 1, generator=noise).to(dev)
            # discriminator: real -> REAL_LABEL, fake -> 0
            opt_d.zero_grad(set_to_none=True)
            fake = g(z)
            out_real, out_fake = d(real), d(fake.detach())
            loss_d = (loss_fn(out_real, torch.full_like(out_real, REAL_LABEL))
                      + loss_fn(out_fake, torch.zeros_like(out_fake)))
            loss_d.backward()
            opt_d.step()
            # generator: make the discriminator say real
            opt_g.zero_grad(set_to_none=True)
            out_g = d(fake)
            loss_g = loss_fn(out_g, torch.ones_like(out_g))
            loss_g.backward()
            opt_g.step()
            step += 1
            sums += [loss_d.item(), loss_g.item(), torch.sigmoid(out_real).mean().item(),
                     torch.sigmoid(out_fake).mean().item()]
            done = epoch * n_batches + b + 1
            if progress:
                progress(done, total, f"epoch {epoch + 1}/{epochs} D {loss_d.item():.3f} "
                                      f"G {loss_g.item():.3f}")
            if time.monotonic() - last_save > checkpoint_every_s:
                snapshot(epoch, b + 1, step)
                last_save = time.monotonic()
        count = max(1, n_batches - first)
        ld, lg, dr, df = (sums / count).tolist()
        ckpt["history"].append({"epoch": epoch + 1, "loss_d": round(ld, 4), "loss_g": round(lg, 4),
                                "d_real": round(dr, 4), "d_fake": round(df, 4),
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if samples_dir is not None:
            write_samples(g, fixed, Path(samples_dir) / f"epoch-{epoch + 1:03d}.png")
        snapshot(epoch + 1, 0, step)
        last_save = time.monotonic()
    g.eval()
    return ckpt


@torch.no_grad()
def write_samples(g: cat.Generator, z: torch.Tensor, path: Path) -> None:
    was_training = g.training
    g.eval()
    imgs = to_images(g(z))
    g.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.save_png(path, data.grid(imgs, cols=8), scale=2)
