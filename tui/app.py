"""The Textual app: one `QcatApp` over a `Station`, in three modes.

    dashboard  the operator's screen: units, the entropy pool, the newest exhibits, the log, and
               every action (generate now, pause/resume, fetch, play, verify, repair, trace)
    gallery    what a visitor may see: the newest cat large, its verdict, where its chance came from
    kiosk      the gallery full screen plus a discreet status line; no quit key: only the operator
               chord `KIOSK_EXIT_CHORD` ends it (systemd starts it on boot and SIGTERM stops it)

The app is a thin face: it reads the station's snapshots and calls its actions in thread workers;
everything that is not presentation lives in `installation/`. Nothing here is imported by
`installation/` except the CLI commands (`qcat tui`, `qcat kiosk`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType

from installation.errors import QcatError
from tui.messages import Snapshot, UnitHappened
from tui.screens import DashboardScreen, GalleryScreen, KioskScreen, QcatScreen
from tui.widgets import GRAPHICS

if TYPE_CHECKING:
    import numpy as np

    from installation.station import DiceSnapshot, Station
    from installation.units.supervisor import UnitEvent

log = logging.getLogger("qcat.tui")

MODES = ("dashboard", "gallery", "kiosk")

# The kiosk has no quit key (a visitor may find a keyboard); the operator ends it with this chord:
# ctrl+x, then ctrl+q within KIOSK_CHORD_S. Both keys reach a raw-mode terminal (unlike ctrl+alt+q,
# which many terminals and window managers swallow).
KIOSK_CHORD_S = 2.0
KIOSK_EXIT_CHORD = f"ctrl+x, then ctrl+q within {KIOSK_CHORD_S:g} s"
# The screen reads the station this often (in a worker): simple, and robust to missed events.
POLL_S = 0.5
LATEST_READ = 12  # exhibits read per poll
DICE_READ = 8  # die rolls read per poll: more faces than the widest dashboard shows
# Unit events that make the screen look again at once instead of at the next poll.
PROMPT_EVENTS = ("exhibit", "spoken", "lost", "reconnected", "connected", "refused", "fault",
                 "roll")


class QcatApp(App[int]):
    """The operator dashboard, the gallery view or the kiosk over one running `Station`.

    `now`: the wall clock the screen shows times with (tests freeze it). `audio_backend`: handed
    to `Station.play` (tests give a stand-in). `graphics`: how the large cats are drawn, "tgp"
    or "sixel" (textual-image, when the CLI found the terminal speaks it before the app started)
    or "halfblocks" (everywhere, and the default so tests and snapshots see half blocks)."""

    TITLE = "qcat"
    SUB_TITLE = ""
    CSS_PATH = "qcat.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        # Textual binds ctrl+q to quit and ctrl+c to a "how to quit" hint; here both go through
        # the app's own actions so that the kiosk can refuse them.
        Binding("ctrl+q", "ctrl_q", "Quit", show=False, priority=True),
        Binding("ctrl+c", "ctrl_c", show=False, priority=True, system=True),
        Binding("ctrl+x", "chord_start", show=False, priority=True, system=True),
    ]

    def __init__(self, station: Station, *, mode: str = "dashboard",
                 now: Callable[[], float] = time.time, audio_backend: Any = None,
                 graphics: str = "halfblocks") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if graphics not in GRAPHICS:
            raise ValueError(f"graphics must be one of {', '.join(GRAPHICS)}, not {graphics!r}")
        super().__init__()
        self.station = station
        self.mode = mode
        self.graphics = graphics
        self.now = now
        self.audio_backend = audio_backend
        self.first_frame_at: float | None = None  # perf_counter() at the first rendered frame
        self._chord_at: float | None = None
        self.snapshot: Snapshot | None = None  # the newest, kept for screens opened later
        self._polling = False
        self._picture: tuple[int, np.ndarray | None, str] | None = None  # (exhibit id, pixels, error)
        if mode == "kiosk":
            self.use_command_palette = False  # its system commands include "quit"

    def on_mount(self) -> None:
        first = {"dashboard": DashboardScreen, "gallery": GalleryScreen,
                 "kiosk": KioskScreen}[self.mode]()
        self.push_screen(first)
        self.station.subscribe(self._on_unit_event)
        self.station.start()
        self.poll()
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()

    def on_unmount(self) -> None:
        self.station.stop()

    # -- reading the station ---------------------------------------------------------------------

    def poll(self) -> None:
        """Read the station again (in a worker; skipped while the last read is under way)."""
        if self._polling:
            return
        self._polling = True
        self._read_station()

    @work(thread=True, group="poll")
    def _read_station(self) -> None:
        try:
            self.post_message(self._snapshot())
        except Exception:  # the screen keeps its last picture; the log file says why
            log.exception("reading the station failed")
        finally:
            self._polling = False

    def _snapshot(self) -> Snapshot:
        """Everything the screens show, read now (in the poll worker's thread)."""
        st = self.station
        units = st.units()
        match: dict[str, bool | None] = {}
        layers: int | None = None
        try:
            match = {u.port: st.weights_match(u) for u in units}
            layers = st.model_layers() if any(u.progress for u in units) else None
        except QcatError as exc:  # no weight image: the table says "-"
            log.info("unit card check: %s", exc.message)
        pool: dict[str, Any] | None = None
        pool_error = ""
        try:
            pool = st.pool()
        except QcatError as exc:
            pool_error = exc.message
        latest = []
        picture: np.ndarray | None = None
        picture_error = ""
        try:
            latest = st.latest(LATEST_READ)
        except QcatError as exc:
            picture_error = f"the gallery cannot be read: {exc.message}"
        if latest:
            newest = latest[0]
            if self._picture is None or self._picture[0] != newest.id:
                try:
                    self._picture = (newest.id, st.image(newest), "")
                except QcatError as exc:
                    self._picture = (newest.id, None, exc.message)
            _, picture, picture_error = self._picture
        dice: DiceSnapshot | None = None
        try:
            dice = st.dice(DICE_READ)
        except QcatError as exc:  # the panel keeps its last picture; the log file says why
            log.info("die rolls: %s", exc.message)
        return Snapshot(units=units, weights_match=match, layers=layers, pool=pool,
                        pool_error=pool_error, latest=latest, log=st.log(), paused=st.paused,
                        picture=picture, picture_error=picture_error, dice=dice)

    def on_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap
        for screen in self.screen_stack:
            if isinstance(screen, QcatScreen):
                screen.show(snap)

    def _on_unit_event(self, event: UnitEvent) -> None:
        """From a unit worker's thread: never waits for the screen."""
        if event.kind in PROMPT_EVENTS:
            self.post_message(UnitHappened(event))

    def on_unit_happened(self, msg: UnitHappened) -> None:
        self.poll()
        self.screen.post_message(UnitHappened(msg.event))

    # -- quitting ------------------------------------------------------------------------------

    def action_ctrl_q(self) -> None:
        if self.mode != "kiosk":
            self.exit(0)
            return
        if self._chord_at is not None and time.monotonic() - self._chord_at <= KIOSK_CHORD_S:
            self.exit(0)
        self._chord_at = None

    def action_ctrl_c(self) -> None:
        if self.mode != "kiosk":
            self.notify("press q or ctrl+q to quit", title="quit?")

    def action_chord_start(self) -> None:
        self._chord_at = time.monotonic()


def run_app(station: Station, mode: str = "dashboard", **run_kwargs: Any) -> int:
    """Run the app in this terminal until it ends; the exit code (0 when the operator quit)."""
    app = QcatApp(station, mode=mode)
    result = app.run(**run_kwargs)
    if app.return_code not in (None, 0):
        return app.return_code
    return int(result or 0)
