"""What the screens show, as SVG snapshots (pytest-textual-snapshot): the dashboard, the gallery
view and the kiosk over a fixed gallery (the same three cats on every run, made by the numpy
engine from imported fixed bytes), no units, the wall clock frozen and the time zone UTC; and the
dashboard with the die panel (twelve rolls of the shipped decoder from the same bytes) at the
full size and at 120x40.
Update after a deliberate change with `pytest tests/test_tui_snapshots.py --snapshot-update`
(and look at the pictures: a new die decoder changes the faces)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from installation.station import Station
from tests.tui_support import FROZEN_NOW, add_rolls, fixed_workspace
from tui.app import QcatApp
from tui.widgets import CatPicture, DieFaces

SIZE = (160, 50)


@pytest.fixture
def frozen_app(qcat_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    ws = fixed_workspace(qcat_home, 3)

    def make(mode: str, rolls: int = 0) -> QcatApp:
        if rolls:
            add_rolls(ws, rolls)
        return QcatApp(Station(ws, [], clock=lambda: FROZEN_NOW), mode=mode,
                       now=lambda: FROZEN_NOW)

    yield make
    monkeypatch.undo()
    time.tzset()


async def _drawn(pilot: Any) -> None:
    """Wait until the first snapshot is on the screen with its cat."""
    app = pilot.app
    deadline = time.monotonic() + 20
    while app.snapshot is None or app.screen.query_one(CatPicture).rgb is None:
        assert time.monotonic() < deadline, "the screen never showed the station"
        await pilot.pause(0.05)
    await pilot.pause(0.2)


async def _drawn_with_dice(pilot: Any) -> None:
    """As `_drawn`, and the die panel with its faces."""
    await _drawn(pilot)
    deadline = time.monotonic() + 20
    while not pilot.app.screen.query_one(DieFaces).rolls:
        assert time.monotonic() < deadline, "the screen never showed the dice"
        await pilot.pause(0.05)
    await pilot.pause(0.2)


@pytest.mark.parametrize("mode", ["dashboard", "gallery", "kiosk"])
def test_screen(mode: str, frozen_app: Any, snap_compare: Any) -> None:
    assert snap_compare(frozen_app(mode), terminal_size=SIZE, run_before=_drawn)


@pytest.mark.parametrize("size", [SIZE, (120, 40)], ids=["160x50", "120x40"])
def test_dashboard_with_dice(size: tuple[int, int], frozen_app: Any, snap_compare: Any) -> None:
    assert snap_compare(frozen_app("dashboard", rolls=12), terminal_size=size,
                        run_before=_drawn_with_dice)
