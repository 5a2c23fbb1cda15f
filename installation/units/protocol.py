"""The units' serial protocol, in Python: frames and messages from bytes, and back (pure).

Bytes in, frames out; no port and no clock inside (esptool's `slip_reader`, pyserial's
`FramedPacket`), so the link, the supervisor, the simulators' tests and `--trace` all share one
codec, and tests drive it with committed vectors and fuzzed noise.

Everything protocol-specific comes from firmware/common/protocol.toml, read once at import: the
version, the header, the limits, and each message's fields, from which one generic mechanism
builds a frozen dataclass per message (`MESSAGES["GENERATE"]`, repr `Generate(exhibit=7, ...)`).
The C header the units compile is generated from the same table, so the two cannot drift.

    wire bytes --FrameDecoder.feed--> Frame | FrameError --decode_message--> Message
    Message --encode_message(msg, seq)--> wire bytes

The framing (docs/protocol.md): COBS(header | payload | CRC-16) + 0x00, where the header is
version u8, type u8, seq u16, length u16 (little-endian) and the CRC is CRC-16/CCITT-FALSE over
header and payload (`binascii.crc_hqx(data, 0xFFFF)`), little-endian. The decoder answers once per
0x00: a Frame, or a FrameError naming the one thing wrong with it, in the same order of checks as
the C decoder (firmware/common/frame.c); a fuzz test holds the two equal on the same bytes.

Errors: a bad frame from the line is a *value* (FrameError), not an exception, because a noisy
line is normal and the link decides what to do (count it, answer ERROR, carry on). When it
ends the conversation, FrameError.error(where) makes the ProtocolError to raise: a DeviceError
(exit 3) whose sentence and hint come from the table's error rows. decode_message raises one for a
payload that is wrong for its type, and unit_error(msg) makes one from an ERROR a unit sent. Building a message with a wrong value is a bug in the
caller: ValueError.

Never opens a port, sleeps, reads the config or prints.
"""

from __future__ import annotations

import binascii
import dataclasses
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from firmware.protocol_table import FieldSpec, MessageSpec, read_protocol_table
from installation.errors import DeviceError

TABLE = read_protocol_table()
VERSION = TABLE.version
CRC_INIT = TABLE.crc_init
CRC_BYTES = TABLE.crc_bytes
HEADER_BYTES = TABLE.header_bytes
MAX_PAYLOAD = TABLE.max_payload
MAX_RAW = TABLE.max_raw
MAX_ENCODED = TABLE.max_encoded
IMAGE_CHUNK = TABLE.limits["image_chunk"].value
IMAGE_BYTES = TABLE.limits["image_bytes"].value
HEARTBEAT_S = TABLE.limits["heartbeat_ms"].value / 1000
MISSED_HEARTBEATS = TABLE.limits["missed_heartbeats"].value
REPLY_S = TABLE.limits["reply_ms"].value / 1000
SEQ_MODULO = 1 << 16  # seq wraps
NO_SEQ = 0xFFFF  # ERROR.about_seq when no frame is meant

_STRUCT = {"u8": "B", "u16": "H", "u32": "I", "i8": "b", "bytes": "s"}
# The header as the table lays it out (its reader insists on version u8, type u8, seq u16,
# length u16, version first).
_HEADER = struct.Struct("<" + "".join(_STRUCT[f.base] for f in TABLE.header))
_HEADER_ORDER = tuple(f.name for f in TABLE.header)
COBS_BLOCK = 254

# The code tables as enums, named without their C prefix: ErrorCode.BAD_CRC, UnitState.IDLE,
# UnitKind.CAT, MessageType.GENERATE. Built from the table, so mypy knows the types but not the
# members: write ErrorCode["BAD_CRC"] where a member is named in code.
ErrorCode = IntEnum(  # type: ignore[misc]
    "ErrorCode", [(r.name.removeprefix("QP_E_").removeprefix("QP_"), r.code) for r in TABLE.errors])
UnitState = IntEnum(  # type: ignore[misc]
    "UnitState", [(r.name.removeprefix("QP_STATE_"), r.code) for r in TABLE.states])
UnitKind = IntEnum(  # type: ignore[misc]
    "UnitKind", [(r.name.removeprefix("QP_KIND_"), r.code) for r in TABLE.kinds])
MessageType = IntEnum(  # type: ignore[misc]
    "MessageType", [(m.name, m.code) for m in TABLE.messages])
