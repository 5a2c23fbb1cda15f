"""The screens: the operator's dashboard, the visitors' gallery view, the kiosk, a unit's trace.

Screens only draw snapshots (`show(snapshot)`, called by the app after each poll) and start the
station's actions in thread workers; every action's key is in `DashboardScreen.ACTIONS`, the one
table the bindings and the command palette are both made from.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Log, ProgressBar, RichLog, Static

from installation.errors import QcatError
from tui import words
from tui.commands import DashboardCommands
from tui.messages import Snapshot, TaskFinished, TaskProgress, UnitHappened
from tui.widgets import CatPicture, DiePanel, ExhibitCaption, PoolPanel, cat_picture

if TYPE_CHECKING:
    from installation.gallery import Exhibit, Roll
    from installation.progress import ProgressCallback
    from installation.station import Station
    from tui.app import QcatApp

log = logging.getLogger("qcat.tui")

LATEST_SHOWN = 10  # exhibits in the dashboard's list
TRACE_REFRESH_S = 0.5
SPOKEN_HIGHLIGHT_S = 8.0  # how long the gallery view marks a verdict as being spoken

# The die panel beside the cat needs the cat's column (68) and a side column with one face at
# half size (16), the histogram (20) and the panels' borders: narrower terminals get one line.
DICE_WIDE = 110
# Faces in half blocks (16 rows each) beside the pool, newest exhibits and log from this height.
DICE_TALL = 46

UNIT_COLUMNS = ("port", "kind", "state", "unit", "firmware", "protocol", "weights", "heard",
                "job", "made", "faults")


@dataclass(frozen=True)
class Action:
    """One operator action: its key, the screen's action name, the palette's words."""

    key: str
    action: str
    title: str
    help: str


class _Stopped(Exception):
    """Raised inside a long action's progress callback once the operator pressed escape."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"stopped after {done} of {total}")
        self.done, self.total = done, total


TaskFn = Callable[["ProgressCallback", threading.Event], tuple[str, str]]


