"""The running installation: the units kept busy, the pool, the newest exhibits, the log.

What the operator dashboard (`qcat tui`) and the kiosk (`qcat kiosk`) both show and act on, as
one service, so that the two faces are thin and agree: the supervisor loop over the units (in its
own thread), snapshots for the screen (`units()`, `pool()`, `latest()`, `log()`), and the
operator's actions (pause/resume, generate now on a unit, fetch entropy, verify and repair the
gallery, play a verdict, a unit's frame trace). Long actions take a progress callback and, where
they can stop half way, a `cancel` event; they run in the caller's thread (the TUI's workers).

Thread-safety: snapshots open their own short-lived read connections (SQLite connections belong to
one thread), so any thread may call them; the supervisor's state is read through its locked
`units()`. Nothing here prints or touches a terminal.

In kiosk mode nothing is given up for good: a lost unit is tried again until it returns, a unit
that fails again and again is rested and tried again, an empty pool with policy `wait` is waited
out, all of it shown as the units' states.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from installation.errors import CheckFailed, DeviceError, InputError, QcatError
from installation.progress import ProgressCallback
from installation.units.supervisor import RECONNECT_FOR_S, Supervisor, UnitEvent, UnitStatus

if TYPE_CHECKING:
    import numpy as np

    from installation.curation import RepairReport, VerifyReport
    from installation.dice import Fairness
    from installation.gallery import Exhibit, Roll
    from installation.prefetch import Prefetcher, RefillOutcome
    from installation.units.probe import CardHashes
    from installation.workspace import Workspace

log = logging.getLogger("qcat.station")

LOG_LINES = 500  # the log the screen can scroll back through
TRACE_LINES = 2000  # per port, while its trace is open
# The kiosk rests a unit that failed MAX_FAULTS_IN_A_ROW jobs this long, then tries it again.
KIOSK_REST_S = 60.0
# How often the station looks at the pool's low-water mark (a look reads the pool, asks nothing).
REFILL_CHECK_S = 30.0

Listener = Callable[[UnitEvent], None]


@dataclass(frozen=True)
class LogLine:
    """One line of the station's log: a unit's event, or the station's own."""

    when: float  # time.time()
    port: str  # "" for the station's own lines
    kind: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"when": self.when, "port": self.port, "kind": self.kind, "text": self.text}


@dataclass(frozen=True)
class DiceSnapshot:
    """What the die panel shows (`Station.dice`)."""

    rolls: list[Roll]
    fairness: Fairness