_ENUMS: dict[str, type[IntEnum]] = {"kind": UnitKind, "state": UnitState}
_ERROR_ROWS = {r.code: r for r in TABLE.errors}


class ProtocolError(DeviceError):
    """A unit sent something the protocol does not allow, or a frame arrived damaged; the
    sentence and hint are the error code's row of the protocol table. `code` is an ErrorCode
    (a plain int for a code this qcat does not know)."""

    def __init__(self, code: int, detail: str = "", where: str | None = None) -> None:
        row = _ERROR_ROWS.get(code)
        sentence = row.sentence if row else f"the unit reported error {code}, unknown to this qcat"
        text = f"{where}: {sentence}" if where else sentence
        super().__init__(text + (f" ({detail})" if detail else ""),
                         hint=(row.hint if row else "update qcat") or None)
        self.code: int = ErrorCode(code) if row else code
        self.detail = detail


def error_name(code: int) -> str:
    """The C name of an error code ("QP_E_BAD_CRC"), or "error N" for one not in the table."""
    row = _ERROR_ROWS.get(code)
    return row.name if row else f"error {code}"


# --------------------------------------------------------------------------------------------
# CRC and COBS


def crc16(data: bytes, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout), as frame.c."""
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes) -> bytes:
    """COBS of `data`, without the delimiter: each run of non-zero bytes becomes blocks of at most
    254 bytes behind a code byte (1 + their count). The canonical form: a last block that is full
    (code 0xFF) gets no empty block after it."""
    out = bytearray()
    segments = bytes(data).split(b"\0")
    for n, seg in enumerate(segments):
        full, rem = divmod(len(seg), COBS_BLOCK)
        for k in range(full):
            out.append(0xFF)
            out += seg[k * COBS_BLOCK:(k + 1) * COBS_BLOCK]
        # The short block that stands for the zero after this run (or ends the data).
        if rem or not full or n < len(segments) - 1:
            out.append(rem + 1)
            out += seg[full * COBS_BLOCK:]
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """The bytes COBS-encoded as `data` (no delimiter). ProtocolError(BAD_COBS) when it holds a
    zero or a block runs past its end."""
    if 0 in data:
        raise ProtocolError(ErrorCode["BAD_COBS"], "a zero byte inside the frame")
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        end = i + code
        if end > n:
            raise ProtocolError(ErrorCode["BAD_COBS"], f"block at byte {i} needs {code - 1} "
                                                       f"bytes, {n - i - 1} left")
        out += data[i + 1:end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class Frame:
    """One frame that passed every framing check; its payload is not yet read as a message."""

    version: int
    type: int
    seq: int
    payload: bytes

    @property
    def type_name(self) -> str:
        spec = _BY_CODE.get(self.type)
        return spec.SPEC.name if spec else f"type 0x{self.type:02x}"


@dataclass(frozen=True)
class FrameError:
    """A frame that the decoder refused, and why. When the CRC held (BAD_VERSION, BAD_LENGTH)
    the header's fields are known: the version seen, and the seq an ERROR reply names."""

    code: int  # an ErrorCode
    version: int | None = None
    type: int | None = None
    seq: int | None = None
    length: int | None = None

    def error(self, where: str | None = None) -> ProtocolError:
        """The exception a caller raises when this frame ends the conversation."""
        detail = ""
        if self.code == ErrorCode["BAD_VERSION"]:
            detail = f"it speaks protocol {self.version}, qcat speaks {VERSION}"
        return ProtocolError(self.code, detail, where)


def encode_frame(type: int, seq: int, payload: bytes) -> bytes:
    """One frame as it goes on the wire, the 0x00 delimiter included."""
    if not 0 <= type <= 0xFF or not 0 <= seq < SEQ_MODULO:
        raise ValueError(f"type {type} or seq {seq} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a {len(payload)}-byte payload exceeds max_payload ({MAX_PAYLOAD})")
    fields = {"version": VERSION, "type": type, "seq": seq, "length": len(payload)}
    body = _HEADER.pack(*(fields[name] for name in _HEADER_ORDER)) + bytes(payload)
    return cobs_encode(body + crc16(body).to_bytes(CRC_BYTES, "little")) + b"\0"


