"""Keeping the room's cat units busy: one worker per port, each with its own exhibit job.

    port -> Link -> UnitSession.handshake (protocol version; weights and clip bank must be the
            controller's, else the unit is flagged and not used)
         -> job: a pending exhibit draw if one is waiting (a job interrupted earlier), else a new
            draw (the pending record, one transaction, before anything is sent)
         -> GENERATE with the draw's int8 latent -> the image -> compared byte for byte with the
            controller's golden render -> archived as made by `unit:cat:<serial>` -> SPEAK
         -> the unit lost (unplugged, hung): reconnect, handshake, the SAME job again

E1 holds because the draw is the job: a job is never drawn twice, and a job that failed (a lost
unit, a damaged chunk, a wrong image) stays pending with its bytes until a unit completes it.
F1 holds because nothing a unit returns is archived unless it equals the golden render.

Workers share the pool (its draws are transactions) and claim pending draws under one lock, so two
units never work on the same exhibit. Everything a worker sees is reported through `on_event`
(the CLI prints it, the dashboard shows it) and kept in a `UnitStatus` per port (`units()`, the
dashboard's table); nothing here prints.

Between jobs a worker is not blind: paused (`pause()`), or waiting for entropy with the policy
"wait", it watches its unit's heartbeats and sends the controller's own (`UnitSession.idle`), so a
unit unplugged while nothing happens is noticed, reconnected and shown.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from installation.errors import DeviceError, EntropyExhausted, QcatError
from installation.exhibit import UnitJob, WrongImage, purpose_for
from installation.units.link import Link, TraceFn
from installation.units.probe import CardHashes, identity_problems
from installation.units.session import LineFault, UnitIdentity, UnitLost, UnitSession
from quantum import latent as latent_mod

if TYPE_CHECKING:
    from installation.exhibit import Generator
    from installation.gallery import Exhibit, Roll
    from installation.workspace import Workspace

log = logging.getLogger("qcat.units")

# After a unit is lost: how often to try its port again, and for how long before giving up.
RECONNECT_EVERY_S = 0.5
RECONNECT_FOR_S = 60.0
# A unit that keeps failing jobs (wrong images, engine errors, losing the line before a job can
# finish) is taken out of service; its job stays pending for another unit.
MAX_FAULTS_IN_A_ROW = 5
# Frames lost or damaged on the line are not the unit's fault: a job is asked for again this
# many times before the line itself is given up on.
MAX_LINE_RETRIES = 20
# A worker with no job (paused) watches its unit in steps this long, then looks again.
IDLE_WATCH_S = 0.5
# With entropy.when_empty = "wait": how often an idle worker asks the pool again.
ENTROPY_POLL_S = 1.0


@dataclass(frozen=True)
class UnitEvent:
    """Something a worker saw: `kind` is one of connected, refused, progress, exhibit, spoken,
    fault, lost, reconnected, waiting, paused, resumed, resting, stopped; `text` is the sentence
    for people."""

    port: str
    kind: str
    text: str
    unit: str = ""
    exhibit: Exhibit | None = None
    data: dict[str, Any] = field(default_factory=dict)


EventFn = Callable[[UnitEvent], None]


@dataclass
class UnitStatus:
    """One port as the dashboard shows it, a snapshot (`Supervisor.units()`).

    `state`: connecting, idle, working, speaking, rolling (a die asked to roll), paused, waiting
    for entropy, lost, refused, resting (out of service for a while after repeated faults),
    stopped. For a die `made` counts its rolls; `job` and `progress` stay None."""

    port: str
    state: str = "connecting"
    identity: dict[str, Any] | None = None
    last_heard: float | None = None  # wall-clock time.time() of the unit's last frame
    job: int | None = None  # the exhibit (= draw) id it works on
    progress: tuple[int, int, int] | None = None  # (layer, slice, slices) of that job
    made: int = 0
    faults: int = 0
    last_fault: str = ""
    since: float = field(default_factory=time.time)  # when `state` last changed

    @property
    def unit(self) -> str:
        return str(self.identity["name"]) if self.identity else ""

    def as_dict(self) -> dict[str, Any]:
        return {"port": self.port, "state": self.state, "unit": self.unit,
                "identity": self.identity, "last_heard": self.last_heard, "job": self.job,
                "progress": list(self.progress) if self.progress else None, "made": self.made,
                "faults": self.faults, "last_fault": self.last_fault, "since": self.since}


class JobBoard:
    """Which pending draws are being worked on: a job is claimed by one worker at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claimed: set[int] = set()

    def claim(self, gen: Generator) -> UnitJob:
        """A pending exhibit of this model nobody works on, else a new draw (the pending record).
        With the policy "wait" the pool is asked once (EntropyExhausted when it is empty): the
        worker waits, watching its unit, instead of blocking inside the pool."""
        with self._lock:
            purpose = purpose_for(gen.model)
            for draw in gen.pending():
                if draw.purpose == purpose and draw.id not in self._claimed:
                    self._claimed.add(draw.id)
                    return gen.unit_job(draw)
            policy = "fail" if gen.when_empty == "wait" else gen.when_empty
            draw = gen.pool.draw(latent_mod.EXHIBIT_BYTES, purpose, when_empty=policy)
            self._claimed.add(draw.id)
            return gen.unit_job(draw)

    def release(self, job: UnitJob) -> None:
        with self._lock:
            self._claimed.discard(job.draw.id)


