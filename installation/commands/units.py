"""`qcat units list|ping|generate|roll|run`: find the units, talk to one, keep them all busy.

Thin: discovery and the transport are `installation.units.link`, one conversation is
`installation.units.session`, the exhibit jobs are `installation.units.supervisor`. `--trace`
prints a hex dump of every byte both ways on stderr (made only when asked).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command, group
from installation.errors import UsageError
from installation.words import plural

if TYPE_CHECKING:
    from installation.cli import Context
    from installation.gallery import Roll
    from installation.units.supervisor import UnitEvent


def register(sub: Any) -> None:
    _, cmds = group(sub, "units", "find the cat and die units, talk to one, keep them all busy")
    p = command(cmds, "list", "configured and discovered ports, each asked for its HELLO",
                list_cmd, description="List the ports in the config (units.ports) and the WCH "
                "USB serial devices found (VID 0x1A86), and ask each for its HELLO: kind, serial, "
                "firmware, protocol, and whether its weights and clip bank are the controller's.")
    add_json(p)
    _trace(p)
    p = command(cmds, "ping", "handshake with one unit and show its HELLO and the round trip",
                ping)
    p.add_argument("port", help="a device path (/dev/ttyACM0) or pyserial URL (socket://...)")
    add_json(p)
    _trace(p)
    p = command(cmds, "generate", "make exhibits on one unit", generate,
                description="Draw each exhibit's entropy first (the pending record), send the "
                "job to the unit, check the returned image against the controller's golden render "
                "byte for byte, archive it as made by the unit, and have the unit speak it. A unit "
                "that is lost is reconnected and gets the same job again.")
    p.add_argument("port", help="a device path or pyserial URL")
    p.add_argument("--count", "-n", type=int, default=1, metavar="N", help="exhibits (default 1)")
    add_json(p)
    _trace(p)
    p = command(cmds, "roll", "roll a die unit from here", roll,
                description="Press the die's button from the controller: the die is topped up "
                "with entropy from the pool first (each top-up a recorded draw with purpose "
                "die:<serial>), rolls, and sends its pips and generated face; the controller "
                "re-derives both from the same bytes with the reference and archives the roll.")
    p.add_argument("port", help="a device path or pyserial URL")
    p.add_argument("--count", "-n", type=int, default=1, metavar="N", help="rolls (default 1)")
    add_json(p)
    _trace(p)
    p = command(cmds, "run", "keep every unit busy (the loop the kiosk runs)", run,
                description="One worker per port (--port, else units.ports in the config, else "
                "the units discovered on USB): a cat unit makes exhibits, a die unit is kept "
                "topped up and its rolls (button presses) are checked and archived; each until "
                "--count (exhibits or rolls), or until interrupted (Ctrl-C).")
    p.add_argument("--port", action="append", default=[], metavar="P",
                   help="a unit's port (repeat for several)")
    p.add_argument("--count", "-n", type=int, default=None, metavar="N",
                   help="exhibits per cat unit, rolls per die (default: until interrupted)")
    add_json(p)
    _trace(p)


def _trace(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", action="store_true",
                   help="hex dump of every byte sent and received, on stderr")


def _tracer(args: argparse.Namespace) -> Any:
    return (lambda line: print(line, file=sys.stderr)) if args.trace else None


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from installation.units.link import discover
    from installation.units.probe import CardHashes, survey

    rows = survey(discover(ctx.config["units.ports"]), CardHashes.of(ctx.workspace),
                  _tracer(args))
    if args.json:
        ctx.emit_json(rows)
        return 0
    if not rows:
        ctx.out("no units: none configured (units.ports) and no WCH USB serial device found")
    for row in rows:
        unit = row.get("name", "-")
        ctx.out(f"{row['port']:<28} {row['source']:<6} {unit:<24} {row['state']}"
                + (f" ({row['error']})" if "error" in row else ""))
    return 0


def ping(ctx: Context, args: argparse.Namespace) -> int:
    from installation.units.probe import CardHashes, hello

    info = hello(args.port, CardHashes.of(ctx.workspace), _tracer(args))
    if args.json:
        ctx.emit_json(info)
        return 0
    ctx.out(f"{info['name']} on {info['port']}: firmware {info['firmware']}, protocol "
            f"{info['protocol']}, round trip {info['round_trip_ms']:.1f} ms")
    ctx.out(f"  weights  {info['weights_sha256'][:16]}…  "
            f"{'the controller’s' if info['weights_match'] else 'NOT the controller’s'}")
    ctx.out(f"  clips    {info['clips_sha256'][:16]}…  "
            f"{'the controller’s' if info['clips_match'] else 'NOT the controller’s'}")
    return 0


def _supervise(ctx: Context, args: argparse.Namespace, ports: list[str],
               count: int | None, kinds: tuple[str, ...] = ("cat", "die")) -> int:
    from installation.errors import DeviceError
    from installation.units.supervisor import Supervisor

    def show(event: UnitEvent) -> None:
        if args.json or event.kind == "progress":
            return
        # sentences from errors name the port themselves
        ctx.out(event.text if event.port in event.text else f"{event.port}: {event.text}")

    sup = Supervisor(ctx.workspace, ports, count=count, on_event=show, trace=_tracer(args),
                     kinds=kinds)
    try:
        made = sup.run()
    except KeyboardInterrupt:
        made = sup.made
    if args.json:
        ctx.emit_json({"archived": [e.to_json() for e in made],
                       "rolls": [r.to_json() for r in sup.rolled], "failures": sup.failures})
    else:
        ctx.out(f"{plural(len(made), 'exhibit')} archived from "
                f"{plural(len(ports), 'unit')}"
                + (f", {plural(len(sup.rolled), 'die roll')}" if sup.rolled else ""))
    if sup.failures and (count is None or len(made) + len(sup.rolled) < count * len(ports)):
        raise DeviceError(sup.failures[0] if len(sup.failures) == 1 else
                          f"{plural(len(sup.failures), 'unit')} stopped: "
                          + "; ".join(sup.failures),
                          hint="jobs that did not finish stay pending and complete later "
                               "with the same bytes")
    return 0


def generate(ctx: Context, args: argparse.Namespace) -> int:
    if args.count < 1:
        raise UsageError(f"--count must be at least 1, not {args.count}")
    return _supervise(ctx, args, [args.port], args.count, kinds=("cat",))


def roll(ctx: Context, args: argparse.Namespace) -> int:
    from installation.dice import fairness
    from installation.termart import bit_lines
    from installation.units.die_keeper import roll_on
    from models.die_reference import face_from_pages

    if args.count < 1:
        raise UsageError(f"--count must be at least 1, not {args.count}")

    def show(r: Roll) -> None:
        if args.json:
            return
        draws = ", ".join(f"draw {d[0]}" for d in r.draws)
        chance = ", os randomness" if r.source == "os-fallback" else ""
        ctx.out(f"{r.serial}: rolled {r.pips} (roll {r.id}; stream bytes {r.stream_offset}.."
                f"{r.stream_offset + r.used - 1}, {draws}{chance})")
        if args.count <= 6:  # a few faces are worth seeing; a long run is a table
            for line in bit_lines(face_from_pages(r.face)):
                ctx.out("  " + line)

    rolls = roll_on(ctx.workspace, args.port, args.count, show, _tracer(args))
    counts = {face: sum(1 for r in rolls if r.pips == face) for face in range(1, 7)}
    verdict = fairness(counts)
    if args.json:
        ctx.emit_json({"rolls": [r.to_json() for r in rolls], "fairness": verdict.as_dict()})
        return 0
    if args.count > 1:
        ctx.out("faces " + "  ".join(f"{face}: {n}" for face, n in counts.items())
                + f"; chi-square {verdict.chi_square:.2f}, p = {verdict.p_value:.3f}")
    return 0


def run(ctx: Context, args: argparse.Namespace) -> int:
    from installation.units.link import resolve_ports

    if args.count is not None and args.count < 1:
        raise UsageError(f"--count must be at least 1, not {args.count}")
    ports = resolve_ports(args.port, ctx.config["units.ports"])
    if not ports:
        raise UsageError("no units to run: none given with --port, none in units.ports, and no "
                         "WCH USB serial device found",
                         hint="`qcat sim cat` starts a simulated unit and prints its port")
    return _supervise(ctx, args, ports, args.count)
