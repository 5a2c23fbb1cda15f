"""`qcat sim`: simulated units on a pseudo-terminal, running the units' own C code.

    qcat sim cat [--weights FILE] [--clips FILE] [--card DIR [--offline N]] [--serial S]
                 [--emulate] [--timing fast|realistic] [--drop-rate P] [--corrupt-rate P] [--hang-after N]
                 [--unplug-after N] [--wrong-image-rate P] [--seed S]
    qcat sim die [--serial S] [--schedule SECONDS] [--weights FILE.npz]
                 [--drop-rate P] [--corrupt-rate P] [--hang-after N] [--unplug-after N]
                 [--seed S] [--link PATH]

Both print the port's path (/dev/pts/N) alone on the first line of standard output and serve
until SIGINT or SIGTERM, then exit 0 without a word. With --unplug-after, each re-plug prints the
new port's path on a line of its own. `qcat sim cat --card DIR --offline N` serves nothing: it
makes N exhibits from the card's reserve as the unit does with no controller, prints one line per
exhibit and a summary, and exits 0 (1 when the reserve had fewer). Thin layer: parsing and
printing; the work is in `installation.units.simulator.serve_cat` / `make_offline` /
`serve_die` (and firmware/sim.py below them).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from installation.commands import command, group

if TYPE_CHECKING:
    from firmware.sim import Faults, OfflineExhibit
    from installation.cli import Context
    from installation.units.simulator import CatSimOptions

CAT_DESCRIPTION = """\
serve as a simulated cat unit on a pseudo-terminal: the unit's own C firmware core (protocol,
engine, SHA-256) behind /dev/pts/N, which `qcat units` and any serial program open like a USB
unit. The port's path is printed alone on the first line; a re-plug (--unplug-after) prints the
new path on a new line. Stop it with Ctrl-C or SIGTERM (exit 0).

with --card DIR (a card folder, as `qcat sd build --out DIR` writes it) the unit has the card's
weight image, clip bank, manifest hashes and serial, and its entropy reserve: when no controller
talks to it for 30 s it works offline, spending one record a minute and writing each into the
card's journal before showing it (a note on stderr says when). --offline N makes N such
exhibits at once, with no pty, prints them and exits (1 when fewer records were left).

with --emulate the unit's own RISC-V firmware image runs under qemu-system-riscv32 (the virt
board; built with `make -C firmware qemu-cat-unit` on first use) with its serial line on the
pseudo-terminal, instead of the firmware core built for this machine: the same port contract,
the unit's own code. It takes --weights, --clips, --card (a folder), --serial and --link, runs
at QEMU's speed (no --timing realistic) on a clean line (no faults); its serial defaults to
emucat-PID.

faults act on the frames the unit sends, seeded by --seed:
  --drop-rate P         drop a frame              --corrupt-rate P   flip one bit of a frame
  --hang-after N        silent and deaf after N frames (the port stays open)
  --unplug-after N      close the port after N frames, re-plug as a new /dev/pts node 1 s later
  --wrong-image-rate P  flip one bit of an image before it is hashed and sent (only a golden
                        compare catches it)
"""


DIE_DESCRIPTION = """\
serve as a simulated die unit on a pseudo-terminal: the die's own C firmware core (protocol,
entropy reserve, roll, decoder) behind /dev/pts/N. The port's path is printed alone on the first
line; a re-plug (--unplug-after) prints the new path on a new line. Stop it with Ctrl-C or SIGTERM
(exit 0).

The die rolls when its button is pressed (Enter or space, when standard input is a terminal;
every --schedule SECONDS) or when the controller sends ROLL_REQUEST; each roll is a ROLL frame
with the pips and the face. Its entropy reserve starts empty, as a real die's does at power-on:
the controller fills it with TOPUP, and a roll without enough is refused with ERROR
QP_E_NO_ENTROPY.

faults act on the frames the unit sends, seeded by --seed:
  --drop-rate P         drop a frame              --corrupt-rate P   flip one bit of a frame
  --hang-after N        silent and deaf after N frames (the port stays open)
  --unplug-after N      close the port after N frames, re-plug as a new /dev/pts node 1 s later
