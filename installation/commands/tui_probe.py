"""A fresh interpreter that starts the dashboard headless and reports what that cost (`qcat bench`).

    python -m installation.commands.tui_probe --home H [--port P ...]   the qcat dashboard
    python -m installation.commands.tui_probe --peer                    a bare Textual hello-world

Prints one JSON line: `first_frame_at` (time.perf_counter() when the first frame was drawn; on
Linux that clock is CLOCK_MONOTONIC, shared with the parent, which subtracts the moment it
started this process: cold start = interpreter + imports + app + first frame), resident memory
(VmRSS) once the units are attached, and whether torch was imported (it must never be).

It lives under `installation/commands/` because only the CLI may import the TUI (the layer
contract in pyproject.toml). Not a command: nothing registers it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

# How long to wait for the units to be attached (connected and watched) before reading memory.
ATTACH_TIMEOUT_S = 30.0
POLL_S = 0.005
SIZE = (200, 60)
ATTACHED = {"idle", "paused", "working", "speaking"}


def vm_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _watch(app: Any, attached: Any, out: dict[str, Any]) -> None:
    """On its own thread: wait for the first frame and the units, read memory, end the app."""
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while getattr(app, "first_frame_at", None) is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    while not attached() and time.monotonic() < deadline:
        time.sleep(0.05)
    out["attached"] = bool(attached())
    out["rss_kib"] = vm_rss_kib()
    app.call_from_thread(app.exit)


def probe_qcat(home: Path, ports: list[str]) -> dict[str, Any]:
    from installation import config as config_mod
    from installation.paths import Home
    from installation.station import Station
    from installation.workspace import Workspace
    from tui.app import QcatApp

    workspace = Workspace(Home(home), config_mod.defaults())
    station = Station(workspace, ports, paused=True)  # attached and watched; nothing drawn
    app = QcatApp(station, mode="dashboard")
    out: dict[str, Any] = {}

    def attached() -> bool:
        return all(u.state in ATTACHED for u in station.units())

    threading.Thread(target=_watch, args=(app, attached, out), daemon=True).start()
    app.run(headless=True, size=SIZE)
    station.stop()
    return {**out, "first_frame_at": app.first_frame_at}


def probe_peer() -> dict[str, Any]:
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Hello(App[None]):
        first_frame_at: float | None = None

        def compose(self) -> ComposeResult:
            yield Static("hello")

        def on_mount(self) -> None:
            self.call_after_refresh(self._first)

        def _first(self) -> None:
            self.first_frame_at = time.perf_counter()

    app = Hello()
    out: dict[str, Any] = {}
    threading.Thread(target=_watch, args=(app, lambda: True, out), daemon=True).start()
    app.run(headless=True, size=SIZE)
    return {**out, "first_frame_at": app.first_frame_at}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m installation.commands.tui_probe")
    parser.add_argument("--home")
    parser.add_argument("--port", action="append", default=[])
    parser.add_argument("--peer", action="store_true")
    args = parser.parse_args(argv)
    result = probe_peer() if args.peer else probe_qcat(Path(args.home), args.port)
    result["torch_imported"] = "torch" in sys.modules
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
