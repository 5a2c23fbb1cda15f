"""The die panel on the dashboard: the last faces drawn as the die's OLED shows them, the
histogram of faces rolled, the fairness test in words; the units table's row for a die; the
kiosk's line. Rolls are honest ones (`tests.tui_support.add_rolls`: the pool's bytes, the shipped
decoder, `check_roll`) in a real gallery on disk; where a count set must be chosen (6,000 rolls, a
loaded die) the Station hands the panel that count set over the same real rolls."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from installation.dice import fairness
from installation.station import DiceSnapshot, Station
from installation.units.supervisor import UnitEvent, UnitStatus
from tests.tui_support import FROZEN_NOW, add_rolls, fixed_workspace, run_async
from tui import app as app_mod
from tui import words
from tui.app import QcatApp
from tui.screens import DashboardScreen
from tui.widgets import DieFaces, DieHistogram, DiePanel, face_art, histogram_bars

WAIT_S = 20.0
FAIR_6000 = {1: 1012, 2: 990, 3: 1005, 4: 983, 5: 1019, 6: 991}  # chi-square 0.96
LOADED_600 = {1: 70, 2: 95, 3: 96, 4: 94, 5: 97, 6: 148}  # six comes up half as often again


async def _until(pilot: Any, predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S:g} s: {what}")
        await pilot.pause(0.05)


def _lines(widget: Any) -> list[str]:
    """What a widget shows, as text lines."""
    return ["".join(seg.text for seg in widget.render_line(y)) for y in range(widget.size.height)]


def _text(widget: Any) -> str:
    return str(widget.render())


def _bit(face: bytes, row: int, x: int) -> int:
    """Pixel (row, x) of a face from its SSD1306 page bytes (byte = page * 32 + x, LSB on top):
    the test's own reading, independent of the code under test."""
    return (face[(row // 8) * 32 + x] >> (row % 8)) & 1


def _half_block_art(face: bytes) -> list[str]:
    glyph = {(0, 0): " ", (1, 0): "\u2580", (0, 1): "\u2584", (1, 1): "\u2588"}
    return ["".join(glyph[_bit(face, 2 * y, x), _bit(face, 2 * y + 1, x)] for x in range(32))
            for y in range(16)]


class DiceStation(Station):
    """A real Station whose units are the ones handed in (a die unit before the die simulator
    exists) and whose die panel may be handed a chosen count set over its real rolls."""

    def __init__(self, *args: Any, units: list[UnitStatus] | None = None, **kw: Any) -> None:
        super().__init__(*args, clock=lambda: FROZEN_NOW, **kw)
        self.fake_units = units or []
        self.counts: dict[int, int] | None = None

    def units(self) -> list[UnitStatus]:
        # copies, as the supervisor's are: a test changing a unit must not change a snapshot
        # read before the change
        return [dataclasses.replace(u) for u in self.fake_units]

    def dice(self, n: int = 8) -> DiceSnapshot:
        real = super().dice(n)
        return real if self.counts is None else DiceSnapshot(real.rolls, fairness(self.counts))


def _die_unit(ws: Any, made: int = 0, serial: str = "D-1") -> UnitStatus:
    return UnitStatus(
        "/dev/ttyDIE0", state="idle", last_heard=FROZEN_NOW - 3, made=made,
        identity={"kind": "die", "serial": serial, "name": f"unit:die:{serial}",
                  "firmware": "1.0.0", "protocol": 1, "weights_sha256": ws.die_ref().sha256})


def _app(station: Station, mode: str = "dashboard") -> QcatApp:
    return QcatApp(station, mode=mode, now=lambda: FROZEN_NOW)


@pytest.fixture
def ws(qcat_home: Path) -> Any:
    return fixed_workspace(qcat_home, 3)


# ------------------------------------------------------------------------------------ words


def test_fairness_words_fair_unfair_empty_and_few() -> None:
    fair = words.fairness_words(fairness(FAIR_6000))
    assert fair == ("6,000 rolls: chi-square 1.0, p = 0.96 — consistent with a fair die at the "
                    "1 % level")
    loaded = fairness(LOADED_600)  # chi-square = (30² + 5² + 4² + 6² + 3² + 48²) / 100 = 32.9
    text = words.fairness_words(loaded)
    assert text.startswith("600 rolls: chi-square 32.9, p < 0.001 — LOOKS UNFAIR")
    assert "less than 1 % of the time" in text and words.unfair(loaded)
    assert words.fairness_words(fairness({})) == "no rolls yet"
    assert not words.unfair(fairness({}))
    few = words.fairness_words(fairness({1: 3, 2: 2, 3: 2, 4: 2, 5: 2, 6: 1}))
    assert few.startswith("12 rolls: chi-square 1.0, p = 0.96 — consistent with a fair die")
    assert few.endswith("but so few rolls prove little")
    few_loaded = fairness({6: 30})  # 30 sixes: rejected even though few
    assert "LOOKS UNFAIR" in words.fairness_words(few_loaded)
    assert words.fairness_words(few_loaded).endswith("(so few rolls prove little)")
    assert "prove little" not in words.fairness_words(fairness({f: 10 for f in range(1, 7)}))


def test_p_values_are_said_to_their_useful_precision() -> None:
    assert words.p_words(0.5312) == "p = 0.53"
    assert words.p_words(0.0432) == "p = 0.043"
    assert words.p_words(0.0004) == "p < 0.001"


def test_histogram_bars_scale_to_the_top_face_and_mark_the_fair_share() -> None:
    bars = histogram_bars({1: 8, 2: 4, 3: 6, 4: 6, 5: 6, 6: 6}, 8)  # fair share 6 of top 8
    assert bars[0] == "\u2588" * 8
    assert bars[1] == "\u2588" * 4 + " " * 2 + "┊" + " "  # half the top, short of the share
    assert bars[2] == "\u2588" * 6 + "┊" + " "  # exactly the share: the mark right after it
    assert [len(b) for b in bars] == [8] * 6
    assert histogram_bars({1: 3, 2: 2}, 8)[1] == "\u2588" * 5 + "\u258d" + "┊" + " "  # 5 1/3: 5 and 3/8
    assert histogram_bars(dict.fromkeys(range(1, 7), 0), 5) == [" " * 5] * 6


def test_face_art_reads_the_oled_pages_top_bit_first() -> None:
    """A face with its top pixel row lit and a 2x2 block at rows 15-16, columns 4-5 (split
    across two character rows and two SSD1306 pages): the art puts each pixel where it is."""
    pages = bytearray(128)
    for x in range(32):
        pages[x] |= 1  # row 0
    for x in (4, 5):
        pages[32 + x] |= 0x80  # row 15: page 1, bit 7
        pages[64 + x] |= 0x01  # row 16: page 2, bit 0
    art = face_art(bytes(pages))
    assert len(art) == 16 and all(len(row) == 32 for row in art)
    assert art[0] == "\u2580" * 32
    assert art[7] == "    \u2584\u2584" + " " * 26
    assert art[8] == "    \u2580\u2580" + " " * 26
    assert art == _half_block_art(bytes(pages))
    small = face_art(bytes(pages), small=True)  # braille: 2x4 dots a cell
    assert len(small) == 8 and all(len(row) == 16 for row in small)
    assert small[0] == "\u2809" * 16  # dots 1 and 4: the cell's top row
    assert small[3] == "  \u28c0" + " " * 13  # row 15, columns 4-5: dots 7 and 8 (the bottom)
    assert small[4] == "  \u2809" + " " * 13  # row 16: the next cell's top row


def test_a_die_row_and_the_kiosk_line_in_words(ws: Any) -> None:
    rolls = add_rolls(ws, 3)
    die = _die_unit(ws, made=3)
    assert words.made(die) == "3 rolls" and words.made(UnitStatus("p", made=3)) == "3"
    assert words.die_doing(die, rolls[::-1]) == f"last rolled {rolls[-1].pips}"
    assert words.die_doing(_die_unit(ws, serial="OTHER"), rolls) == "-"
    line = words.kiosk_status([die], None, False, rolls[-1])
    assert f"the die last rolled {rolls[-1].pips}" in line
    assert "die" not in words.kiosk_status([UnitStatus("p")], None, False, rolls[-1])


def test_station_counts_every_new_roll(ws: Any) -> None:
    """The station counts the faces again only when a roll came in, and then it does."""
    station = Station(ws, [])
    assert station.dice().fairness.rolls == 0
    made = add_rolls(ws, 5)
    first = station.dice(3)
    assert [r.id for r in first.rolls] == [r.id for r in made[::-1][:3]]
    assert first.fairness.rolls == 5
    more = add_rolls(ws, 2)
    assert station.dice(3).fairness.rolls == 7
    assert station.dice(3).rolls[0].id == more[-1].id
    counts = {f: sum(r.pips == f for r in made + more) for f in range(1, 7)}
    assert station.dice().fairness.counts == counts


# ---------------------------------------------------------------------------- the dashboard


@run_async
async def test_panel_shows_the_last_faces_histogram_and_fairness(ws: Any) -> None:
    made = add_rolls(ws, 12)
    newest = made[-1]
    app = _app(DiceStation(ws, []))
    async with app.run_test(size=(160, 50)) as pilot:
        screen = app.screen
        await _until(pilot, lambda: screen.has_class("-dice"), "the die panel")
        panel = screen.query_one(DiePanel)
        assert panel.display and not screen.query_one("#dice-line").display
        faces = screen.query_one(DieFaces)
        await _until(pilot, lambda: faces.rolls, "the faces")
        await pilot.pause(0.1)
        assert not faces.small  # 160x50: full size, 32 columns x 16 rows a face
        lines = _lines(faces)
        assert [line[:32] for line in lines[:16]] == _half_block_art(newest.face)
        second = made[-2]
        assert [line[34:66] for line in lines[:16]] == _half_block_art(second.face)
        assert lines[16].startswith(words.roll_caption(newest, 32))
        assert f"{newest.pips} pip" in lines[16] and "D-1" in lines[16]
        assert len(faces.fitting()) == 2  # two faces and the histogram in the side column
        counts = {f: sum(r.pips == f for r in made) for f in range(1, 7)}
        rows = _text(screen.query_one(DieHistogram)).splitlines()
        for face in range(1, 7):
            assert rows[face - 1].startswith(f"{face} ")
            assert rows[face - 1].endswith(f" {counts[face]}")
        assert "fair share 2.0" in rows[-1]
        said = _text(screen.query_one("#die-fairness", Static))
        assert said == words.fairness_words(fairness(counts))
        assert said.startswith("12 rolls: chi-square") and "prove little" in said


@run_async
async def test_panel_says_fair_and_loudly_unfair(ws: Any) -> None:
    add_rolls(ws, 2)
    station = DiceStation(ws, [])
    station.counts = FAIR_6000
    app = _app(station)
    async with app.run_test(size=(160, 50)) as pilot:
        said = app.screen.query_one("#die-fairness", Static)
        await _until(pilot, lambda: "6,000 rolls" in _text(said), "the fair count set")
        assert "consistent with a fair die at the 1 % level" in _text(said)
        assert "red" not in str(said.content.style)  # type: ignore[union-attr]
        rows = _text(app.screen.query_one(DieHistogram)).splitlines()
        assert rows[0].endswith(" 1,012") and rows[4].endswith(" 1,019")
        station.counts = LOADED_600  # the next poll shows it
        await _until(pilot, lambda: "LOOKS UNFAIR" in _text(said), "the loaded count set")
        assert str(said.content.style) == "bold red"  # type: ignore[union-attr]
        assert _text(app.screen.query_one(DieHistogram)).splitlines()[5].endswith(" 148")


@run_async
async def test_no_dice_no_panel_and_the_cat_layout_stays(ws: Any) -> None:
    app = _app(DiceStation(ws, []))
    async with app.run_test(size=(160, 50)) as pilot:
        await _until(pilot, lambda: app.snapshot is not None, "a first snapshot")
        await pilot.pause(0.2)
        screen = app.screen
        snap = app.snapshot
        assert snap is not None and snap.dice is not None and snap.dice.fairness.rolls == 0
        assert not screen.has_class("-dice")
        assert not screen.query_one(DiePanel).display
        assert not screen.query_one("#dice-line").display
        assert screen.query_one("#latest").outer_size.height == 14  # as before dice existed


@run_async
async def test_a_die_unit_brings_the_panel_and_its_row_reads_right(ws: Any) -> None:
    """A die in the room with no rolls yet: its row (kind die, rolls made, no job, its decoder
    matching the controller's) and the panel saying so; rolls archived later appear at the next
    poll; a "roll" event from the supervisor makes the screen look at once."""
    die = _die_unit(ws)
    station = DiceStation(ws, [], units=[die])
    app = _app(station)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        await _until(pilot, lambda: screen.has_class("-dice"), "the panel for a die unit")
        table = screen.query_one("#units", DataTable)
        await _until(pilot, lambda: table.row_count == 1, "the die's row")

        def cell(column: str) -> str:
            return str(table.get_cell(die.port, column))

        assert cell("kind") == "die" and cell("unit") == "unit:die:D-1"
        assert cell("weights") == "yes"  # its decoder is the controller's, not the cat weights
        assert cell("job") == "-" and cell("made") == "0 rolls" and cell("progress") == "-"
        assert _text(screen.query_one("#die-fairness", Static)) == "no rolls yet"
        assert "no rolls yet" in "".join(_lines(screen.query_one(DieFaces)))
        made = add_rolls(ws, 3)
        die.made = 3
        await _until(pilot, lambda: cell("made") == "3 rolls", "the rolls counted")
        assert cell("progress") == f"last rolled {made[-1].pips}"
        assert screen.query_one(DieFaces).rolls[0].id == made[-1].id
        assert "3 rolls: chi-square" in _text(screen.query_one("#die-fairness", Static))


@run_async
async def test_a_roll_event_refreshes_the_panel_at_once(ws: Any, monkeypatch) -> None:
    monkeypatch.setattr(app_mod, "POLL_S", 3600.0)  # no timer: only the event can do it
    station = DiceStation(ws, [])
    app = _app(station)
    async with app.run_test(size=(160, 50)) as pilot:
        await _until(pilot, lambda: app.snapshot is not None, "a first snapshot")
        await pilot.pause(0.3)
        assert not app.screen.has_class("-dice")
        roll = add_rolls(ws, 1)[0]
        station._on_event(UnitEvent("/dev/ttyDIE0", "roll", f"die D-1: rolled {roll.pips}",
                                    unit="unit:die:D-1", data=roll.to_json()))
        await _until(pilot, lambda: app.screen.has_class("-dice"), "the panel after the event")
        assert app.screen.query_one(DieFaces).rolls[0].id == roll.id


@run_async
async def test_smaller_terminals_get_small_faces_or_one_line(ws: Any) -> None:
    made = add_rolls(ws, 7)
    app = _app(DiceStation(ws, []))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        faces = screen.query_one(DieFaces)
        await _until(pilot, lambda: faces.rolls, "the faces")
        await pilot.pause(0.1)
        assert screen.query_one(DiePanel).display
        assert not screen.query_one("#latest").display  # its rows go to the log
        assert screen.query_one("#log").display and screen.query_one("#log").size.height >= 1
        assert faces.small and len(faces.fitting()) >= 1  # braille, 16 x 8 cells a face
        small = face_art(made[-1].face, small=True)
        assert [line[:16] for line in _lines(faces)[:8]] == small
        await pilot.resize_terminal(80, 24)
        await _until(pilot, lambda: screen.query_one("#dice-line").display, "the one line")
        assert not screen.query_one(DiePanel).display
        line = _text(screen.query_one("#dice-line", Static))
        last = " ".join(str(r.pips) for r in made[::-1][:5])
        assert line.startswith(f"dice: last {last} · faces 1-6: ")
        assert "7 rolls, p = " in line and "(few rolls)" in line


@run_async
async def test_the_kiosk_line_names_the_last_roll(ws: Any) -> None:
    roll = add_rolls(ws, 2)[-1]
    app = _app(DiceStation(ws, [], units=[_die_unit(ws, made=2)]), mode="kiosk")
    async with app.run_test(size=(160, 50)) as pilot:
        status = app.screen.query_one("#status", Static)
        await _until(pilot, lambda: "the die last rolled" in _text(status), "the last roll")
        assert f"the die last rolled {roll.pips}" in _text(status)
