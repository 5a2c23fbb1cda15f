"""One conversation with one unit: sequence numbers, the handshake, a job, speaking, liveness.

The controller's half of docs/protocol.md "The conversation", over a `Link` and the pure codec
(`installation.units.protocol`). It holds no policy about *which* exhibit a unit makes or what
happens to the image: the supervisor decides that; this module only says, in typed results or one
`DeviceError` sentence naming the port, what the unit did.

Liveness: every frame heard from the unit (a HEARTBEAT included) counts as a sign of life; a unit
silent for `MISSED_HEARTBEATS` heartbeat intervals is `UnitLost`. Between jobs (`idle`) the
controller sends its own HEARTBEAT every interval, so a unit knows it is supervised; during a job
the requests are that sign, and nothing else is sent that a damaged line could turn into an ERROR
the job would have to tell apart from its own. Damaged frames cost only
themselves (the decoder resynchronises at the next zero byte); they are counted in `faults`, and
a job whose image lost a chunk to one fails with a sentence, to be sent again with the same bytes.

Must never: invent a reply, accept an image whose received bytes do not hash to the unit's own
IMAGE_DONE, or swallow an ERROR the unit sent.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from installation.errors import DeviceError
from installation.units import protocol as qp
from installation.units.link import Link
from installation.words import plural

CONTROLLER_SERIAL = socket.gethostname().encode("ascii", "replace")[:16].ljust(16, b"\0")
ZERO_SHA = bytes(32)
# Longest a GENERATE may take on the real unit (the full model is SD-bound at about 30 s).
JOB_TIMEOUT_S = 120.0
# Longest a verdict takes to say (the longest is 8.5 s), with margin.
SPEAK_TIMEOUT_S = 30.0
IMAGE_SHAPE = (64, 64, 3)

ProgressFn = Callable[[int, int, int], None]  # (layer, slice, slices)


class LineFault(DeviceError):
    """Frames were lost or damaged on the way (a chunk missing, a hash over damaged bytes): the
    line's fault, not the unit's; the same job is simply asked for again."""


class UnitLost(DeviceError):
    """The unit fell silent (no frame for `MISSED_HEARTBEATS` heartbeat intervals) or its port
    went away; the job it had stays pending."""


@dataclass(frozen=True)
class UnitIdentity:
    """What a unit said in its HELLO."""

    port: str
    kind: str  # "cat" | "die"
    serial: str
    firmware: int
    protocol: int
    weights_sha256: bytes
    clips_sha256: bytes
    max_payload: int

    @property
    def name(self) -> str:
        """How the archive names a unit: `unit:cat:<serial>`."""
        return f"unit:{self.kind}:{self.serial}"

    @property
    def firmware_version(self) -> str:
        return f"{self.firmware >> 16}.{(self.firmware >> 8) & 0xFF}.{self.firmware & 0xFF}"

    def as_dict(self) -> dict[str, Any]:
        return {"port": self.port, "kind": self.kind, "serial": self.serial,
                "name": self.name, "firmware": self.firmware_version,
                "protocol": self.protocol, "weights_sha256": self.weights_sha256.hex(),
                "clips_sha256": self.clips_sha256.hex(), "max_payload": self.max_payload}


@dataclass
class UnitSession:
    """The controller's side of one unit's conversation over an open `Link`."""

    link: Link
    faults: list[str] = field(default_factory=list)
    state: int = 0
    last_heard: float = field(default_factory=time.monotonic)
    _decoder: qp.FrameDecoder = field(default_factory=qp.FrameDecoder)
    _seq: int = 0
    _inbox: list[qp.Message] = field(default_factory=list)
    _heard_bytes: int = 0
    frames_in: int = 0  # whole frames received (the benchmark counts them)
    _started: float = field(default_factory=time.monotonic)
    _pulse_sent: float = 0.0

    @property
    def port(self) -> str:
        return self.link.port

    # -- sending and receiving -----------------------------------------------------------------

    def send(self, name: str, **fields: Any) -> int:
        """Send one message; returns its sequence number."""
        self._seq = (self._seq + 1) % qp.SEQ_MODULO
        if self._seq == qp.NO_SEQ:
            self._seq = 0
        try:
            self.link.write(qp.encode_message(qp.message(name, **fields), self._seq))
        except DeviceError as exc:
            raise UnitLost(exc.message,  # names the port and what happened to it
                           hint="the job stays pending and is sent again after a reconnect") \
                from None
        return self._seq

    def receive(self, timeout_s: float) -> qp.Message | None:
        """The next message from the unit within `timeout_s`, or None. A HEARTBEAT updates the
        unit's state and is returned like any other message."""
        deadline = time.monotonic() + timeout_s
        while not self._inbox:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._pump(min(left, 0.05))
        return self._inbox.pop(0)

    def _pump(self, timeout_s: float) -> None:
        try:
            data = self.link.read(4096, timeout_s)
        except DeviceError as exc:
            raise UnitLost(exc.message,  # names the port and what happened to it
                           hint="the job stays pending and is sent again after a reconnect") \
                from None
        if not data:
            return
        self._heard_bytes += len(data)
        for item in self._decoder.feed(data):
            if isinstance(item, qp.FrameError):
                self.faults.append(item.error(self.port).message)
                continue
            try:
                msg = qp.decode_message(item, self.port)
            except qp.ProtocolError as exc:
                self.faults.append(exc.message)
                continue
            self.last_heard = time.monotonic()
            self.frames_in += 1
            if msg.SPEC.name in ("HEARTBEAT", "ACK"):
                self.state = int(msg.state)
            self._inbox.append(msg)

    def messages(self, deadline: float) -> Iterator[qp.Message]:
        """Messages until `deadline` (monotonic); UnitLost when the unit falls silent."""
        silence_limit = qp.MISSED_HEARTBEATS * qp.HEARTBEAT_S
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            msg = self.receive(min(deadline - now, qp.HEARTBEAT_S))
            if msg is not None:
                yield msg
            elif time.monotonic() - self.last_heard > silence_limit:
                raise UnitLost(f"{self.port}: the unit stopped answering (no frame for "
                               f"{silence_limit:g} s, {qp.MISSED_HEARTBEATS} heartbeats)",
                               hint="the job stays pending and is sent again after a reconnect")

    @property
    def silent_s(self) -> float:
        """Seconds since the unit was last heard."""
        return time.monotonic() - self.last_heard

    def idle(self, seconds: float) -> None:
        """Watch a unit that has no job for `seconds`: its heartbeats are heard (UnitLost after
        `MISSED_HEARTBEATS` silent intervals) and the controller's own go out when due. What
        else arrives (a late frame of an earlier job, an ERROR about a damaged heartbeat of
        ours) is noted in `faults` or dropped: there is no request for it to answer."""
        deadline = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if now - self._pulse_sent >= qp.HEARTBEAT_S:
                self._pulse_sent = now
                self.send("HEARTBEAT", uptime_ms=int((now - self._started) * 1000) % 2**32,
                          state=qp.UnitState["IDLE"])
            wait = min(deadline, self._pulse_sent + qp.HEARTBEAT_S)
            for msg in self.messages(wait):
                if msg.SPEC.name == "ERROR":
                    self.faults.append(qp.unit_error(msg, self.port).message)
            if time.monotonic() >= deadline:
                return

    # -- the conversation ----------------------------------------------------------------------

    def handshake(self, weights_sha256: bytes = ZERO_SHA, clips_sha256: bytes = ZERO_SHA,
                  firmware: int = 0, timeout_s: float = 3.0) -> UnitIdentity:
        """HELLO both ways. DeviceError naming the port when nothing, or nothing qcat, answers."""
        self.send("HELLO", protocol=qp.VERSION, kind=qp.UnitKind["CONTROLLER"],
                  serial=CONTROLLER_SERIAL, firmware=firmware, weights_sha256=weights_sha256,
                  clips_sha256=clips_sha256, max_payload=qp.MAX_PAYLOAD)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is None:
                break
            if msg.SPEC.name == "HELLO":
                return self._identity(msg)
            if msg.SPEC.name == "ERROR":
                raise qp.unit_error(msg, self.port)
        if self._heard_bytes:
            seen = (self.faults[-1] if self.faults else
                    f"it sent {plural(self._heard_bytes, 'byte')}, none of them a HELLO frame")
            raise DeviceError(f"{self.port} answered, but not as a qcat unit ({seen})",
                              hint="is this port another device? `qcat units list` shows the "
                                   "ports where units were found")
        raise DeviceError(f"{self.port} did not answer a HELLO within {timeout_s:g} s",
                          hint="is a qcat unit (or `qcat sim cat`) on this port, and powered?")

    def _identity(self, hello: qp.Message) -> UnitIdentity:
        if hello.protocol != qp.VERSION:
            newer = "a newer" if hello.protocol > qp.VERSION else "an older"
            raise DeviceError(f"{self.port} speaks {newer} protocol (version {hello.protocol}; "
                              f"this qcat speaks {qp.VERSION})",
                              hint="update qcat" if hello.protocol > qp.VERSION
                              else "update the unit's firmware")
        kind = qp.UnitKind(hello.kind).name.lower()
        serial = hello.serial.rstrip(b"\0").decode("ascii", "replace")
        return UnitIdentity(self.port, kind, serial, hello.firmware, hello.protocol,
                            hello.weights_sha256, hello.clips_sha256, hello.max_payload)

    def generate(self, exhibit: int, latent: np.ndarray, verdict: int,
                 progress: ProgressFn | None = None,
                 timeout_s: float = JOB_TIMEOUT_S) -> np.ndarray:
        """Run one job on the unit; the (64, 64, 3) uint8 image it returned, its bytes checked
        against the unit's own SHA-256. DeviceError (the unit's ERROR, a lost chunk) or UnitLost."""
        seq = self.send("GENERATE", exhibit=exhibit, latent=tuple(int(v) for v in latent),
                        verdict=verdict)
        image = bytearray(qp.IMAGE_BYTES)
        received = 0
        started = False  # the unit has shown it took the job (ACK, PROGRESS or IMAGE)
        busy_waits = 0
        for msg in self.messages(time.monotonic() + timeout_s):
            name = msg.SPEC.name
            if name == "ERROR" and msg.code == qp.ErrorCode["BUSY"] and busy_waits < 3:
                # still speaking or finishing an earlier job: wait for it, then ask again
                self._wait_idle(timeout_s)
                busy_waits += 1
                seq = self.send("GENERATE", exhibit=exhibit,
                                latent=tuple(int(v) for v in latent), verdict=verdict)
                continue
            if name == "ERROR" and (msg.about_seq in (seq, qp.NO_SEQ)
                                    or msg.code == qp.ErrorCode["ENGINE"]):
                raise qp.unit_error(msg, self.port)  # refused, damaged on the way, or failed
            if name == "HEARTBEAT":
                if started and msg.state == qp.UnitState["IDLE"]:
                    # the unit finished, but what it sent did not all arrive
                    raise LineFault(f"{self.port}: exhibit {exhibit}'s image did not all "
                                    f"arrive ({received:,} of {qp.IMAGE_BYTES:,} bytes)",
                                    hint="the job is asked for again")
                continue
            if getattr(msg, "exhibit", exhibit) != exhibit:
                continue  # a stale frame of an earlier job
            started = started or name in ("ACK", "PROGRESS", "IMAGE")
            if name == "PROGRESS" and progress:
                progress(msg.layer, msg.slice, msg.slices)
            elif name == "IMAGE":
                end = msg.offset + len(msg.data)
                if end > len(image):
                    raise DeviceError(f"{self.port}: image chunk at {msg.offset} runs past the "
                                      f"{len(image):,}-byte image")
                image[msg.offset:end] = msg.data
                received += len(msg.data)
            elif name == "IMAGE_DONE":
                if msg.length != qp.IMAGE_BYTES or received != qp.IMAGE_BYTES:
                    raise LineFault(f"{self.port}: exhibit {exhibit}'s image arrived incomplete "
                                      f"({received:,} of {qp.IMAGE_BYTES:,} bytes; a damaged "
                                      "frame lost a chunk)", hint="the job is sent again")
                if hashlib.sha256(image).digest() != msg.sha256:
                    raise LineFault(f"{self.port}: exhibit {exhibit}'s image does not match the "
                                      "SHA-256 the unit sent with it", hint="the job is sent again")
                return np.frombuffer(bytes(image), dtype=np.uint8).reshape(IMAGE_SHAPE).copy()
        raise UnitLost(f"{self.port}: exhibit {exhibit} did not finish within {timeout_s:g} s",
                       hint="the job stays pending and is sent again")

    def speak(self, exhibit: int, verdict: int, timeout_s: float = SPEAK_TIMEOUT_S) -> int:
        """The unit speaks the verdict; returns the milliseconds it says it took (0 when its
        SPOKEN was lost on the line but its heartbeat shows it idle again)."""
        seq = self.send("SPEAK", exhibit=exhibit, verdict=verdict)
        acked = False
        for msg in self.messages(time.monotonic() + timeout_s):
            name = msg.SPEC.name
            if name == "ERROR" and msg.about_seq in (seq, qp.NO_SEQ):
                raise qp.unit_error(msg, self.port)
            if name == "SPOKEN" and msg.exhibit == exhibit:
                return int(msg.ms)
            if name == "ACK" and msg.acked_seq == seq:
                acked = True
            elif name == "HEARTBEAT" and msg.state == qp.UnitState["IDLE"]:
                if acked:
                    return 0  # spoken; the SPOKEN frame did not arrive
                seq = self.send("SPEAK", exhibit=exhibit, verdict=verdict)  # ours was lost
        raise UnitLost(f"{self.port}: the verdict of exhibit {exhibit} was not spoken within "
                       f"{timeout_s:g} s")

    def _wait_idle(self, timeout_s: float) -> None:
        for msg in self.messages(time.monotonic() + timeout_s):
            if msg.SPEC.name == "HEARTBEAT" and msg.state == qp.UnitState["IDLE"]:
                return

    def reset(self, timeout_s: float = 2.0) -> None:
        seq = self.send("RESET")
        for msg in self.messages(time.monotonic() + timeout_s):
            if msg.SPEC.name == "ACK" and msg.acked_seq == seq:
                self._decoder.reset()
                return
        raise DeviceError(f"{self.port}: the unit did not acknowledge RESET")
