"""ctypes binding of the die unit's firmware core (firmware/die/die_unit.c, as build/libdieunit.so).

The unit's own C code, run on the host: the simulator (`firmware/sim.py`, `qcat sim die`) moves
bytes between a pseudo-terminal and `DieUnit.rx()` / `DieUnit.poll()`, and the tests drive the
core directly with a board of their own. The board is a Python object (`Board`) whose methods
become the C callbacks: serial output, the millisecond clock, the SSD1306 and the button. There
is no Python copy of the unit's protocol logic or of its roll: what the unit answers is decided in C.

The decoder is the one compiled into the firmware (firmware/die/die_weights.h) unless a
`firmware.die_engine.DieEngine` is handed in (tests; `qcat sim die --weights`). `builtin_arrays()`
gives the compiled-in decoder's arrays, so a controller can rebuild it with the numpy reference
(`models.die_reference`) and check it by its content SHA-256 (`builtin_sha256()`, HELLO's
weights_sha256).

A Python exception inside a callback cannot cross the C code: it is kept, the callback reports
failure to C, and the same exception is raised again when `rx()` or `poll()` returns.

Standard library, numpy and the firmware package only; never imports models or the appliance layer.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from firmware.cat_engine import open_library
from firmware.core_binding import CoreBinding
from firmware.die_engine import LAYERS, DieEngine, DieModelC

LIBRARY_NAME = "libdieunit.so"
SERIAL_BYTES = 16  # QP_HELLO_SERIAL_LEN
SHA256_BYTES = 32
OLED_PAGES = 8
OLED_WIDTH = 128

_WRITE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)
_MILLIS_FN = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)
_OLED_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                            ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)
_BUTTON_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _Board(ctypes.Structure):
    """die_board_t (die_unit.h)."""

    _fields_ = [("serial_write", _WRITE_FN), ("millis", _MILLIS_FN), ("oled_write", _OLED_FN),
                ("button", _BUTTON_FN), ("ctx", ctypes.c_void_p)]


class _Identity(ctypes.Structure):
    """die_identity_t (die_unit.h)."""

    _fields_ = [("serial", ctypes.c_char * SERIAL_BYTES), ("firmware", ctypes.c_uint32),
                ("weights_sha256", ctypes.c_uint8 * SHA256_BYTES)]


# die_unit_host_sizeof(which) and die_unit_host_limit(which) (die_unit_host.c).
_SIZEOF_UNIT, _SIZEOF_BOARD, _SIZEOF_IDENTITY, _SIZEOF_MODEL = range(4)
(_MAX_PAYLOAD, _RESERVE_BYTES, _REJECT, _ROLL_BYTES, _DEBOUNCE_MS, _POLL_MS, _FIRMWARE,
 _FACE_COL) = range(8)


def load_library() -> ctypes.CDLL:
    """libdieunit.so, built first when needed (`make host`); loaded once per process."""
    vp, u32 = ctypes.c_void_p, ctypes.c_uint32
    u32p = ctypes.POINTER(u32)
    return open_library(LIBRARY_NAME, (
        ("die_unit_init", ctypes.c_int,
         [vp, ctypes.POINTER(_Board), ctypes.POINTER(_Identity), vp]),
        ("die_unit_rx", None, [vp, ctypes.c_char_p, u32]),
        ("die_unit_poll", u32, [vp]),
        ("die_unit_line_reset", None, [vp]),
        ("die_roll_recipe", u32, [ctypes.c_char_p, u32, ctypes.POINTER(ctypes.c_int), vp]),
        ("die_unit_host_sizeof", u32, [u32]),
        ("die_unit_host_limit", u32, [u32]),
        ("die_unit_host_state", u32, [vp]),
        ("die_unit_host_stats", None, [vp, u32p]),
        ("die_unit_host_reserve", None, [vp, u32p, vp]),
        ("die_unit_host_builtin_model", vp, []),
        ("die_unit_host_builtin_sha256", None, [vp]),
        ("die_unit_host_builtin_array", u32, [u32, u32, vp, u32]),
    ), check=_check_sizes)


def _check_sizes(lib: ctypes.CDLL) -> None:
    for which, mirror in ((_SIZEOF_BOARD, _Board), (_SIZEOF_IDENTITY, _Identity),
                          (_SIZEOF_MODEL, DieModelC)):
        if lib.die_unit_host_sizeof(which) != ctypes.sizeof(mirror):
            raise RuntimeError(f"{mirror.__doc__} and its ctypes mirror differ in size: rebuild")


@dataclass(frozen=True)
class Limits:
    """The core's constants as compiled (die_unit.h), so nothing here restates them."""

    max_payload: int      # HELLO.max_payload: a TOPUP carries max_payload - 4 entropy bytes
    reserve_bytes: int    # RESERVE.capacity
    reject: int           # pips bytes at or above this are skipped (and spent)
    roll_bytes: int       # bytes of a roll besides rejected ones
    debounce_ms: int      # the button's level must hold this long
    poll_ms: int          # die_unit_poll wants to be called this often (the button)
    firmware: int         # HELLO.firmware when the identity leaves it 0
    face_col: int         # the first OLED column of the 2x face

    @property
    def topup_max(self) -> int:
        """Entropy bytes one TOPUP can carry."""
        return self.max_payload - 4