def decode_frame(encoded: bytes) -> Frame | FrameError:
    """One frame's bytes between delimiters (the delimiter not included), checked in the order
    frame.c checks them: too long, COBS, too long once decoded, truncated, CRC, version, length."""
    if len(encoded) > MAX_ENCODED:
        return FrameError(ErrorCode["TOO_LONG"])
    try:
        raw = cobs_decode(encoded)
    except ProtocolError:
        return FrameError(ErrorCode["BAD_COBS"])
    if len(raw) > MAX_RAW:
        return FrameError(ErrorCode["TOO_LONG"])
    if len(raw) < HEADER_BYTES + CRC_BYTES:
        return FrameError(ErrorCode["TRUNCATED"])
    body = raw[:-CRC_BYTES]
    if crc16(body) != int.from_bytes(raw[-CRC_BYTES:], "little"):
        return FrameError(ErrorCode["BAD_CRC"])
    header = dict(zip(_HEADER_ORDER, _HEADER.unpack_from(body), strict=True))
    if header["version"] != VERSION:
        return FrameError(ErrorCode["BAD_VERSION"], **header)
    if header["length"] != len(body) - HEADER_BYTES:
        return FrameError(ErrorCode["BAD_LENGTH"], **header)
    return Frame(header["version"], header["type"], header["seq"], body[HEADER_BYTES:])


class FrameDecoder:
    """Incremental: feed it bytes as they arrive, in pieces of any size; it answers once per
    0x00 that ends a frame and keeps the unfinished rest. A frame that grows past MAX_ENCODED is
    dropped as it arrives (memory stays bounded on a line that never sends a zero) and reported
    as TOO_LONG at its delimiter; empty frames (two zeros in a row) are ignored."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._too_long = False

    def reset(self) -> None:
        """Forget a half-received frame (after a reconnect)."""
        self._pending.clear()
        self._too_long = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        *ended, tail = bytes(data).split(b"\0")
        for part in ended:
            if self._too_long:
                out.append(FrameError(ErrorCode["TOO_LONG"]))
            else:
                self._pending += part
                if self._pending:
                    out.append(decode_frame(bytes(self._pending)))
            self.reset()
        if not self._too_long:
            self._pending += tail
            if len(self._pending) > MAX_ENCODED:
                self.reset()
                self._too_long = True
        return out


# --------------------------------------------------------------------------------------------
# Messages: one dataclass per row of the table, all made by the same code


class Message:
    """Base of the message dataclasses. Fields are the table's: u8/u16/u32 -> int (an enum
    member where the table names one), i8[N] -> tuple of N ints, bytes[N] / bytes(rest) -> bytes,
    utf8(rest) -> str."""

    SPEC: ClassVar[MessageSpec]

    if TYPE_CHECKING:  # the fields are made at run time from the table
        def __init__(self, **fields: Any) -> None: ...
        def __getattr__(self, name: str) -> Any: ...

    def __post_init__(self) -> None:
        for spec in self.SPEC.fields:
            object.__setattr__(self, spec.name, _checked(spec, getattr(self, spec.name)))

    @property
    def type(self) -> int:
        return self.SPEC.code

    def payload(self) -> bytes:
        flat: list[Any] = []
        for f in self.SPEC.fields:
            if not f.rest:  # an i8[N] field is N values of the struct
                value = getattr(self, f.name)
                flat.extend(value if f.base == "i8" else [value])
        out = _structs[self.SPEC.name].pack(*flat)
        if self.SPEC.has_rest:
            rest = getattr(self, self.SPEC.fields[-1].name)
            out += rest.encode("utf-8") if isinstance(rest, str) else rest
        if len(out) > MAX_PAYLOAD:
            raise ValueError(f"{self.SPEC.name}: {len(out)} bytes exceed max_payload "
                             f"({MAX_PAYLOAD})")
        return out


def _checked(spec: FieldSpec, value: Any) -> Any:
    """The value a field holds, normalized; ValueError for one the table does not allow."""
    where = f"field {spec.name!r} ({spec.type})"
    if spec.base in ("u8", "u16", "u32"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, not {value!r}")
        top = spec.max if spec.max is not None else (1 << (8 * spec.size)) - 1
        if not 0 <= value <= top:
            raise ValueError(f"{where} must be 0..{top}, not {value}")
        if spec.enum:
            enum = _ENUMS[spec.enum]
            try:
                return enum(value)
            except ValueError:
                raise ValueError(f"{where}: {value} is not a {enum.__name__}") from None
        return int(value)
    if spec.base == "i8":
        values = tuple(int(v) for v in value)
        if len(values) != spec.count or not all(-128 <= v <= 127 for v in values):
            raise ValueError(f"{where} must be {spec.count} values in -128..127")
        return values
    if spec.base == "utf8":
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a str")
        return value
    if not isinstance(value, bytes | bytearray):
        raise ValueError(f"{where} must be bytes, not {type(value).__name__}")
    if not spec.rest and len(value) != spec.count:
        raise ValueError(f"{where} must be {spec.count} bytes, not {len(value)}")
    return bytes(value)


def _struct_of(spec: MessageSpec) -> struct.Struct:
    return struct.Struct("<" + "".join(
        f"{f.count}{_STRUCT[f.base]}" if f.base in ("i8", "bytes") else _STRUCT[f.base]
        for f in spec.fields if not f.rest))


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _make_class(spec: MessageSpec) -> type[Message]:
    types = {"u8": int, "u16": int, "u32": int, "i8": tuple, "bytes": bytes, "utf8": str}
    cls = dataclasses.make_dataclass(
        _class_name(spec.name), [(f.name, types[f.base]) for f in spec.fields],
        bases=(Message,), frozen=True,
        namespace={"SPEC": spec, "__doc__": spec.meaning, "__module__": __name__})
    return cls


_structs = {m.name: _struct_of(m) for m in TABLE.messages}
# The message classes: by name ("GENERATE") and by type code.
MESSAGES: dict[str, type[Message]] = {m.name: _make_class(m) for m in TABLE.messages}
_BY_CODE: dict[int, type[Message]] = {cls.SPEC.code: cls for cls in MESSAGES.values()}


def message(name: str, **fields: Any) -> Message:
    """A message by its table name: message("SPEAK", exhibit=7, verdict=0x1ABCD)."""
    try:
        cls = MESSAGES[name]
    except KeyError:
        raise ValueError(f"no message {name!r} in the protocol table") from None
    return cls(**fields)


def unit_error(msg: Message, where: str | None = None) -> ProtocolError:
    """The exception for an ERROR message a unit sent: its code's sentence and hint from the
    table, with the unit's detail (an engine's CAT_E code, a version, a value) and its own words
    when they differ from the table's."""
    if msg.SPEC.name != "ERROR":
        raise ValueError(f"unit_error takes an ERROR message, not {msg.SPEC.name}")
    row = _ERROR_ROWS.get(msg.code)
    parts = [f"detail {msg.detail}"]
    if msg.sentence and (row is None or msg.sentence != row.sentence):
        parts.append(f"the unit says: {msg.sentence}")
    return ProtocolError(msg.code, "; ".join(parts), where)


