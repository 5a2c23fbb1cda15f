"""ctypes binding of the cat unit's firmware core (firmware/cat/cat_unit.c, as build/libcatunit.so).

The unit's own C code, run on the host: the simulator (`firmware/sim.py`, `qcat sim cat`) moves
bytes between a pseudo-terminal and `CatUnit.rx()` / `CatUnit.poll()`, and the tests drive the
state machine directly with a board of their own. The board is a Python object (`Board`) whose
methods become the C callbacks: serial output, the millisecond clock, the DAC, the weight image's
block reader and the optional image hook; a `Card` (the card's reserve and journal) and a display
are optional too, and with them the unit works offline (`Offline`, `OfflineState`). There is no Python copy of the unit's protocol logic:
what the unit answers is decided in C.

A Python exception inside a callback cannot cross the C code: it is kept, the callback reports
failure to C, and the same exception is raised again when `rx()` or `poll()` returns.

The library is built with the cat engine's `make host` (firmware/cat_engine.py: on demand, in
firmware/build/ or a cache folder, ToolMissing without a compiler). Standard library and the
firmware package only; never imports torch, numpy or the appliance layer.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from firmware import cat_engine
from firmware.core_binding import CoreBinding

LIBRARY_NAME = "libcatunit.so"
SERIAL_BYTES = 16  # QP_HELLO_SERIAL_LEN
SHA256_BYTES = 32
# CAT_UNIT_FIRMWARE of cat_unit.h: what HELLO reports when the identity leaves it 0.
DEFAULT_FIRMWARE = 0x000100

_WRITE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)
_MILLIS_FN = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)
_SPEAK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
_BUSY_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_IMAGE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)
_READ_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64,
                            ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)
_CARD_READ_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                 ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)
_CARD_WRITE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32,
                                  ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint8),
                                  ctypes.c_uint32)
_DISPLAY_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8),
                               ctypes.c_uint32)

# CAT_UNIT_OFFLINE_AFTER_MS and CAT_UNIT_OFFLINE_PERIOD_MS of cat_unit.h: what the unit takes.
OFFLINE_AFTER_MS = 30_000
OFFLINE_PERIOD_MS = 60_000


class CardFile(IntEnum):
    """enum cat_card_file: the card files the core reads and writes through the board."""

    RESERVE = 0
    JOURNAL = 1


class OfflineWhy(IntEnum):
    """enum cat_offline_why: why the unit cannot work offline (READY: it can)."""

    READY = 0
    NO_CARD = 1
    ENGINE = 2
    CARD_IO = 3
    RESERVE = 4
    JOURNAL = 5
    MISMATCH = 6
    WEIGHTS = 7
    TORN = 8
    STRUCK = 9
    DAMAGED = 10
    SPENT = 11
    WRITE = 12


# A sentence per reason, `{detail}` filled in (the simulator's notes, the tests' messages).
OFFLINE_SENTENCES = {
    OfflineWhy.READY: "the card's reserve is ready",
    OfflineWhy.NO_CARD: "the board has no card access",
    OfflineWhy.ENGINE: "the engine cannot run (CAT_E code {detail})",
    OfflineWhy.CARD_IO: "a card read failed (byte {detail})",
    OfflineWhy.RESERVE: "the reserve's header is damaged or not a reserve",
    OfflineWhy.JOURNAL: "the journal's header is damaged or not a journal",
    OfflineWhy.MISMATCH: "the journal belongs to another lease, card or reserve size",
    OfflineWhy.WEIGHTS: "the reserve was made for another weight image",
    OfflineWhy.TORN: "journal slot {detail} is torn or altered (not good entries, then empty)",
    OfflineWhy.STRUCK: "record {detail} is struck",
    OfflineWhy.DAMAGED: "record {detail} is damaged",
    OfflineWhy.SPENT: "all {detail} records are spent",
    OfflineWhy.WRITE: "writing journal entry {detail} failed",
}


class _Io(ctypes.Structure):
    """cat_io_t (cat_engine.h): synchronous reads only (start and wait NULL)."""

    _fields_ = [("read", _READ_FN), ("start", ctypes.c_void_p), ("wait", ctypes.c_void_p),
                ("ctx", ctypes.c_void_p)]


class _Board(ctypes.Structure):
    """cat_board_t (cat_unit.h)."""

    _fields_ = [("serial_write", _WRITE_FN), ("millis", _MILLIS_FN), ("speak_start", _SPEAK_FN),
                ("speak_busy", _BUSY_FN), ("image_hook", _IMAGE_FN), ("ctx", ctypes.c_void_p),
                ("sd", _Io), ("card_read", _CARD_READ_FN), ("card_write", _CARD_WRITE_FN),
                ("display", _DISPLAY_FN), ("offline_after_ms", ctypes.c_uint32),
                ("offline_period_ms", ctypes.c_uint32)]


class _Identity(ctypes.Structure):
    """cat_identity_t (cat_unit.h)."""

    _fields_ = [("serial", ctypes.c_char * SERIAL_BYTES), ("firmware", ctypes.c_uint32),
                ("weights_sha256", ctypes.c_uint8 * SHA256_BYTES),
                ("clips_sha256", ctypes.c_uint8 * SHA256_BYTES)]


# cat_unit_host_sizeof(which): the C sizes each mirror above must match.
_SIZEOF_UNIT, _SIZEOF_BOARD, _SIZEOF_IDENTITY, _ARENA_BUDGET, _SIZEOF_SHA256 = range(5)

def load_library() -> ctypes.CDLL:
    """libcatunit.so, built first when needed; loaded once per process."""
    vp, u32, sz = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_size_t
    u32p = ctypes.POINTER(u32)
    return cat_engine.open_library(LIBRARY_NAME, (
        ("cat_unit_init", ctypes.c_int,
         [vp, ctypes.POINTER(_Board), ctypes.POINTER(_Identity), vp, u32]),
        ("cat_unit_rx", None, [vp, ctypes.c_char_p, u32]),
        ("cat_unit_poll", u32, [vp]),
        ("cat_unit_line_reset", None, [vp]),
        ("cat_unit_host_sizeof", u32, [u32]),
        ("cat_unit_host_state", u32, [vp]),
        ("cat_unit_host_stats", None, [vp, u32p]),
        ("cat_unit_host_offline", None, [vp, u32p]),
        ("cat_unit_host_n_layers", u32, [vp]),
        ("cat_unit_host_layer", None, [vp, u32, u32p]),
        ("sha256", None, [ctypes.c_char_p, sz, vp]),
        ("sha256_init", None, [vp]),
        ("sha256_update", None, [vp, ctypes.c_char_p, sz]),
        ("sha256_final", None, [vp, vp]),
    ), check=_check_sizes)


def _check_sizes(lib: ctypes.CDLL) -> None:
    for which, mirror in ((_SIZEOF_BOARD, _Board), (_SIZEOF_IDENTITY, _Identity)):
        if lib.cat_unit_host_sizeof(which) != ctypes.sizeof(mirror):
            raise RuntimeError(f"{mirror.__doc__} and its ctypes mirror differ in size")


# --------------------------------------------------------------------------------------------
# SHA-256 (firmware/common/sha256.c)


def sha256(data: bytes) -> bytes:
    """The C SHA-256 of `data` (what the unit puts in IMAGE_DONE)."""
    out = ctypes.create_string_buffer(SHA256_BYTES)
    load_library().sha256(data, len(data), out)
    return out.raw


class Sha256:
    """The C SHA-256, incrementally (sha256_init / update / final)."""

    def __init__(self) -> None:
        self._lib = load_library()
        self._state = ctypes.create_string_buffer(self._lib.cat_unit_host_sizeof(_SIZEOF_SHA256))
        self._lib.sha256_init(self._state)

    def update(self, data: bytes) -> None:
        self._lib.sha256_update(self._state, data, len(data))

    def digest(self) -> bytes:
        """The digest; the object is spent afterwards (sha256_final pads the state)."""
        out = ctypes.create_string_buffer(SHA256_BYTES)
        self._lib.sha256_final(self._state, out)
        return out.raw


# --------------------------------------------------------------------------------------------
# The unit


class Board(Protocol):
    """What a board offers the unit core (cat_board_t), in Python."""

    def write(self, frame: bytes) -> None:
        """One whole frame for the controller, delimiter included."""

    def millis(self) -> int:
        """Milliseconds from any fixed origin (wrapped to 32 bits by the binding)."""

    def speak_start(self, verdict: int) -> int:
        """Start speaking; 0 when it started, non-zero when it cannot (QP_E_SPEECH)."""

    def speak_busy(self) -> bool:
        """True while the verdict is still playing."""

    def read(self, offset: int, length: int) -> bytes | None:
        """`length` bytes of the weight image at `offset`; None (or fewer bytes) on failure."""


class Card(Protocol):
    """The card's reserve and journal as the unit reaches them (card_read / card_write)."""

    def card_read(self, file: CardFile, offset: int, length: int) -> bytes | None:
        """`length` bytes of the file at `offset`; None (or fewer bytes) on failure."""

    def card_write(self, file: CardFile, offset: int, data: bytes) -> bool:
        """Rewrite bytes inside the file, durably (flushed); False on failure."""


