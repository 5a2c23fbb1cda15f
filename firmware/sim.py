"""Simulated units: the units' own C cores (firmware/cat_unit.py, firmware/die_unit.py) behind a
real pseudo-terminal.

`serve()` opens a pty, announces the slave's path (/dev/pts/N) and moves bytes between the pty's
master side and the core until asked to stop. The controller opens that path like any serial
port (installation.units.link), so it meets the identical code path a USB unit gives it. Nothing
here decides what a unit answers; this module is the *board*. `PtyBoard` is the part both units
share: the serial line, the clock, the faults of a bad cable or a bad unit, the re-plugs and the
serve loop. `CatSimulator` adds the weight image as the SD card and the DAC; `DieSimulator` adds
the SSD1306 and the button, pressed by key, by schedule or by hand (`press()`).

The card (cat): with a card (`firmware.card.open_card`: a folder or a FAT32 image, as
`qcat sd build` makes it) the weight image is the card's WEIGHTS.QCW and the board gives the core the card's reserve and
journal, so the unit works offline when no controller talks to it (cat_unit.h): each offline
exhibit is reported through `on_exhibit` after its journal entry is on the card, and
`CatSimulator.make_offline(n)` makes n of them at once with no pty at all.

Timing (cat): `fast` makes the SD card and the DAC instant. `realistic` spreads the unit's
modelled generation time (firmware/bench.py: SPI-mode SD at 0.47 MB/s against the V5F core, per
read unit max(read, compute)) over the weight reads, and keeps the DAC busy for the verdict's
spoken length (`speak_ms`, from the clip bank; the caller supplies it).

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
  wrong_image_rate P   (cat) one bit of the image is flipped before its SHA-256 is taken, so
                       every frame and the IMAGE_DONE hash are consistent and only a golden
                       compare catches it

Standard library and the firmware package only (never models, phrases or the appliance layer);
never prints: the caller hands in `announce(path)` and `note(sentence)`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import select
import struct
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from firmware import bench, cardfmt
from firmware.cat_unit import CardFile, CatUnit, Identity, Offline, OfflineState, OfflineWhy

if TYPE_CHECKING:  # the die's binding needs numpy: `qcat sim cat` does not load it
    from firmware.die_engine import DieEngine
    from firmware.die_unit import Identity as DieIdentity

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
# A die's button pressed by key or schedule is held down this long, then left up this long: three
# times the core's debounce (DIE_UNIT_DEBOUNCE_MS, 20 ms; a test holds them together), so each
# press is seen exactly once.
PRESS_S = 0.06
# The shortest --schedule: a press and its release, with room to spare.
MIN_SCHEDULE_S = 0.2

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


class CardAccess(Protocol):
    """A unit's card as the simulator's board reaches it: whole files by name, and bytes inside
    one read and rewritten in place (a unit never grows a file)."""

    def read(self, name: str) -> bytes: ...

    def pread(self, name: str, offset: int, length: int) -> bytes: ...

    def pwrite(self, name: str, offset: int, data: bytes) -> None: ...

    def size(self, name: str) -> int: ...


@dataclass(frozen=True)
class OfflineExhibit:
    """One offline exhibit as its journal entry records it, and the image the unit showed."""

    record: int
    verdict: int
    image_sha256: bytes
    uptime_ms: int
    rgb: bytes


_ENTRY_HEAD = struct.Struct("<II32sI")  # a journal entry's index, verdict, image SHA-256, uptime
_CARD_FILES = {CardFile.RESERVE: cardfmt.RESERVE, CardFile.JOURNAL: cardfmt.JOURNAL}


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


class PtyBoard:
    """What every simulated unit's board has: the serial line on a pty (with its faults and
    re-plugs), the millisecond clock, and the loop that serves the unit. A subclass supplies the
    unit core (`_rx`, `_poll`, `_line_reset`) and may watch more file descriptors."""

    def __init__(self, faults: Faults | None, announce: Callable[[str], None],
                 unplugged: Callable[[], None], note: Callable[[str], None],
                 clock: Callable[[], float]) -> None:
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
        self._port: _Port | None = None
        self._next_port: _Port | None = None
        self._replug_at = 0.0
        self._port_frames = 0
        self._stop: StopFn = lambda: False

    # -- what a unit's board must supply -------------------------------------------------------

    def _rx(self, data: bytes) -> None:
        """Bytes from the controller, for the unit core."""
        raise NotImplementedError

    def _poll(self) -> float:
        """The unit's due work; the seconds it may sleep."""
        raise NotImplementedError

    def _line_reset(self) -> None:
        """A new port: the core forgets a half-received frame."""
        raise NotImplementedError

    def _readers(self) -> list[int]:
        """More file descriptors to watch (a terminal's keys)."""
        return []

    def _readable(self, fd: int) -> None:
        """One of `_readers()` has input."""

    def _starting(self) -> None:
        """Just before the first port is plugged in: what the operator should know."""

    def _closing(self) -> None:
        """After the last port is closed: the unit's own resources."""

    # -- the board's serial line and clock (both units' callbacks) -----------------------------

    def millis(self) -> int:
        return int((self._clock() - self._t0) * 1000)

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

    # -- the line ------------------------------------------------------------------------------

    def _plug(self, port: _Port) -> None:
        self._port = port
        self._port_frames = 0
        self.stats.ports.append(port.path)
        self._line_reset()
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
        self._starting()
        self._plug(_Port())
        wait_s = 0.0
        try:
            while not stop():
                if self._port is None and self._clock() >= self._replug_at:
                    assert self._next_port is not None
                    self._plug(self._next_port)
                    self._next_port = None
                port = self._port
                extra = self._readers()
                readers = ([port.master] if port else []) + extra
                writers = [port.master] if port and port.pending else []
                timeout = min(wait_s, MAX_IDLE_S)
                if self._port is None:
                    timeout = min(timeout, max(0.0, self._replug_at - self._clock()))
                ready_r, ready_w, _ = select.select(readers, writers, [], timeout)
                if port and ready_w:
                    port.flush()
                for fd in extra:
                    if fd in ready_r:
                        self._readable(fd)
                if port and port.master in ready_r:
                    data = port.read()
                    if data and not self.stats.hung:
                        self._rx(data)
                if self.stats.hung:
                    wait_s = MAX_IDLE_S
                    continue
                wait_s = self._poll()
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        for port in (self._port, self._next_port):
            if port is not None:
                port.close()
        self._port = self._next_port = None
        self._closing()