def limits() -> Limits:
    lib = load_library()
    return Limits(*(int(lib.die_unit_host_limit(i)) for i in range(8)))


def builtin_sha256() -> bytes:
    """The content SHA-256 of the decoder compiled into the firmware (die_weights.h)."""
    out = ctypes.create_string_buffer(SHA256_BYTES)
    load_library().die_unit_host_builtin_sha256(out)
    return out.raw


def builtin_arrays() -> tuple[list[bytes], list[np.ndarray], list[np.ndarray], int]:
    """The compiled-in decoder as (packed weights, int32 biases, uint8 shifts, label shift) per
    layer: what `models.die_reference` unpacks into a DieModel (and `DieEngine` takes)."""
    lib = load_library()
    packed: list[bytes] = []
    bias: list[np.ndarray] = []
    shift: list[np.ndarray] = []
    for layer in range(1, LAYERS + 1):
        arrays = []
        for what in range(3):
            n = int(lib.die_unit_host_builtin_array(layer, what, None, 0))
            buf = ctypes.create_string_buffer(n)
            lib.die_unit_host_builtin_array(layer, what, buf, n)
            arrays.append(buf.raw)
        packed.append(arrays[0])
        bias.append(np.frombuffer(arrays[1], dtype=np.int32).copy())
        shift.append(np.frombuffer(arrays[2], dtype=np.uint8).copy())
    model = DieModelC.from_address(int(lib.die_unit_host_builtin_model()))
    return packed, bias, shift, int(model.label_shift)


def roll_recipe(data: bytes) -> tuple[int, int, np.ndarray] | None:
    """The C's roll from `data` (the reserve's bytes): (bytes used, pips, int8 latent), or None
    when they cannot pay for a roll. What the unit spends, computed by the unit's own code."""
    pips = ctypes.c_int(0)
    z = np.zeros(8, dtype=np.int8)
    used = int(load_library().die_roll_recipe(bytes(data), len(data), ctypes.byref(pips),
                                              z.ctypes.data))
    return (used, pips.value, z) if used else None


# --------------------------------------------------------------------------------------------
# The unit


class Board(Protocol):
    """What a board offers the unit core (die_board_t), in Python."""

    def write(self, frame: bytes) -> None:
        """One whole frame for the controller, delimiter included."""

    def millis(self) -> int:
        """Milliseconds from any fixed origin (wrapped to 32 bits by the binding)."""

    def oled_write(self, page: int, col: int, data: bytes) -> None:
        """Bytes for the SSD1306's page `page` from column `col` on (LSB = top row)."""

    def button(self) -> bool:
        """The button's raw level: True while pressed (the core debounces it)."""


@dataclass(frozen=True)
class Identity:
    """What the unit says in HELLO (die_identity_t). weights_sha256 None: the compiled-in
    decoder's (or, with a DieEngine handed to DieUnit, whatever the caller says it is)."""

    serial: str
    weights_sha256: bytes | None = None
    firmware: int = 0

    def __post_init__(self) -> None:
        if len(self.serial.encode("ascii", "replace")) > SERIAL_BYTES or not self.serial.isascii():
            raise ValueError(f"a serial is at most {SERIAL_BYTES} ASCII characters: "
                             f"{self.serial!r}")
        if self.weights_sha256 is not None and len(self.weights_sha256) != SHA256_BYTES:
            raise ValueError("weights_sha256 is 32 bytes")


