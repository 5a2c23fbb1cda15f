"""`qcat tui`: the operator dashboard (Textual) over the room's units, in a terminal or a browser.

    qcat tui [--port P ...] [--sim N] [--sim-dice N] [--paused]
    qcat tui --web [--host H] [--web-port N] [--port P ...] [--sim N] [--sim-dice N] [--paused]

Ports as `qcat units run` finds them (--port, else units.ports, else USB discovery), plus N
simulated units (`--sim N`, started for the session and stopped when it ends). `--web` serves
the same dashboard with textual-serve: the web server starts the simulated units once, and each
browser session runs `qcat tui --port <their links>`; one session at a time drives the units
(installation/faces.py says why). Thin: the work is `installation.faces` and the app is
`tui.app`; `show()` here is the one place that runs the app, for `tui`, `kiosk` and `demo`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import termios
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import command
from installation.errors import UsageError

if TYPE_CHECKING:
    from installation.cli import Context
    from installation.faces import RoomPlan
    from installation.station import Station

# The signals that end a face gracefully (station.stop(): jobs finish or stay pending): systemd
# stops the kiosk with SIGTERM; a closed terminal or ssh session sends SIGHUP.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# After the station stopped on such a signal, how long the screen may take to close before the
# process ends itself (a hung-up terminal can keep Textual's driver from closing it).
ENDING_GRACE_S = 15.0

# Terminals that answer no graphics query (the Linux console on tty1, where the kiosk runs) or
# that say they are not terminals: asking them would only cost the queries' timeouts.
PLAIN_TERMS = ("linux", "dumb")

log = logging.getLogger("qcat.tui")

DESCRIPTION = """\
Open the operator dashboard: the units and their jobs, the entropy pool, the newest exhibits,
the log, and the operator's actions. Ports: --port, else units.ports in the config, else the
units found on USB; --sim N adds N simulated cat units, --sim-dice N simulated die units (stopped
when the dashboard closes).

--web serves the same dashboard to a browser (textual-serve) on 127.0.0.1 unless --host names
another address. The simulated units are started once by the web server; each browser session
is a dashboard of its own over them, and one session at a time drives the units.
"""


def add_room_options(p: argparse.ArgumentParser, *, sim_help: str) -> None:
    """--port, --sim, --sim-dice and --paused, shared by `qcat tui` and `qcat kiosk`."""
    p.add_argument("--port", action="append", default=[], metavar="P",
                   help="a unit's port (repeat for several; default: units.ports, else the "
                        "units found on USB)")
    p.add_argument("--sim", type=int, default=0, metavar="N", help=sim_help)
    p.add_argument("--sim-dice", type=int, default=0, metavar="N",
                   help="add N simulated die units (qcat sim die), each pressed by a simulated "
                        "visitor every few seconds")
    p.add_argument("--paused", action="store_true",
                   help="start with the loop paused (units watched, no new jobs)")


def register(sub: Any) -> None:
    from installation.faces import DEFAULT_WEB_HOST, DEFAULT_WEB_PORT

    p = command(sub, "tui", "open the operator dashboard (Textual TUI)", run,
                description=DESCRIPTION)
    add_room_options(p, sim_help="add N simulated cat units (qcat sim cat, realistic timing)")
    p.add_argument("--web", action="store_true",
                   help="serve the dashboard to a browser instead of this terminal")
    p.add_argument("--host", default=None, metavar="H",
                   help=f"with --web: the address to listen on (default {DEFAULT_WEB_HOST}; "
                        "anything else lets other machines operate the installation)")
    p.add_argument("--web-port", type=int, default=None, metavar="N",
                   help=f"with --web: the TCP port (default {DEFAULT_WEB_PORT})")


def room_plan(ctx: Context, args: argparse.Namespace, *, kiosk: bool = False) -> RoomPlan:
    """The ports and simulated units the options name (ports resolved as `units run` does)."""
    from installation.faces import RoomPlan
    from installation.units.link import resolve_ports

    if args.sim < 0 or args.sim_dice < 0:
        raise UsageError(f"--sim {args.sim} --sim-dice {args.sim_dice}: give numbers of "
                         "simulated units, 0 or more")
    # With --sim alone and no units.ports, USB discovery still runs: real units join the sims.
    ports = resolve_ports(args.port, ctx.config["units.ports"])
    return RoomPlan(tuple(ports), sim=args.sim, sim_dice=args.sim_dice, kiosk=kiosk,
                    paused=args.paused, config=sims_config(ctx))


def sims_config(ctx: Context) -> Path | None:
    """The config file the simulated units must read too (so their weights are ours)."""
    return ctx.config_path if ctx.config_path.is_file() else None


def run(ctx: Context, args: argparse.Namespace) -> int:
    from installation.faces import has_screen

    if args.web:
        return _web(ctx, args)
    if args.host is not None or args.web_port is not None:
        raise UsageError("--host and --web-port go with --web",
                         hint="qcat tui --web --host H --web-port N")
    if not has_screen():
        raise UsageError("`qcat tui` needs a terminal, and standard input or output is not one",
                         hint="run it in a terminal, or serve it to a browser with "
                              "`qcat tui --web`")
    return show(ctx, room_plan(ctx, args), mode="dashboard")


def show(ctx: Context, plan: RoomPlan, mode: str) -> int:
    """Run the app (`mode`) over the plan's room until it ends; its exit code."""
    from installation.faces import open_room
    from tui.app import QcatApp

    setting = ctx.config["tui.graphics"]
    graphics = choose_graphics(setting)  # before anything else draws or reads the terminal
    with open_room(ctx.workspace, plan) as station:
        app = QcatApp(station, mode=mode, graphics=graphics)
        if may_query_terminal(setting):
            drop_late_answers()
        with ending_gracefully(app, station):
            app.run()
    return int(app.return_code or 0)


