"""`qcat generate`: make exhibits on the controller and archive them (DESIGN §4).

Also the shared set-up the demo uses: which weight image, which clip bank, the pool and archive.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from installation.commands import add_json, command
from installation.errors import InputError


def register(sub: Any) -> None:
    p = command(sub, "generate", "make new exhibits: quantum bytes in, cat + verdict out, archived",
                run, description=(
                    "Draw 203 entropy bytes per exhibit, render the cat, pick its verdict, write "
                    "PNG (64x64 and 512x512) and WAV files, and archive everything. Exhibits left "
                    "pending by a crash are completed first, with the same bytes."))
    p.add_argument("--count", "-n", type=int, default=1, metavar="N", help="new exhibits (default 1)")
    p.add_argument("--engine", choices=("c", "numpy"), help="renderer (default: config engine.default)")
    p.add_argument("--weights", metavar="FILE", help="weight image (default: config models.weights "
                   "or the shipped demo model)")
    p.add_argument("--show", action="store_true", help="draw the cats in the terminal")
    add_json(p)


def weights_path(ctx: Any, override: str | None = None) -> Path:
    """The weight image in use: --weights, else config models.weights, else the shipped demo."""
    from models.weightimage import SHIPPED_DEMO

    chosen = override or ctx.config["models.weights"]
    path = Path(chosen).expanduser() if chosen else SHIPPED_DEMO
    if not path.exists():
        raise InputError(f"weight image {path} does not exist",
                         hint="build one with `qcat sd weights build CKPT --out FILE`, or unset "
                         "models.weights to use the shipped demo model")
    return path


def clip_bank_path(ctx: Any) -> Path:
    return ctx.home.builds_dir / "verdicts.qcv"


def known_models(ctx: Any, first: list[Path]) -> list[Path]:
    """Weight images an archived or pending exhibit may refer to (`first` are tried first)."""
    from models.weightimage import SHIPPED_DEMO

    found = [*first, SHIPPED_DEMO]
    if ctx.config["models.weights"]:
        found.append(Path(ctx.config["models.weights"]).expanduser())
    found += sorted(ctx.home.builds_dir.glob("*.qcw"))
    return list(dict.fromkeys(p.absolute() for p in found))


def open_generator(ctx: Any, engine: str | None, weights: str | None) -> Any:
    from installation.exhibit import Generator, load_model
    from installation.gallery import Gallery
    from quantum.pool import EntropyPool

    path = weights_path(ctx, weights)
    return Generator(
        pool=EntropyPool(ctx.home.pool_db),
        gallery=Gallery(ctx.home.gallery_db, ctx.home.gallery_dir),
        model=load_model(path),
        engine=engine or ctx.config["engine.default"],
        clip_bank_path=clip_bank_path(ctx),
        when_empty=ctx.config["entropy.when_empty"],
        wait_timeout_s=ctx.config["entropy.wait_timeout_s"],
        other_models=known_models(ctx, [path]),
    )


def run(ctx: Any, args: argparse.Namespace) -> int:
    from installation.progress import ProgressBar

    if args.count < 0:
        raise InputError(f"--count must be 0 or more, not {args.count}")
    gen = open_generator(ctx, args.engine, args.weights)
    try:
        with ProgressBar("pending", enabled=not args.json) as bar:
            resumed = gen.complete_pending(progress=bar)
        with ProgressBar("generating", enabled=not args.json and args.count > 1) as bar:
            made = gen.generate(args.count, progress=bar)
    finally:
        gen.pool.close()
        gen.gallery.close()
    if args.json:
        ctx.emit_json({"completed_pending": [e.to_json() for e in resumed],
                       "generated": [e.to_json() for e in made],
                       "gallery_dir": str(ctx.home.gallery_dir)})
        return 0
    for ex in resumed:
        ctx.out(f"completed exhibit {ex.id}, left pending by an interruption (same bytes, no new entropy)")
    show_exhibits(ctx, resumed + made, gen.gallery, show=args.show)
    return 0


def show_exhibits(ctx: Any, exhibits: list[Any], gallery: Any, show: bool) -> None:
    """Print each exhibit: (optionally) the cat, mood, verdict, entropy origin and file paths."""
    from installation.exhibit import read_png_rgb
    from installation.termart import halfblocks

    for ex in exhibits:
        if show:
            ctx.out(halfblocks(read_png_rgb(gallery.path(ex.png_path)), indent=2))
        ctx.out(f"exhibit {ex.id}: the cat is {ex.mood.upper()}")
        ctx.out(f"  \u201c{ex.verdict_text}\u201d")
        if ex.source == "os-fallback":
            ctx.out("  entropy: os-fallback (NOT quantum: the pool was empty; see `qcat entropy status`)")
        else:
            ctx.out(f"  entropy: {ex.source} (quantum)")
        ctx.out(f"  image:  {gallery.path(ex.png_path)}")
        ctx.out(f"          {gallery.path(ex.big_png_path)}")
        if ex.wav_path:
            ctx.out(f"  speech: {gallery.path(ex.wav_path)}")
        ctx.out("")