class QcatScreen(Screen[None]):
    """A screen the app hands each snapshot to."""

    @property
    def qcat(self) -> QcatApp:
        return self.app  # type: ignore[return-value]

    @property
    def station(self) -> Station:
        return self.qcat.station

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """As Textual's, but plain text by default: our sentences name units
        ("unit:cat:SIM-1", where Rich would see the emoji code ":cat:") and may hold brackets."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def show(self, snap: Snapshot) -> None:
        """Draw this snapshot (called on the screen's thread)."""

    def on_screen_resume(self) -> None:
        if self.qcat.snapshot is not None:
            self.show(self.qcat.snapshot)


# ---------------------------------------------------------------------------------- dashboard

class DashboardScreen(QcatScreen):
    """The operator's screen: units, pool, newest exhibits, log, and every action.

    With dice in the room (a die unit, or rolls in the archive) the screen has the class `-dice`
    and shows the die panel: beside the cat on a terminal at least `DICE_WIDE` columns wide
    (faces in half blocks from `DICE_TALL` rows, in braille below), as one line under
    the units on a narrower one. Without dice the layout is the cat-only one, untouched."""

    ACTIONS: ClassVar[tuple[Action, ...]] = (
        Action("g", "generate", "Generate now", "one exhibit on the selected unit (pauses the loop)"),
        Action("p", "pause", "Pause/resume", "stop or restart taking new jobs"),
        Action("f", "fetch", "Fetch entropy", "fill the pool from the ANU service"),
        Action("v", "play", "Play verdict", "speak the selected (or newest) exhibit's verdict"),
        Action("y", "verify", "Verify gallery", "re-render every exhibit and check its files"),
        Action("r", "repair", "Repair gallery", "re-create damaged files from the stored bytes"),
        Action("t", "trace", "Unit trace", "the selected unit's frames as hex"),
        Action("G", "gallery", "Gallery view", "what visitors see"),
        Action("escape", "stop_task", "Stop", "stop a running verify, repair or fetch"),
        Action("q", "quit", "Quit", "leave the dashboard (the units finish their jobs)"),
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(a.key, a.action, a.title, show=a.key not in ("escape",)) for a in ACTIONS),
        Binding("V", "verify", "Verify gallery", show=False),
    ]
    COMMANDS = {DashboardCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (DICE_WIDE, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (DICE_TALL, "-tall")]

    def __init__(self) -> None:
        super().__init__()
        self._task_cancel: threading.Event | None = None
        self._task_title = ""
        self._log_seen: Any = None
        self._latest_ids: list[int] = []
        self._picture_for: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        table: DataTable[Any] = DataTable(id="units", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="unit-detail")
        yield Static(id="dice-line")
        with Horizontal(id="middle"):
            with Vertical(id="exhibit"):
                yield cat_picture(self.qcat.graphics, id="cat")
                yield ExhibitCaption(id="caption")
            with Vertical(id="side"):
                yield Static(id="os-warning")
                yield PoolPanel(id="pool")
                yield DiePanel(id="dice")
                latest: DataTable[Any] = DataTable(id="latest", cursor_type="row")
                yield latest
                with Vertical(id="task"):
                    yield Label(id="task-label")
                    yield ProgressBar(id="task-bar", show_eta=False)
                yield RichLog(id="log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        units = self.query_one("#units", DataTable)
        for column in (*UNIT_COLUMNS, "progress"):
            units.add_column(column, key=column)
        latest = self.query_one("#latest", DataTable)
        for label, width in (("#", 5), ("mood", 11), ("randomness", 10), ("verdict", 200)):
            latest.add_column(label, width=width, key=label)
        self.query_one("#pool").border_title = "entropy pool"
        self.query_one("#latest").border_title = "latest exhibits"
        self.query_one("#log").border_title = "log"
        self.query_one("#exhibit").border_title = "newest cat"
        self.query_one("#units").border_title = "units"
        self.query_one("#dice").border_title = "dice"
        self.query_one("#task").display = False
        self.query_one("#os-warning").display = False

    # -- drawing -------------------------------------------------------------------------------

    def show(self, snap: Snapshot) -> None:
        self.sub_title = "paused" if snap.paused else "running"
        self._show_units(snap)
        pool_panel = self.query_one(PoolPanel)
        pool_panel.show(snap.pool, snap.pool_error)
        warning = words.os_fallback_warning(snap.pool) if snap.pool else ""
        banner = self.query_one("#os-warning", Static)
        banner.display = bool(warning)
        banner.update(Text(warning, style="bold"))
        newest = snap.newest
        if newest is None or newest.id != self._picture_for or snap.picture is not None:
            self.query_one(CatPicture).show(snap.picture)
            self._picture_for = newest.id if newest else None
        self.query_one(ExhibitCaption).show(newest, snap.picture_error)
        self._show_dice(snap)
        self._show_latest(snap.latest[:LATEST_SHOWN])
        self._show_log(snap)

    def _show_dice(self, snap: Snapshot) -> None:
        """The die panel (and its one-line form), only while there are dice to show."""
        dice = snap.dice
        if dice is None:  # unreadable this time: the panel keeps what it showed
            return
        shown = dice.fairness.rolls > 0 or any(words.is_die(u) for u in snap.units)
        self.set_class(shown, "-dice")
        if not shown:
            return
        self.query_one(DiePanel).show(dice)
        self.query_one("#dice-line", Static).update(Text(
            words.dice_line(dice), style="bold red" if words.unfair(dice.fairness) else ""))

    def _show_units(self, snap: Snapshot) -> None:
        table = self.query_one("#units", DataTable)
        now = self.qcat.now()
        rolls: list[Roll] = snap.dice.rolls if snap.dice is not None else []
        for u in snap.units:
            ident = u.identity or {}
            match = snap.weights_match.get(u.port)
            doing = (words.die_doing(u, rolls) if words.is_die(u)
                     else words.job_progress(u, snap.layers))
            # Text, never str: a str cell is read as markup, and "unit:cat:SIM-1" holds an
            # emoji code (":cat:")
            row = (Text(u.port), Text(str(ident.get("kind", "-"))), Text(u.state),
                   Text(u.unit or "-"), Text(str(ident.get("firmware", "-"))),
                   Text(str(ident.get("protocol", "-"))),
                   "-" if match is None else ("yes" if match else Text("NO", style="bold red")),
                   words.ago(u.last_heard, now), "-" if u.job is None else f"#{u.job}",
                   Text(words.made(u)), Text(str(u.faults), style="red") if u.faults else "0",
                   Text(doing))
            if u.port in table.rows:
                for column, value in zip(table.columns, row, strict=True):
                    table.update_cell(u.port, column, value, update_width=True)
            else:
                table.add_row(*row, key=u.port)
        if not snap.units:
            self.query_one("#unit-detail", Static).update(
                Text("No units: none configured (units.ports) and none found on USB. "
                     "`qcat sim cat` starts a simulated one.", style="dim"))
            return
        selected = self.selected_port()
        status = next((u for u in snap.units if u.port == selected), None)
        detail = ""
        if status is not None and status.last_fault:
            detail = f"{status.port}: last fault: {status.last_fault}"
        self.query_one("#unit-detail", Static).update(Text(detail, style="yellow"))

    def _show_latest(self, latest: list[Exhibit]) -> None:
        ids = [e.id for e in latest]
        if ids == self._latest_ids:
            return
        table = self.query_one("#latest", DataTable)
        keep = self.selected_exhibit_id()
        table.clear()
        for e in latest:
            table.add_row(Text(str(e.id)), Text(e.mood),
                          Text("os", style="bold red") if not e.quantum else Text("quantum"),
                          Text(e.verdict_text), key=str(e.id))
        self._latest_ids = ids
        if keep is not None and keep in ids:
            table.move_cursor(row=ids.index(keep))

    def _show_log(self, snap: Snapshot) -> None:
        lines = snap.log
        start = 0
        if self._log_seen is not None:
            for i in range(len(lines) - 1, -1, -1):
                if lines[i] == self._log_seen:
                    start = i + 1
                    break
        panel = self.query_one("#log", RichLog)
        for line in lines[start:]:
            text = Text(f"{words.clock(line.when)} ", style="dim")
            if line.port:
                text.append(f"{line.port} ", style="cyan")
            style = "red" if line.kind in ("fault", "lost", "refused", "stopped") else ""
            text.append(f"{line.kind}: {line.text}", style=style)
            panel.write(text)
        if lines:
            self._log_seen = lines[-1]

    # -- selection -----------------------------------------------------------------------------

    def selected_port(self) -> str | None:
        table = self.query_one("#units", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value)

    def selected_exhibit_id(self) -> int | None:
        table = self.query_one("#latest", DataTable)
        if not table.row_count:
            return None
        return int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def _exhibit_to_play(self) -> Exhibit | None:
        snap = self.qcat.snapshot
        if snap is None or not snap.latest:
            return None
        chosen = self.selected_exhibit_id() if self.focused is self.query_one("#latest") else None
        return next((e for e in snap.latest if e.id == chosen), snap.latest[0])

    # -- actions -------------------------------------------------------------------------------

    def action_generate(self) -> None:
        port = self.selected_port()
        if port is None:
            self.notify("There is no unit to generate on.", severity="warning")
            return
        self._call(lambda: self.station.generate_now(port))

    def action_pause(self) -> None:
        if self.station.paused:
            self.station.resume()
            self.notify("Resumed: the units take new jobs.")
        else:
            self.station.pause()
            self.notify("Paused: the units finish their jobs and then wait.")
        self.qcat.poll()

    def action_fetch(self) -> None:
        def run(progress: ProgressCallback, cancel: threading.Event) -> tuple[str, str]:
            return self.station.fetch(progress, cancel), "information"

        self.start_task("fetch", run)

    def action_play(self) -> None:
        exhibit = self._exhibit_to_play()
        if exhibit is None:
            self.notify("There is no exhibit to play yet.", severity="warning")
            return
        self.notify(f"Playing exhibit {exhibit.id}'s verdict.")
        self._play(exhibit)

    @work(thread=True, group="play", exclusive=True)
    def _play(self, exhibit: Exhibit) -> None:
        try:
            self.station.play(exhibit, self.qcat.audio_backend)
        except QcatError as exc:
            self.post_message(TaskFinished("play", _sentence(exc), "error"))
        except Exception as exc:  # a bug in playback must not end the app
            log.exception("playing a verdict failed")
            self.post_message(TaskFinished("play", f"playing failed unexpectedly: {exc!r}",
                                           "error"))

    def action_verify(self) -> None:
        def run(progress: ProgressCallback, cancel: threading.Event) -> tuple[str, str]:
            report = self.station.verify(progress)
            text = f"Gallery verify: {report.summary()}."
            pending = report.pending_summary()
            if pending:
                text += f" {pending}"
            return text, "information" if report.ok else "error"

        self.start_task("verify", run)

    def action_repair(self) -> None:
        def run(progress: ProgressCallback, cancel: threading.Event) -> tuple[str, str]:
            report = self.station.repair(progress)
            return (f"Gallery repair: {report.summary()}.",
                    "information" if report.failure() is None else "error")

        self.start_task("repair", run)

    def action_trace(self) -> None:
        port = self.selected_port()
        if port is None:
            self.notify("There is no unit to trace.", severity="warning")
            return
        self.app.push_screen(TraceScreen(port))

    def action_gallery(self) -> None:
        self.app.push_screen(GalleryScreen())

    def action_quit(self) -> None:
        self.app.exit(0)

    def action_stop_task(self) -> None:
        if self._task_cancel is None:
            return
        self._task_cancel.set()
        self.query_one("#task-label", Label).update(
            f"{self._task_title}: stopping after the exhibit (or request) under way…")

    def run_named(self, action: str) -> None:
        """Run one of ACTIONS by name (the command palette's way in)."""
        getattr(self, f"action_{action}")()

    # -- long actions --------------------------------------------------------------------------

    def start_task(self, title: str, fn: TaskFn) -> None:
        """Run `fn(progress, cancel)` in a thread worker with the progress bar; one at a time."""
        if self._task_cancel is not None:
            self.notify(f"{self._task_title} is still running (escape stops it).",
                        severity="warning")
            return
        self._task_cancel = threading.Event()
        self._task_title = title
        self.query_one("#task").display = True
        self.query_one("#task-label", Label).update(f"{title}: starting… (escape stops it)")
        self.query_one("#task-bar", ProgressBar).update(total=None, progress=0)
        self._run_task(title, fn, self._task_cancel)

    @work(thread=True, group="task")
    def _run_task(self, title: str, fn: TaskFn, cancel: threading.Event) -> None:
        def progress(done: int, total: int, label: str) -> None:
            self.post_message(TaskProgress(done, total, label))
            if cancel.is_set():
                raise _Stopped(done, total)

        try:
            text, severity = fn(progress, cancel)
        except _Stopped as stop:
            # verify reads only; repair writes each file atomically: stopping between two
            # exhibits leaves every one either done or untouched
            text, severity = (f"{title.capitalize()} stopped by the operator after "
                              f"{stop.done} of {stop.total}; what was done stands.", "warning")
        except QcatError as exc:
            text, severity = _sentence(exc), "error"
        except Exception as exc:  # a bug must not end the app: shown, logged, and we go on
            log.exception("%s failed", title)
            text, severity = f"{title} failed unexpectedly: {exc!r} (see the log file)", "error"
        self.post_message(TaskFinished(title, text, severity))

    def on_task_progress(self, msg: TaskProgress) -> None:
        bar = self.query_one("#task-bar", ProgressBar)
        bar.update(total=msg.total or None, progress=msg.done)
        stopping = self._task_cancel is not None and self._task_cancel.is_set()
        if not stopping:
            self.query_one("#task-label", Label).update(Text(
                f"{self._task_title}: {msg.label} ({msg.done} of {msg.total}; escape stops it)"))

    def on_task_finished(self, msg: TaskFinished) -> None:
        if msg.title == self._task_title and self._task_cancel is not None:
            self._task_cancel = None
            self.query_one("#task").display = False
        self.notify(msg.text, severity=msg.severity,  # type: ignore[arg-type]
                    timeout=10 if msg.severity == "error" else 5)
        self.query_one("#log", RichLog).write(Text(msg.text, style="bold"))
        self.qcat.poll()

    def _call(self, fn: Callable[[], str]) -> None:
        self._quick(fn)

    @work(thread=True, group="quick")
    def _quick(self, fn: Callable[[], str]) -> None:
        try:
            self.post_message(TaskFinished("", fn()))
        except QcatError as exc:
            self.post_message(TaskFinished("", _sentence(exc), "error"))
        except Exception as exc:
            log.exception("an action failed")
            self.post_message(TaskFinished("", f"failed unexpectedly: {exc!r}", "error"))


def _sentence(exc: QcatError) -> str:
    hint = getattr(exc, "hint", None)
    return f"{exc.message}" + (f" ({hint})" if hint else "")


# ------------------------------------------------------------------------------------ gallery

class GalleryScreen(QcatScreen):
    """What a visitor may see: the newest cat large, its verdict, its mood, its chance's source."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,G", "back", "Dashboard"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown: int | None = None

    def compose(self) -> ComposeResult:
        yield cat_picture(self.qcat.graphics, fit=True, id="big-cat",
                          empty_text="the first cat is on its way")
        with Vertical(id="words"):
            yield Static(id="verdict")
            yield Static(id="mood")
            yield Static(id="source")

    def show(self, snap: Snapshot) -> None:
        newest = snap.newest
        if newest is None:
            self.query_one(CatPicture).show(None)
            self.query_one("#verdict", Static).update("")
            self.query_one("#mood", Static).update("")
            self.query_one("#source", Static).update("")
            return
        if newest.id != self._shown and snap.picture is not None:
            self.query_one(CatPicture).show(snap.picture)
            self._shown = newest.id
            self.query_one("#verdict", Static).update(Text(f"“{newest.verdict_text}”"))
            self.query_one("#mood", Static).update(
                Text(f"a {newest.mood} cat", style="green" if newest.mood == "motivated"
                     else "red"))
            self.query_one("#source", Static).update(
                f"its chance: {words.source_words(newest.source)}")

    def on_unit_happened(self, msg: UnitHappened) -> None:
        if msg.event.kind == "spoken":
            verdict = self.query_one("#verdict", Static)
            verdict.add_class("speaking")
            self.set_timer(SPOKEN_HIGHLIGHT_S, lambda: verdict.remove_class("speaking"))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:  # a gallery opened from the dashboard
            self.app.pop_screen()


class KioskScreen(GalleryScreen):
    """The gallery view full screen with one discreet status line; no operator keys at all."""

    BINDINGS: ClassVar[list[BindingType]] = []

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield Static(id="status")

    def show(self, snap: Snapshot) -> None:
        super().show(snap)
        last_roll = snap.dice.rolls[0] if snap.dice is not None and snap.dice.rolls else None
        self.query_one("#status", Static).update(
            words.kiosk_status(snap.units, snap.pool, snap.paused, last_roll))

    def action_back(self) -> None:
        pass


# -------------------------------------------------------------------------------------- trace

class TraceScreen(QcatScreen):
    """One unit's frames as hex while the screen is open; closing it stops the trace."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,t,q", "close", "Close trace"),
    ]

    def __init__(self, port: str) -> None:
        super().__init__()
        self.port = port
        self._shown = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Log(id="trace", max_lines=5000)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"frames on {self.port}"
        try:
            self.station.trace(self.port, True)
        except QcatError as exc:
            self.notify(_sentence(exc), severity="error")
        self.set_interval(TRACE_REFRESH_S, self.refresh_lines)

    def refresh_lines(self) -> None:
        lines = self.station.trace_lines(self.port)
        if len(lines) < self._shown:  # the kept lines rolled over: start again
            self.query_one(Log).clear()
            self._shown = 0
        new = lines[self._shown:]
        if new:
            self.query_one(Log).write_lines(new)
            self._shown = len(lines)

    def action_close(self) -> None:
        with contextlib.suppress(QcatError):
            self.station.trace(self.port, False)
        self.app.pop_screen()
