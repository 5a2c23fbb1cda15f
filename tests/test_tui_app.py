"""The Textual app through Pilot: every action and binding against a real Station over a real
home (SQLite pool and gallery on disk, exhibits rendered by the numpy engine), no units."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, RichLog, Static

from installation.station import Station
from tests.gallery_support import write_clip_bank
from tests.tui_support import FROZEN_NOW, fixed_workspace, run_async
from tui.app import KIOSK_CHORD_S, KIOSK_EXIT_CHORD, QcatApp
from tui.screens import DashboardScreen, GalleryScreen, KioskScreen, TraceScreen
from tui.widgets import CatPicture, scale_to_fit

WAIT_S = 20.0


class RecordingStation(Station):
    """A real Station that remembers start/stop (the app must call both)."""

    calls: list[str]

    def start(self) -> None:
        self.calls = [*getattr(self, "calls", []), "start"]
        super().start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.calls = [*getattr(self, "calls", []), "stop"]
        super().stop(timeout_s)


def _app(ws: Any, mode: str = "dashboard", station: Station | None = None, **kw: Any) -> QcatApp:
    station = station or RecordingStation(ws, [], clock=lambda: FROZEN_NOW)
    return QcatApp(station, mode=mode, now=lambda: FROZEN_NOW, **kw)


async def _until(pilot: Any, predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S:g} s: {what}; said: {_notes(pilot.app)}")
        await pilot.pause(0.05)


def _notes(app: QcatApp) -> list[str]:
    """What the app told the operator: its notifications (they expire) and the log panel."""
    notes = [n.message for n in app._notifications]
    for screen in app.screen_stack:
        if isinstance(screen, DashboardScreen):
            log = screen.query_one("#log", RichLog)
            notes += ["".join(seg.text for seg in strip) for strip in log.lines]
    return notes


def _said(app: QcatApp, text: str) -> bool:
    return any(text in n for n in _notes(app))


@pytest.fixture
def ws(qcat_home: Path) -> Any:
    return fixed_workspace(qcat_home, 3)


@run_async
async def test_dashboard_shows_the_newest_cat_pool_and_latest_then_q_quits(ws: Any) -> None:
    app = _app(ws)
    async with app.run_test(size=(160, 50)) as pilot:
        await _until(pilot, lambda: app.snapshot is not None, "a first snapshot")
        await pilot.pause(0.2)
        assert app.first_frame_at is not None
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        newest = ws.open_gallery().query(limit=1)[0]
        caption = str(screen.query_one("#caption", Static).render())
        assert f"#{newest.id}" in caption and newest.verdict_text in caption
        assert "quantum vacuum noise, ANU (imported)" in caption
        picture = screen.query_one(CatPicture)
        assert picture.rgb is not None and picture.rgb.shape == (64, 64, 3)
        assert screen.query_one("#latest", DataTable).row_count == 3
        pool = str(screen.query_one("#pool", Static).render())
        assert f"{app.snapshot.pool['exhibits_left']:,}" in pool  # type: ignore[union-attr]
        assert not screen.query_one("#os-warning").display  # no os randomness was used
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    assert app.station.calls == ["start", "stop"]  # type: ignore[attr-defined]


@run_async
async def test_os_randomness_is_a_loud_banner(qcat_home: Path) -> None:
    ws = fixed_workspace(qcat_home, 1, batch_bytes=0)  # empty pool, policy "os": os randomness
    app = _app(ws)
    async with app.run_test(size=(160, 50)) as pilot:
        await _until(pilot, lambda: app.snapshot is not None, "a first snapshot")
        await pilot.pause(0.2)
        banner = app.screen.query_one("#os-warning", Static)
        assert banner.display
        text = str(banner.render())
        assert "THE QUANTUM POOL IS EMPTY" in text and "1 exhibit so far" in text
        assert "os randomness (the quantum pool was empty)" in str(
            app.screen.query_one("#caption", Static).render())


@run_async
async def test_pause_key_flips_the_supervisor(ws: Any) -> None:
    app = _app(ws)
    async with app.run_test() as pilot:
        assert not app.station.paused
        await pilot.press("p")
        assert app.station.paused and app.station.supervisor.paused
        await _until(pilot, lambda: app.screen.sub_title == "paused", "shown paused")
        await pilot.press("p")
        assert not app.station.paused
        assert [line.kind for line in app.station.log()][-2:] == ["paused", "resumed"]


@run_async
async def test_verify_key_and_palette_show_the_summary_and_a_damaged_file(ws: Any) -> None:
    app = _app(ws)
    async with app.run_test() as pilot:
        await pilot.press("y")
        await _until(pilot, lambda: _said(app, "Gallery verify: 3 exhibits checked, 0 problems"),
                     "the verify summary")
        newest = ws.open_gallery().query(limit=1)[0]
        (ws.home.gallery_dir / newest.png_path).write_bytes(b"not a png")
        # the same action from the command palette
        await pilot.press("ctrl+p")
        await _until(pilot, lambda: app.screen.id == "--command-palette", "the palette")
        await pilot.pause(0.2)
        await pilot.press(*"verify gallery")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await _until(pilot, lambda: _said(app, "Gallery verify: 3 exhibits checked, 2 problems"),
                     "the damaged file found (its bytes and its hash)")
        # repair re-creates the damaged file from the stored bytes
        await pilot.press("r")
        await _until(pilot, lambda: _said(app, "Gallery repair: 3 exhibits checked: 1 repaired"),
                     "the repair summary")
        await pilot.press("V")
        await _until(pilot, lambda: sum("3 exhibits checked, 0 problems" in n
                                        for n in _notes(app)) >= 2, "verify clean again")


class SlowStation(Station):
    """A Station whose verify takes a while and whose fetch exists (the integrator's signature)."""

    def verify(self, progress: Any = None) -> Any:
        for i in range(1, 201):
            time.sleep(0.02)
            if progress:
                progress(i, 200, f"exhibit {i}")
        raise AssertionError("the escape key did not stop verify")

    def fetch(self, progress: Any, cancel: threading.Event) -> str:
        for i in range(3):
            if progress:
                progress(i + 1, 3, "request")
        return "fetched 61,440 bytes in 3 requests"


@run_async
async def test_escape_stops_a_running_verify_and_fetch_shows_its_sentence(ws: Any) -> None:
    app = _app(ws, station=SlowStation(ws, []))
    async with app.run_test() as pilot:
        await pilot.press("y")
        await _until(pilot, lambda: app.screen.query_one("#task").display, "the progress bar")
        await pilot.press("y")  # one long action at a time
        await _until(pilot, lambda: _said(app, "verify is still running"), "refused twice")
        await pilot.press("escape")
        await _until(pilot, lambda: _said(app, "Verify stopped by the operator after"),
                     "stopped")
        assert not app.screen.query_one("#task").display
        await pilot.press("f")
        await _until(pilot, lambda: _said(app, "fetched 61,440 bytes in 3 requests"), "fetched")


@run_async
async def test_fetch_from_the_fake_service_and_without_a_key(ws: Any, monkeypatch) -> None:
    """`f` is the station's fetch: without an API key one sentence says so; with the fake ANU
    service on loopback the pool fills to its refill target and the outcome is shown."""
    from installation import config as config_mod
    from installation.workspace import Workspace
    from tests.fake_anu import KEY, running_fake

    app = _app(ws)
    async with app.run_test() as pilot:
        await pilot.press("f")
        await _until(pilot, lambda: _said(app, "no ANU API key is set"), "no key")
    with running_fake() as fake:
        cfg = ws.home.root / "qcat.toml"
        cfg.write_text(f'[entropy]\napi_url = "{fake.url}"\nmax_retries = 0\n'
                       "assumed_exhibits_per_day = 20.0\nrefill_to_days = 8.0\n")
        monkeypatch.setenv("QCAT_ANU_API_KEY", KEY)
        keyed = Workspace.open(ws.home, config_mod.load(cfg))
        app = _app(keyed)
        async with app.run_test() as pilot:
            await pilot.press("f")
            await _until(pilot, lambda: _said(app, "added 20,480 quantum bytes with 1 request"),
                         "fetched")
        assert len(fake.seen) == 1  # 8 days at 20/day = 32,480 bytes, 4.9 days held: one request


class RecordingAudio:
    """A stand-in for sounddevice: records what it was asked to play."""

    def __init__(self) -> None:
        self.played: list[int] = []

    def query_devices(self, kind: str) -> dict[str, str]:
        return {"name": "test"}

    def play(self, data: Any, samplerate: int, blocking: bool) -> None:
        self.played.append(len(data))

    def wait(self) -> None:
        pass


@run_async
async def test_play_key_speaks_the_newest_verdict_or_says_why_not(ws: Any) -> None:
    audio = RecordingAudio()
    app = _app(ws, audio_backend=audio)
    async with app.run_test() as pilot:
        await _until(pilot, lambda: app.snapshot is not None, "a first snapshot")
        await pilot.press("v")  # no clip bank yet: one sentence, the app goes on
        await _until(pilot, lambda: _said(app, "there is no clip bank to speak from"), "why not")
        assert audio.played == []
        write_clip_bank(ws.clip_bank_path)
        await pilot.press("v")
        await _until(pilot, lambda: audio.played, "played")
        assert audio.played[0] > 0


@run_async
async def test_units_keys_without_units_say_so_and_gallery_view_comes_and_goes(ws: Any) -> None:
    app = _app(ws)
    async with app.run_test() as pilot:
        await pilot.press("g")
        assert _said(app, "There is no unit to generate on")
        await pilot.press("t")
        assert _said(app, "There is no unit to trace")
        assert not isinstance(app.screen, TraceScreen)
        await pilot.press("G")
        assert isinstance(app.screen, GalleryScreen)
        await _until(pilot, lambda: app.screen.query_one(CatPicture).rgb is not None, "the cat")
        await pilot.press("q")  # not a key of the gallery view
        assert app.is_running
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


@run_async
async def test_kiosk_ignores_quit_keys_and_ends_on_the_chord(ws: Any) -> None:
    assert "ctrl+x" in KIOSK_EXIT_CHORD and "ctrl+q" in KIOSK_EXIT_CHORD
    app = _app(ws, mode="kiosk")
    async with app.run_test() as pilot:
        assert isinstance(app.screen, KioskScreen)
        for key in ("ctrl+q", "ctrl+c", "q", "escape", "G", "ctrl+p"):
            await pilot.press(key)
            await pilot.pause()
            assert app.is_running, f"{key} ended the kiosk"
        assert isinstance(app.screen, KioskScreen)  # no palette opened either
        await pilot.press("ctrl+x")
        app._chord_at = time.monotonic() - KIOSK_CHORD_S - 1  # too slow: not the chord
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running
        status = str(app.screen.query_one("#status", Static).render())
        assert "no units" in status and "quantum bytes for" in status
        await pilot.press("ctrl+x", "ctrl+q")
        await pilot.pause()
    assert app.return_code == 0
    assert app.station.calls == ["start", "stop"]  # type: ignore[attr-defined]


def test_scale_to_fit_is_the_largest_whole_factor() -> None:
    assert scale_to_fit((64, 64), 160, 50) == 1
    assert scale_to_fit((64, 64), 300, 70) == 2  # 128 columns, 64 rows
    assert scale_to_fit((64, 64), 256, 200) == 4
    assert scale_to_fit((64, 64), 10, 10) == 1  # too small: cropped, never nothing


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        QcatApp(None, mode="party")  # type: ignore[arg-type]


@run_async
async def test_the_kiosk_refills_below_the_mark_and_stops_at_the_budget(
        qcat_home: Path, monkeypatch) -> None:
    """The kiosk with the fake ANU service on loopback: the pool below the low-water mark is
    refilled in the background (no person, no key pressed) until the monthly budget, and the
    kiosk's line says so; no request is made past the budget."""
    from textual.widgets import Static

    from installation import config as config_mod
    from installation.paths import Home
    from installation.workspace import Workspace
    from tests.fake_anu import KEY, running_fake

    monkeypatch.setenv("QCAT_ANU_API_KEY", KEY)
    qcat_home.mkdir(parents=True, exist_ok=True)
    with running_fake() as fake:
        cfg = qcat_home / "qcat.toml"
        cfg.write_text(f'[entropy]\napi_url = "{fake.url}"\nmax_retries = 0\n'
                       "monthly_request_budget = 2\nassumed_exhibits_per_day = 200.0\n")
        ws = Workspace.open(Home(qcat_home), config_mod.load(cfg))
        station = Station(ws, [], kiosk=True, refill_every_s=0.2)
        app = QcatApp(station, mode="kiosk")
        async with app.run_test(size=(160, 50)) as pilot:
            def line() -> str:
                return str(app.screen.query_one("#status", Static).render())

            await _until(pilot, lambda: "this month's ANU requests spent" in line(),
                         "the refill shown, stopped at the budget")
            assert "quantum bytes for 201 more cats" in line()  # 2 x 20,480 bytes
            await pilot.pause(1.0)
        assert len(fake.seen) == 2
