"""`qcat kiosk`: the unattended kiosk mode that starts on boot, and `qcat kiosk install`, the
systemd unit that starts it.

    qcat kiosk [--port P ...] [--sim N] [--sim-dice N] [--paused]
    qcat kiosk install [--dry-run] [--output FILE] [--user NAME]
                                            write /etc/systemd/system/qcat-kiosk.service

The kiosk is the gallery view full screen over the supervisor loop, in a station that never gives
a unit up (`Station(kiosk=True)`: lost units are tried until they return, failing ones rested and
tried again, an empty pool with policy `wait` waited out). There is no quit key: the operator's
chord (`tui.app.KIOSK_EXIT_CHORD`) ends it, and so do SIGTERM (systemd) and SIGHUP, gracefully:
the jobs under way finish or stay pending with their bytes. Exit 0.

Thin: `_run` parses and calls `tui_cmd.show`; `_install` calls `installation.kiosk_install`.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import command
from installation.commands.tui_cmd import add_room_options, room_plan, show
from installation.errors import UsageError
from installation.paths import HOME_ENV

if TYPE_CHECKING:
    from installation.cli import Context

# The advice paragraph is wrapped to this many columns (an 80-column console).
WRAP = 78

DESCRIPTION = """\
Run the kiosk: the newest cat, its verdict and where its chance came from, full screen, with the
units kept busy underneath and never given up. Ports: --port, else units.ports in the config,
else the units found on USB; --sim N adds simulated cat units (to try it without hardware).
There is no quit key: the operator ends it with ctrl+x, then ctrl+q within 2 s; SIGTERM and
SIGHUP end it too (jobs under way finish or stay pending; exit 0). `qcat kiosk install` writes
the systemd unit that starts it on boot.
"""

INSTALL_DESCRIPTION = """\
Write the systemd unit that starts `qcat kiosk` on boot on the first console (tty1), as you,
with this qcat home, restarting it two seconds after any exit. Writing to
/etc/systemd/system needs root; --dry-run prints the unit instead, --output FILE writes it
elsewhere. It never runs systemctl: it prints the commands to run.
"""


def register(sub: Any) -> None:
    parser = command(sub, "kiosk", "run the unattended kiosk mode that starts on boot", _run,
                     description=DESCRIPTION)
    add_room_options(parser, sim_help="add N simulated cat units (to try the kiosk without "
                                      "hardware)")
    cmds = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = command(cmds, "install", "write the systemd unit that starts the kiosk on boot",
                _install, description=INSTALL_DESCRIPTION)
    p.add_argument("--dry-run", action="store_true",
                   help="print the unit (stdout) and the next steps (stderr); write nothing")
    p.add_argument("--output", metavar="FILE",
                   help="write the unit to FILE instead of /etc/systemd/system")
    p.add_argument("--user", metavar="NAME",
                   help="the user the kiosk runs as (default: you; under sudo, who ran sudo)")


def _run(ctx: Context, args: argparse.Namespace) -> int:
    """The kiosk app itself (bare `qcat kiosk`)."""
    from installation.faces import has_screen

    if not has_screen():
        raise UsageError("`qcat kiosk` needs a terminal (the console it shows the gallery on), "
                         "and standard input or output is not one",
                         hint="systemd starts it on tty1 (`qcat kiosk install`); by hand, run "
                              "it in a terminal")
    return show(ctx, room_plan(ctx, args, kiosk=True), mode="kiosk")


def _install(ctx: Context, args: argparse.Namespace) -> int:
    from installation import kiosk_install

    result = kiosk_install.install(
        ctx.home.root, user=args.user, dry_run=args.dry_run,
        target=Path(args.output).absolute() if args.output else None,
        home_named=bool(getattr(args, "home", None) or os.environ.get(HOME_ENV)),
        config=ctx.config_path if ctx.config_explicit else None)
    notes = sys.stderr if args.dry_run else ctx.stdout
    if args.dry_run:
        ctx.stdout.write(result.unit_text)
    else:
        print(f"wrote {result.target} (the kiosk runs as {result.user}, home {result.home})",
              file=notes)
    for note in result.notes:
        print(f"qcat: warning: {note}", file=sys.stderr)
    print("next:", file=notes)
    for step in result.next_steps():
        print(f"  {step}", file=notes)
    print(textwrap.fill(kiosk_install.RASPBERRY_PI_CONSOLE, width=WRAP), file=notes)
    return 0
