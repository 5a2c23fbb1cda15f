"""`qcat phrases verify|build|say|show|list|voices`: the verdict bank, its clips and a preview.

Thin handlers over `phrases` (the library does the work): the text checks and durations,
rendering the clip bank with the configured voice (cached under HOME/builds/clip-cache), speaking
a verdict exactly as the unit joins it (sounddevice, or a WAV with --wav), browsing the 131,072
verdicts, and measuring how well each voice is understood (`phrases.intelligibility`). Library
modules are imported inside the handlers so `qcat --help` stays fast.
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
from installation.files import check_target, write_atomic
from installation.words import plural
from installation.workspace import CLIP_BANK_FILE

if TYPE_CHECKING:
    from installation.cli import Context
    from phrases.clipbank import ClipBank

VERDICT_PAUSE_MS = 700  # between verdicts with --count: a breath, longer than the fragment gap
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
                description="Render the 128 fragments with the configured voice (unchanged ones "
                "come from the cache), turn them into 12-bit DAC clips and write the clip bank. "
                "Voice (ENGINE:VOICE), speed, pitch, sample rate and gap come from the phrases.* "
                "config keys.")
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
    p.add_argument("--count", type=int, default=1, metavar="N",
                   help="with --random: N verdicts, one after the other with a pause")
    p.add_argument("--seed", type=int, metavar="S", help="with --random: the same verdicts on "
                   "every run (e.g. docs/verdicts-sample.wav)")
    p.add_argument("--wav", metavar="OUT", help="write a 16-bit PCM WAV instead of playing")
    p.add_argument("--clips", metavar="FILE", help="clip bank to read (default: HOME/builds/"
                   f"{CLIP_BANK_FILE})")
    add_json(p)
    p = command(cmds, "voices", "measure how well each voice is understood (word recall)",
                voices_cmd,
                description="Render the 128 fragments with each installed voice (or those named "
                "with --voice) and a seeded sample of whole verdicts, feed each DAC clip exactly "
                "as the unit plays it to an offline recogniser (pocketsphinx) and report the "
                "fraction of words it recognised, in order. docs/voices.md has the figures and "
                "how the default voice was chosen. Takes minutes per voice.")
    p.add_argument("--voice", action="append", metavar="V", help="ENGINE:VOICE to measure "
                   "(repeat for more; default: every installed voice of `--list`)")
    p.add_argument("--verdicts", type=int, default=50, metavar="N",
                   help="whole verdicts measured per voice (default 50)")
    p.add_argument("--seed", type=int, default=1, metavar="S",
                   help="seed of the verdict sample (default 1: every run hears the same ones)")
    p.add_argument("--fragments", type=int, metavar="N", help="hear only N of the 128 "
                   "fragments, spread over both moods and every slot (a quick look; default all)")
    p.add_argument("--list", action="store_true",
                   help="only list the voices that can speak here (nothing is measured)")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown to FILE "
                   "(e.g. docs/voices.md)")
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
    without any voice there is nothing to speak from, and that is one sentence."""
    from installation.errors import ToolMissing
    from installation.progress import ProgressBar
    from installation.speech import INSTALL_HINT, ensure_clip_bank

    with ProgressBar("rendering fragments", enabled=not quiet) as bar:
        status = ensure_clip_bank(ctx.workspace, bar)
    if status.bank is None:
        raise ToolMissing(f"there is no clip bank to speak from: {status.reason}",
                          hint=INSTALL_HINT)
    if status.fallback:
        print(f"qcat: note: {status.fallback}", file=sys.stderr)
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
               "synthesizer": stats.engine, "synthesizer_version": stats.engine_version,
               "clip_seconds_min": round(min(stats.clip_seconds), 3),
               "clip_seconds_max": round(max(stats.clip_seconds), 3), **settings,
               "voice": stats.voice}
    if args.json:
        ctx.emit_json(summary)
    else:
        ctx.out(f"wrote {out} ({summary['bytes']:,} bytes, sha256 {clips.sha256[:16]}...)")
        ctx.out(f"  {plural(stats.rendered, 'fragment')} rendered with {stats.engine} "
                f"{stats.engine_version}, {stats.cached} from the cache; "
                f"{settings['sample_rate']} Hz, 12-bit, voice {stats.voice}")
    return 0


