"""Training the cat DCGAN (`qcat models train cat`): resumable, deterministic by seed.

The generator's layers are the DCGAN ones the engines run (DESIGN §5); everything around them is
the recipe the GAN literature settled on after DCGAN, because plain DCGAN on 12k procedural cats
collapsed to four or five cat types with speckled eyes and a faint checkerboard:

- the discriminator (models.cat): spectral norm on every conv, no BatchNorm, a minibatch-stddev
  channel (it sees a batch that lacks variety);
- the non-saturating logistic loss (Goodfellow 2014; StyleGAN's): D minimises softplus(D(fake))
  + softplus(-D(real)), G minimises softplus(-D(fake));
- an R1 gradient penalty on reals (Mescheder et al. 2018): gamma/2 · |∇D(real)|², computed every
  `R1_EVERY` steps and scaled by it ("lazy regularisation", StyleGAN2), so D stays flat around the
  data and the game settles instead of circling;
- DiffAugment (Zhao et al. 2020): the same random, differentiable colour, translation and cutout
  applied to real and generated images before D sees them, in the D and the G step, so a small
  data set does not let D memorise it (which is what starves G of useful gradients);
- an exponential moving average of the generator's weights and BatchNorm statistics (Karras et
  al. 2018; Yazıcı et al. 2019), half-life `EMA_HALFLIFE_IMAGES` (ramped up over the first images
  seen), which is what the checkpoint's "generator" holds and what gets quantized; the trained
  weights stay in "generator_raw" for resuming;
- the generator's stride-2 layers initialised checkerboard-free (`models.cat.phase_equal_init_`).

Checkpoints are written atomically every `CHECKPOINT_EVERY_S` seconds and at each epoch's end,
holding the position inside the epoch, so a killed run resumes where it stopped (the batch order
of epoch e and the noise and augmentation of step t are functions of the seed, not of the run's
history). A resumed run keeps its checkpoint's seed, batch size and recipe settings.
A sample grid PNG of a fixed set of latents (the EMA generator) is written after every epoch, and
its checkerboard level (`models.checkerboard.checkerboard_level`) goes into the history.

Imports torch (training only). Library code: progress goes through the callback, never printed.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from installation.errors import InputError
from installation.progress import ProgressCallback
from models import cat, checkerboard, data

LEARNING_RATE = 2e-4  # the generator's
# The discriminator's, twice the generator's (two time-scale update rule, Heusel et al. 2017, as
# SAGAN/BigGAN use with spectral norm): a spectrally normalised D learns slowly otherwise, and a
# D that cannot tell real from fake gives G no direction.
LEARNING_RATE_D = 4e-4
BETA1 = 0.5  # DCGAN's Adam betas; with spectral norm and R1 they remain a sound choice
BETA2 = 0.999
BATCH_SIZE = 64
CHECKPOINT_EVERY_S = 120.0
SAMPLE_GRID = 64  # latents in each epoch's sample grid (8×8)
SAMPLE_SEED = 1234  # the grid's fixed latents
RECIPE = "sn-r1-diffaugment-ema"  # the name stored in checkpoints this module writes
# R1 weight. Images are in [-1, 1] and spectral norm already keeps |∇D| near 1, so a small gamma
# suffices to pull the gradient on reals to 0 without flattening D (StyleGAN2-ADA's heuristic
# 0.0002·64²/64 gives 0.013 for this size; 0.1 leans to stability on small data sets).
R1_GAMMA = 0.1
R1_EVERY = 4  # lazy R1: one penalty step in 4, weighted ×4 (StyleGAN2 uses 16 for D)
EMA_HALFLIFE_IMAGES = 10_000.0  # StyleGAN2's G EMA half-life (10 kimg)
EMA_RAMPUP = 0.05  # half-life at most 5 % of the images seen so far: short runs average too
# Weight of the generator's high-frequency penalty: the mean energy of the 2-pixel patterns of its
# images (`checkerboard_energy`, images in [-1, 1]). 100 makes a 5-grey-level grid (energy
# 0.0015) cost about 0.15, a sixth of a typical G loss, and the data's own level (~1.4 grey
# levels) next to nothing.
HF_PENALTY = 100.0
AUGMENT = "color,translation,cutout"  # DiffAugment's policy for small data sets
TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the image (8 px at 64)
CUTOUT_RATIO = 0.5  # a square of half the image's side greyed out
# Seed streams: each step's noise, augmentation draws, kept apart by a purpose tag.
STREAM_AUGMENT = 1


@dataclass(frozen=True)
class Recipe:
    """The training settings a checkpoint records (and a resume keeps)."""

    r1_gamma: float = R1_GAMMA
    r1_every: int = R1_EVERY
    ema_halflife: float = EMA_HALFLIFE_IMAGES  # images; 0 = no average (EMA = trained weights)
    hf_penalty: float = HF_PENALTY
    lr_d: float = LEARNING_RATE_D
    augment: str = AUGMENT  # DiffAugment policy, comma-separated; "" = none

    def __post_init__(self) -> None:
        if min(self.r1_gamma, self.ema_halflife, self.hf_penalty) < 0 or self.r1_every < 1 \
                or self.lr_d <= 0:
            raise InputError("--r1-gamma, --ema and --hf-penalty must be at least 0",
                             hint=f"the defaults are {R1_GAMMA}, {EMA_HALFLIFE_IMAGES:g} and "
                                  f"{HF_PENALTY:g}")
        unknown = [a for a in self.policy() if a not in AUGMENTS]
        if unknown:
            raise InputError(f"unknown augmentation {unknown[0]!r}",
                             hint=f"use some of {', '.join(AUGMENTS)} (comma-separated)")

    def policy(self) -> list[str]:
        return [a for a in self.augment.split(",") if a]


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


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU torch RNG that is a function of (seed, step, stream) only: resuming at step t draws
    exactly what an uninterrupted run draws there."""
    state = np.random.SeedSequence([seed, step, stream]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


# DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"),
# after the authors' PyTorch code; x: (N, 3, H, W) in [-1, 1]. Random numbers are drawn on the
# CPU from `rng` and moved to x's device, so CPU and CUDA runs draw the same augmentations.

def _rand(rng: torch.Generator, x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=rng).to(x.device, x.dtype)


def _color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    x = x + (_rand(rng, x, n, 1, 1, 1) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(rng, x, n, 1, 1, 1) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(rng, x, n, 1, 1, 1) + 0.5) + mean  # contrast


def _translation(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    ty = torch.randint(-sy, sy + 1, (n, 1, 1), generator=rng).to(x.device)
    tx = torch.randint(-sx, sx + 1, (n, 1, 1), generator=rng).to(x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy + ty + 1, 0, h + 1)
    gx = torch.clamp(gx + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # a zero (mid-grey) border that shifted pixels come from
    return padded.permute(0, 2, 3, 1)[gb, gy, gx].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=rng).to(x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=rng).to(x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device),
                                torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gy = torch.clamp(gy + oy - ch // 2, 0, h - 1)
    gx = torch.clamp(gx + ox - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gy, gx] = 0
    return x * mask.unsqueeze(1)


AUGMENTS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, policy: list[str], rng: torch.Generator) -> torch.Tensor:
    """The same kinds of random, differentiable changes for reals and fakes: D cannot tell them
    apart by the augmentation, and G's gradient flows back through it."""
    for name in policy:
        x = AUGMENTS[name](x, rng)
    return x


def r1_penalty(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of |∂D/∂x|² at the real images `inputs` (which must require grad and
    be what produced `logits`); kept in the graph so the penalty trains D."""
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


def checkerboard_energy(x: torch.Tensor) -> torch.Tensor:
    """The differentiable twin of `models.checkerboard.checkerboard_map`, squared and averaged:
    x (N, C, H, W) in [-1, 1] -> the mean energy of the three 2-pixel patterns per 8×8 tile
    (rows, columns, diagonal; on second differences, so ramps and shading cost nothing)."""
    n, c, h, w = x.shape
    t = checkerboard.TILE
    x = x.reshape(n, c, h // t, t, w // t, t)
    dy = x[:, :, :, :-2] - 2 * x[:, :, :, 1:-1] + x[:, :, :, 2:]
    dx = x[..., :-2] - 2 * x[..., 1:-1] + x[..., 2:]
    dyx = dy[..., :-2] - 2 * dy[..., 1:-1] + dy[..., 2:]
    sign = torch.ones(t - 2, dtype=x.dtype, device=x.device)
    sign[1::2] = -1
    sy = sign[:, None, None]
    rows = (dy * sy).mean(dim=(3, 5)) / checkerboard.AXIS_GAIN
    cols = (dx * sign).mean(dim=(3, 5)) / checkerboard.AXIS_GAIN
    diag = (dyx * sy * sign).mean(dim=(3, 5)) / checkerboard.DIAGONAL_GAIN
    return (rows.square() + cols.square() + diag.square()).mean()


def ema_beta(step: int, batch_size: int, halflife: float) -> float:
    """The EMA's decay after `step` steps: a half-life in images, at most EMA_RAMPUP of the images
    seen so far (early weights are noise and must be forgotten fast); 0 when there is no EMA."""
    if halflife <= 0:
        return 0.0
    h = min(halflife, EMA_RAMPUP * step * batch_size)
    return 0.5 ** (batch_size / h) if h > 0 else 0.0


@torch.no_grad()
def update_ema(g_ema: cat.Generator, g: cat.Generator, beta: float) -> None:
    """g_ema <- beta·g_ema + (1 - beta)·g for weights and BatchNorm statistics (the averaged
    weights need averaged statistics); the batch counter is copied."""
    for pe, p in zip(g_ema.parameters(), g.parameters(), strict=True):
        pe.lerp_(p, 1.0 - beta)
    for be, b in zip(g_ema.buffers(), g.buffers(), strict=True):
        if be.is_floating_point():
            be.lerp_(b, 1.0 - beta)
        else:
            be.copy_(b)


def _resume_state(out: Path, ckpt: dict[str, Any]) -> None:
    """Refuse, in one sentence, a checkpoint this recipe cannot go on from."""
    if "opt_g" not in ckpt:
        raise InputError(f"{out} holds no training state to resume from",
                         hint="add --fresh to train a new model over it")
    if ckpt.get("recipe") is None or "generator_raw" not in ckpt:
        raise InputError(f"{out} was trained with the plain DCGAN recipe, which this version "
                         "cannot go on from",
                         hint="add --fresh to start over with the current recipe; the old "
                              "checkpoint still quantizes as it is")


def train(out: Path, images: np.ndarray, *, size: str = "demo", epochs: int = 10, seed: int = 0,
          batch_size: int = BATCH_SIZE, resume: bool = True, samples_dir: Path | None = None,
          device: str = "auto", command: str = "", data_desc: str = "",
          progress: ProgressCallback | None = None,
          checkpoint_every_s: float = CHECKPOINT_EVERY_S,
          recipe: Recipe | None = None, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Train (or continue training) a cat DCGAN to `epochs` epochs; returns the checkpoint.

    `stop_after_steps` ends the run early after that many steps in all, checkpoint written as a
    kill would have left it mid-epoch (tests prove that resuming is exact)."""
    out = Path(out)
    dev = pick_device(device)
    recipe = recipe or Recipe()
    g, d = cat.make_models(size, seed)
    g_ema = copy.deepcopy(g)
    opt_g = torch.optim.Adam(g.parameters(), lr=LEARNING_RATE, betas=(BETA1, BETA2))
    opt_d = torch.optim.Adam(d.parameters(), lr=recipe.lr_d, betas=(BETA1, BETA2))
    ckpt = cat.new_checkpoint(size, seed, g_ema, d, batch=0, step=0, command=command,
                              data=data_desc, n_images=len(images), batch_size=batch_size,
                              recipe=RECIPE, settings=asdict(recipe))
    if resume and out.exists():
        ckpt = cat.load_checkpoint(out)
        _resume_state(out, ckpt)
        g.load_state_dict(ckpt["generator_raw"])
        g_ema.load_state_dict(ckpt["generator"])
        d.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        seed, batch_size = ckpt["seed"], ckpt["batch_size"]
        recipe = Recipe(**ckpt["settings"])
        # Every run that trained this checkpoint is part of its provenance, not only the first.
        commands = cat.training_commands(ckpt)
        if command and command not in commands[-1:]:
            commands.append(command)
        ckpt["commands"] = commands
    g.to(dev).train()
    g_ema.to(dev).eval()
    d.to(dev).train()
    policy = recipe.policy()
    n = len(images)
    n_batches = max(1, n // batch_size)
    total = epochs * n_batches
    fixed = sample_latents(SAMPLE_GRID, g.nz).to(dev)

    def snapshot(epoch: int, batch: int, step: int) -> None:
        ckpt.update(generator=g_ema.state_dict(), generator_raw=g.state_dict(),
                    discriminator=d.state_dict(), opt_g=opt_g.state_dict(),
                    opt_d=opt_d.state_dict(), epoch=epoch, batch=batch, step=step,
                    epochs_target=epochs)
        cat.save_checkpoint(out, ckpt)

    last_save = time.monotonic()
    step = int(ckpt.get("step", 0))
    for epoch in range(int(ckpt["epoch"]), epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        sums = np.zeros(5)
        first = int(ckpt.get("batch", 0)) if epoch == ckpt["epoch"] else 0
        for b in range(first, n_batches):
            if stop_after_steps is not None and step >= stop_after_steps:
                snapshot(epoch, b, step)
                return ckpt
            real = to_tensor(images[order[b * batch_size:(b + 1) * batch_size]]).to(dev)
            bs = real.shape[0]
            noise = torch.Generator().manual_seed(seed * 1_000_003 + step)
            z = torch.randn(bs, g.nz, 1, 1, generator=noise).to(dev)
            rng = step_generator(seed, step, STREAM_AUGMENT)
            # discriminator: softplus(D(fake)) + softplus(-D(real)) [+ lazy R1 on reals]
            opt_d.zero_grad(set_to_none=True)
            fake = g(z)
            lazy_r1 = recipe.r1_gamma > 0 and step % recipe.r1_every == 0
            real_in = diff_augment(real, policy, rng).detach().requires_grad_(lazy_r1)
            out_real = d(real_in)
            out_fake = d(diff_augment(fake.detach(), policy, rng))
            loss_d = F.softplus(out_fake).mean() + F.softplus(-out_real).mean()
            r1 = torch.zeros((), device=dev)
            if lazy_r1:
                r1 = r1_penalty(out_real, real_in)
                loss_d = loss_d + (recipe.r1_gamma / 2) * recipe.r1_every * r1
            loss_d.backward()
            opt_d.step()
            # generator: make D say real, through the same kind of augmentation
            opt_g.zero_grad(set_to_none=True)
            out_g = d(diff_augment(fake, policy, rng))
            loss_g = F.softplus(-out_g).mean()
            if recipe.hf_penalty > 0:  # on G's own images: the augmentation would blur it
                loss_g = loss_g + recipe.hf_penalty * checkerboard_energy(fake)
            loss_g.backward()
            opt_g.step()
            step += 1
            update_ema(g_ema, g, ema_beta(step, bs, recipe.ema_halflife))
            sums += [loss_d.item(), loss_g.item(), torch.sigmoid(out_real).mean().item(),
                     torch.sigmoid(out_fake).mean().item(), r1.item()]
            done = epoch * n_batches + b + 1
            if progress:
                progress(done, total, f"epoch {epoch + 1}/{epochs} D {loss_d.item():.3f} "
                                      f"G {loss_g.item():.3f}")
            if time.monotonic() - last_save > checkpoint_every_s:
                snapshot(epoch, b + 1, step)
                last_save = time.monotonic()
        count = max(1, n_batches - first)
        ld, lg, dr, df, r1_sum = (sums / count).tolist()
        grid = sample_images(g_ema, fixed)
        ckpt["history"].append({"epoch": epoch + 1, "loss_d": round(ld, 4), "loss_g": round(lg, 4),
                                "d_real": round(dr, 4), "d_fake": round(df, 4),
                                "r1": round(r1_sum * recipe.r1_every, 4),
                                "checkerboard": round(checkerboard.checkerboard_level(grid), 3),
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if samples_dir is not None:
            path = Path(samples_dir) / f"epoch-{epoch + 1:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            data.save_png(path, data.grid(grid, cols=8), scale=2)
        snapshot(epoch + 1, 0, step)
        last_save = time.monotonic()
    return ckpt


@torch.no_grad()
def sample_images(g: cat.Generator, z: torch.Tensor) -> np.ndarray:
    """uint8 (N, 64, 64, 3) images of latents z in eval mode (running BatchNorm statistics, as
    quantization and the engines use them); the generator's mode is left as it was."""
    was_training = g.training
    g.eval()
    imgs = to_images(g(z))
    g.train(was_training)
    return imgs


def write_samples(g: cat.Generator, z: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data.save_png(path, data.grid(sample_images(g, z), cols=8), scale=2)
