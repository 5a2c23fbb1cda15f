"""`qcat gallery list|show|verify|export`: browse, audit and publish the exhibit archive."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from installation.commands import add_json, command, group
from installation.errors import CheckFailed, UsageError


def register(sub: Any) -> None:
    _, cmds = group(sub, "gallery", "browse, verify and export the archive of exhibits")
    p = command(cmds, "list", "one line per exhibit", list_cmd)
    add_json(p)
    p = command(cmds, "show", "everything recorded about one exhibit", show)
    p.add_argument("id", type=int, help="exhibit number")
    add_json(p)
    p = command(cmds, "verify", "re-render exhibits from their stored bytes and compare", verify,
                description="Re-render each exhibit from its archived entropy bytes with the "
                "numpy golden reference and check the image hash, the PNG file, the verdict and "
                "the audio. Exit 1 naming every exhibit that differs.")
    p.add_argument("id", type=int, nargs="?", help="exhibit number")
    p.add_argument("--all", action="store_true", help="verify every exhibit")
    add_json(p)
    p = command(cmds, "export", "write a static HTML contact sheet of the gallery", export)
    p.add_argument("dir", help="output folder (index.html and the images go there)")


def _open(ctx: Any) -> Any:
    return ctx.workspace.open_gallery()


def list_cmd(ctx: Any, args: argparse.Namespace) -> int:
    with _open(ctx) as gallery:
        exhibits = list(gallery.all())
    if args.json:
        ctx.emit_json([e.to_json() for e in exhibits])
        return 0
    if not exhibits:
        ctx.out("the gallery is empty: `qcat generate` makes the first exhibit")
    for e in exhibits:
        origin = "OS-FALLBACK" if e.source == "os-fallback" else e.source
        ctx.out(f"{e.id:5d}  {e.created[:19]}  {e.mood:11s}  {origin:11s}  {e.verdict_text}")
    return 0


def show(ctx: Any, args: argparse.Namespace) -> int:
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


def verify(ctx: Any, args: argparse.Namespace) -> int:
    from installation.exhibit import load_model
    from installation.exhibit import verify as verify_exhibits

    if args.id is None and not args.all:
        raise UsageError("name an exhibit number or use --all")
    if args.id is not None and args.all:
        raise UsageError("give an exhibit number or --all, not both")
    with _open(ctx) as gallery:
        models = {}
        for path in ctx.workspace.known_models([Path(p) for p in gallery.model_paths()]):
            if path.exists():
                model = load_model(path)
                models[model.sha256] = model
        exhibits = list(gallery.all()) if args.all else [gallery.get(args.id)]
        pool = None
        if ctx.home.pool_db.exists():
            pool = ctx.workspace.open_pool()
        try:
            problems = verify_exhibits(exhibits, gallery, models, pool)
        finally:
            if pool is not None:
                pool.close()
    if args.json:
        ctx.emit_json({"checked": len(exhibits), "problems": problems, "ok": not problems})
    else:
        for line in problems:
            ctx.out(line)
        ctx.out(f"{len(exhibits)} exhibits checked, {len(problems)} problems")
    if problems:
        bad = sorted({p.split(":")[0] for p in problems})
        raise CheckFailed(f"{len(bad)} of {len(exhibits)} exhibits differ from their re-render: "
                          + ", ".join(bad))
    return 0


def export(ctx: Any, args: argparse.Namespace) -> int:
    from installation.contact_sheet import export as export_sheet

    with _open(ctx) as gallery:
        index = export_sheet(gallery, Path(args.dir).absolute())
    ctx.out(f"wrote {index} (open it in a browser)")
    return 0
