"""`qcat generate`: make exhibits on the controller and archive them (DESIGN §4).

Thin: the workspace resolves the model, pool and gallery; `installation.speech` makes sure the
verdicts can be spoken; `installation.exhibit.Generator` does the work.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command
from installation.errors import UsageError

if TYPE_CHECKING:
    from installation.cli import Context
    from installation.gallery import Exhibit, Gallery
    from installation.speech import SpeechStatus


def register(sub: Any) -> None:
    p = command(sub, "generate", "make new exhibits: quantum bytes in, cat + verdict out, archived",
                run, description=(
                    "Draw 203 entropy bytes per exhibit, render the cat, pick its verdict, write "
                    "PNG (64x64 and 512x512) and WAV files, and archive everything. The verdict "
                    "clip bank is built first when espeak-ng is installed; without it the "
                    "exhibits are silent until `qcat gallery speak` gives them their voices. "
                    "Exhibits left pending by a crash are completed first, with the same bytes."))
    p.add_argument("--count", "-n", type=int, default=1, metavar="N", help="new exhibits (default 1)")
    p.add_argument("--engine", choices=("c", "numpy"), help="renderer (default: config engine.default)")
    p.add_argument("--weights", metavar="FILE", help="weight image (default: config models.weights "
                   "or the shipped demo model)")
    p.add_argument("--no-speech", action="store_true",
                   help="make silent exhibits (no clip bank is built)")
    p.add_argument("--show", action="store_true", help="draw the cats in the terminal")
    add_json(p)


def check_count(count: int) -> None:
    if count < 0:
        raise UsageError(f"--count must be 0 or more, not {count}")


def speech_note(status: SpeechStatus) -> str:
    """One line on the exhibits' voices for the person running the command."""
    if status.available:
        built = " (built now: " + status.reason + ")" if status.built else ""
        return f"speech: clip bank ready{built}"
    return (f"speech: none, {status.reason}; the exhibits are silent for now. "
            "Give them their voices later with `qcat gallery speak --all`")


def run(ctx: Context, args: argparse.Namespace) -> int:
    from installation.progress import ProgressBar
    from installation.speech import ensure_clip_bank

    check_count(args.count)
    ws = ctx.workspace
    ws.require_writable("`qcat generate`")
    with ProgressBar("rendering verdict clips", enabled=not args.json) as bar:
        speech = ensure_clip_bank(ws, bar, build=not args.no_speech)
    gen = ws.open_generator(args.engine, args.weights)
    if not speech.available:
        gen.clip_bank_path = None
    try:
        plan = gen.plan(args.count)
        if not args.json and (speech.built or not speech.available):
            ctx.out(speech_note(speech))
            if plan.short or args.count == 0:
                ctx.out(f"entropy: {plan.sentence()}")
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
                       "entropy_plan": plan.as_dict(),
                       "speech": {"available": speech.available, "built": speech.built,
                                  "reason": speech.reason},
                       "gallery_dir": str(ctx.home.gallery_dir)})
        return 0
    for ex in resumed:
        ctx.out(f"completed exhibit {ex.id}, left pending by an interruption (same bytes, no new entropy)")
    show_exhibits(ctx, resumed + made, gen.gallery, show=args.show)
    return 0


def show_exhibits(ctx: Context, exhibits: list[Exhibit], gallery: Gallery, show: bool) -> None:
    """Print each exhibit: (optionally) the cat, mood, verdict, entropy origin and file paths."""
    from installation.exhibit import read_png_rgb
    from installation.termart import halfblocks

    for ex in exhibits:
        if show:
            ctx.out(halfblocks(read_png_rgb(gallery.path(ex.png_path)), indent=2))
        ctx.out(f"exhibit {ex.id}: the cat is {ex.mood.upper()}")
        ctx.out(f"  \u201c{ex.verdict_text}\u201d")
        if not ex.quantum:
            ctx.out("  entropy: os-fallback (NOT quantum: the pool was empty; see `qcat entropy status`)")
        else:
            ctx.out(f"  entropy: {ex.source} (quantum)")
        ctx.out(f"  image:  {gallery.path(ex.png_path)}")
        ctx.out(f"          {gallery.path(ex.big_png_path)}")
        if ex.wav_path:
            ctx.out(f"  speech: {gallery.path(ex.wav_path)}")
        ctx.out("")
