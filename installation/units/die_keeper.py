"""Looking after one die unit: its entropy reserve kept full, its rolls checked and archived.

A die rolls when a visitor presses its button, controller or not, so the controller's work is to
keep the die's small reserve of entropy bytes topped up (TOPUP -> RESERVE, docs/protocol.md "The
die unit") and to take in every ROLL it sends: re-derived from the same bytes by the reference,
archived with its draws when it agrees (`installation.dice`), a unit fault when not.

The reserve is a window [start, start + held) of the die's stream; the controller's stream end is
what it has ever drawn for that die. Squaring the two after every RESERVE:
- start + held == end: the die holds all it was sent; draw more when it runs low;
- start + held < end, and the die did not lose its memory: bytes already drawn for it never
  arrived (a TOPUP lost on the line): sent again, the same bytes (the die never rolled them);
- the die lost its memory (power cut: start 0, nothing held) while bytes had been sent: whatever
  it held is gone (it may have rolled some unseen); new bytes from `end`, the old ones never again;
- start + held > end: the die holds bytes this controller never sent it: a unit fault.
And when the die's reserve starts past the last roll taken in, it rolled while its ROLL frames
could not arrive (the cable out, a frame damaged): those rolls are re-derived from the bytes it
spent, one after another as the die made them, and archived with `reported` 0.

Never prints; raises DeviceError subclasses as the session does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from installation.dice import DieModelRef, DieStream, check_roll, recover_rolls
from installation.errors import CheckFailed, DeviceError, EntropyExhausted
from installation.gallery import Gallery, Roll
from installation.units import protocol as qp
from installation.units.session import ZERO_SHA, UnitLost, UnitSession
from models.die_reference import ROLL_BYTES

if TYPE_CHECKING:
    from installation.units.link import TraceFn
    from installation.workspace import Workspace

# Top the reserve up when it holds fewer bytes than this many rolls need.
LOW_ROLLS = 2
TOPUP_HEADER = 4  # TOPUP's offset field before the bytes
ROLL_TIMEOUT_S = 5.0


class WrongRoll(DeviceError):
    """A die's roll differs from what its bytes make (a unit fault, not a line fault)."""


@dataclass(frozen=True)
class Reserve:
    start: int
    held: int
    capacity: int

    @property
    def end(self) -> int:
        return self.start + self.held


RollFn = Callable[[Roll], None]


