"""Float cat generator -> int8 weight image (DESIGN §6, one rule everywhere).

Steps, in this order:
1. Fold each BatchNorm into the transposed convolution before it (ConvTranspose: the output
   channel is dim 1 of the weight): W'[:, c] = W[:, c]·s[c], b'[c] = beta[c] − mean[c]·s[c],
   s = gamma / sqrt(var + eps). `folded_forward` runs the folded float model (float64).
2. Calibrate activations over >= 1,000 latents made the way exhibits make them
   (`quantum.latent.latent_from_entropy` of 200 seeded random bytes each): per tensor, ReLU
   outputs get [0, max] (zero point −128), the pre-Tanh value gets [min, max] clipped to where
   tanh saturates. The latent gets the symmetric range Box-Muller can produce at all.
3. Per output channel, symmetric int8 weights in −127..127; int32 bias at scale in·w; multiplier
   and shift from M = in·w/out by TFLite's QuantizeMultiplier (in `models.reference`, the one
   copy of the integer helpers); the Tanh table; provenance.
4. Optionally (`int4_layers`, format version 3, lossy): the chosen layers get symmetric 4-bit
   weights in −7..7 per output channel, with their own scale, so their bias, multiplier and shift
   are recomputed for that scale; the integer arithmetic downstream is unchanged. `quality_gate`
   then measures the image against the float model as `qcat models quality` does and refuses one
   under the gate (30 dB): a smaller file must not be a worse cat by accident.

Imports torch (export path only); the result is a numpy `WeightImage`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from installation import __version__
from installation.errors import CheckFailed, UsageError
from installation.progress import ProgressCallback
from models import cat, reference
from models.weightimage import (
    INT4_MAX,
    KERNEL,
    VERSION_INT4,
    WEIGHT_MAX,
    Layer,
    WeightImage,
    acc_bias_limit,
    generator_layout,
)
from quantum.latent import LATENT_BYTES, latent_from_entropy

MIN_CALIBRATION_LATENTS = 1000
DEFAULT_CALIBRATION_LATENTS = 2048
CALIBRATION_BATCH = 256
CALIBRATION_SAMPLES_PER_BATCH = 1 << 18
# |z| can never exceed this: Box-Muller's radius at the smallest midpoint uniform 0.5/65536.
LATENT_RANGE = math.sqrt(-2.0 * math.log(0.5 / 65536))
# Pre-Tanh values beyond ±TANH_CLIP all give the extreme int8 outputs (128·tanh(3.2) > 127.5).
TANH_CLIP = 3.2
# ReLU ranges are calibrated at this quantile of the activations instead of the very maximum,
# which a few outliers would inflate (1.0 = the maximum).
RELU_QUANTILE = 0.99999
MIN_SCALE = 1e-8  # a dead layer still gets a usable scale
# The quality gate of lossy images: int-vs-float PSNR as `qcat models quality cat` measures it
# (the CLI passes its QUALITY_GOAL_DB and its latent count).
MIN_PSNR_DB = 30.0
DEFAULT_GATE_LATENTS = 64


def fold_bn(g: cat.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (W' (C_in, C_out, 4, 4), b' (C_out,)) in float64, BatchNorm folded in."""
    convs, bns = g.convs(), g.bns()
    folded = []
    for i, conv in enumerate(convs):
        w = conv.weight.detach().double().clone()
        b = torch.zeros(w.shape[1], dtype=torch.float64)
        if i < len(bns):
            bn = bns[i]
            assert bn.running_var is not None and bn.running_mean is not None
            s = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * s[None, :, None, None]
            b = bn.bias.detach().double() - bn.running_mean.double() * s
        folded.append((w, b))
    return folded