class CatSimulator(PtyBoard):
    """A cat unit on a pseudo-terminal: the C core, a board around it (the weight image as the
    SD card, the DAC; with `card`, the card's weight image, reserve and journal, and a display
    that reports each offline exhibit to `on_exhibit`), and the faults. `weights` is None when
    the card is given."""

    def __init__(self, weights: Path | None, identity: Identity, *,
                 timing: Timing | None = None, faults: Faults | None = None,
                 card: CardAccess | None = None, offline: Offline | None = None,
                 on_exhibit: Callable[[OfflineExhibit], None] = lambda e: None,
                 announce: Callable[[str], None] = lambda p: None,
                 unplugged: Callable[[], None] = lambda: None,
                 note: Callable[[str], None] = lambda s: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(faults, announce, unplugged, note, clock)
        if (weights is None) == (card is None):
            raise ValueError("a cat simulator takes a weight image or a card, one of them")
        self.timing = timing or Timing()
        self._card = card
        self._on_exhibit = on_exhibit
        self._entry = b""  # the journal entry last written: what the display reports
        self._weights = open(weights, "rb") if weights else None  # noqa: SIM115 (close())
        self._read_s_per_byte = 0.0
        self._speak_until = 0.0
        with_card = card is not None
        self.unit = CatUnit(self, identity, image_hook=self._on_image,
                            card=self if with_card else None,
                            display=self._on_display if with_card else None, offline=offline)
        self._offline_seen = self.unit.offline
        if self.timing.realistic and self.unit.layers:
            model = bench.unit_time(self.unit.layers, self.timing.sd_bytes_per_s)
            weight_bytes = sum(lay.slice_bytes * lay.c_out for lay in self.unit.layers)
            self._read_s_per_byte = model.total_s / weight_bytes

    @property
    def modelled_generation_s(self) -> float:
        """The seconds a generation takes here (0 with fast timing)."""
        return self._read_s_per_byte * sum(lay.slice_bytes * lay.c_out for lay in self.unit.layers)

    # -- the board (firmware.cat_unit.Board) ---------------------------------------------------

    def read(self, offset: int, length: int) -> bytes | None:
        if self._stop():
            return None  # shutting down: end a long realistic generation now
        if self._read_s_per_byte:
            time.sleep(length * self._read_s_per_byte)
        if self._card is not None:
            return self._card.pread(cardfmt.WEIGHTS, offset, length)
        assert self._weights is not None
        return os.pread(self._weights.fileno(), length, offset)

    def card_read(self, file: CardFile, offset: int, length: int) -> bytes | None:
        assert self._card is not None
        try:
            return self._card.pread(_CARD_FILES[file], offset, length)
        except OSError:
            return None  # the unit sees a failed read and stops offline work

    def card_write(self, file: CardFile, offset: int, data: bytes) -> bool:
        assert self._card is not None
        try:
            self._card.pwrite(_CARD_FILES[file], offset, data)
        except OSError:
            return False
        if file == CardFile.JOURNAL:
            self._entry = data
        return True

    def _on_display(self, rgb: bytes) -> None:
        index, verdict, sha, uptime = _ENTRY_HEAD.unpack_from(self._entry)
        self._on_exhibit(OfflineExhibit(index, verdict, sha, uptime, rgb))

    def make_offline(self, n: int, stop: StopFn = lambda: False) -> list[OfflineExhibit]:
        """Make up to `n` offline exhibits now, with no line at all (no controller can come):
        the unit's own rhythm (offline_after_ms, offline_period_ms, its speech), until n are
        made and the last is spoken, offline work stops (`unit.offline` says why) or `stop()`."""
        made: list[OfflineExhibit] = []
        report = self._on_exhibit

        def count(exhibit: OfflineExhibit) -> None:
            made.append(exhibit)
            report(exhibit)

        self._on_exhibit = count
        self._stop = stop
        try:
            while not stop():
                done = len(made) >= n or self.unit.offline.why != OfflineWhy.READY
                if done and not self.speak_busy():
                    break
                wait_s = self.unit.poll() / 1000
                if wait_s:
                    time.sleep(min(wait_s, MAX_IDLE_S))
        finally:
            self._on_exhibit = report
        return made

    def speak_start(self, verdict: int) -> int:
        self._speak_until = self._clock() + self.timing.speak_ms(verdict) / 1000
        return 0

    def speak_busy(self) -> bool:
        return self._clock() < self._speak_until

    def _on_image(self, rgb: memoryview) -> None:
        rng = self._rng["wrong_image"]
        if rng.random() < self.faults.wrong_image_rate:
            bit = rng.randrange(len(rgb) * 8)
            rgb[bit // 8] ^= 1 << (bit % 8)
            self.stats.wrong_images += 1

    # -- PtyBoard ------------------------------------------------------------------------------

    def _rx(self, data: bytes) -> None:
        self.unit.rx(data)

    def _poll(self) -> float:
        wait_s = self.unit.poll() / 1000
        if self._card is not None:
            self._offline_notes(self.unit.offline)
        return wait_s

    def _offline_notes(self, now: OfflineState) -> None:
        """What the operator should know when offline mode begins or ends, or offline work
        stops."""
        was, self._offline_seen = self._offline_seen, now
        if now.active and not was.active:
            self._note(f"no controller: the unit works offline from the card's reserve "
                       f"(record {now.next_record} of {now.records} next)")
        elif was.active and not now.active and now.why == OfflineWhy.READY:
            self._note("a controller is talking: offline mode ends")
        if was.why == OfflineWhy.READY and now.why != OfflineWhy.READY:
            self._note(f"offline work stops: {now.sentence}")

    def _line_reset(self) -> None:
        self.unit.line_reset()

    def _starting(self) -> None:
        if self.unit.engine_code:
            self._note("the engine refused the weight image (CAT_E code "
                       f"{self.unit.engine_code}): the unit answers in its fault state")
        state = self.unit.offline
        if self._card is not None and state.why != OfflineWhy.READY:
            self._note(f"the unit cannot work offline: {state.sentence}")

    def _closing(self) -> None:
        if self._weights is not None:
            self._weights.close()


class DieSimulator(PtyBoard):
    """A die unit on a pseudo-terminal: the C core (the decoder compiled into the firmware, or
    `engine`'s), a board around it (the SSD1306's memory, the button) and the faults.

    The button is pressed by `press()` (thread-safe: the caller's key reader or a test), by a
    key on `keys_fd` (Enter or space; the caller puts the terminal in cbreak mode) and every
    `schedule_s` seconds when given. A press holds the button down for PRESS_S, then up for
    PRESS_S, so the core's debounce sees a clean press; presses that come faster queue up. The
    reserve starts empty, as a die's does at power-on: the controller fills it with TOPUP."""

    KEYS = b"\r\n "

    def __init__(self, identity: DieIdentity, *, engine: DieEngine | None = None,
                 schedule_s: float | None = None, keys_fd: int | None = None,
                 faults: Faults | None = None, announce: Callable[[str], None] = lambda p: None,
                 unplugged: Callable[[], None] = lambda: None,
                 note: Callable[[str], None] = lambda s: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(faults, announce, unplugged, note, clock)
        if self.faults.wrong_image_rate:
            raise ValueError("a die unit has no image to corrupt (wrong_image_rate)")
        if schedule_s is not None and schedule_s < MIN_SCHEDULE_S:
            raise ValueError(f"the button cannot be pressed more often than every "
                             f"{MIN_SCHEDULE_S} s")
        from firmware.die_unit import DieUnit, Oled

        self.oled = Oled()
        self.presses = 0        # presses made (key, schedule, press())
        self._schedule_s = schedule_s
        self._next_press = clock() + schedule_s if schedule_s else None
        self._keys_fd = keys_fd
        self._lock = threading.Lock()
        self._queued = 0
        self._down_until = 0.0  # the button is down until then ...
        self._busy_until = 0.0  # ... and the core sees it released until then
        self.unit = DieUnit(self, identity, engine)

    def press(self) -> None:
        """Press the die's button once (from any thread)."""
        with self._lock:
            self._queued += 1

    # -- the board (firmware.die_unit.Board) ---------------------------------------------------

    def oled_write(self, page: int, col: int, data: bytes) -> None:
        self.oled.write(page, col, data)

    def button(self) -> bool:
        return self._clock() < self._down_until

    # -- PtyBoard ------------------------------------------------------------------------------

    def _rx(self, data: bytes) -> None:
        self.unit.rx(data)

    def _poll(self) -> float:
        now = self._clock()
        if self._next_press is not None and now >= self._next_press:
            self.press()
            assert self._schedule_s is not None
            while self._next_press <= now:
                self._next_press += self._schedule_s
        if now >= self._busy_until:
            with self._lock:
                start, self._queued = self._queued > 0, max(0, self._queued - 1)
            if start:
                self.presses += 1
                self._down_until = now + PRESS_S
                self._busy_until = now + 2 * PRESS_S
        wait_s = self.unit.poll() / 1000
        if now < self._busy_until + PRESS_S:
            return wait_s  # the core is watching the button: its own rhythm
        # Idle: nothing for the debounce to see; wake for the heartbeat or the next press.
        idle = MAX_IDLE_S
        if self._next_press is not None:
            idle = min(idle, max(0.0, self._next_press - self._clock()))
        return idle

    def _line_reset(self) -> None:
        self.unit.line_reset()

    def _readers(self) -> list[int]:
        return [self._keys_fd] if self._keys_fd is not None else []

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 64)
        except (BlockingIOError, InterruptedError):
            return
        for byte in data:
            if byte in self.KEYS:
                self.press()

    def _starting(self) -> None:
        if self.unit.engine_code:
            self._note("the die engine refused the decoder (code "
                       f"{self.unit.engine_code}): the unit answers in its fault state")