@dataclass
class DieKeeper:
    """The controller's side of one die's conversation, after the handshake.

    `when_empty`: the pool's policy when it has no bytes for a top-up ("fail", "wait", "os")."""

    session: UnitSession
    serial: str
    stream: DieStream
    ref: DieModelRef
    gallery: Gallery
    max_payload: int
    when_empty: str = "fail"
    on_roll: RollFn = field(default=lambda roll: None)
    reserve: Reserve | None = None
    starved: str | None = None  # why the last top-up found no bytes (None: it did not)
    lost_reports: int = 0  # rolls whose ROLL never arrived, re-derived from the bytes spent
    _rolled_to: int = 0  # the stream end of the last roll taken in

    def __post_init__(self) -> None:
        last = self.gallery.rolls(self.serial, limit=1)
        self._rolled_to = last[0].stream_offset + last[0].used if last else 0

    @property
    def port(self) -> str:
        return self.session.port

    # -- the reserve -----------------------------------------------------------------------------

    def _topup(self, offset: int, data: bytes, timeout_s: float = 2.0) -> Reserve:
        seq = self.session.send("TOPUP", offset=offset, entropy=data)
        for msg in self.session.messages(time.monotonic() + timeout_s):
            name = msg.SPEC.name
            if name == "RESERVE":
                self.reserve = Reserve(msg.start, msg.held, msg.capacity)
                self._note_gap(self.reserve)
                return self.reserve
            if name == "ERROR" and msg.about_seq in (seq, qp.NO_SEQ):
                raise qp.unit_error(msg, self.port)
            if name == "ROLL":
                self._take(msg)
        raise UnitLost(f"{self.port}: the die did not answer a TOPUP within {timeout_s:g} s")

    def sync(self) -> Reserve:
        """Ask what the die holds (a TOPUP of no bytes) and square it with the stream."""
        r = self._topup(0, b"")
        if r.end > self.stream.end:
            raise WrongRoll(f"{self.port}: the die holds stream bytes up to {r.end}, but only "
                            f"{self.stream.end} were ever sent to {self.serial}",
                            hint="was it topped up by another controller's pool? its rolls "
                                 "cannot be checked here")
        return r

    def _note_gap(self, r: Reserve) -> None:
        """Rolls the die made whose ROLL never arrived (its reserve starts past the last roll
        taken in: a visitor rolled while the cable was out): re-derived from the bytes it
        spent and archived as such (`reported` 0), so the archive and the fairness count hold
        every roll the die showed."""
        if r.start > self._rolled_to and not (r.start == 0 and r.held == 0):
            try:
                recovered = recover_rolls(self.ref, self.stream, self._rolled_to, r.start)
                for new in recovered:
                    self.on_roll(self.gallery.add_roll(new))
            except CheckFailed as exc:
                raise WrongRoll(exc.message, hint=exc.hint) from None
            self.lost_reports += len(recovered)
            self._rolled_to = r.start

    def fill(self) -> Reserve:
        """Bring the reserve up to capacity when it is low: resend what was drawn but never
        arrived, or draw new bytes (one recorded draw) and send them in chunks the die takes."""
        r = self.reserve or self.sync()
        if r.held >= LOW_ROLLS * ROLL_BYTES:
            return r
        lost_memory = r.held == 0 and r.start == 0 and self.stream.end > 0
        if not lost_memory and r.end < self.stream.end:
            offset = r.end
            data, _, _ = self.stream.slice(offset, min(self.stream.end - offset,
                                                       r.capacity - r.held))
        else:
            room = r.capacity - (0 if lost_memory else r.held)
            offset, data = self.stream.topup(room, self.when_empty)
            if lost_memory:
                self._rolled_to = offset  # what the die held before is gone, rolled or not
        chunk = max(1, self.max_payload - TOPUP_HEADER)
        for at in range(0, len(data), chunk):
            r = self._topup(offset + at, data[at:at + chunk])
        return r

    # -- rolls -----------------------------------------------------------------------------------

    def _take(self, msg: qp.Message) -> Roll:
        """A ROLL from the die: checked against the reference and archived (or WrongRoll)."""
        try:
            new = check_roll(self.ref, self.stream, pips=msg.pips, face=bytes(msg.face),
                             offset=msg.entropy_offset, used=msg.entropy_used)
            roll = self.gallery.add_roll(new)
        except CheckFailed as exc:
            raise WrongRoll(exc.message, hint=exc.hint) from None
        self._rolled_to = max(self._rolled_to, roll.stream_offset + roll.used)
        if self.reserve is not None and roll.stream_offset == self.reserve.start:
            self.reserve = Reserve(self.reserve.start + roll.used,
                                   max(0, self.reserve.held - roll.used), self.reserve.capacity)
        else:
            self.reserve = None  # ask again before the next top-up
        self.on_roll(roll)
        return roll

    def roll(self, timeout_s: float = ROLL_TIMEOUT_S) -> Roll:
        """Press the die's button from here: one roll, topped up first when the reserve is low."""
        self.fill()
        seq = self.session.send("ROLL_REQUEST")
        refilled = False
        for msg in self.session.messages(time.monotonic() + timeout_s):
            name = msg.SPEC.name
            if name == "ROLL":
                return self._take(msg)
            if name == "ERROR" and msg.about_seq in (seq, qp.NO_SEQ):
                if msg.code == qp.ErrorCode["NO_ENTROPY"] and not refilled:
                    self.reserve = None  # what we believed was wrong: ask, then fill
                    self.fill()
                    refilled = True
                    seq = self.session.send("ROLL_REQUEST")
                    continue
                raise qp.unit_error(msg, self.port)
        raise UnitLost(f"{self.port}: the die did not roll within {timeout_s:g} s")

    def watch(self, seconds: float) -> list[Roll]:
        """Between requests: keep the reserve full and take in a roll a visitor makes, for up to
        `seconds` (back at the first roll); the controller's heartbeats go out, a silent die is
        UnitLost."""
        rolls: list[Roll] = []
        deadline = time.monotonic() + seconds
        pulse = 0.0
        while (now := time.monotonic()) < deadline:
            try:
                self.fill()
                self.starved = None
            except EntropyExhausted as exc:
                self.starved = exc.message  # what it holds still rolls; asked again next turn
            if now - pulse >= qp.HEARTBEAT_S:
                pulse = now
                self.session.send("HEARTBEAT", uptime_ms=int(now * 1000) % 2**32,
                                  state=qp.UnitState["IDLE"])
            for msg in self.session.messages(min(deadline, pulse + qp.HEARTBEAT_S)):
                if msg.SPEC.name == "ROLL":
                    rolls.append(self._take(msg))
                    return rolls  # the caller counts it, then the reserve is topped up
                if msg.SPEC.name == "ERROR" and msg.code == qp.ErrorCode["NO_ENTROPY"]:
                    self.reserve = None  # a visitor pressed an empty die: fill it now
                    break
                if msg.SPEC.name == "ERROR":
                    self.session.faults.append(qp.unit_error(msg, self.port).message)
        return rolls


def roll_on(workspace: Workspace, port: str, count: int, on_roll: RollFn = lambda roll: None,
            trace: TraceFn | None = None) -> list[Roll]:
    """`qcat units roll`: handshake with the die on `port`, then press its button `count` times
    from here; every roll checked and archived. DeviceError naming the port when it is not a die,
    or not one holding the controller's decoder."""
    from installation.dice import DieStream
    from installation.units.link import Link
    from installation.units.probe import CardHashes, identity_problems

    workspace.require_writable("rolling a die")
    ref = workspace.die_ref()
    with Link.open(port, trace=trace) as link:
        session = UnitSession(link)
        unit = session.handshake()
        if unit.kind != "die":
            raise DeviceError(f"{unit.name} on {port} is a {unit.kind} unit, not a die",
                              hint="`qcat units generate PORT` makes a cat unit's exhibits")
        problems = identity_problems(unit, CardHashes(ZERO_SHA, die_weights=bytes.fromhex(
            ref.sha256)))
        if problems:
            raise DeviceError(f"{unit.name} on {port} is not used: " + "; ".join(problems),
                              hint="flash the die with the controller's decoder (firmware/die/"
                                   "die_weights.h), or point models.die_decoder at the die's")
        with workspace.open_pool() as pool, workspace.open_gallery() as gallery:
            keeper = DieKeeper(session, unit.serial, DieStream(pool, unit.serial), ref, gallery,
                               unit.max_payload, when_empty=workspace.config["entropy.when_empty"],
                               on_roll=on_roll)
            keeper.sync()
            return [keeper.roll() for _ in range(count)]