"""


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} seconds: give a positive number")
    return value


def _frames(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of frames") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} frames: give at least 1")
    return value


def _exhibits(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of exhibits") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} exhibits: give at least 1")
    return value


def register(sub: Any) -> None:
    _, cmds = group(sub, "sim", "run simulated cat and die units on a pseudo-terminal")

    p = command(cmds, "cat", "serve as a simulated cat unit on a pseudo-terminal", _cat,
                description=CAT_DESCRIPTION)
    p.add_argument("--weights", metavar="FILE",
                   help="the unit's weight image (.qcw); default: config models.weights, else "
                        "the shipped demo model")
    p.add_argument("--clips", metavar="FILE",
                   help="the unit's clip bank (.qcv); default: HOME/builds/verdicts.qcv if built")
    p.add_argument("--card", metavar="DIR",
                   help="the unit's SD card as a folder: its weights, clips, manifest and "
                        "entropy reserve (instead of --weights and --clips)")
    p.add_argument("--offline", type=_exhibits, metavar="N",
                   help="with --card: make N exhibits from the reserve with no controller, "
                        "print them and exit")
    p.add_argument("--serial", metavar="S",
                   help="the serial number in HELLO (default: the card's unit, else simcat-PID; "
                        "emucat-PID with --emulate)")
    p.add_argument("--emulate", action="store_true",
                   help="run the unit's own RISC-V firmware under qemu-system-riscv32 instead "
                        "of the core built for this machine")
    p.add_argument("--timing", choices=["fast", "realistic"], default="fast",
                   help="fast: no delays; realistic: the unit's modelled SD-bound generation "
                        "time and each verdict's spoken length (default fast)")
    p.add_argument("--wrong-image-rate", type=_probability, default=0.0, metavar="P")
    _fault_arguments(p)

    p = command(cmds, "die", "serve as a simulated die unit on a pseudo-terminal", _die,
                description=DIE_DESCRIPTION)
    p.add_argument("--serial", metavar="S", help="the serial number in HELLO (default simdie-PID)")
    p.add_argument("--schedule", type=_seconds, metavar="SECONDS",
                   help="press the die's button every SECONDS (a visitor who never stops)")
    p.add_argument("--weights", metavar="FILE",
                   help="a die weights file (.npz) to run instead of the decoder built into the "
                        "firmware")
    _fault_arguments(p)


def _fault_arguments(p: Any) -> None:
    p.add_argument("--drop-rate", type=_probability, default=0.0, metavar="P")
    p.add_argument("--corrupt-rate", type=_probability, default=0.0, metavar="P")
    p.add_argument("--hang-after", type=_frames, metavar="N")
    p.add_argument("--unplug-after", type=_frames, metavar="N")
    p.add_argument("--seed", type=int, default=0, help="seed of the faults (default 0)")
    p.add_argument("--link", metavar="PATH",
                   help="keep a symbolic link at PATH pointing at the current pty (a stable name "
                        "across --unplug-after re-plugs, as /dev/serial/by-id/ links are)")


def _faults(args: argparse.Namespace) -> Faults:
    from firmware.sim import Faults

    return Faults(drop_rate=args.drop_rate, corrupt_rate=args.corrupt_rate,
                  hang_after=args.hang_after, unplug_after=args.unplug_after,
                  wrong_image_rate=getattr(args, "wrong_image_rate", 0.0), seed=args.seed)


def _serve(ctx: Context, args: argparse.Namespace, kind: str,
           serve: Callable[..., object]) -> int:
    """Run `serve(announce=, note=, stop=, unplugged=)` until SIGINT or SIGTERM: the port's path
    on stdout (and at --link), notes on stderr."""
    from installation.units.simulator import StableLink

    # A plain flag, not a threading.Event: a handler runs between bytecodes of the main thread,
    # so a second signal arriving inside Event.set would wait forever on the lock the first one
    # holds (seen: a simulator deaf to SIGTERM after its parent died and the kernel's SIGTERM
    # met the fleet's).
    stopping = [False]

    def on_signal(signum: int, frame: object) -> None:
        stopping[0] = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    link = StableLink(args.link) if args.link else None

    def announce(path: str) -> None:
        if link is not None:
            link.point_at(path)
        print(path, file=ctx.stdout, flush=True)

    def note(sentence: str) -> None:
        print(f"qcat sim {kind}: {sentence}", file=sys.stderr, flush=True)

    try:
        serve(announce=announce, note=note, stop=lambda: stopping[0],
              unplugged=link.remove if link is not None else lambda: None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if link is not None:
            link.remove()
    return 0


def _cat(ctx: Context, args: argparse.Namespace) -> int:
    from installation.units.simulator import CatSimOptions, serve_cat

    options = CatSimOptions(weights=args.weights, clips=args.clips, serial=args.serial,
                            timing=args.timing, faults=_faults(args), card=args.card,
                            emulate=args.emulate)
    if args.offline is not None:
        if args.emulate:
            from installation.errors import InputError

            raise InputError("--offline makes exhibits with the host simulator, not the "
                             "emulated unit", hint="leave out --emulate (or --offline: the "
                             "emulated unit works offline after 30 s with no controller)")
        return _offline(ctx, options, args.offline)
    return _serve(ctx, args, "cat", partial(serve_cat, ctx.workspace, options))


def _offline(ctx: Context, options: CatSimOptions, count: int) -> int:
    from installation.errors import EXIT_CHECK_FAILED
    from installation.units.simulator import make_offline
    from installation.words import plural

    def on_exhibit(e: OfflineExhibit) -> None:
        ctx.out(f"record {e.record:>5}  verdict {e.verdict:>6}  image {e.image_sha256.hex()[:16]}")

    def note(sentence: str) -> None:
        print(f"qcat sim cat: {sentence}", file=sys.stderr, flush=True)

    run = make_offline(ctx.workspace, options, count, on_exhibit=on_exhibit, note=note)
    ctx.out(f"{plural(len(run.exhibits), 'offline exhibit')} journaled on {options.card}; "
            f"{run.state.records - run.state.next_record} of {run.state.records} records left")
    if not run.short:
        return 0
    print(f"qcat: error: {len(run.exhibits)} of the {count} exhibits asked for were made: "
          f"{run.state.sentence}", file=sys.stderr)
    return EXIT_CHECK_FAILED


def _die(ctx: Context, args: argparse.Namespace) -> int:
    from installation.units.simulator import DieSimOptions, serve_die, terminal_keys

    options = DieSimOptions(serial=args.serial, schedule_s=args.schedule, weights=args.weights,
                            faults=_faults(args))
    with terminal_keys(sys.stdin) as keys_fd:
        return _serve(ctx, args, "die", partial(serve_die, options, keys_fd=keys_fd))
