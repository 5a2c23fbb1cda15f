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
(the CLI prints it, the dashboard will show it); nothing here prints.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from installation.errors import DeviceError, QcatError
from installation.exhibit import UnitJob, WrongImage, purpose_for
from installation.units.link import Link, TraceFn
from installation.units.session import LineFault, UnitIdentity, UnitLost, UnitSession
from quantum import latent as latent_mod

if TYPE_CHECKING:
    from installation.exhibit import Generator
    from installation.gallery import Exhibit
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


@dataclass(frozen=True)
class UnitEvent:
    """Something a worker saw: `kind` is one of connected, refused, progress, exhibit, spoken,
    fault, lost, reconnected, stopped; `text` is the sentence for people."""

    port: str
    kind: str
    text: str
    unit: str = ""
    exhibit: Exhibit | None = None
    data: dict[str, Any] = field(default_factory=dict)


EventFn = Callable[[UnitEvent], None]


class JobBoard:
    """Which pending draws are being worked on: a job is claimed by one worker at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claimed: set[int] = set()

    def claim(self, gen: Generator) -> UnitJob:
        """A pending exhibit of this model nobody works on, else a new draw (the pending record)."""
        with self._lock:
            purpose = purpose_for(gen.model)
            for draw in gen.pending():
                if draw.purpose == purpose and draw.id not in self._claimed:
                    self._claimed.add(draw.id)
                    return gen.unit_job(draw)
            draw = gen.pool.draw(latent_mod.EXHIBIT_BYTES, purpose, when_empty=gen.when_empty,
                                 wait_timeout_s=gen.wait_timeout_s)
            self._claimed.add(draw.id)
            return gen.unit_job(draw)

    def release(self, job: UnitJob) -> None:
        with self._lock:
            self._claimed.discard(job.draw.id)


@dataclass
class Supervisor:
    """Runs one worker per port until each has archived `count` exhibits (None: until stopped)."""

    workspace: Workspace
    ports: list[str]
    count: int | None = None
    on_event: EventFn = field(default=lambda event: None)
    trace: TraceFn | None = None
    reconnect_for_s: float = RECONNECT_FOR_S
    engine: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _board: JobBoard = field(default_factory=JobBoard)
    made: list[Exhibit] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Take no new jobs; each worker finishes the one it has, then ends."""
        self._stop.set()

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

    def _emit(self, port: str, kind: str, text: str, **extra: Any) -> None:
        log.info("%s: %s", port, text)
        self.on_event(UnitEvent(port, kind, text, **extra))

    def _worker(self, port: str) -> None:
        gen = self.workspace.open_generator(engine=self.engine)
        try:
            self._serve(port, gen)
        except QcatError as exc:
            self.failures.append(exc.message)
            self._emit(port, "stopped", exc.message)
        finally:
            gen.pool.close()
            gen.gallery.close()

    def _serve(self, port: str, gen: Generator) -> None:
        from models.weightimage import sha256_of

        weights_sha = bytes.fromhex(gen.model.sha256)
        clips = self.workspace.clip_bank_path
        clips_sha = bytes.fromhex(sha256_of(clips)) if clips.is_file() else bytes(32)
        made = 0
        faults_in_a_row = line_retries = 0
        session, unit = self._connect(port, weights_sha, clips_sha, first=True)
        job: UnitJob | None = None
        try:
            while job is not None or (not self._stop.is_set()
                                      and (self.count is None or made < self.count)):
                # a claimed job is finished even after stop(): its bytes are drawn, so it
                # completes here or, if this unit is taken out of service, stays pending
                if job is None:
                    job = self._board.claim(gen)
                try:
                    exhibit = self._make(session, unit, gen, job)
                except UnitLost as exc:
                    faults_in_a_row += 1
                    self._emit(port, "lost", exc.message, unit=unit.name)
                    session.link.close()
                    if faults_in_a_row >= MAX_FAULTS_IN_A_ROW:
                        raise DeviceError(f"{unit.name} on {port} was lost {faults_in_a_row} "
                                          "times in a row before a job could finish and was "
                                          "taken out of service",
                                          hint="its job stays pending for the other units; "
                                               "check the cable") from None
                    session, unit = self._connect(port, weights_sha, clips_sha, first=False)
                    continue  # the same job, the same bytes
                except LineFault as exc:
                    line_retries += 1
                    self._emit(port, "fault", exc.message, unit=unit.name,
                               data={"exhibit_id": job.draw.id, "line": True})
                    if line_retries >= MAX_LINE_RETRIES:
                        raise DeviceError(f"the line to {unit.name} on {port} lost frames "
                                          f"{line_retries} times in a row and was given up",
                                          hint="its job stays pending; check the cable") \
                            from None
                    continue  # the unit holds the image: asking again costs a re-send
                except DeviceError as exc:  # the unit's ERROR, a wrong image
                    faults_in_a_row += 1
                    self._emit(port, "fault", exc.message, unit=unit.name,
                               data={"exhibit_id": job.draw.id})
                    if isinstance(exc, WrongImage):
                        # the unit holds that image and would send it again: make it forget
                        # and compute afresh
                        with contextlib.suppress(DeviceError):
                            session.reset()
                    if faults_in_a_row >= MAX_FAULTS_IN_A_ROW:
                        raise DeviceError(f"{unit.name} on {port} failed {faults_in_a_row} jobs "
                                          "in a row and was taken out of service",
                                          hint="its job stays pending for the other units") \
                            from None
                    continue  # the same job again
                # archived: the job is done, whatever happens to its speech
                faults_in_a_row = line_retries = 0
                self._board.release(job)
                job = None
                made += 1
                self.made.append(exhibit)
                try:
                    ms = session.speak(exhibit.draw_id, exhibit.verdict_code)
                    self._emit(port, "spoken", f"exhibit {exhibit.id} spoken in "
                               f"{ms / 1000:.1f} s", unit=unit.name, exhibit=exhibit)
                except UnitLost as exc:
                    self._emit(port, "lost", exc.message, unit=unit.name)
                    session.link.close()
                    session, unit = self._connect(port, weights_sha, clips_sha, first=False)
                except DeviceError as exc:
                    self._emit(port, "fault", f"exhibit {exhibit.id} was not spoken: "
                               f"{exc.message}", unit=unit.name)
        finally:
            if job is not None:
                self._board.release(job)  # pending, for another unit or a later run
            session.link.close()

    def _make(self, session: UnitSession, unit: UnitIdentity, gen: Generator,
              job: UnitJob) -> Exhibit:
        """One exhibit on the unit: its image, checked and archived (not yet spoken)."""
        port = session.port

        def progress(layer: int, done: int, total: int) -> None:
            self.on_event(UnitEvent(port, "progress", f"layer {layer}, {done}/{total}",
                                    unit=unit.name, data={"exhibit_id": job.draw.id,
                                                          "layer": layer, "slice": done,
                                                          "slices": total}))

        rgb = session.generate(job.draw.id, job.latent, job.verdict_code, progress)
        exhibit = gen.finish_from_unit(job, rgb, unit.name)
        self._emit(port, "exhibit", f"exhibit {exhibit.id} archived (draw {job.draw.id}, "
                   f"{exhibit.mood})", unit=unit.name, exhibit=exhibit)
        return exhibit

    def _connect(self, port: str, weights_sha: bytes, clips_sha: bytes,
                 first: bool) -> tuple[UnitSession, UnitIdentity]:
        """Open the port and handshake; after a loss, keep trying for `reconnect_for_s`.
        A unit with other weights or another clip bank is refused (DeviceError)."""
        deadline = time.monotonic() + (0 if first else self.reconnect_for_s)
        while True:
            try:
                session = UnitSession(Link.open(port, trace=self.trace))
                try:
                    unit = session.handshake(weights_sha, clips_sha)
                except BaseException:
                    session.link.close()
                    raise
                break
            except DeviceError:
                if first or time.monotonic() > deadline:  # (after stop() too: a claimed job)
                    raise
                time.sleep(RECONNECT_EVERY_S)
        problems = []
        if unit.kind != "cat":
            problems.append(f"it is a {unit.kind} unit")
        if unit.weights_sha256 != weights_sha:
            problems.append(f"its weight image is {unit.weights_sha256.hex()[:16]}…, the "
                            f"controller's is {weights_sha.hex()[:16]}…")
        if clips_sha != bytes(32) and unit.clips_sha256 != clips_sha:
            problems.append(f"its clip bank is {unit.clips_sha256.hex()[:16]}…, the "
                            f"controller's is {clips_sha.hex()[:16]}…")
        if problems:
            session.link.close()
            self._emit(port, "refused", f"{unit.name} on {port} is not used: "
                       + "; ".join(problems), unit=unit.name, data=unit.as_dict())
            raise DeviceError(f"{unit.name} on {port} is not used: " + "; ".join(problems),
                              hint="write the controller's weight image and clip bank to the "
                                   "unit's card (`qcat sd ...`), or point models.weights at the "
                                   "unit's")
        self._emit(port, "connected" if first else "reconnected",
                   f"{'' if first else 'reconnected: '}{unit.name} (firmware "
                   f"{unit.firmware_version}, protocol {unit.protocol})",
                   unit=unit.name, data=unit.as_dict())
        return session, unit
