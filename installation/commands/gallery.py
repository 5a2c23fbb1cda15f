"""`qcat gallery list|show|verify|repair|export`: browse, audit, mend and publish the archive.

The handlers parse, call one service of `installation.curation`, and print; the logic lives in
the service so the TUI's gallery view calls the same code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command, group
from installation.errors import UsageError

if TYPE_CHECKING:
    from installation.cli import Context
    from installation.curation import RepairReport, VerifyReport

def register(sub: Any) -> None:
    _, cmds = group(sub, "gallery", "browse, verify, repair and export the archive of exhibits")
    p = command(cmds, "list", "one line per exhibit, newest first", list_cmd)
    p.add_argument("--limit", type=int, metavar="N", help="at most N exhibits (the newest)")
    p.add_argument("--since", metavar="DATE",
                   help="only exhibits made at or after DATE (ISO date or date and time, UTC "
                   "unless a zone is given)")
    p.add_argument("--mood", metavar="MOOD", help="motivated or demotivated")
    p.add_argument("--source", metavar="SOURCE",
                   help="quantum (ANU bytes) or os-fallback (the pool was empty)")
    add_json(p)
    p = command(cmds, "show", "everything recorded about one exhibit", show)
    p.add_argument("id", type=int, help="exhibit number")
    add_json(p)
    p = command(cmds, "verify", "re-render exhibits from their stored bytes and check every file",
                verify,
                description="Re-render each exhibit from its archived entropy bytes with the "
                "numpy golden reference and check the image hash, the verdict, both PNG files "
                "(64 and 512 px: hash and pixels) and the audio. Exhibits left pending by an "
                "interruption are reported too. Exit 1 naming every exhibit that differs.")
    _add_selection(p)
    p = command(cmds, "repair", "re-create missing or damaged files from the stored bytes", repair,
                description="Re-create an exhibit's missing or damaged PNG and WAV files from its "
                "stored entropy bytes with the numpy reference, then verify it again. The bytes "
                "and the archived facts are never changed: an exhibit whose row or bytes are "
                "inconsistent is reported as not repairable (exit 1). Audio needs the clip bank "
                "(`qcat phrases build`).")
    _add_selection(p)
    p = command(cmds, "speak", "give silent exhibits their spoken verdict (WAV)", speak,
                description="Exhibits made while espeak-ng was missing have their verdict text "
                "but no voice. Build the clip bank (needs espeak-ng) and write each silent "
                "exhibit's WAV, recording it in the archive. Exhibits that already speak are "
                "left alone.")
    _add_selection(p)
    p = command(cmds, "export", "write a static HTML contact sheet of the gallery", export)
    p.add_argument("dir", help="output folder (its parent must exist): index.html, page-N.html "
                   "and style.css go there; images are linked, not copied")


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=int, nargs="?", help="exhibit number")
    p.add_argument("--all", action="store_true", help="every exhibit")
    add_json(p)


def _selected_id(args: argparse.Namespace) -> int | None:
    """The exhibit named on the command line, or None for --all."""
    if args.id is None and not args.all:
        raise UsageError("name an exhibit number or use --all")
    if args.id is not None and args.all:
        raise UsageError("give an exhibit number or --all, not both")
    return args.id


def _open(ctx: Context) -> Any:
    return ctx.workspace.open_gallery()


@contextmanager
def _pool(ctx: Context) -> Iterator[Any]:
    """The entropy pool when this home has one (verify compares against it), else None."""
    if not ctx.home.pool_db.exists():
        yield None
        return
    with ctx.workspace.open_pool() as pool:
        yield pool


def _find_model(ctx: Context, gallery: Any) -> Any:
    from installation.exhibit import model_finder

    return model_finder(ctx.workspace.known_models([Path(p) for p in gallery.model_paths()]))


def _bar(label: str, args: argparse.Namespace) -> Any:
    from installation.progress import ProgressBar

    return ProgressBar(label, enabled=not args.json and sys.stderr.isatty())


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from installation.curation import ListQuery, list_exhibits, parse_since

    query = ListQuery(limit=args.limit, mood=args.mood, source=args.source,
                      since=parse_since(args.since) if args.since is not None else None)
    with _open(ctx) as gallery:
        exhibits = list_exhibits(gallery, query)
    if args.json:
        ctx.emit_json([e.to_json() for e in exhibits])
        return 0
    if not exhibits:
        ctx.out("no exhibit matches those filters" if query != ListQuery() else
                "the gallery is empty: `qcat generate` makes the first exhibit")
    for e in exhibits:
        origin = e.source if e.quantum else "OS-FALLBACK"
        ctx.out(f"{e.id:5d}  {e.created[:19]}  {e.mood:11s}  {origin:11s}  {e.verdict_text}")
    return 0


def show(ctx: Context, args: argparse.Namespace) -> int:
    with _open(ctx) as gallery:
        e = gallery.get(args.id)
        if args.json:
            ctx.emit_json(e.to_json())
            return 0
        ctx.out(f"exhibit {e.id} ({e.created})")
        ctx.out(f"  mood:     {e.mood}")
        ctx.out(f"  verdict:  {e.verdict_text} (code {e.verdict_code})")
        ctx.out(f"  entropy:  {e.source}{'  (NOT quantum)' if not e.quantum else ''}")
        for key, value in sorted(e.provenance.items()):
            if key == "segments" and isinstance(value, list):
                for seg in value:
                    ctx.out("            " + describe_segment(seg))
            else:
                ctx.out(f"            {key}: {value}")
        ctx.out(f"  bytes:    {e.entropy_hex}")
        ctx.out(f"  model:    {e.model_sha256} ({e.model_size})")
        ctx.out(f"  engine:   {e.engine}")
        ctx.out(f"  image:    {gallery.path(e.png_path)} (sha256 of pixels {e.image_sha256[:16]}…)")
        if e.wav_path:
            ctx.out(f"  speech:   {gallery.path(e.wav_path)}")
    return 0


def describe_segment(seg: Any) -> str:
    """One line for a run of bytes from one batch: where in the batch, which request, when."""
    if not isinstance(seg, dict):
        return str(seg)
    line = (f"{seg.get('length', '?')} bytes at offset {seg.get('offset', '?')} of batch "
            f"{seg.get('batch', '?')} ({seg.get('source', '?')}")
    if seg.get("request_number") is not None:
        line += f", {seg.get('api', '')} request #{seg['request_number']} at {seg.get('request_time', '?')}"
    return line + ")"


def verify(ctx: Context, args: argparse.Namespace) -> int:
    from installation.curation import verify as verify_gallery

    exhibit_id = _selected_id(args)
    with _open(ctx) as gallery, _pool(ctx) as pool, _bar("verifying", args) as bar:
        report = verify_gallery(gallery, _find_model(ctx, gallery), exhibit_id=exhibit_id,
                                pool=pool, progress=bar,
                                die_ref=ctx.workspace.die_ref() if exhibit_id is None else None)
    return _print_report(ctx, args, report, report.pending_summary())


def repair(ctx: Context, args: argparse.Namespace) -> int:
    from installation.curation import repair as repair_gallery

    ctx.workspace.require_writable("`qcat gallery repair`")
    exhibit_id = _selected_id(args)
    with _open(ctx) as gallery, _pool(ctx) as pool, _bar("repairing", args) as bar:
        report = repair_gallery(gallery, _find_model(ctx, gallery), exhibit_id=exhibit_id,
                                pool=pool, clip_bank=ctx.workspace.clip_bank_path, progress=bar)
    return _print_report(ctx, args, report)


def _print_report(ctx: Context, args: argparse.Namespace, report: VerifyReport | RepairReport,
                  footnote: str | None = None) -> int:
    """A verify or repair report: JSON, or a line per finding and a summary; exit 1 on failure."""
    if args.json:
        ctx.emit_json(report.as_dict())
    else:
        for line in report.lines():
            ctx.out(line)
        ctx.out(report.summary())
        if footnote is not None:
            ctx.out(footnote)
    if (failure := report.failure()) is not None:
        raise failure
    return 0


def speak(ctx: Context, args: argparse.Namespace) -> int:
    from installation.speech import give_voices

    exhibit_id = _selected_id(args)
    with _open(ctx) as gallery, _bar("giving voices", args) as bar:
        report = give_voices(ctx.workspace, gallery, exhibit_id=exhibit_id, progress=bar)
    if args.json:
        ctx.emit_json(report.as_dict())
    else:
        ctx.out(report.summary())
    return 0


def export(ctx: Context, args: argparse.Namespace) -> int:
    from installation.curation import export_sheet

    with _open(ctx) as gallery:
        report = export_sheet(gallery, Path(args.dir).expanduser())
    ctx.out(report.summary())
    return 0
