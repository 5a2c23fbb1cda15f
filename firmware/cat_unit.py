"""ctypes binding of the cat unit's firmware core (firmware/cat/cat_unit.c, as build/libcatunit.so).

The unit's own C code, run on the host: the simulator (`firmware/sim.py`, `qcat sim cat`) moves
bytes between a pseudo-terminal and `CatUnit.rx()` / `CatUnit.poll()`, and the tests drive the
state machine directly with a board of their own. The board is a Python object (`Board`) whose
methods become the C callbacks: serial output, the millisecond clock, the DAC, the weight image's
block reader and the optional image hook. There is no Python copy of the unit's protocol logic:
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
from typing import Protocol

from firmware import cat_engine

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


class _Io(ctypes.Structure):
    """cat_io_t (cat_engine.h): synchronous reads only (start and wait NULL)."""

    _fields_ = [("read", _READ_FN), ("start", ctypes.c_void_p), ("wait", ctypes.c_void_p),
                ("ctx", ctypes.c_void_p)]


class _Board(ctypes.Structure):
    """cat_board_t (cat_unit.h)."""

    _fields_ = [("serial_write", _WRITE_FN), ("millis", _MILLIS_FN), ("speak_start", _SPEAK_FN),
                ("speak_busy", _BUSY_FN), ("image_hook", _IMAGE_FN), ("ctx", ctypes.c_void_p),
                ("sd", _Io)]


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


ImageHook = Callable[[memoryview], None]


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


class CatUnit:
    """One unit core with its own state and arena. Not thread-safe: one thread drives it.

    `engine_code` is what cat_open answered for the weight image (0, or a CAT_E_* code with which
    the unit runs in the fault state, refusing jobs: `firmware.cat_engine.ERRORS` names it).
    """

    def __init__(self, board: Board, identity: Identity,
                 image_hook: ImageHook | None = None) -> None:
        lib = self._lib = load_library()
        self._board = board
        self._image_hook = image_hook
        self._error: BaseException | None = None
        # Every callback object is kept here: C holds raw pointers to them.
        self._callbacks = (
            _WRITE_FN(self._on_write), _MILLIS_FN(self._on_millis), _SPEAK_FN(self._on_speak),
            _BUSY_FN(self._on_busy), _IMAGE_FN(self._on_image) if image_hook else _IMAGE_FN(),
            _READ_FN(self._on_read))
        write, millis, speak, busy, image, read = self._callbacks
        self._c_board = _Board(write, millis, speak, busy, image, None, _Io(read, None, None, None))
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

    def rx(self, data: bytes) -> None:
        """Bytes from the controller; every frame they complete is answered (through write)."""
        if data:
            self._lib.cat_unit_rx(self._unit, bytes(data), len(data))
            self._raise_kept()

    def poll(self) -> int:
        """Due work; the milliseconds until the unit next wants to be polled."""
        wait = int(self._lib.cat_unit_poll(self._unit))
        self._raise_kept()
        return wait

    def line_reset(self) -> None:
        """The line was opened again: the core forgets a half-received frame."""
        self._lib.cat_unit_line_reset(self._unit)

    @property
    def state(self) -> int:
        """The unit's state, a code of the protocol table's states (QP_STATE_*)."""
        return int(self._lib.cat_unit_host_state(self._unit))

    @property
    def stats(self) -> UnitStats:
        out = (ctypes.c_uint32 * 5)()
        self._lib.cat_unit_host_stats(self._unit, out)
        return UnitStats(*out)

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

    def _keep(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _raise_kept(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def _on_write(self, _ctx: int | None, data: ctypes._Pointer, n: int) -> None:
        try:
            self._board.write(ctypes.string_at(data, n))
        except BaseException as exc:  # noqa: BLE001 (re-raised after the C call returns)
            self._keep(exc)

    def _on_millis(self, _ctx: int | None) -> int:
        try:
            return int(self._board.millis()) & 0xFFFFFFFF
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
            return 0

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

    def _on_read(self, _ctx: int | None, offset: int, dst: ctypes._Pointer, n: int) -> int:
        try:
            data = self._board.read(offset, n)
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
            return -1
        if data is None or len(data) != n:
            return -1
        ctypes.memmove(dst, data, n)
        return 0