def may_query_terminal(setting: str, *, environ: Mapping[str, str] | None = None,
                       is_terminal: bool | None = None) -> bool:
    """Whether `choose_graphics` would ask the terminal: "auto", standard input and output a
    terminal (the answers come back on stdin), TERM not one of `PLAIN_TERMS`, and not a browser
    session (textual-serve sets TEXTUAL_DRIVER; its xterm.js is drawn by Textual's web driver)."""
    env = os.environ if environ is None else environ
    if is_terminal is None:
        is_terminal = bool(sys.__stdin__ and sys.__stdout__ and sys.__stdin__.isatty()
                           and sys.__stdout__.isatty())
    return (setting == "auto" and is_terminal and env.get("TERM", "") not in PLAIN_TERMS
            and not env.get("TEXTUAL_DRIVER"))


def choose_graphics(setting: str, *, environ: Mapping[str, str] | None = None,
                    is_terminal: bool | None = None) -> str:
    """How the cats are drawn: "tgp", "sixel" or "halfblocks" (`tui.widgets.GRAPHICS`).

    Where `may_query_terminal` allows it, importing `textual_image.widget` asks the terminal for
    its cell size and for Sixel, then kitty's graphics protocol, each query waiting at most
    0.1 s for an answer; it must run before the app starts, because once Textual reads stdin the
    answers would go to it. The module's own verdict (`textual_image.renderable.Image`) is taken
    as it stands: it prefers Sixel because konsole and wezterm claim kitty's protocol but draw
    textual-image's placeholders only with Sixel. Anything going wrong in the asking leaves half
    blocks (logged): a picture is never worth a dashboard that does not start."""
    if not may_query_terminal(setting, environ=environ, is_terminal=is_terminal):
        return "halfblocks"
    try:
        import textual_image.renderable as renderables
        import textual_image.widget  # noqa: F401  (the import is the query)
    except Exception:  # a terminal that answered nonsense, a stdin that is not what it claims
        log.warning("asking the terminal for a graphics protocol failed: half blocks",
                    exc_info=True)
        return "halfblocks"
    if renderables.Image is renderables.SixelImage:
        graphics = "sixel"
    elif renderables.Image is renderables.TGPImage:
        graphics = "tgp"
    else:
        graphics = "halfblocks"
    log.info("the cats are drawn with %s", graphics)
    return graphics


def drop_late_answers() -> None:
    """Throw away what the terminal typed since the graphics queries: an answer that came after
    its 0.1 s (a slow ssh link) would otherwise reach the app as keystrokes ("?62;4c" would
    press c)."""
    with contextlib.suppress(OSError, termios.error, ValueError, AttributeError):
        termios.tcflush(sys.__stdin__.fileno(), termios.TCIFLUSH)  # type: ignore[union-attr]


@contextlib.contextmanager
def ending_gracefully(app: Any, station: Station) -> Iterator[None]:
    """SIGTERM and SIGHUP end the app as its own quit would, and then some.

    The handler runs on the app's (main) thread in the middle of its event loop, so it only
    starts a thread, which stops the station first (the jobs under way finish or stay pending
    with their bytes: nothing is lost from here on), then asks the app to exit (from another
    thread Textual posts that through `call_soon_threadsafe`). A hung-up terminal (the window
    closed, the ssh session dropped) can keep Textual's driver from ever closing the screen; with
    the station already stopped, the process then ends itself after `ENDING_GRACE_S`."""

    def end() -> None:
        station.stop()
        app.exit()
        time.sleep(ENDING_GRACE_S)
        log.warning("the screen did not close %g s after the station stopped (its terminal is "
                    "gone?): ending the process", ENDING_GRACE_S)
        logging.shutdown()
        os._exit(0)  # the simulators get SIGTERM from the kernel (PR_SET_PDEATHSIG)

    ending = [False]

    def on_signal(signum: int, frame: object) -> None:
        # once only, and nothing that takes a lock before the check: a second signal can arrive
        # inside this handler, and a lock the first one holds would never be given back
        if ending[0]:
            return
        ending[0] = True
        log.info("signal %d: ending gracefully", signum)
        threading.Thread(target=end, name="ending", daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in ENDING_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _web(ctx: Context, args: argparse.Namespace) -> int:
    from installation.faces import (
        DEFAULT_WEB_HOST,
        DEFAULT_WEB_PORT,
        is_loopback,
        room_ports,
        serve_web,
        web_session_command,
    )

    host = args.host or DEFAULT_WEB_HOST
    port = DEFAULT_WEB_PORT if args.web_port is None else args.web_port
    plan = room_plan(ctx, args)
    if not is_loopback(host):
        print(f"qcat: WARNING: serving the dashboard on {host}, not on this machine alone: "
              f"anyone who can reach {host}:{port} can operate the installation, with no "
              "password", file=sys.stderr)
    with room_ports(ctx.home.root, plan) as ports:
        command_line = web_session_command(ctx.home.root, ports, config=sims_config(ctx),
                                           paused=plan.paused)
        ctx.out(f"qcat tui --web: http://{host}:{port}/ (Ctrl-C stops it"
                + (f"; {plan.sim + plan.sim_dice} simulated units)"
                   if plan.sim + plan.sim_dice else ")"))
        ctx.stdout.flush()
        serve_web(command_line, host, port)
    return 0
