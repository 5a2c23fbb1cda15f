"""`qcat demo` (and `make demo`): the main job on the embedded default, for a first look.

Sets up what the demo needs from what ships with qcat (the trained demo cat model; the verdict
clip bank when espeak-ng is present), generates a few exhibits (offline the pool is empty, and the
demo says plainly that those cats use os randomness), and shows the result: the cats drawn in the
terminal, their moods and verdicts, and the paths of the PNG, WAV and HTML files.
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from installation.commands import command

DEFAULT_DEMO_COUNT = 4
CAT_COLUMNS = 64  # a 64x64 cat is 64 terminal columns wide in half blocks


def register(sub: Any) -> None:
    p = command(sub, "demo", "set up and generate a few exhibits, shown in the terminal", run,
                description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--count", "-n", type=int, default=DEFAULT_DEMO_COUNT, metavar="N",
                   help=f"exhibits to generate (default {DEFAULT_DEMO_COUNT})")
    p.add_argument("--no-speech", action="store_true", help="skip building the spoken verdicts")


def run(ctx: Any, args: argparse.Namespace) -> int:
    from installation.commands.generate import clip_bank_path, open_generator, show_exhibits
    from installation.curation import export_sheet
    from installation.exhibit import read_png_rgb
    from installation.progress import ProgressBar
    from installation.termart import halfblocks, side_by_side
    from quantum.latent import EXHIBIT_BYTES

    ctx.out("qcat demo: Schrödinger's demotivational quantum cats\n")
    ctx.out(f"home: {ctx.home.root}")
    gen = open_generator(ctx, None, None)
    ctx.out(f"model: {gen.model.path.name} ({gen.model.size}, sha256 {gen.model.sha256[:16]}…)")
    ctx.out(f"engine: {gen.engine}")

    bank = clip_bank_path(ctx)
    if args.no_speech:
        ctx.out("speech: skipped (--no-speech)")
    elif shutil.which("espeak-ng") is None:
        ctx.out("speech: espeak-ng is not installed, so verdicts are text only "
                "(sudo apt-get install espeak-ng, then run the demo again)")
    else:
        from phrases.render import build_bank

        with ProgressBar("rendering verdict clips") as bar:
            build_bank(bank, ctx.home.clip_cache_dir, voice=ctx.config["phrases.voice"],
                       words_per_minute=ctx.config["phrases.words_per_minute"],
                       pitch=ctx.config["phrases.pitch"],
                       sample_rate=ctx.config["phrases.sample_rate"],
                       gap_ms=ctx.config["phrases.gap_ms"], progress=bar)
        ctx.out(f"speech: clip bank {bank}")
    if args.no_speech:
        gen.clip_bank_path = None

    status = gen.pool.status()
    need = EXHIBIT_BYTES * args.count
    available = int(status.get("available_bytes", 0))
    if available >= need:
        ctx.out(f"entropy: {available:,} quantum bytes in the pool; these cats use ANU vacuum noise")
    else:
        policy = ctx.config["entropy.when_empty"]
        ctx.out(f"entropy: the pool holds {available:,} quantum bytes, fewer than the {need:,} "
                f"this demo needs (nothing has been fetched from the ANU service).")
        if policy == "os":
            ctx.out("         Policy entropy.when_empty = \"os\": these cats use the operating "
                    "system's randomness instead, and the archive labels them os-fallback, never quantum.")
        ctx.out("         Fetch real quantum bytes while online: qcat entropy fetch --bytes 20480")
    ctx.out("")

    try:
        resumed = gen.complete_pending()
        with ProgressBar("dreaming up cats") as bar:
            made = gen.generate(args.count, progress=bar)
        exhibits = resumed + made
        ctx.out("")
        columns = shutil.get_terminal_size((132, 40)).columns
        per_row = max(1, columns // (CAT_COLUMNS + 2))
        if ctx.stdout.isatty():  # colour half blocks only where a terminal shows them
            pictures = [halfblocks(read_png_rgb(gen.gallery.path(e.png_path))) for e in exhibits]
            for i in range(0, len(pictures), per_row):
                ctx.out(side_by_side(pictures[i:i + per_row]))
                ctx.out("")
        show_exhibits(ctx, exhibits, gen.gallery, show=False)
        sheet = export_sheet(gen.gallery, ctx.home.root / "contact-sheet",
                             exhibit_ids=[e.id for e in exhibits]).index
    finally:
        gen.pool.close()
        gen.gallery.close()
    ctx.out(f"contact sheet: {sheet}  (open it in a browser)")
    ctx.out("next: `qcat gallery list`, `qcat gallery verify --all`, `qcat phrases say --random --wav x.wav`")
    return 0
