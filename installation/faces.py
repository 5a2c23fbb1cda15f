"""What the screens run on: the room's ports, a simulated fleet beside them, one running Station.

`qcat tui`, `qcat kiosk` and `qcat demo` (on a terminal) all do the same thing before they show
anything: resolve the ports as `qcat units run` does (--port, else units.ports, else the units
discovered on USB), add the simulated units asked for (`--sim N`: a `Fleet` of `qcat sim cat`
processes, their links as ports), and build one `Station` over all of them. `open_room` does that
as a context manager that takes it all down in the right order on the way out: the station first
(jobs under way finish with their units still there, or stay pending with their bytes), then the
simulators.

Only one process may supervise a home's units at a time (two controllers on one serial line
would take each other's frames): `open_room` holds an exclusive lock on `<home>/run/station.lock`
while its station exists, and a second dashboard, kiosk or browser session says so in one
sentence. This is also what keeps `qcat tui --web` sane: the web server starts the fleet once,
and each browser session is a `qcat tui --port <links>` of its own; one at a time drives the room.

`web_session_command` and `serve_web` are `qcat tui --web`: textual-serve runs a command per
browser session, in a pipe rather than a terminal, with the web driver named in TEXTUAL_DRIVER.

Nothing here imports the TUI (the CLI hands the app in as a callable) and nothing prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from installation.errors import DeviceError, ToolMissing, UsageError
from installation.paths import READ_ONLY_ERRNOS

if TYPE_CHECKING:
    from installation.station import Station
    from installation.workspace import Workspace

LOCK_NAME = "station.lock"
WEB_DRIVER_ENV = "TEXTUAL_DRIVER"  # set by textual-serve for each browser session
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 8765
WEB_TITLE = "qcat dashboard"


def has_screen(stdin: object = None, stdout: object = None) -> bool:
    """True when there is something to draw on: a terminal on both ends, or a Textual driver
    named in the environment (a browser session of `qcat tui --web`)."""
    ins = stdin if stdin is not None else sys.stdin
    outs = stdout if stdout is not None else sys.stdout
    if os.environ.get(WEB_DRIVER_ENV):
        return True
    return all(getattr(s, "isatty", lambda: False)() for s in (ins, outs))


@contextlib.contextmanager
def station_lock(home: Path) -> Iterator[None]:
    """Hold `<home>/run/station.lock` exclusively, or DeviceError naming who holds it. A home
    that cannot be written (an archive on read-only media) has no units to fight over: no lock."""
    run = home / "run"
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(run / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno not in READ_ONLY_ERRNOS:
            raise
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DeviceError(
                f"another qcat (pid {holder}: a dashboard, the kiosk or a browser session) is "
                f"already running the units of {home}",
                hint="close it first; two controllers on one unit would take each other's "
                     "frames") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True)
class RoomPlan:
    """What to run: real ports, simulated units (`sim`, with their timing and fault options),
    and how the station runs (`kiosk`, `paused`). `config`: the config file to hand the
    simulators so they load the controller's weights."""

    ports: tuple[str, ...] = ()
    sim: int = 0
    sim_dice: int = 0
    timing: str = "realistic"
    faults: tuple[str, ...] = ()
    kiosk: bool = False
    paused: bool = False
    config: Path | None = None


@contextlib.contextmanager
def room_ports(home: Path, plan: RoomPlan) -> Iterator[list[str]]:
    """The plan's real ports plus its simulated units' links, the simulators running for the
    duration of the block (the web server's fleet, or the one under a station)."""
    if not plan.sim and not plan.sim_dice:
        yield list(plan.ports)
        return
    from installation.units.fleet import Fleet, specs

    with Fleet(home, specs(plan.sim, timing=plan.timing, faults=plan.faults, dice=plan.sim_dice),
               config=plan.config) as fleet:
        yield list(plan.ports) + fleet.ports


@contextlib.contextmanager
def open_room(workspace: Workspace, plan: RoomPlan) -> Iterator[Station]:
    """The station over the plan's ports and simulated units, not yet started (the app starts it
    when it shows); on the way out the station is stopped, then the simulators."""
    from installation.station import Station

    home = workspace.home.root
    with station_lock(home), room_ports(home, plan) as ports:
        station = Station(workspace, ports, kiosk=plan.kiosk, paused=plan.paused)
        sims = plan.sim + plan.sim_dice
        if sims:
            station.note(f"{sims} simulated units on {', '.join(ports[-sims:])} "
                         f"(their logs: {home / 'logs'}/sim-N.log)")
        try:
            yield station
        finally:
            station.stop()


# -- qcat tui --web -------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def web_session_command(home: Path, ports: Sequence[str], *, config: Path | None = None,
                        paused: bool = False, python: str = sys.executable) -> str:
    """The shell command textual-serve runs for each browser session: this qcat's `tui` over
    fixed ports (the fleet belongs to the web server, never to a session)."""
    from installation.units.fleet import child_env

    argv = [python, "-m", "installation.cli", "--home", str(home)]
    if config is not None:
        argv += ["--config", str(config)]
    argv.append("tui")
    for port in ports:
        argv += ["--port", port]
    if paused:
        argv.append("--paused")
    return f"PYTHONPATH={shlex.quote(child_env()['PYTHONPATH'])} exec {shlex.join(argv)}"


def serve_web(command: str, host: str, port: int) -> None:
    """Serve `command` to browsers with textual-serve until SIGINT or SIGTERM."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise ToolMissing("textual-serve is not installed, so the dashboard cannot be served "
                          "to a browser",
                          hint="pip install textual-serve (it is one of qcat's dependencies)"
                          ) from None
    if not 0 < port < 65536:
        raise UsageError(f"--web-port {port} is not a TCP port (1 to 65535)")
    try:
        Server(command, host=host, port=port, title=WEB_TITLE).serve()
    except OSError as exc:  # the address is taken, or not this machine's
        raise DeviceError(f"cannot serve the dashboard on {host}:{port}: "
                          f"{exc.strerror or exc}",
                          hint="choose another --web-port, or stop what uses this one") from None