def say(ctx: Context, args: argparse.Namespace) -> int:
    import random

    import phrases
    from phrases import audio
    from phrases.clipbank import ClipBank
    from quantum.latent import N_VERDICTS

    if args.random == (args.code is not None):
        raise UsageError("give either a verdict CODE or --random",
                         hint="e.g. `qcat phrases say --random --wav verdict.wav`")
    if not args.random and (args.count != 1 or args.seed is not None):
        raise UsageError("--count and --seed go with --random",
                         hint="e.g. `qcat phrases say --random --seed 7 --count 5 --wav s.wav`")
    if args.count < 1:
        raise UsageError(f"--count must be 1 or more, got {args.count}")
    if args.random:  # a preview: the pool's quantum bytes are for exhibits
        pick = random.Random(args.seed) if args.seed is not None else secrets.SystemRandom()
        codes = [pick.randrange(N_VERDICTS) for _ in range(args.count)]
    else:
        codes = [parse_code(args.code)]
    wav = check_target(args.wav, "--wav", "verdict.wav").absolute() if args.wav else None
    clips = ClipBank.load(Path(args.clips)) if args.clips else spoken_bank(ctx, args.json)
    if args.clips and clips.fragment_texts() != [t for *_, t in phrases.default_bank()
                                                 .all_fragments()]:
        raise InputError(f"the clip bank {args.clips} was built from a different verdict text",
                         hint="rebuild it with `qcat phrases build --out FILE`")
    samples = audio.join_clips([clips.verdict_samples(c) for c in codes],
                               audio.gap_samples(VERDICT_PAUSE_MS, clips.sample_rate))
    seconds = samples.size / clips.sample_rate
    if wav:
        audio.write_wav(wav, samples, clips.sample_rate)
    else:
        audio.play(samples, clips.sample_rate)
    said = [phrases.verdict(c) for c in codes]
    if args.json:
        one = {"seconds": round(seconds, 3), "sample_rate": clips.sample_rate, "wav": args.wav}
        if len(said) == 1:
            ctx.emit_json({"code": said[0].code, "mood": said[0].mood, "text": said[0].text,
                           **one})
        else:
            ctx.emit_json({"verdicts": [{"code": v.code, "mood": v.mood, "text": v.text}
                                        for v in said], **one})
    else:
        for v in said:
            ctx.out(f"{v.code}\t{v.mood}\t{v.text}")
        if args.wav:
            ctx.out(f"wrote {args.wav} ({seconds:.2f} s, {clips.sample_rate} Hz)")
    return 0


def voices_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from installation.progress import ProgressBar
    from phrases import intelligibility, voices

    if args.verdicts < 0:
        raise UsageError(f"--verdicts must be 0 or more, got {args.verdicts}")
    if args.fragments is not None and args.fragments < 1:
        raise UsageError(f"--fragments must be 1 or more, got {args.fragments}")
    specs = [voices.canonical(v) for v in args.voice] if args.voice else \
        [str(v) for v in voices.installed()]
    if args.list:
        if args.json:
            ctx.emit_json({"voices": specs, "default": ctx.workspace.speech.voice})
        else:
            for spec in specs:
                ctx.out(spec)
        return 0
    markdown = check_target(args.markdown, "--markdown", "voices.md").absolute() \
        if args.markdown else None
    for spec in specs:  # every named voice can speak, before minutes are spent on the first
        why = voices.unavailable(voices.parse_voice(spec))
        if why:
            raise InputError(f"the voice {spec} cannot speak here: {why}",
                             hint="`qcat phrases voices --list` shows the voices that can")
    settings = ctx.workspace.speech.as_kwargs()
    del settings["voice"]
    recogniser = intelligibility.PocketSphinx()
    with ProgressBar("measuring voices", enabled=not args.json) as bar:
        scores = intelligibility.measure_voices(specs, ctx.home.clip_cache_dir, recogniser,
                                                verdicts=args.verdicts, seed=args.seed,
                                                fragments=args.fragments, progress=bar,
                                                **settings)
    if markdown:
        write_atomic(markdown, intelligibility.markdown_table(scores).encode("utf-8"))
    if args.json:
        ctx.emit_json({"verdicts": args.verdicts, "seed": args.seed,
                       "fragments": len(scores[0].fragments) if scores else 0,
                       "voices": [s.as_dict() for s in scores]})
        return 0
    rows = [intelligibility.TABLE_HEADER, *intelligibility.table_rows(scores)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        ctx.out("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                          for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    if markdown:
        ctx.out(f"wrote {markdown}")
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