@torch.no_grad()
def folded_forward(folded: list[tuple[torch.Tensor, torch.Tensor]], g: cat.Generator,
                   z: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's float output of the folded model: ReLU outputs, then the pre-Tanh value."""
    shapes = generator_layout(g.nz, g.ngf)
    x = z.reshape(z.shape[0], -1, 1, 1).to(folded[0][0].dtype)
    outs = []
    for i, ((w, b), shape) in enumerate(zip(folded, shapes, strict=True)):
        x = torch.nn.functional.conv_transpose2d(x, w.to(x.dtype), b.to(x.dtype),
                                                 stride=shape.stride, padding=shape.padding)
        if i < len(folded) - 1:
            x = torch.relu(x)
        outs.append(x)
    return outs


def calibration_latents(n: int, seed: int) -> np.ndarray:
    """n latents (n, nz) float64 made exactly as exhibits make them, from seeded bytes."""
    rng = np.random.default_rng(seed)
    return np.stack([latent_from_entropy(rng.bytes(LATENT_BYTES)) for _ in range(n)])


@torch.no_grad()
def calibrate(g: cat.Generator, n: int, seed: int,
              progress: ProgressCallback | None = None) -> list[tuple[float, float]]:
    """Per layer (lo, hi) of the folded model's outputs over n latents (float32 forward)."""
    folded = [(w.float(), b.float()) for w, b in fold_bn(g)]
    z = torch.from_numpy(calibration_latents(n, seed)).float()
    # Quantiles come from a seeded subsample per batch (the full model's activations over
    # thousands of latents would not fit in memory); minima and maxima are exact.
    pick = torch.Generator().manual_seed(seed)
    samples: list[list[torch.Tensor]] = [[] for _ in folded]
    lo = [math.inf] * len(folded)
    hi = [-math.inf] * len(folded)
    for start in range(0, n, CALIBRATION_BATCH):
        outs = folded_forward(folded, g, z[start:start + CALIBRATION_BATCH])
        for i, o in enumerate(outs):
            v = o.flatten()
            lo[i], hi[i] = min(lo[i], float(v.min())), max(hi[i], float(v.max()))
            if v.numel() > CALIBRATION_SAMPLES_PER_BATCH:
                v = v[torch.randint(v.numel(), (CALIBRATION_SAMPLES_PER_BATCH,), generator=pick)]
            samples[i].append(v)
        if progress:
            progress(min(n, start + CALIBRATION_BATCH), n, "calibrating")
    ranges = []
    for i, parts in enumerate(samples):
        if i < len(samples) - 1:
            ranges.append((0.0, min(hi[i], _quantile(torch.cat(parts), RELU_QUANTILE))))
        else:
            ranges.append((max(lo[i], -TANH_CLIP), min(hi[i], TANH_CLIP)))
    return ranges


def _quantile(v: torch.Tensor, q: float) -> float:
    if q >= 1.0:
        return float(v.max())
    k = max(1, int(math.ceil(q * v.numel())))
    return float(v.kthvalue(k).values)


def _f32(x: float) -> float:
    return float(np.float32(x))


def activation_params(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of an int8 tensor covering [lo, hi] (which must contain 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = _f32(max((hi - lo) / 255.0, MIN_SCALE))
    zp = int(np.clip(reference.round_half_away(-128 - lo / scale), -128, 127))
    return scale, zp


def quantize_layer(w: np.ndarray, b: np.ndarray, in_scale: float, out_scale: float,
                   weight_max: int = WEIGHT_MAX
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Folded float W (C_in, C_out, k, k), b (C_out,) -> int8 weights (C_out, k, k, C_in) in
    ±weight_max (127, or 7 for 4-bit), int32 bias, multiplier and shift per output channel."""
    c_in = w.shape[0]
    limit = acc_bias_limit(c_in, w.shape[2])
    absmax = np.abs(w).max(axis=(0, 2, 3))
    # The weight scale is the symmetric one, unless the bias would then overflow the int32
    # accumulator (a channel with near-zero weights): then coarser weights, exact bias range.
    w_scale = np.maximum.reduce([absmax / weight_max, np.abs(b) / (in_scale * limit),
                                 np.full_like(absmax, MIN_SCALE)])
    wq = np.clip(reference.round_half_away(w / w_scale[None, :, None, None]), -weight_max,
                 weight_max).astype(np.int8)
    bq = np.clip(reference.round_half_away(b / (in_scale * w_scale)), -limit, limit)
    mult, shift = reference.quantize_multipliers(in_scale * w_scale / out_scale)
    return (np.ascontiguousarray(wq.transpose(1, 2, 3, 0)), bq.astype(np.int32), mult, shift)


def parse_layers(text: str, n_layers: int) -> tuple[int, ...]:
    """"2,3,4" -> (2, 3, 4): layers counted from 1, each once, inside the model."""
    try:
        chosen = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise UsageError(f"--int4-layers takes layer numbers like 2,3,4, not {text!r}") from None
    if not chosen or chosen[0] < 1 or chosen[-1] > n_layers:
        raise UsageError(f"--int4-layers must name layers 1..{n_layers}, not {text!r}",
                         hint="layers count from 1, as `qcat sd weights inspect` shows them")
    return chosen


def quantize(ckpt: dict[str, Any], *, calibration: int = DEFAULT_CALIBRATION_LATENTS,
             seed: int = 0, checkpoint_sha256: str | None = None, command: str = "",
             progress: ProgressCallback | None = None,
             int4_layers: tuple[int, ...] = ()) -> WeightImage:
    """The int8 weight image of a checkpoint's generator; layers in `int4_layers` (from 1) get
    4-bit weights and the image format version 3."""
    if calibration < MIN_CALIBRATION_LATENTS:
        raise ValueError(f"calibration needs at least {MIN_CALIBRATION_LATENTS} latents")
    g = cat.generator_from(ckpt)
    ranges = calibrate(g, calibration, seed, progress)
    folded = fold_bn(g)
    latent_scale = _f32(LATENT_RANGE / 127)
    in_scale, in_zp = latent_scale, 0
    layers: list[Layer] = []
    tanh_table = np.zeros(256, np.int8)
    shapes = generator_layout(g.nz, g.ngf)
    for i, ((w, b), shape, (lo, hi)) in enumerate(zip(folded, shapes, ranges, strict=True)):
        out_scale, out_zp = activation_params(lo, hi)
        last = i == len(folded) - 1
        four = i + 1 in int4_layers
        wq, bq, mult, shift = quantize_layer(w.numpy(), b.numpy(), in_scale, out_scale,
                                             INT4_MAX if four else WEIGHT_MAX)
        layers.append(Layer(shape.c_in, shape.c_out, shape.h_in, shape.h_out, KERNEL,
                            shape.stride, shape.padding, shape.activation, in_zp, out_zp,
                            in_scale, out_scale, wq, bq, mult, shift,
                            weight_bits=4 if four else 8))
        if last:
            tanh_table = reference.make_tanh_table(out_scale, out_zp)
        in_scale, in_zp = out_scale, out_zp
    history = ckpt.get("history") or []
    provenance = {
        "tool": "qcat models quantize",
        "qcat_version": __version__,
        "command": command,
        "checkpoint_sha256": checkpoint_sha256,
        "training_command": ckpt.get("command"),  # the first run
        "training_commands": cat.training_commands(ckpt),  # every run, resumes included
        "training_data": ckpt.get("data"),
        "seed": ckpt.get("seed"),
        "epochs": ckpt.get("epoch"),  # completed epochs
        "batches_into_next_epoch": ckpt.get("batch") or 0,
        "steps": ckpt.get("step"),
        "final_losses": history[-1] if history else None,
        "calibration": {"latents": calibration, "seed": seed,
                        "latents_from": "quantum.latent.latent_from_entropy(seeded bytes)",
                        "relu_quantile": RELU_QUANTILE, "tanh_clip": TANH_CLIP},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if int4_layers:
        provenance["int4_layers"] = list(int4_layers)
    size = ckpt.get("size", "custom")
    img = WeightImage(size if size in ("demo", "full") else "custom", int(ckpt["nz"]),
                      int(ckpt["ngf"]), latent_scale, 0, layers, tanh_table, provenance)
    if int4_layers:
        img.version = VERSION_INT4
    return img


def quality_gate(img: WeightImage, ckpt: dict[str, Any], *, min_psnr: float = MIN_PSNR_DB,
                 latents: int = DEFAULT_GATE_LATENTS, seed: int = 0,
                 progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Measure `img` against the checkpoint's float generator as `qcat models quality cat` does
    (models.quality.measure, mean PSNR over `latents`); CheckFailed, naming the figure, when it
    falls under `min_psnr`. Returns the quality report (with the gate) when it passes."""
    from models import quality

    report = quality.measure(img, cat.generator_from(ckpt), n=latents, seed=seed,
                             progress=progress)
    report["min_psnr_db"] = min_psnr
    if report["psnr_db_mean"] < min_psnr:
        raise CheckFailed(f"the image with 4-bit layers measures {report['psnr_db_mean']:.2f} dB "
                          f"PSNR against the float model over {latents} latents, under the "
                          f"{min_psnr:g} dB gate; nothing was written",
                          hint="make fewer layers 4-bit (--int4-layers), or lower --min-psnr "
                               "if the loss is wanted")
    return report
