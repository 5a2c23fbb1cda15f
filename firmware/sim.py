"""The simulated cat unit: the unit's own C core (firmware/cat_unit.py) behind a real pseudo-terminal.

`CatSimulator.serve()` opens a pty, announces the slave's path (/dev/pts/N) and moves bytes between
the pty's master side and the core until asked to stop. The controller opens that path like any
serial port (installation.units.link), so it meets the identical code path a USB unit gives it.
Nothing here decides what the unit answers; this module is the *board*: the serial line, the
weight image as the SD card, the clock, the DAC, and the faults of a bad cable or a bad unit.

Timing: `fast` makes the SD card and the DAC instant. `realistic` spreads the unit's modelled
generation time (firmware/bench.py: SPI-mode SD at 0.47 MB/s against the V5F core, per read unit
max(read, compute)) over the weight reads, and keeps the DAC busy for the verdict's spoken length
(`speak_ms`, from the clip bank; the caller supplies it).

Faults (seeded, each kind from its own random stream so one flag does not change another's
draws), on the frames the unit sends:
  drop_rate P          a frame is not sent
  corrupt_rate P       one bit of one byte of a frame is flipped (never making or removing a
                       0x00, so exactly that frame arrives damaged)
  hang_after N         after N frames the unit goes silent and deaf, the pty stays open
  unplug_after N       after N frames on a port the pty is closed; after UNPLUG_PAUSE_S a new
                       pty (a new /dev/pts node, as a re-plugged USB device gets) is announced;
                       the unit keeps its state (it has its own supply), and it happens again
                       after N more frames on the new port
  wrong_image_rate P   one bit of the image is flipped before its SHA-256 is taken, so every
                       frame and the IMAGE_DONE hash are consistent and only a golden compare
                       catches it

Standard library and the firmware package only (never models, phrases or the appliance layer);
never prints: the caller hands in `announce(path)` and `note(sentence)`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import select
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from firmware import bench
from firmware.cat_unit import CatUnit, Identity

# The SD card of `--timing realistic`: the original build's SPI-mode card (firmware/bench.py).
REALISTIC_SD_BYTES_PER_S = bench.SD_THROUGHPUTS[0][1]
# A re-plugged USB device takes about this long to enumerate again.
UNPLUG_PAUSE_S = 1.0
# The longest the loop sleeps without looking at the line or the stop flag.
MAX_IDLE_S = 0.05
# Bytes of frames waiting for a controller that does not read, before whole frames are dropped
# (a USB CDC device with no host reading drops its packets too).
MAX_QUEUED_BYTES = 64 * 1024
READ_BYTES = 4096

StopFn = Callable[[], bool]


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and the seed that makes it repeatable."""

    drop_rate: float = 0.0
    corrupt_rate: float = 0.0
    hang_after: int | None = None
    unplug_after: int | None = None
    wrong_image_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop_rate", "corrupt_rate", "wrong_image_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        for name in ("hang_after", "unplug_after"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass(frozen=True)
class Timing:
    """`realistic` False: no delays. `speak_ms(verdict)`: how long the DAC speaks it."""

    realistic: bool = False
    speak_ms: Callable[[int], int] = field(default=lambda verdict: 0)
    sd_bytes_per_s: float = REALISTIC_SD_BYTES_PER_S


@dataclass
class SimStats:
    """What the board did, for the log and the tests."""

    frames: int = 0
    dropped: int = 0
    corrupted: int = 0
    overflowed: int = 0
    wrong_images: int = 0
    unplugs: int = 0
    ports: list[str] = field(default_factory=list)
    hung: bool = False


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a file, read in blocks (a full weight image is 13 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


class _Port:
    """One pseudo-terminal: the master side is the unit's end of the cable. The simulator keeps
    the slave open too, so a controller closing and re-opening the port never hangs it up; the
    slave is put in raw mode at once so nothing is echoed back to the unit before the controller
    configures it."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self._queue: deque[bytes] = deque()
        self._queued = 0

    def queue(self, frame: bytes) -> bool:
        """False when the controller has not been reading and the frame is dropped."""
        if self._queued + len(frame) > MAX_QUEUED_BYTES:
            return False
        self._queue.append(frame)
        self._queued += len(frame)
        return True

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def flush(self) -> None:
        """Write what the line takes now; the rest waits for the next turn."""
        while self._queue:
            head = self._queue[0]
            try:
                n = os.write(self.master, head)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EAGAIN):
                    return
                raise
            self._queued -= n
            if n < len(head):
                self._queue[0] = head[n:]
                return
            self._queue.popleft()

    def read(self) -> bytes:
        try:
            return os.read(self.master, READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class CatSimulator:
    """A cat unit on a pseudo-terminal: the C core, a board around it, and the faults."""

    def __init__(self, weights: Path, identity: Identity, *, timing: Timing | None = None,
                 faults: Faults | None = None, announce: Callable[[str], None] = lambda p: None,
                 unplugged: Callable[[], None] = lambda: None,
                 note: Callable[[str], None] = lambda s: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timing = timing or Timing()
        self.faults = faults or Faults()
        self.stats = SimStats()
        self._announce = announce
        self._unplugged = unplugged
        self._note = note
        self._clock = clock
        self._t0 = clock()
        seed = self.faults.seed
        # One stream per kind of fault: switching one on never shifts another's draws.
        self._rng = {kind: random.Random(f"{seed}:{kind}")
                     for kind in ("drop", "corrupt", "wrong_image")}
        self._weights = open(weights, "rb")  # noqa: SIM115 (closed by close())
        self._read_s_per_byte = 0.0
        self._speak_until = 0.0
        self._port: _Port | None = None
        self._next_port: _Port | None = None
        self._replug_at = 0.0
        self._port_frames = 0
        self._stop: StopFn = lambda: False
        self.unit = CatUnit(self, identity, image_hook=self._on_image)
        if self.timing.realistic and self.unit.layers:
            model = bench.unit_time(self.unit.layers, self.timing.sd_bytes_per_s)
            weight_bytes = sum(lay.slice_bytes * lay.c_out for lay in self.unit.layers)
            self._read_s_per_byte = model.total_s / weight_bytes

    @property
    def modelled_generation_s(self) -> float:
        """The seconds a generation takes here (0 with fast timing)."""
        return self._read_s_per_byte * sum(lay.slice_bytes * lay.c_out for lay in self.unit.layers)

    # -- the board (firmware.cat_unit.Board) ---------------------------------------------------

    def millis(self) -> int:
        return int((self._clock() - self._t0) * 1000)

    def read(self, offset: int, length: int) -> bytes | None:
        if self._stop():
            return None  # shutting down: end a long realistic generation now
        if self._read_s_per_byte:
            time.sleep(length * self._read_s_per_byte)
        return os.pread(self._weights.fileno(), length, offset)

    def speak_start(self, verdict: int) -> int:
        self._speak_until = self._clock() + self.timing.speak_ms(verdict) / 1000
        return 0

    def speak_busy(self) -> bool:
        return self._clock() < self._speak_until

    def write(self, frame: bytes) -> None:
        self.stats.frames += 1
        self._port_frames += 1
        drop = self._rng["drop"].random() < self.faults.drop_rate
        corrupt = self._rng["corrupt"].random() < self.faults.corrupt_rate
        if self.stats.hung or self._port is None or self._stop():
            return  # a hung unit, a pulled cable, a unit being switched off: nothing goes out
        if drop:
            self.stats.dropped += 1
        else:
            if corrupt:
                frame = self._corrupt(frame)
                self.stats.corrupted += 1
            if self._port.queue(frame):
                self._port.flush()
            else:
                self.stats.overflowed += 1
        if self.faults.hang_after is not None and self.stats.frames >= self.faults.hang_after:
            self.stats.hung = True
        if self.faults.unplug_after is not None and self._port_frames >= self.faults.unplug_after:
            self._unplug()

    def _corrupt(self, frame: bytes) -> bytes:
        rng = self._rng["corrupt"]
        data = bytearray(frame)
        at = rng.randrange(len(data) - 1)  # never the delimiter
        bits = [b for b in range(8) if data[at] ^ (1 << b)]  # never make a 0x00
        data[at] ^= 1 << rng.choice(bits)
        return bytes(data)

    def _on_image(self, rgb: memoryview) -> None:
        rng = self._rng["wrong_image"]
        if rng.random() < self.faults.wrong_image_rate:
            bit = rng.randrange(len(rgb) * 8)
            rgb[bit // 8] ^= 1 << (bit % 8)
            self.stats.wrong_images += 1

    # -- the line ------------------------------------------------------------------------------

    def _plug(self, port: _Port) -> None:
        self._port = port
        self._port_frames = 0
        self.stats.ports.append(port.path)
        self.unit.line_reset()
        self._announce(port.path)

    def _unplug(self) -> None:
        """Pull the cable: what the line has not taken is lost. The next node is taken now, so
        it cannot be the old one's number even if the controller lets go of it at once."""
        assert self._port is not None
        self._next_port = _Port()
        self._port.close()
        self._port = None
        self._unplugged()  # (the caller removes the unit's stable name, as udev does)
        self._replug_at = self._clock() + UNPLUG_PAUSE_S
        self.stats.unplugs += 1

    def serve(self, stop: StopFn) -> SimStats:
        """Run until `stop()` is true (checked at least every MAX_IDLE_S)."""
        self._stop = stop
        if self.unit.engine_code:
            self._note("the engine refused the weight image (CAT_E code "
                       f"{self.unit.engine_code}): the unit answers in its fault state")
        self._plug(_Port())
        wait_s = 0.0
        try:
            while not stop():
                if self._port is None and self._clock() >= self._replug_at:
                    assert self._next_port is not None
                    self._plug(self._next_port)
                    self._next_port = None
                port = self._port
                readers = [port.master] if port else []
                writers = [port.master] if port and port.pending else []
                timeout = min(wait_s, MAX_IDLE_S)
                if self._port is None:
                    timeout = min(timeout, max(0.0, self._replug_at - self._clock()))
                ready_r, ready_w, _ = select.select(readers, writers, [], timeout)
                if port and ready_w:
                    port.flush()
                if port and ready_r:
                    data = port.read()
                    if data and not self.stats.hung:
                        self.unit.rx(data)
                if self.stats.hung:
                    wait_s = MAX_IDLE_S
                    continue
                wait_s = self.unit.poll() / 1000
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        for port in (self._port, self._next_port):
            if port is not None:
                port.close()
        self._port = self._next_port = None
        self._weights.close()