ImageHook = Callable[[memoryview], None]
DisplayFn = Callable[[bytes], None]


@dataclass(frozen=True)
class Offline:
    """When the unit goes offline (no controller frame for `after_ms`) and how often it then
    spends a record (`period_ms` after the previous one's speech ended)."""

    after_ms: int = OFFLINE_AFTER_MS
    period_ms: int = OFFLINE_PERIOD_MS


@dataclass(frozen=True)
class OfflineState:
    """The core's offline work: in offline mode now, why it cannot (READY: it can), the
    reason's detail, the next record to spend and the reserve's record count."""

    active: bool
    why: OfflineWhy
    detail: int
    next_record: int
    records: int

    @property
    def sentence(self) -> str:
        return OFFLINE_SENTENCES[self.why].format(detail=self.detail)


@dataclass(frozen=True)
class Identity:
    """What the unit says in HELLO (cat_identity_t)."""

    serial: str
    weights_sha256: bytes = bytes(SHA256_BYTES)
    clips_sha256: bytes = bytes(SHA256_BYTES)
    firmware: int = DEFAULT_FIRMWARE

    def __post_init__(self) -> None:
        raw = self.serial.encode("ascii", "replace")
        if len(raw) > SERIAL_BYTES or not self.serial.isascii():
            raise ValueError(f"a serial is at most {SERIAL_BYTES} ASCII characters: "
                             f"{self.serial!r}")
        if len(self.weights_sha256) != SHA256_BYTES or len(self.clips_sha256) != SHA256_BYTES:
            raise ValueError("the hashes are 32 bytes each")


