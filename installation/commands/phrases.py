"""`qcat phrases verify|build|say|show|list`: the verdict bank, its clips and a preview.

Thin handlers over `phrases` (the library does the work): the text checks and durations,
rendering the clip bank with espeak-ng (cached under HOME/builds/clip-cache), speaking a verdict
exactly as the unit joins it (sounddevice, or a WAV with --wav), and browsing the 131,072
verdicts. Library modules are imported inside the handlers so `qcat --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command, group
from installation.errors import InputError, UsageError
from installation.files import check_target
from installation.words import plural
from installation.workspace import CLIP_BANK_FILE

if TYPE_CHECKING:
    from installation.cli import Context
    from phrases.clipbank import ClipBank

CODE_HELP = "a verdict code 0..131071 (decimal or 0x hex), or the verdict's text in quotes"


def register(sub: Any) -> None:
    _, cmds = group(sub, "phrases", "the 131,072 spoken verdicts: check, render, say, browse")
    p = command(cmds, "verify", "check the verdict text (and how long verdicts take to say)",
                verify, description="Check the data file (every error with file, mood, slot and "
                "line), then all 131,072 verdicts: distinct texts, every fragment used, the "
                "code <-> text round trip, length bounds, and the spoken duration of the longest "
                "verdict (renders the fragments through the clip cache unless --text-only).")
    p.add_argument("--bank", metavar="FILE", help="verdict data file (default: the shipped "
                   "phrases/bank.toml)")
    p.add_argument("--text-only", action="store_true",
                   help="skip the duration check (needs no espeak-ng)")
    add_json(p)
    p = command(cmds, "build", "render every fragment and write the SD clip bank (.qcv)", build,
                description="Render the 128 fragments with espeak-ng (unchanged ones come from "
                "the cache), turn them into 12-bit DAC clips and write the clip bank. Voice, "
                "speed, pitch, sample rate and gap come from the phrases.* config keys.")
    p.add_argument("--out", metavar="FILE", help=f"where to write (default: HOME/builds/"
                   f"{CLIP_BANK_FILE})")
    add_json(p)
    p = command(cmds, "say", "speak a verdict as the unit does (or write it to a WAV)", say,
                description="Play the four clips of a verdict joined exactly as the cat unit "
                "joins them. Without an audio device, use --wav. Builds the default clip bank "
                "first when it is missing or out of date.")
    p.add_argument("code", nargs="?", help=CODE_HELP)
    p.add_argument("--random", action="store_true", help="a random verdict (not from the pool: "
                   "a preview spends no quantum bytes)")
    p.add_argument("--wav", metavar="OUT", help="write a 16-bit PCM WAV instead of playing")
    p.add_argument("--clips", metavar="FILE", help="clip bank to read (default: HOME/builds/"
                   f"{CLIP_BANK_FILE})")
    add_json(p)
    p = command(cmds, "show", "print one verdict: mood, slots, fragments, text", show)
    p.add_argument("code", help=CODE_HELP)
    add_json(p)
    p = command(cmds, "list", "stream verdicts as code<TAB>mood<TAB>text lines", list_cmd)
    p.add_argument("--mood", choices=("motivated", "demotivated"), help="only this mood")
    p.add_argument("--limit", type=int, metavar="N", help="stop after N lines (default: all)")


# ----------------------------------------------------------------------------- helpers

def parse_code(value: str) -> int:
    """A code in decimal or 0x hex, or a verdict text (its code)."""
    import phrases
    from quantum.latent import split_code

    try:
        code = int(value, 0)
    except ValueError:
        return phrases.code_of(value)
    return split_code(code).code  # InputError when out of range


def spoken_bank(ctx: Context, quiet: bool) -> ClipBank:
    """The workspace's clip bank, built first when missing or stale (`installation.speech`);
    without espeak-ng there is nothing to speak from, and that is one sentence."""
    from installation.errors import ToolMissing
    from installation.progress import ProgressBar
    from installation.speech import INSTALL_HINT, ensure_clip_bank

    with ProgressBar("rendering fragments", enabled=not quiet) as bar:
        status = ensure_clip_bank(ctx.workspace, bar)
    if status.bank is None:
        raise ToolMissing(f"there is no clip bank to speak from: {status.reason}",
                          hint=INSTALL_HINT)
    if status.built:
        print(f"qcat: built {ctx.workspace.clip_bank_path} ({status.reason})", file=sys.stderr)
    return status.bank


# ----------------------------------------------------------------------------- handlers

def verify(ctx: Context, args: argparse.Namespace) -> int:
    from installation.errors import CheckFailed, FormatError
    from phrases.bank import BANK_FILE, inspect_bank
    from phrases.verify import MAX_VERDICT_SECONDS, verify_durations, verify_text

    path = Path(args.bank).absolute() if args.bank else BANK_FILE
    issues, bank = inspect_bank(path)
    if issues:
        if args.json:
            ctx.emit_json({"file": str(path), "ok": False,
                           "errors": [{"message": i.message, "mood": i.mood, "slot": i.slot,
                                       "line": i.line} for i in issues]})
        else:
            for issue in issues:
                ctx.out(str(issue))
        raise FormatError(f"the verdict data file {path} has {plural(len(issues), 'problem')}",
                          hint="fix the lines named above and run `qcat phrases verify` again")
    assert bank is not None
    report = verify_text(bank)
    if not args.text_only:
        from phrases.audio import gap_samples
        from phrases.render import render_clips

        settings = ctx.workspace.speech.as_kwargs()
        gap_ms, rate = settings.pop("gap_ms"), settings["sample_rate"]
        clips, _ = render_clips(ctx.home.clip_cache_dir, bank=bank, **settings)
        verify_durations(bank, report, [c.size / rate for c in clips],
                         gap_samples(gap_ms, rate) / rate)
    if args.json:
        ctx.emit_json({"file": str(path), **report.as_dict()})
    else:
        ctx.out(f"{path}")
        ctx.out(f"  verdicts          {report.verdicts:,} ({report.distinct_texts:,} distinct)")
        ctx.out(f"  fragments used    {report.fragments_used} of 128")
        ctx.out(f"  code <-> text     {report.round_trip_ok:,} round trips ok")
        ctx.out(f"  longest text      {report.longest_chars} characters, "
                f"{report.longest_words} words")
        if report.longest_seconds is not None:
            ctx.out(f"  spoken duration   {report.shortest_seconds:.2f} .. "
                    f"{report.longest_seconds:.2f} s (most {MAX_VERDICT_SECONDS} s; longest is "
                    f"code {report.longest_seconds_code})")
        for failure in report.failures:
            ctx.out(f"  FAIL {failure}")
        if report.ok:
            ctx.out("  ok")
    if not report.ok:
        raise CheckFailed(f"the verdict bank fails {plural(len(report.failures), 'check')}")
    return 0


def build(ctx: Context, args: argparse.Namespace) -> int:
    from installation.progress import ProgressBar
    from phrases.clipbank import ClipBank
    from phrases.render import RenderStats, build_bank

    out = check_target(args.out, "--out", CLIP_BANK_FILE).absolute() if args.out \
        else ctx.workspace.clip_bank_path
    settings = ctx.workspace.speech.as_kwargs()
    stats = RenderStats()
    with ProgressBar("rendering fragments", enabled=not args.json) as bar:
        build_bank(out, ctx.home.clip_cache_dir, progress=bar, stats=stats, **settings)
    clips = ClipBank.load(out)  # read back: what we wrote must pass every check
    summary = {"path": str(out), "bytes": out.stat().st_size, "sha256": clips.sha256,
               "rendered": stats.rendered, "cached": stats.cached,
               "espeak_ng_version": stats.espeak_version,
               "clip_seconds_min": round(min(stats.clip_seconds), 3),
               "clip_seconds_max": round(max(stats.clip_seconds), 3), **settings}
    if args.json:
        ctx.emit_json(summary)
    else:
        ctx.out(f"wrote {out} ({summary['bytes']:,} bytes, sha256 {clips.sha256[:16]}...)")
        ctx.out(f"  {plural(stats.rendered, 'fragment')} rendered with espeak-ng "
                f"{stats.espeak_version}, {stats.cached} from the cache; {settings['sample_rate']} Hz, 12-bit, "
                f"voice {settings['voice']}")
    return 0


def say(ctx: Context, args: argparse.Namespace) -> int:
    import phrases
    from phrases import audio
    from phrases.clipbank import ClipBank
    from quantum.latent import N_VERDICTS

    if args.random == (args.code is not None):
        raise UsageError("give either a verdict CODE or --random",
                         hint="e.g. `qcat phrases say --random --wav verdict.wav`")
    code = secrets.randbelow(N_VERDICTS) if args.random else parse_code(args.code)
    wav = check_target(args.wav, "--wav", "verdict.wav").absolute() if args.wav else None
    clips = ClipBank.load(Path(args.clips)) if args.clips else spoken_bank(ctx, args.json)
    v = phrases.verdict(code)
    if args.clips and clips.fragment_texts() != [t for *_, t in phrases.default_bank()
                                                 .all_fragments()]:
        raise InputError(f"the clip bank {args.clips} was built from a different verdict text",
                         hint="rebuild it with `qcat phrases build --out FILE`")
    samples = clips.verdict_samples(code)
    seconds = samples.size / clips.sample_rate
    if wav:
        audio.write_wav(wav, samples, clips.sample_rate)
    else:
        audio.play(samples, clips.sample_rate)
    if args.json:
        ctx.emit_json({"code": code, "mood": v.mood, "text": v.text, "seconds": round(seconds, 3),
                       "sample_rate": clips.sample_rate, "wav": args.wav})
    else:
        ctx.out(f"{code}\t{v.mood}\t{v.text}")
        if args.wav:
            ctx.out(f"wrote {args.wav} ({seconds:.2f} s, {clips.sample_rate} Hz)")
    return 0


def show(ctx: Context, args: argparse.Namespace) -> int:
    import phrases

    v = phrases.verdict(parse_code(args.code))
    if args.json:
        ctx.emit_json({"code": v.code, "hex": f"0x{v.code:05x}", "mood": v.mood,
                       "slots": list(v.slots), "fragments": list(v.fragments), "text": v.text})
    else:
        ctx.out(f"code      {v.code} (0x{v.code:05x})")
        ctx.out(f"mood      {v.mood}")
        ctx.out(f"slots     {' '.join(str(s) for s in v.slots)}")
        for name, frag in zip(phrases.SLOTS, v.fragments, strict=True):
            ctx.out(f"{name:<9} {frag}")
        ctx.out(f"text      {v.text}")
    return 0


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    import phrases

    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit must be 0 or more, got {args.limit}")
    out = ctx.stdout
    try:
        for n, v in enumerate(phrases.default_bank().iter_verdicts(args.mood)):
            if args.limit is not None and n >= args.limit:
                break
            out.write(f"{v.code}\t{v.mood}\t{v.text}\n")
        out.flush()
    except BrokenPipeError:  # `qcat phrases list | head`: the reader is done, so are we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
    return 0
