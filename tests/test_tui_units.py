"""The dashboard over a simulated cat unit on a real pseudo-terminal (its own C core behind it):
the units table, `g` making one exhibit that appears as the newest cat, `t` showing the frames."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Log, Static

from installation import config as config_mod
from installation.paths import Home
from installation.station import Station
from installation.workspace import Workspace
from tests.cat_sim_support import cat_sim
from tests.tui_support import run_async
from tui.app import QcatApp
from tui.screens import DashboardScreen, TraceScreen

WAIT_S = 60.0


async def _until(pilot: Any, predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S:g} s: {what}")
        await pilot.pause(0.05)


def _cell(app: QcatApp, port: str, column: str) -> str:
    table = app.screen.query_one("#units", DataTable)
    return str(table.get_cell(port, column))


@run_async
async def test_generate_now_and_trace_on_a_simulated_unit(qcat_home: Path) -> None:
    ws = Workspace.open(Home(qcat_home), config_mod.defaults())
    with cat_sim(qcat_home, "--serial", "TUI") as sim:
        station = Station(ws, [sim.path], paused=True)
        app = QcatApp(station)
        async with app.run_test(size=(160, 50)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None
                         and app.snapshot.units[0].state == "paused", "the unit paused")
            await _until(pilot, lambda: _cell(app, sim.path, "state") == "paused", "shown")
            assert _cell(app, sim.path, "weights") == "yes"  # its card is the controller's
            assert _cell(app, sim.path, "kind") == "cat"
            assert "TUI" in _cell(app, sim.path, "unit")
            # drawn as written, in full: "unit:cat:TUI" is not Rich markup (":cat:" is an emoji
            # code) and the column grew to it when the unit said its name
            table = app.screen.query_one("#units", DataTable)

            def drawn() -> str:
                return "".join(seg.text for y in range(table.size.height)
                               for seg in table.render_line(y))

            await _until(pilot, lambda: "unit:cat:TUI" in drawn(), "the unit's name drawn")
            assert "\N{CAT FACE}" not in drawn()
            await pilot.press("g")
            await _until(pilot, lambda: app.snapshot is not None and app.snapshot.latest,
                         "one exhibit")
            await _until(pilot, lambda: "unit TUI" in str(
                app.screen.query_one("#caption", Static).render()), "the new cat shown")
            await _until(pilot, lambda: _cell(app, sim.path, "made") == "1",
                         "the table counts it")  # (the table is redrawn at the next poll)
            await pilot.press("t")
            assert isinstance(app.screen, TraceScreen)
            # paused, the unit is still watched: its heartbeats are frames to trace
            await _until(pilot, lambda: any(line.startswith("<-") for line in
                                            app.screen.query_one(Log).lines), "frames")
            await pilot.press("escape")
            assert isinstance(app.screen, DashboardScreen)
            assert station.supervisor._traces.get(sim.path) is None  # the trace is off
        assert not station.running  # the app stopped the station on its way out
