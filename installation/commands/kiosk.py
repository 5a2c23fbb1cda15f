"""`qcat kiosk`: the unattended kiosk mode that starts on boot.

    qcat kiosk [--port P ...] [--sim N] [--paused]

The gallery view full screen over the supervisor loop, in a station that never gives a unit up
(`Station(kiosk=True)`: lost units are tried until they return, failing ones rested and tried
again, an empty pool with policy `wait` waited out). There is no quit key: the operator's chord
(`tui.app.KIOSK_EXIT_CHORD`) ends it, and so do SIGTERM (systemd) and SIGHUP, gracefully: the
jobs under way finish or stay pending with their bytes. Exit 0. Thin: `_run` parses and calls
`tui_cmd.show`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from installation.commands import command
from installation.commands.tui_cmd import add_room_options, room_plan, show
from installation.errors import UsageError

if TYPE_CHECKING:
    from installation.cli import Context

DESCRIPTION = """\
Run the kiosk: the newest cat, its verdict and where its chance came from, full screen, with the
units kept busy underneath and never given up. Ports: --port, else units.ports in the config,
else the units found on USB; --sim N adds simulated cat units (to try it without hardware).
There is no quit key: the operator ends it with ctrl+x, then ctrl+q within 2 s; SIGTERM and
SIGHUP end it too (jobs under way finish or stay pending; exit 0).
"""


def register(sub: Any) -> None:
    p = command(sub, "kiosk", "run the unattended kiosk mode that starts on boot", _run,
                description=DESCRIPTION)
    add_room_options(p, sim_help="add N simulated cat units (to try the kiosk without hardware)")


def _run(ctx: Context, args: argparse.Namespace) -> int:
    """The kiosk app itself (bare `qcat kiosk`)."""
    from installation.faces import has_screen

    if not has_screen():
        raise UsageError("`qcat kiosk` needs a terminal (the console it shows the gallery on), "
                         "and standard input or output is not one",
                         hint="systemd starts it on tty1 (`qcat kiosk install`); by hand, run "
                              "it in a terminal")
    return show(ctx, room_plan(ctx, args, kiosk=True), mode="kiosk")