class Station:
    """One installation at work. `start()` runs the supervisor over `ports` in a thread;
    `stop()` ends it after the jobs under way (their bytes are drawn: they finish or stay
    pending). `kiosk=True`: never give a unit up (see the module's docstring)."""

    def __init__(self, workspace: Workspace, ports: list[str], *, kiosk: bool = False,
                 paused: bool = False, clock: Callable[[], float] = time.time,
                 refill_every_s: float = REFILL_CHECK_S) -> None:
        self.workspace = workspace
        self.clock = clock  # the log lines' times (a test freezes it for a stable screen)
        self.ports = list(ports)
        self.kiosk = kiosk
        self.supervisor = Supervisor(
            workspace, self.ports, on_event=self._on_event,
            reconnect_for_s=None if kiosk else RECONNECT_FOR_S,
            rest_after_faults_s=KIOSK_REST_S if kiosk else None)
        if paused:
            self.supervisor.pause()
        self._listeners: list[Listener] = []
        self._log: deque[LogLine] = deque(maxlen=LOG_LINES)
        self._traces: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._card: CardHashes | None = None
        self._layers: int | None = None
        self._roll_counts: tuple[int | None, dict[int, int]] | None = None  # (newest roll, counts)
        self._prefetcher: Prefetcher | None = None
        self._refill_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.last_refill: RefillOutcome | None = None
        self.refill_every_s = refill_every_s

    # -- the loop --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start supervising the units and keeping the pool above its low-water mark (each
        once; a station without units still keeps its pool)."""
        if self._thread is not None:
            return
        if not self.ports:
            self.note("no units: none configured (units.ports), none found on USB")
        else:
            self._thread = threading.Thread(target=self._run, name="station", daemon=True)
            self._thread.start()
        if (self.workspace.config["entropy.low_water_days"] > 0 and not self.workspace.read_only
                and self._refill_thread is None):
            self._refill_thread = threading.Thread(target=self._keep_pool, name="refill",
                                                   daemon=True)
            self._refill_thread.start()

    def _run(self) -> None:
        try:
            self.supervisor.run()
        except QcatError as exc:  # the home became read-only, ...: shown, not raised
            self.note(exc.message, kind="stopped")
        except Exception as exc:  # a bug must not take the screen down with it
            log.exception("the supervisor failed")
            self.note(f"the supervisor stopped on an unexpected error: {exc!r} (see the log)",
                      kind="stopped")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Take no new jobs, let the ones under way finish (at most `timeout_s`); a refill
        stops before its next request."""
        self._stopping.set()
        self.supervisor.stop()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._refill_thread is not None:
            self._refill_thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pause(self) -> None:
        self.supervisor.pause()
        self.note("paused: units finish what they are doing and then wait", kind="paused")

    def resume(self) -> None:
        self.supervisor.resume()
        self.note("resumed: units take new jobs", kind="resumed")

    @property
    def paused(self) -> bool:
        return self.supervisor.paused

    def generate_now(self, port: str) -> str:
        """One exhibit on this unit now. While the loop runs every unit is already busy, so this
        pauses the loop first; the sentence says what happens."""
        if port not in self.ports:
            raise InputError(f"there is no unit on {port} in this installation")
        if not self.paused:
            self.supervisor.pause()
        self.supervisor.generate_once(port)
        text = f"{port}: one exhibit requested (the loop is paused; resume it to go on)"
        self.note(text, port=port, kind="requested")
        return text

    # -- what the screen shows -------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(event)` for every unit event, from the worker's thread."""
        with self._lock:
            self._listeners.append(listener)

    def units(self) -> list[UnitStatus]:
        return self.supervisor.units()

    def log(self) -> list[LogLine]:
        with self._lock:
            return list(self._log)

    def note(self, text: str, *, port: str = "", kind: str = "note") -> None:
        """A line of the station's own in the log (and the log file)."""
        log.info("%s", text)
        with self._lock:
            self._log.append(LogLine(self.clock(), port, kind, text))

    def pool(self) -> dict[str, Any]:
        """The pool's numbers (`EntropyPool.status()`), the empty-pool policy, the monthly
        requests left, the days of exhibits left at the recent rate and the low-water mark
        (`refill_plan`), and the last background refill's sentence (`refill`), read now."""
        from installation import prefetch

        cfg = self.workspace.config
        settings = self.prefetcher.settings
        with self.workspace.open_pool() as pool:
            st = pool.status()
            plan = prefetch.check(pool, settings)
        st["when_empty"] = cfg["entropy.when_empty"]
        st["requests_left"] = max(0, cfg["entropy.monthly_request_budget"]
                                  - st["requests_this_month"])
        st["days_left"] = plan.days_left
        st["rate_per_day"] = plan.rate.per_day
        st["low_water_days"] = settings.low_water_days
        st["refill_plan"] = plan.sentence()
        st["refill_reason"] = str(plan.reason)
        st["refill"] = self.last_refill.sentence() if self.last_refill else None
        st["refill_kind"] = str(self.last_refill.kind) if self.last_refill else None
        return st

    @property
    def prefetcher(self) -> Prefetcher:
        if self._prefetcher is None:
            from installation.prefetch import Prefetcher

            self._prefetcher = Prefetcher.for_workspace(self.workspace)
        return self._prefetcher

    def fetch(self, progress: ProgressCallback | None = None,
              cancel: threading.Event | None = None) -> str:
        """The operator's "fetch entropy": fill the pool to its refill target
        (`entropy.refill_to_days` at the recent rate) now, within the monthly budget; the
        outcome as one sentence (offline, quota and budget included; a missing API key is a
        ConfigError)."""
        from installation import prefetch

        outcome = prefetch.fetch(self.workspace, until_days=self.prefetcher.settings.refill_to_days,
                                 progress=progress, cancel=cancel)
        self.last_refill = outcome
        self.note(outcome.sentence(), kind="fetch")
        return outcome.sentence()

    def refill_if_low(self, cancel: threading.Event | None = None) -> RefillOutcome:
        """One look at the low-water mark, and a refill when the pool is below it, the service
        answers and the budget allows (retried after `entropy.refill_retry_minutes` when it did
        not answer). What asked the service is logged and kept for the screen."""
        from installation.prefetch import OutcomeKind

        outcome = self.prefetcher.run_once(cancel=cancel)
        if outcome.kind not in (OutcomeKind.SKIPPED, OutcomeKind.WAITING, OutcomeKind.BUSY):
            self.last_refill = outcome
            self.note(outcome.sentence(), kind="refill")
        return outcome

    def _keep_pool(self) -> None:
        """The background refill: a look every `refill_every_s` until the station stops."""
        while not self._stopping.is_set():
            try:
                self.refill_if_low(cancel=self._stopping)
            except QcatError as exc:  # no API key, a read-only pool, ...: shown, tried later
                self.note(exc.message, kind="refill")
            except Exception as exc:  # a bug must not stop the units
                log.exception("the refill failed")
                self.note(f"refill stopped on an unexpected error: {exc!r} (see the log)",
                          kind="refill")
            if self._stopping.wait(self.refill_every_s):
                return

    def latest(self, n: int = 12) -> list[Exhibit]:
        """The newest `n` exhibits, newest first."""
        with self.workspace.open_gallery() as gallery:
            return gallery.query(limit=n)

    def dice(self, n: int = 8) -> DiceSnapshot:
        """The die panel: the newest `n` rolls of every die, newest first, how often each face
        came up over all rolls, and the chi-square fairness test of those counts."""
        from installation.dice import fairness

        with self.workspace.open_gallery() as gallery:
            rolls = gallery.rolls(limit=n)
            newest = rolls[0].id if rolls else None
            # The screen asks twice a second; counting every roll ever made (a year of a busy
            # die) is done again only when a new roll came in: rolls are only ever added.
            if self._roll_counts is None or self._roll_counts[0] != newest:
                self._roll_counts = (newest, gallery.roll_counts())
            counts = self._roll_counts[1]
        return DiceSnapshot(rolls, fairness(counts))

    def image(self, exhibit: Exhibit) -> np.ndarray:
        """The exhibit's 64×64 picture, (64, 64, 3) uint8, read from its PNG in the gallery.
        CheckFailed (one sentence) when the file is missing or damaged."""
        from installation.exhibit import read_png_rgb

        path = self.workspace.home.gallery_dir / exhibit.png_path
        try:
            return read_png_rgb(path)
        except (OSError, ValueError) as exc:
            raise CheckFailed(f"exhibit {exhibit.id}'s picture {path} cannot be read ({exc})",
                              hint="`qcat gallery repair` re-creates it from its bytes") from None

    def weights_match(self, status: UnitStatus) -> bool | None:
        """Whether the unit on this port holds the controller's weights for its kind (a cat's
        weight image, a die's decoder; None: not known yet, nobody has answered on the port)."""
        if not status.identity:
            return None
        if self._card is None:
            from installation.units.probe import CardHashes

            self._card = CardHashes.of(self.workspace)
        expected = self._card.for_kind(str(status.identity.get("kind", "cat")))
        return bool(status.identity.get("weights_sha256") == expected.hex())

    def model_layers(self) -> int:
        """How many layers the controller's model has (a job's progress is "layer n of this")."""
        if self._layers is None:
            from installation.engines import weight_image

            self._layers = len(weight_image(self.workspace.weights_path()).layers)
        return self._layers

    # -- the operator's actions ------------------------------------------------------------------

    def verify(self, progress: ProgressCallback | None = None) -> VerifyReport:
        """Every exhibit re-rendered and every file checked (`qcat gallery verify --all`)."""
        from installation import curation
        from installation.exhibit import model_finder

        find = model_finder(self.workspace.known_models())
        with self.workspace.open_gallery() as gallery, self.workspace.open_pool() as pool:
            report = curation.verify(gallery, find, pool=pool, progress=progress,
                                     die_ref=self.workspace.die_ref())
        self.note(f"gallery verify: {report.summary()}", kind="verify")
        return report

    def repair(self, progress: ProgressCallback | None = None) -> RepairReport:
        """Damaged or missing files re-created from the stored bytes (`qcat gallery repair`)."""
        from installation import curation
        from installation.exhibit import model_finder

        self.workspace.require_writable("repairing the gallery")
        find = model_finder(self.workspace.known_models())
        with self.workspace.open_gallery() as gallery, self.workspace.open_pool() as pool:
            report = curation.repair(gallery, find, pool=pool,
                                     clip_bank=self.workspace.clip_bank_path, progress=progress)
        self.note(f"gallery repair: {report.summary()}", kind="repair")
        return report

    def play(self, exhibit: Exhibit, backend: Any = None) -> None:
        """Play an exhibit's verdict through this machine's audio output (DeviceError: why not)."""
        from phrases.audio import play
        from phrases.clipbank import ClipBank

        path = self.workspace.clip_bank_path
        if not path.is_file():
            raise DeviceError("there is no clip bank to speak from",
                              hint="build it with `qcat phrases build` (needs espeak-ng)")
        bank = ClipBank.load(path)
        play(bank.verdict_samples(exhibit.verdict_code), bank.sample_rate, backend)

    def trace(self, port: str, on: bool) -> None:
        """Start or stop keeping `port`'s frames as a hex dump (`trace_lines`)."""
        if port not in self.ports:
            raise InputError(f"there is no unit on {port} in this installation")
        if not on:
            self.supervisor.set_trace(port, None)
            return
        lines: deque[str] = deque(maxlen=TRACE_LINES)
        with self._lock:
            self._traces[port] = lines
        self.supervisor.set_trace(port, lines.append)

    def trace_lines(self, port: str) -> list[str]:
        with self._lock:
            return list(self._traces.get(port, ()))

    # -- inside ----------------------------------------------------------------------------------

    def _on_event(self, event: UnitEvent) -> None:
        if event.kind != "progress":  # progress is in units(), not worth a log line each
            with self._lock:
                self._log.append(LogLine(self.clock(), event.port, event.kind, event.text))
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a face's bug must not stop a unit's worker
                log.exception("a station listener failed")
