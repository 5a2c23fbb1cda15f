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

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Header, Static

if TYPE_CHECKING:
    from installation.station import Station

MODES = ("dashboard", "gallery", "kiosk")

# The kiosk has no quit key (a visitor may find a keyboard); the operator ends it with this chord:
# ctrl+x, then ctrl+q within KIOSK_CHORD_S. Both keys reach a raw-mode terminal (unlike ctrl+alt+q,
# which many terminals and window managers swallow).
KIOSK_CHORD_S = 2.0
KIOSK_EXIT_CHORD = f"ctrl+x, then ctrl+q within {KIOSK_CHORD_S:g} s"


class QcatApp(App[int]):
    """The operator dashboard, the gallery view or the kiosk over one running `Station`.

    `now`: the wall clock the screen shows times with (tests freeze it). `audio_backend`: handed
    to `Station.play` (tests give a stand-in)."""

    TITLE = "qcat"
    BINDINGS: ClassVar[list[BindingType]] = [
        # Textual binds ctrl+q to quit and ctrl+c to a "how to quit" hint; here both go through
        # the app's own actions so that the kiosk can refuse them.
        Binding("ctrl+q", "ctrl_q", "Quit", show=False, priority=True),
        Binding("ctrl+c", "ctrl_c", show=False, priority=True, system=True),
        Binding("ctrl+x", "chord_start", show=False, priority=True, system=True),
    ]

    def __init__(self, station: Station, *, mode: str = "dashboard",
                 now: Callable[[], float] = time.time, audio_backend: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        super().__init__()
        self.station = station
        self.mode = mode
        self.now = now
        self.audio_backend = audio_backend
        self.first_frame_at: float | None = None  # perf_counter() at the first rendered frame
        self._chord_at: float | None = None
        if mode == "kiosk":
            self.use_command_palette = False  # its system commands include "quit"

    def compose(self) -> ComposeResult:
        if self.mode != "kiosk":
            yield Header()
        yield Static(f"qcat {self.mode}", id="placeholder")
        if self.mode != "kiosk":
            yield Footer()

    def on_mount(self) -> None:
        self.station.start()
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()

    def on_unmount(self) -> None:
        self.station.stop()

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
