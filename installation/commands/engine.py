"""`qcat engine`: render one cat with a chosen engine, and prove the C engine exact.

    qcat engine run [--weights FILE] --entropy-hex HEX --engine c|numpy|torch --out IMG.png
                    [--raw OUT.bin] [--checkpoint CKPT] [--json]
    qcat engine compare [cat] [--weights FILE] [--latents N] [--seed S] [--json]
    qcat engine compare die [--decoder FILE] [--latents N] [--seed S] [--json]

`run` takes the 200 latent bytes of an exhibit (DESIGN §4) as hex. `compare` renders N latents
(from seeded pseudo-random entropy) with the C engine and the numpy reference and compares every
layer byte for byte; the first mismatch is reported as layer (from 1)/channel/pixel/values, exit 1.
`compare die` does the same for the die unit's decoder: every latent (8 seeded entropy bytes
through the unit's Gaussian table) with each of the six pip counts, layers 1-4 and the face.
Thin layer: parsing and printing; the work is in `installation.engines` (`render`, `compare`,
`compare_die`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command, group
from installation.errors import CheckFailed, UsageError
from installation.progress import ProgressBar

if TYPE_CHECKING:
    from installation.cli import Context

DEFAULT_COMPARE_LATENTS = 16
DEFAULT_DIE_COMPARE_LATENTS = 1000
DEFAULT_COMPARE_SEED = 0
LATENT_BYTES = 200  # quantum.latent.LATENT_BYTES; not imported here to keep `qcat --help` numpy-free


def register(sub: Any) -> None:
    _, cmds = group(sub, "engine", "render cats with the C engine, the numpy reference or torch")

    p = command(cmds, "run", "render one cat from 200 bytes of entropy", _run)
    _add_weights(p)
    p.add_argument("--entropy-hex", required=True, metavar="HEX",
                   help="the 200 latent bytes of an exhibit, as 400 hex digits")
    p.add_argument("--engine", choices=["c", "numpy", "torch"], default=None,
                   help="default: the config's engine.default")
    p.add_argument("--out", required=True, metavar="IMG.png", help="the 64x64 image (PNG)")
    p.add_argument("--raw", metavar="OUT.bin",
                   help="also write the raw RGB888 bytes (64x64x3, row-major)")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="float checkpoint for --engine torch (default: the shipped demo's)")
    add_json(p)

    p = command(cmds, "compare", "C engine vs the numpy reference on every layer, exactly "
                "(the cat's, or the die's decoder)", _compare)
    p.add_argument("model", nargs="?", choices=["cat", "die"], default="cat")
    _add_weights(p)
    p.add_argument("--decoder", metavar="FILE",
                   help="die decoder (.npz) for `compare die`; default: the shipped one")
    p.add_argument("--latents", type=int, default=None, metavar="N",
                   help=f"default {DEFAULT_COMPARE_LATENTS} for cat, "
                        f"{DEFAULT_DIE_COMPARE_LATENTS} for die (each with all six pip counts)")
    p.add_argument("--seed", type=int, default=DEFAULT_COMPARE_SEED,
                   help="seed of the pseudo-random entropy the latents come from")
    add_json(p)


def _add_weights(p: Any) -> None:
    p.add_argument("--weights", metavar="FILE",
                   help="cat weight image (.qcw); default: config models.weights, else the "
                        "shipped demo model")


def _entropy(text: str) -> bytes:
    cleaned = "".join(text.split())
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        raise UsageError("--entropy-hex is not hexadecimal",
                         hint=f"give exactly {LATENT_BYTES} bytes as {2 * LATENT_BYTES} hex digits") from None
    if len(data) != LATENT_BYTES:
        raise UsageError(f"--entropy-hex holds {len(data)} bytes; a latent needs {LATENT_BYTES}",
                         hint=f"give exactly {2 * LATENT_BYTES} hex digits")
    return data


def _run(ctx: Context, args: argparse.Namespace) -> int:
    import hashlib

    import numpy as np

    from installation import engines
    from installation.exhibit import png_bytes
    from installation.files import write_atomic
    from models import reference
    from quantum.latent import latent_from_entropy

    entropy = _entropy(args.entropy_hex)
    engine = args.engine or ctx.config["engine.default"]
    path = ctx.workspace.weights_path(args.weights)
    img = engines.weight_image(path)
    latent_q = reference.quantize_latent(latent_from_entropy(entropy), img)
    start = time.perf_counter()
    out = engines.render(engine, path, latent_q,
                         checkpoint=Path(args.checkpoint) if args.checkpoint else None)
    ms = (time.perf_counter() - start) * 1e3
    rgb = np.ascontiguousarray(out.rgb, dtype=np.uint8)
    # Both files are complete before either becomes visible under its name.
    png = png_bytes(rgb)
    write_atomic(Path(args.out), png)
    if args.raw:
        write_atomic(Path(args.raw), rgb.tobytes())
    result = {"engine": engine, "weights": str(path), "model_size": img.model_size,
              "out": args.out, "raw": args.raw, "ms": round(ms, 3),
              "rgb_sha256": hashlib.sha256(rgb.tobytes()).hexdigest()}
    if args.json:
        ctx.emit_json(result)
    else:
        ctx.out(f"{engine} engine, {img.model_size} model: {args.out} in {ms:.1f} ms"
                + (f" (raw {args.raw})" if args.raw else ""))
    return 0


def _compare(ctx: Context, args: argparse.Namespace) -> int:
    from installation import engines

    if args.latents is None:
        args.latents = DEFAULT_DIE_COMPARE_LATENTS if args.model == "die" else \
            DEFAULT_COMPARE_LATENTS
    if args.latents < 1:
        raise UsageError(f"--latents must be at least 1, not {args.latents}")
    if args.model == "die":
        if args.weights:
            raise UsageError("--weights names a cat weight image; the die's is --decoder FILE")
        return _compare_die(ctx, args)
    if args.decoder:
        raise UsageError("--decoder is for `qcat engine compare die`")
    path = ctx.workspace.weights_path(args.weights)
    with ProgressBar("compare", enabled=not args.json) as bar:
        report = engines.compare(path, args.latents, args.seed, progress=bar)
    if args.json:
        ctx.emit_json(report.as_dict())
        return 0 if report.identical else 1
    if not report.identical:
        raise CheckFailed(report.describe(),
                          hint="the C engine and models.reference must implement "
                               "docs/formats.md identically")
    ctx.out(report.describe())
    return 0


def _compare_die(ctx: Context, args: argparse.Namespace) -> int:
    from installation import engines
    from models.die_reference import SHIPPED_DECODER

    path = Path(args.decoder) if args.decoder else SHIPPED_DECODER
    with ProgressBar("compare die", enabled=not args.json) as bar:
        report = engines.compare_die(path, args.latents, args.seed, progress=bar)
    if args.json:
        ctx.emit_json(report.as_dict())
        return 0 if report.identical else 1
    if not report.identical:
        raise CheckFailed(report.describe(),
                          hint="firmware/die/die_engine.c and models/die_reference.py must "
                               "implement docs/formats.md (\"The die decoder\") identically")
    ctx.out(report.describe())
    return 0