@dataclass(frozen=True)
class UnitStats:
    """cat_unit_stats_t."""

    frames_in: int
    frames_bad: int
    frames_out: int
    jobs_run: int
    jobs_resent: int
    offline_exhibits: int


@dataclass(frozen=True)
class LayerShape:
    """One layer of the model the unit opened; fits firmware.bench.LayerShape (the time model)."""

    c_in: int
    c_out: int
    h_in: int
    h_out: int
    stride: int
    padding: int
    slice_bytes: int


class CatUnit(CoreBinding):
    """One unit core with its own state and arena. Not thread-safe: one thread drives it.

    `engine_code` is what cat_open answered for the weight image (0, or a CAT_E_* code with which
    the unit runs in the fault state, refusing jobs: `firmware.cat_engine.ERRORS` names it).
    With a `card` the core checks its reserve and journal here (`offline` says what it found)
    and works offline per `offline`; `display` sees each offline exhibit's image after its
    journal entry is written.
    """

    PREFIX = "cat_unit"
    _board: Board

    def __init__(self, board: Board, identity: Identity,
                 image_hook: ImageHook | None = None, *, card: Card | None = None,
                 display: DisplayFn | None = None, offline: Offline | None = None) -> None:
        lib = self._lib = load_library()
        self._board = board
        self._image_hook = image_hook
        self._card = card
        self._display = display
        self._error: BaseException | None = None
        timing = offline or Offline()
        # Every callback object is kept here: C holds raw pointers to them.
        self._callbacks = (
            _WRITE_FN(self._on_write), _MILLIS_FN(self._on_millis), _SPEAK_FN(self._on_speak),
            _BUSY_FN(self._on_busy), _IMAGE_FN(self._on_image) if image_hook else _IMAGE_FN(),
            _READ_FN(self._on_read),
            _CARD_READ_FN(self._on_card_read) if card else _CARD_READ_FN(),
            _CARD_WRITE_FN(self._on_card_write) if card else _CARD_WRITE_FN(),
            _DISPLAY_FN(self._on_display) if display else _DISPLAY_FN())
        write, millis, speak, busy, image, read, card_read, card_write, show = self._callbacks
        self._c_board = _Board(write, millis, speak, busy, image, None, _Io(read, None, None, None),
                               card_read, card_write, show, timing.after_ms, timing.period_ms)
        ident = _Identity(identity.serial.encode("ascii"), identity.firmware,
                          (ctypes.c_uint8 * SHA256_BYTES)(*identity.weights_sha256),
                          (ctypes.c_uint8 * SHA256_BYTES)(*identity.clips_sha256))
        self._unit = ctypes.create_string_buffer(lib.cat_unit_host_sizeof(_SIZEOF_UNIT))
        self._arena = ctypes.create_string_buffer(lib.cat_unit_host_sizeof(_ARENA_BUDGET))
        self.engine_code = int(lib.cat_unit_init(self._unit, ctypes.byref(self._c_board),
                                                 ctypes.byref(ident), self._arena,
                                                 len(self._arena)))
        self._raise_kept()

    # -- driving it ----------------------------------------------------------------------------

    @property
    def stats(self) -> UnitStats:
        out = (ctypes.c_uint32 * 6)()
        self._lib.cat_unit_host_stats(self._unit, out)
        return UnitStats(*out)

    @property
    def offline(self) -> OfflineState:
        out = (ctypes.c_uint32 * 5)()
        self._lib.cat_unit_host_offline(self._unit, out)
        active, why, detail, next_record, records = out
        return OfflineState(bool(active), OfflineWhy(why), detail, next_record, records)

    @property
    def layers(self) -> list[LayerShape]:
        """The opened model's layers (none when the engine refused the weight image)."""
        shapes = []
        for i in range(self._lib.cat_unit_host_n_layers(self._unit)):
            out = (ctypes.c_uint32 * 7)()
            self._lib.cat_unit_host_layer(self._unit, i, out)
            shapes.append(LayerShape(*out))
        return shapes

    # -- the callbacks: the board's methods, shielded from C -------------------------------------

    def _on_speak(self, _ctx: int | None, verdict: int) -> int:
        try:
            return int(self._board.speak_start(verdict))
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
            return -1

    def _on_busy(self, _ctx: int | None) -> int:
        try:
            return 1 if self._board.speak_busy() else 0
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
            return 0

    def _on_image(self, _ctx: int | None, rgb: ctypes._Pointer, n: int) -> None:
        try:
            assert self._image_hook is not None
            array = (ctypes.c_uint8 * n).from_address(ctypes.addressof(rgb.contents))
            self._image_hook(memoryview(array).cast("B"))
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)

    def _fill(self, read: Callable[[], bytes | None], dst: ctypes._Pointer, n: int) -> int:
        """A C read callback's answer: 0 with exactly `n` bytes copied to `dst`, else -1 (an
        exception is kept for the caller of rx/poll)."""
        try:
            data = read()
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
            return -1
        if data is None or len(data) != n:
            return -1
        ctypes.memmove(dst, data, n)
        return 0

    def _on_read(self, _ctx: int | None, offset: int, dst: ctypes._Pointer, n: int) -> int:
        return self._fill(lambda: self._board.read(offset, n), dst, n)

    def _on_card_read(self, _ctx: int | None, file: int, offset: int, dst: ctypes._Pointer,
                      n: int) -> int:
        card = self._card
        assert card is not None
        return self._fill(lambda: card.card_read(CardFile(file), offset, n), dst, n)

    def _on_card_write(self, _ctx: int | None, file: int, offset: int, src: ctypes._Pointer,
                       n: int) -> int:
        try:
            assert self._card is not None
            return 0 if self._card.card_write(CardFile(file), offset,
                                              ctypes.string_at(src, n)) else -1
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
            return -1

    def _on_display(self, _ctx: int | None, rgb: ctypes._Pointer, n: int) -> None:
        try:
            assert self._display is not None
            self._display(ctypes.string_at(rgb, n))
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