def encode_message(msg: Message, seq: int) -> bytes:
    """The message as one frame on the wire, delimiter included."""
    return encode_frame(msg.SPEC.code, seq, msg.payload())


def decode_message(frame: Frame, where: str | None = None) -> Message:
    """The message a frame carries. ProtocolError for a type not in the table (UNKNOWN_TYPE), a
    payload of the wrong size for its type (WRONG_SIZE) or a field outside its range (BAD_FIELD:
    an unknown state or kind, a verdict over 17 bits). Checked in the order qp_payload_check()
    checks the first two, so C and Python refuse the same frames the same way."""
    cls = _BY_CODE.get(frame.type)
    if cls is None:
        raise ProtocolError(ErrorCode["UNKNOWN_TYPE"], f"type 0x{frame.type:02x}", where)
    spec = cls.SPEC
    size, fixed = len(frame.payload), spec.fixed_size
    if size != fixed and not (spec.has_rest and fixed <= size <= MAX_PAYLOAD):
        want = f"at least {fixed}" if spec.has_rest else str(fixed)
        raise ProtocolError(ErrorCode["WRONG_SIZE"], f"{spec.name} of {size} bytes, "
                                                     f"expected {want}", where)
    values = iter(_structs[spec.name].unpack_from(frame.payload))
    fields: dict[str, Any] = {}
    for f in spec.fields:
        if f.rest:
            rest = frame.payload[fixed:]
            fields[f.name] = rest.decode("utf-8", "replace") if f.base == "utf8" else rest
        elif f.base == "i8":
            fields[f.name] = tuple(next(values) for _ in range(f.count))
        else:
            fields[f.name] = next(values)
    try:
        return cls(**fields)
    except ValueError as exc:
        raise ProtocolError(ErrorCode["BAD_FIELD"], f"{spec.name}: {exc}", where) from None