@dataclass(frozen=True)
class UnitStats:
    """die_unit_stats_t."""

    frames_in: int
    frames_bad: int
    frames_out: int
    rolls: int
    presses: int
    refused: int
    rejected: int


@dataclass(frozen=True)
class Reserve:
    """The unit's entropy reserve: stream bytes [start, start + len(held))."""

    start: int
    held: bytes


class DieUnit(CoreBinding):
    """One die unit core with its own state. Not thread-safe: one thread drives it.

    `engine_code` is the trial roll's answer at init (0, or the die engine's code, with which the
    unit runs in the fault state: `firmware.die_engine.ERRORS` names it). `has_button` False
    gives the core no button at all (a unit rolled only by ROLL_REQUEST)."""

    PREFIX = "die_unit"
    _board: Board

    def __init__(self, board: Board, identity: Identity, engine: DieEngine | None = None,
                 has_button: bool = True) -> None:
        lib = self._lib = load_library()
        self._board = board
        self._engine = engine  # kept: C holds pointers into its arrays
        self._error: BaseException | None = None
        # Every callback object is kept here: C holds raw pointers to them.
        self._callbacks = (_WRITE_FN(self._on_write), _MILLIS_FN(self._on_millis),
                           _OLED_FN(self._on_oled),
                           _BUTTON_FN(self._on_button) if has_button else _BUTTON_FN())
        write, millis, oled, button = self._callbacks
        self._c_board = _Board(write, millis, oled, button, None)
        sha = identity.weights_sha256 if identity.weights_sha256 is not None else builtin_sha256()
        ident = _Identity(identity.serial.encode("ascii"), identity.firmware,
                          (ctypes.c_uint8 * SHA256_BYTES)(*sha))
        model = (ctypes.byref(engine.c_model) if engine is not None
                 else ctypes.c_void_p(lib.die_unit_host_builtin_model()))
        self._unit = ctypes.create_string_buffer(lib.die_unit_host_sizeof(_SIZEOF_UNIT))
        self.engine_code = int(lib.die_unit_init(self._unit, ctypes.byref(self._c_board),
                                                 ctypes.byref(ident), model))
        self._raise_kept()
        if self.engine_code < 0:
            raise RuntimeError("die_unit_init refused its arguments (a missing callback)")

    # -- driving it ----------------------------------------------------------------------------

    @property
    def stats(self) -> UnitStats:
        out = (ctypes.c_uint32 * 7)()
        self._lib.die_unit_host_stats(self._unit, out)
        return UnitStats(*out)

    @property
    def reserve(self) -> Reserve:
        out = (ctypes.c_uint32 * 2)()
        buf = ctypes.create_string_buffer(limits().reserve_bytes)
        self._lib.die_unit_host_reserve(self._unit, out, buf)
        return Reserve(int(out[0]), buf.raw[:int(out[1])])

    # -- the callbacks: the board's methods, shielded from C -------------------------------------

    def _on_oled(self, _ctx: int | None, page: int, col: int, data: ctypes._Pointer,
                 n: int) -> None:
        try:
            self._board.oled_write(page, col, ctypes.string_at(data, n))
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)

    def _on_button(self, _ctx: int | None) -> int:
        try:
            return 1 if self._board.button() else 0
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
            return 0


class Oled:
    """An SSD1306's memory as the unit leaves it (8 pages x 128 columns), for boards (tests, the
    simulator): `pixels()` is the panel a visitor sees."""

    def __init__(self) -> None:
        self.ram = bytearray(OLED_PAGES * OLED_WIDTH)
        self.writes = 0

    def write(self, page: int, col: int, data: bytes) -> None:
        if not 0 <= page < OLED_PAGES or col + len(data) > OLED_WIDTH:
            raise ValueError(f"SSD1306 write outside the panel: page {page}, columns "
                             f"{col}..{col + len(data) - 1}")
        at = page * OLED_WIDTH + col
        self.ram[at:at + len(data)] = data
        self.writes += 1

    def pixels(self) -> np.ndarray:
        """(64, 128) uint8 0/1, row 0 on top."""
        b = np.frombuffer(bytes(self.ram), dtype=np.uint8).reshape(OLED_PAGES, OLED_WIDTH)
        bits = (b[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1
        return bits.reshape(OLED_PAGES * 8, OLED_WIDTH)
