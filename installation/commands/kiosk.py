"""`qcat kiosk`: the unattended kiosk mode that starts on boot, and `qcat kiosk install`, the
systemd unit that starts it.

    qcat kiosk                              run the kiosk (`_run`; not built yet, says so)
    qcat kiosk install [--dry-run] [--output FILE] [--user NAME]
                                            write /etc/systemd/system/qcat-kiosk.service

Thin: parses, calls `installation.kiosk_install`, prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import command, not_built
from installation.paths import HOME_ENV

if TYPE_CHECKING:
    from installation.cli import Context

# The advice paragraph is wrapped to this many columns (an 80-column console).
WRAP = 78

INSTALL_DESCRIPTION = """\
Write the systemd unit that starts `qcat kiosk` on boot on the first console (tty1), as you,
with this qcat home, restarting it two seconds after any exit. Writing to
/etc/systemd/system needs root; --dry-run prints the unit instead, --output FILE writes it
elsewhere. It never runs systemctl: it prints the commands to run.
"""


def register(sub: Any) -> None:
    parser = command(sub, "kiosk", "run the unattended kiosk mode that starts on boot", _run,
                     description="run the unattended kiosk mode that starts on boot (not built "
                     "yet in this version of qcat: the bare command says so and exits 2). "
                     "`qcat kiosk install` writes the systemd unit that starts it on boot.")
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
    """The kiosk app itself (bare `qcat kiosk`): replaced when the kiosk is built."""
    handler = not_built("run the kiosk", "meanwhile `qcat demo` makes a few exhibits and "
                        "shows them in the terminal")
    return int(handler(ctx, args))


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
