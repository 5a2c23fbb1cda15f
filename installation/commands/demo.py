"""`qcat demo` (and `make demo`): the main job on the embedded default, for a first look.

Sets up what the demo needs from what ships with qcat (the trained demo cat model; the verdict
clip bank when espeak-ng is present). On a terminal (standard input and output both ttys) the
demo is the real thing: two simulated cat units start (`qcat sim cat`, realistic timing) and a
simulated die (`qcat sim die`, a visitor pressing it every few seconds), and the
operator dashboard opens on them; cats appear as the units return them, until you quit (q).
Without a terminal (CI, a pipe), or with --headless, it generates a few exhibits here (offline
the pool is empty, and the demo says plainly that those cats use os randomness) and shows the
result: the cats drawn in the terminal, their moods and verdicts, and the paths of the PNG, WAV
and HTML files.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import TYPE_CHECKING, Any

from installation.commands import command
from installation.words import plural

if TYPE_CHECKING:
    from installation.cli import Context

DEFAULT_DEMO_COUNT = 4
DASHBOARD_SIM_UNITS = 2  # on a terminal: two simulated cat units, so two jobs run side by side
DASHBOARD_SIM_DICE = 1  # and a die, rolled by a simulated visitor every few seconds
CAT_COLUMNS = 64  # a 64x64 cat is 64 terminal columns wide in half blocks


def register(sub: Any) -> None:
    p = command(sub, "demo", "set up and generate a few exhibits, shown in the terminal", run,
                description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--count", "-n", type=int, default=DEFAULT_DEMO_COUNT, metavar="N",
                   help=f"exhibits to generate (default {DEFAULT_DEMO_COUNT})")
    p.add_argument("--no-speech", action="store_true", help="skip building the spoken verdicts")
    p.add_argument("--headless", action="store_true",
                   help="no dashboard even on a terminal: generate --count exhibits and print "
                        "them (what runs without a terminal)")


def on_a_terminal(ctx: Context) -> bool:
    """The dashboard demo needs a person at a terminal: stdin and stdout both ttys."""
    import sys

    return sys.stdin.isatty() and ctx.stdout.isatty()


def run(ctx: Context, args: argparse.Namespace) -> int:
    from installation.commands.generate import check_count, show_exhibits, speech_note
    from installation.curation import export_sheet
    from installation.exhibit import read_png_rgb
    from installation.progress import ProgressBar
    from installation.speech import ensure_clip_bank
    from installation.termart import halfblocks, side_by_side

    check_count(args.count)
    ws = ctx.workspace
    ws.require_writable("`qcat demo`")
    ctx.out("qcat demo: Schrödinger's demotivational quantum cats\n")
    ctx.out(f"home: {ctx.home.root}")
    if args.no_speech:
        speech = None
        ctx.out("speech: skipped (--no-speech)")
    else:
        with ProgressBar("rendering verdict clips") as bar:
            speech = ensure_clip_bank(ws, bar)
        ctx.out(speech_note(speech))
    if not args.headless and on_a_terminal(ctx):
        return _dashboard(ctx)
    gen = ws.open_generator()
    if speech is None or not speech.available:
        gen.clip_bank_path = None
    ctx.out(f"model: {gen.model.path.name} ({gen.model.size}, sha256 {gen.model.sha256[:16]}…)")
    ctx.out(f"engine: {gen.engine}")
    columns = shutil.get_terminal_size((132, 40)).columns
    try:
        plan = gen.plan(args.count)
        ctx.out(textwrap.fill(f"entropy: {plan.sentence()}", width=min(columns, 100),
                              subsequent_indent=" " * 9))
        if plan.short:
            ctx.out("         Fetch real quantum bytes while online: qcat entropy fetch --bytes 20480")
        ctx.out("")
        resumed = gen.complete_pending()
        with ProgressBar("dreaming up cats", enabled=args.count > 0) as bar:
            made = gen.generate(args.count, progress=bar)
        exhibits = resumed + made
        if not exhibits:
            ctx.out("no exhibits made; `qcat demo` alone makes four")
            return 0
        ctx.out("")
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


def _dashboard(ctx: Context) -> int:
    """Two simulated units and the dashboard on them, until the operator quits."""
    from installation.commands.tui_cmd import show, sims_config
    from installation.faces import RoomPlan

    before = _exhibit_count(ctx)
    code = show(ctx, RoomPlan(sim=DASHBOARD_SIM_UNITS, sim_dice=DASHBOARD_SIM_DICE,
                              config=sims_config(ctx)), mode="dashboard")
    made = _exhibit_count(ctx) - before
    ctx.out(f"{plural(made, 'exhibit')} made by the simulated units in this demo")
    ctx.out("next: `qcat gallery list`, `qcat gallery verify --all`, `qcat tui --sim 2`")
    return code


def _exhibit_count(ctx: Context) -> int:
    with ctx.workspace.open_gallery() as gallery:
        return gallery.count()
