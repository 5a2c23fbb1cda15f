"""ctypes binding of the units' C framing (firmware/common/frame.c, as build/libqcatproto.so).

The framing the units compile, run on the host: the known-answer tests and the fuzz test hold it
byte for byte to the Python codec (installation/units/protocol.py), and benchmarks can time it.
`scan()` feeds many inputs to the C decoder in one call (a call per byte would time ctypes, not
the decoder) and returns what it answered for each.

The library is built with the cat engine's `make host` (firmware/cat_engine.py: on demand, in
firmware/build/ or a cache folder, ToolMissing without a compiler). Never imports torch, textual
or the appliance layer.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

from firmware import cat_engine

LIBRARY_NAME = "libqcatproto.so"
# What one C result struct may hold: enough for any batch the tests make (a frame needs >= 9
# wire bytes, so a batch of N bytes answers at most N / 2 times).
_RESULTS_PER_BYTE = 0.5


class _Result(ctypes.Structure):
    """qp_host_result_t in frame_host.c."""

    _fields_ = [("code", ctypes.c_int32), ("input", ctypes.c_uint32),
                ("payload_at", ctypes.c_uint32), ("seq", ctypes.c_uint16),
                ("length", ctypes.c_uint16), ("version", ctypes.c_uint8),
                ("type", ctypes.c_uint8), ("check", ctypes.c_uint16)]


@dataclass(frozen=True)
class ScanResult:
    """One answer of the C decoder: a frame (code 0) or an error code (the protocol table's)."""

    input: int  # which input of the batch
    code: int
    version: int
    type: int
    seq: int
    length: int
    payload: bytes  # a frame's payload; b"" for an error
    check: int  # a frame: qp_payload_check(type, length), QP_OK or the error it names


def load_library() -> ctypes.CDLL:
    """libqcatproto.so, built first when needed; loaded once per process."""
    u8p, u16, u32, sz = (ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint16,
                         ctypes.c_uint32, ctypes.c_size_t)
    return cat_engine.open_library(LIBRARY_NAME, (
        ("qp_crc16", u16, [u16, ctypes.c_char_p, sz]),
        ("qp_cobs_encode", sz, [ctypes.c_char_p, sz, u8p, sz]),
        ("qp_cobs_decode", ctypes.c_long, [ctypes.c_char_p, sz, u8p, sz]),
        ("qp_frame_encode", sz, [ctypes.c_uint8, u16, ctypes.c_char_p, u16, u8p, sz]),
        ("qp_host_result_size", u32, []),
        ("qp_host_scan", ctypes.c_long,
         [ctypes.c_char_p, ctypes.POINTER(u32), u32, ctypes.c_int, u16,
          ctypes.POINTER(_Result), u32, u8p, u32]),
    ), check=_check_sizes)


def _check_sizes(lib: ctypes.CDLL) -> None:
    if lib.qp_host_result_size() != ctypes.sizeof(_Result):
        raise RuntimeError("qp_host_result_t and its ctypes mirror differ in size")


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    return int(load_library().qp_crc16(crc, data, len(data)))


def cobs_encode(data: bytes) -> bytes:
    cap = len(data) + len(data) // 254 + 2
    out = (ctypes.c_uint8 * cap)()
    n = load_library().qp_cobs_encode(data, len(data), out, cap)
    if n == 0:
        raise RuntimeError("qp_cobs_encode ran out of room")
    return bytes(out[:n])


def cobs_decode(data: bytes, cap: int | None = None) -> bytes | int:
    """The decoded bytes, or the (positive) error code qp_cobs_decode answered."""
    size = len(data) if cap is None else cap
    out = (ctypes.c_uint8 * max(size, 1))()
    n = load_library().qp_cobs_decode(data, len(data), out, size)
    return bytes(out[:n]) if n >= 0 else -n


def encode_frame(type: int, seq: int, payload: bytes, cap: int = 2048) -> bytes:
    """The frame on the wire (delimiter included); b"" when qp_frame_encode refused."""
    out = (ctypes.c_uint8 * cap)()
    n = load_library().qp_frame_encode(type, seq, payload, len(payload), out, cap)
    return bytes(out[:n])


def scan(inputs: Sequence[bytes], *, stream: bool = False,
         cap: int = 0xFFFF) -> list[ScanResult]:
    """Every answer of the C decoder to `inputs`: each fed to a fresh decoder, or all to one
    decoder in turn when `stream`; `cap` is the decoder's buffer (clipped to QP_MAX_RAW)."""
    lib = load_library()
    data = b"".join(inputs)
    lens = (ctypes.c_uint32 * max(len(inputs), 1))(*(len(x) for x in inputs))
    max_out = int(len(data) * _RESULTS_PER_BYTE) + 16
    results = (_Result * max_out)()
    payloads = (ctypes.c_uint8 * max(len(data), 1))()
    n = lib.qp_host_scan(data, lens, len(inputs), 1 if stream else 0, cap, results, max_out,
                         payloads, len(payloads))
    if n < 0:
        raise RuntimeError("qp_host_scan ran out of room for its results")
    raw = bytes(payloads)
    return [ScanResult(r.input, r.code, r.version, r.type, r.seq, r.length,
                       raw[r.payload_at:r.payload_at + r.length] if r.code == 0 else b"",
                       r.check)
            for r in results[:n]]