class _Resting(Exception):
    """A unit taken out of service for a while (`rest_after_faults_s`): the worker waits, then
    connects to its port afresh."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Supervisor:
    """Runs one worker per port until each has archived `count` exhibits (None: until stopped).

    `reconnect_for_s`: after a loss, how long to keep trying the port (None: until stopped, as
    the kiosk does). `rest_after_faults_s`: a unit that failed `MAX_FAULTS_IN_A_ROW` jobs is
    given up (None, `qcat units run`) or rested for this long and tried again (the kiosk)."""

    workspace: Workspace
    ports: list[str]
    count: int | None = None
    on_event: EventFn = field(default=lambda event: None)
    trace: TraceFn | None = None
    reconnect_for_s: float | None = RECONNECT_FOR_S
    rest_after_faults_s: float | None = None
    engine: str | None = None
    kinds: tuple[str, ...] = ("cat", "die")  # the kinds of unit served (`units generate`: cats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _running: threading.Event = field(default_factory=threading.Event)
    _board: JobBoard = field(default_factory=JobBoard)
    _status: dict[str, UnitStatus] = field(default_factory=dict)
    _sessions: dict[str, UnitSession] = field(default_factory=dict)
    _traces: dict[str, TraceFn | None] = field(default_factory=dict)
    _once: set[str] = field(default_factory=set)  # paused ports allowed one job (generate_once)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    made: list[Exhibit] = field(default_factory=list)
    rolled: list[Roll] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._running.set()
        self._status = {port: UnitStatus(port) for port in self.ports}

    # -- what the faces call ---------------------------------------------------------------------

    def stop(self) -> None:
        """Take no new jobs; each worker finishes the one it has, then ends."""
        self._stop.set()
        self._running.set()  # a paused worker wakes to end

    def pause(self) -> None:
        """Take no new jobs until `resume()`; jobs under way finish; units stay watched."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def generate_once(self, port: str) -> bool:
        """While paused, let this port's unit make one exhibit (the operator's "generate now"); a
        die rolls once, paused or not. False when the loop is running (every cat unit is busy
        anyway) or the port is unknown."""
        if port not in self._status:
            return False
        is_die = (self._status[port].identity or {}).get("kind") == "die"
        if not self.paused and not is_die:
            return False
        with self._lock:
            self._once.add(port)
        return True

    def set_trace(self, port: str, trace: TraceFn | None) -> None:
        """Start (a callback) or stop (None) the hex dump of one port's frames, now and after
        reconnects: the dump is made only while someone looks at it."""
        with self._lock:
            self._traces[port] = trace
            session = self._sessions.get(port)
        if session is not None:
            session.link.trace = trace

    def units(self) -> list[UnitStatus]:
        """A snapshot of every port's status, in the order of `ports`."""
        with self._lock:
            shots = []
            for port, st in self._status.items():
                shot = replace(st)
                session = self._sessions.get(port)
                if session is not None:
                    shot.last_heard = time.time() - session.silent_s
                shots.append(shot)
            return shots

    def run(self) -> list[Exhibit]:
        """Run every worker to the end; returns the exhibits archived."""
        self.workspace.require_writable("supervising units")
        threads = [threading.Thread(target=self._worker, args=(port,), name=f"unit {port}",
                                    daemon=True) for port in self.ports]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self.stop()
            for t in threads:
                t.join(5.0)
            raise
        return self.made

    # -- one worker per port ---------------------------------------------------------------------

    def _set(self, port: str, **changes: Any) -> None:
        with self._lock:
            st = self._status[port]
            if "state" in changes and changes["state"] != st.state:
                st.since = time.time()
            for key, value in changes.items():
                setattr(st, key, value)

    def _emit(self, port: str, kind: str, text: str, **extra: Any) -> None:
        log.info("%s: %s", port, text)
        self.on_event(UnitEvent(port, kind, text, **extra))

    def _fault(self, port: str, text: str) -> None:
        with self._lock:
            self._status[port].faults += 1
            self._status[port].last_fault = text

    def _worker(self, port: str) -> None:
        gen = self.workspace.open_generator(engine=self.engine)
        try:
            while True:
                try:
                    self._serve(port, gen)
                    break
                except _Resting as rest:
                    assert self.rest_after_faults_s is not None
                    self._set(port, state="resting", job=None, progress=None)
                    self._emit(port, "resting", rest.message)
                    if self._stop.wait(self.rest_after_faults_s):
                        break
            self._set(port, state="stopped", job=None, progress=None)
        except Exception as exc:  # a worker's end is reported, never a thread's traceback
            message = exc.message if isinstance(exc, QcatError) else (
                f"{port}: the worker stopped on an unexpected error: {exc!r}")
            if not isinstance(exc, QcatError):
                log.exception("%s: unexpected error", port)
            self.failures.append(message)
            state = "refused" if self._status[port].state == "refused" else "stopped"
            self._set(port, state=state, job=None, progress=None, last_fault=message)
            self._emit(port, "stopped", message)
        finally:
            with self._lock:
                self._sessions.pop(port, None)
            gen.pool.close()
            gen.gallery.close()

    def _take_once(self, port: str) -> bool:
        with self._lock:
            if port in self._once:
                self._once.discard(port)
                return True
            return False

    def _give_up(self, message: str, hint: str) -> Exception:
        """A unit failing again and again: out of service for good, or rested (the kiosk)."""
        if self.rest_after_faults_s is not None:
            return _Resting(f"{message}; resting it for {self.rest_after_faults_s:g} s, then "
                            "trying again (its job stays pending for the other units)")
        return DeviceError(message, hint=hint)

    def _serve(self, port: str, gen: Generator) -> None:
        expected = CardHashes.of(self.workspace)
        made = 0
        faults_in_a_row = line_retries = 0
        waiting_said = False
        session, unit = self._connect(port, expected, first=True)
        if unit.kind not in self.kinds:
            session.link.close()
            self._set(port, state="refused", identity=unit.as_dict())
            raise DeviceError(f"{unit.name} on {port} is a {unit.kind} unit, not a "
                              f"{' or '.join(self.kinds)} unit (`qcat units roll {port}` rolls a "
                              "die; `qcat units run` serves every kind)")
        if unit.kind == "die":
            self._serve_die(port, gen, expected, session, unit)
            return
        job: UnitJob | None = None
        try:
            while job is not None or (not self._stop.is_set()
                                      and (self.count is None or made < self.count)):
                # a claimed job is finished even after stop(): its bytes are drawn, so it
                # completes here or, if this unit is taken out of service, stays pending
                try:
                    if job is None:
                        if self.paused and not self._take_once(port):
                            self._set(port, state="paused")
                            session.idle(IDLE_WATCH_S)
                            continue
                        try:
                            job = self._board.claim(gen)
                        except EntropyExhausted as exc:
                            if gen.when_empty != "wait":
                                raise
                            if not waiting_said:
                                self._emit(port, "waiting", f"{exc.message}; waiting for bytes "
                                           "(entropy.when_empty = \"wait\")", unit=unit.name)
                                waiting_said = True
                            self._set(port, state="waiting for entropy")
                            session.idle(ENTROPY_POLL_S)
                            continue
                        waiting_said = False
                    self._set(port, state="working", job=job.draw.id, progress=None)
                    exhibit = self._make(session, unit, gen, job)
                except UnitLost as exc:
                    if job is not None:
                        faults_in_a_row += 1
                    self._fault(port, exc.message)
                    self._emit(port, "lost", exc.message, unit=unit.name)
                    self._set(port, state="lost")
                    session.link.close()
                    if faults_in_a_row >= MAX_FAULTS_IN_A_ROW:
                        raise self._give_up(f"{unit.name} on {port} was lost {faults_in_a_row} "
                                            "times in a row before a job could finish and was "
                                            "taken out of service",
                                            "its job stays pending for the other units; "
                                            "check the cable") from None
                    session, unit = self._connect(port, expected, first=False)
                    continue  # the same job, the same bytes
                except LineFault as exc:
                    assert job is not None
                    line_retries += 1
                    self._fault(port, exc.message)
                    self._emit(port, "fault", exc.message, unit=unit.name,
                               data={"exhibit_id": job.draw.id, "line": True})
                    if line_retries >= MAX_LINE_RETRIES:
                        raise self._give_up(f"the line to {unit.name} on {port} lost frames "
                                            f"{line_retries} times in a row and was given up",
                                            "its job stays pending; check the cable") from None
                    continue  # the unit holds the image: asking again costs a re-send
                except DeviceError as exc:  # the unit's ERROR, a wrong image
                    if job is None:
                        raise
                    faults_in_a_row += 1
                    self._fault(port, exc.message)
                    self._emit(port, "fault", exc.message, unit=unit.name,
                               data={"exhibit_id": job.draw.id})
                    if isinstance(exc, WrongImage):
                        # the unit holds that image and would send it again: make it forget
                        # and compute afresh
                        with contextlib.suppress(DeviceError):
                            session.reset()
                    if faults_in_a_row >= MAX_FAULTS_IN_A_ROW:
                        raise self._give_up(f"{unit.name} on {port} failed {faults_in_a_row} "
                                            "jobs in a row and was taken out of service",
                                            "its job stays pending for the other units") \
                            from None
                    continue  # the same job again
                # archived: the job is done, whatever happens to its speech
                faults_in_a_row = line_retries = 0
                self._board.release(job)
                job = None
                made += 1
                with self._lock:
                    self.made.append(exhibit)
                    self._status[port].made += 1
                self._set(port, state="speaking", job=exhibit.draw_id, progress=None)
                try:
                    ms = session.speak(exhibit.draw_id, exhibit.verdict_code)
                    self._emit(port, "spoken", f"exhibit {exhibit.id} spoken in "
                               f"{ms / 1000:.1f} s", unit=unit.name, exhibit=exhibit)
                except UnitLost as exc:
                    self._fault(port, exc.message)
                    self._emit(port, "lost", exc.message, unit=unit.name)
                    self._set(port, state="lost")
                    session.link.close()
                    session, unit = self._connect(port, expected, first=False)
                except DeviceError as exc:
                    self._fault(port, exc.message)
                    self._emit(port, "fault", f"exhibit {exhibit.id} was not spoken: "
                               f"{exc.message}", unit=unit.name)
                self._set(port, state="idle", job=None, progress=None)
        finally:
            if job is not None:
                self._board.release(job)  # pending, for another unit or a later run
            session.link.close()

    def _serve_die(self, port: str, gen: Generator, expected: CardHashes,
                   session: UnitSession, unit: UnitIdentity) -> None:
        """A die unit: its reserve kept full from the pool, every roll it makes (a visitor's
        press, or "generate now": a ROLL_REQUEST) checked and archived, until stopped or
        `count` rolls. Paused or not, a die rolls when pressed: its rolls are always taken in."""
        from installation.dice import DieStream
        from installation.units.die_keeper import DieKeeper, WrongRoll

        ref = self.workspace.die_ref()
        made = faults_in_a_row = 0

        def took(roll: Roll) -> None:
            nonlocal made
            made += 1
            with self._lock:
                self._status[port].made += 1
                self.rolled.append(roll)
            self._emit(port, "roll", f"{unit.name}: rolled {roll.pips} (stream bytes "
                       f"{roll.stream_offset}..{roll.stream_offset + roll.used - 1})",
                       unit=unit.name, data=roll.to_json())

        try:
            while not self._stop.is_set() and (self.count is None or made < self.count):
                keeper = DieKeeper(session, unit.serial, DieStream(gen.pool, unit.serial), ref,
                                   gen.gallery, unit.max_payload, when_empty=gen.when_empty,
                                   on_roll=took)
                try:
                    keeper.sync()
                    while not self._stop.is_set() and (self.count is None or made < self.count):
                        if self._take_once(port):
                            self._set(port, state="rolling")
                            keeper.roll()
                        keeper.watch(IDLE_WATCH_S)
                        self._set(port, state="waiting for entropy" if keeper.starved
                                  else "paused" if self.paused else "idle")
                        faults_in_a_row = 0
                except UnitLost as exc:
                    self._fault(port, exc.message)
                    self._emit(port, "lost", exc.message, unit=unit.name)
                    session.link.close()
                    session, unit = self._connect(port, expected, first=False)
                except (WrongRoll, DeviceError) as exc:
                    faults_in_a_row += 1
                    self._fault(port, exc.message)
                    self._emit(port, "fault", exc.message, unit=unit.name)
                    if faults_in_a_row >= MAX_FAULTS_IN_A_ROW:
                        raise self._give_up(f"{unit.name} on {port} failed {faults_in_a_row} "
                                            "times in a row and was taken out of service",
                                            "its rolls stop being archived; check the unit") \
                            from None
        finally:
            session.link.close()

    def _make(self, session: UnitSession, unit: UnitIdentity, gen: Generator,
              job: UnitJob) -> Exhibit:
        """One exhibit on the unit: its image, checked and archived (not yet spoken)."""
        port = session.port

        def progress(layer: int, done: int, total: int) -> None:
            self._set(port, progress=(layer, done, total))
            self.on_event(UnitEvent(port, "progress", f"layer {layer}, {done}/{total}",
                                    unit=unit.name, data={"exhibit_id": job.draw.id,
                                                          "layer": layer, "slice": done,
                                                          "slices": total}))

        rgb = session.generate(job.draw.id, job.latent, job.verdict_code, progress)
        exhibit = gen.finish_from_unit(job, rgb, unit.name)
        if exhibit.engine != unit.name:  # another process finished this pending draw first
            self._emit(port, "exhibit", f"exhibit {exhibit.id} (draw {job.draw.id}) was archived "
                       f"meanwhile by {exhibit.engine}; {unit.name} made the same image",
                       unit=unit.name, exhibit=exhibit)
        else:
            self._emit(port, "exhibit", f"exhibit {exhibit.id} archived (draw {job.draw.id}, "
                       f"{exhibit.mood})", unit=unit.name, exhibit=exhibit)
        return exhibit

    def _connect(self, port: str, expected: CardHashes,
                 first: bool) -> tuple[UnitSession, UnitIdentity]:
        """Open the port and handshake; after a loss, keep trying for `reconnect_for_s` (None:
        until stopped). A unit with other weights or another clip bank is refused."""
        # the first connection fails at once (a wrong port is one sentence), unless the
        # supervisor waits for its units forever (the kiosk: a unit may be plugged in later)
        limit = 0.0 if first and self.reconnect_for_s is not None else self.reconnect_for_s
        deadline = None if limit is None else time.monotonic() + limit
        self._set(port, state="connecting" if first else "lost")
        while True:
            try:
                with self._lock:
                    trace = self._traces.get(port, self.trace)
                session = UnitSession(Link.open(port, trace=trace))
                try:
                    unit = session.handshake(expected.weights, expected.clips)
                except BaseException:
                    session.link.close()
                    raise
                break
            except DeviceError as exc:
                self._set(port, last_fault=exc.message)
                # (after stop() too: a claimed job may still be waiting for this unit)
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                if deadline is None and self._stop.wait(RECONNECT_EVERY_S):
                    raise  # stopped while the unit was away
                if deadline is not None:
                    time.sleep(RECONNECT_EVERY_S)
        problems = identity_problems(unit, expected)
        if problems:
            session.link.close()
            text = f"{unit.name} on {port} is not used: " + "; ".join(problems)
            self._set(port, state="refused", identity=unit.as_dict())
            self._emit(port, "refused", text, unit=unit.name, data=unit.as_dict())
            raise DeviceError(text, hint="write the controller's weight image and clip bank to "
                                         "the unit's card (`qcat sd ...`), or point "
                                         "models.weights at the unit's")
        with self._lock:
            self._sessions[port] = session
        self._set(port, state="idle", identity=unit.as_dict())
        self._emit(port, "connected" if first else "reconnected",
                   f"{'' if first else 'reconnected: '}{unit.name} (firmware "
                   f"{unit.firmware_version}, protocol {unit.protocol})",
                   unit=unit.name, data=unit.as_dict())
        return session, unit
