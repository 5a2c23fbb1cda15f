"""The Python codec of the units' protocol (installation/units/protocol.py), beyond the vectors.

Messages are made from the table, not written per message; every message round-trips; the
incremental decoder gives the same answers however the bytes are split, resynchronises after
noise, keeps memory bounded on a line that never sends a zero; errors are one DeviceError sentence
with the table's hint; a wrong value is refused when a message is built; the codec stays pure.
"""

from __future__ import annotations

import hashlib
import inspect
import random
import subprocess
import sys
from typing import Any

import pytest

from firmware.protocol_table import read_protocol_table
from installation.errors import EXIT_EXTERNAL, DeviceError
from installation.units import protocol
from installation.units.protocol import ErrorCode, FrameDecoder, FrameError, ProtocolError


def _example(name: str, rng: random.Random) -> protocol.Message:
    """A message with random legal values for every field, from the table alone."""
    fields: dict[str, Any] = {}
    for f in protocol.MESSAGES[name].SPEC.fields:
        if f.enum == "kind":
            fields[f.name] = rng.choice(list(protocol.UnitKind))
        elif f.enum == "state":
            fields[f.name] = rng.choice(list(protocol.UnitState))
        elif f.base in ("u8", "u16", "u32"):
            fields[f.name] = rng.randint(0, f.max or (1 << 8 * f.size) - 1)
        elif f.base == "i8":
            fields[f.name] = [rng.randint(-128, 127) for _ in range(f.count)]
        elif f.base == "utf8":
            fields[f.name] = "le chat a parlé: ünïcode"
        else:
            size = f.count or rng.randint(0, protocol.MAX_PAYLOAD - protocol.MESSAGES[name]
                                          .SPEC.fixed_size)
            fields[f.name] = rng.randbytes(size)
    return protocol.message(name, **fields)


def test_there_is_one_message_class_per_table_row_with_the_tables_fields() -> None:
    table = read_protocol_table()
    assert list(protocol.MESSAGES) == [m.name for m in table.messages]
    for spec in table.messages:
        cls = protocol.MESSAGES[spec.name]
        assert spec == cls.SPEC
        assert list(inspect.signature(cls).parameters) == [f.name for f in spec.fields]
    assert protocol.MessageType["IMAGE_DONE"] == 0x13
    assert repr(protocol.message("SPOKEN", exhibit=3, ms=4100)) == "Spoken(exhibit=3, ms=4100)"


@pytest.mark.parametrize("name", list(protocol.MESSAGES))
def test_every_message_round_trips(name: str) -> None:
    rng = random.Random(name)
    for seq in (0, 1, 0x1234, 0xFFFF):
        msg = _example(name, rng)
        wire = protocol.encode_message(msg, seq)
        assert wire.endswith(b"\0") and 0 not in wire[:-1]
        [frame] = FrameDecoder().feed(wire)
        assert isinstance(frame, protocol.Frame) and frame.seq == seq
        assert frame.type_name == name
        back = protocol.decode_message(frame)
        assert back == msg and type(back) is type(msg)


def test_enum_fields_come_back_as_enum_members() -> None:
    msg = protocol.message("HEARTBEAT", uptime_ms=5, state=3)
    [frame] = FrameDecoder().feed(protocol.encode_message(msg, 1))
    assert isinstance(frame, protocol.Frame)
    back = protocol.decode_message(frame)
    assert back.state is protocol.UnitState["SPEAKING"]


def _stream(rng: random.Random, n: int) -> tuple[bytes, list[protocol.Message]]:
    msgs = [_example(rng.choice(list(protocol.MESSAGES)), rng) for _ in range(n)]
    return b"".join(protocol.encode_message(m, k) for k, m in enumerate(msgs)), msgs


def test_the_answers_do_not_depend_on_how_the_bytes_are_split() -> None:
    rng = random.Random(5)
    wire, msgs = _stream(rng, 40)
    whole = FrameDecoder().feed(wire)
    assert [protocol.decode_message(f) for f in whole] == msgs  # type: ignore[arg-type]
    bytewise = FrameDecoder()
    assert [x for b in wire for x in bytewise.feed(bytes([b]))] == whole
    pieces = FrameDecoder()
    got: list[protocol.Frame | FrameError] = []
    at = 0
    while at < len(wire):
        step = rng.randint(1, 700)
        got += pieces.feed(wire[at:at + step])
        at += step
    assert got == whole


def test_noise_costs_only_the_frame_it_lands_in() -> None:
    rng = random.Random(6)
    wire, msgs = _stream(rng, 3)
    first_end = wire.index(0) + 1
    damaged = bytearray(wire)
    damaged[first_end + 4] ^= 0x40  # inside the second frame
    if damaged[first_end + 4] == 0:
        damaged[first_end + 4] = 0x41
    noise = bytes(rng.randint(1, 255) for _ in range(300))  # no zero: joins the next frame
    answers = FrameDecoder().feed(noise + b"\0" + bytes(damaged))
    assert isinstance(answers[0], FrameError)  # the noise, ended by its zero
    assert protocol.decode_message(answers[1]) == msgs[0]  # type: ignore[arg-type]
    assert isinstance(answers[2], FrameError)
    assert protocol.decode_message(answers[3]) == msgs[2]  # type: ignore[arg-type]


def test_leading_and_repeated_zeros_are_ignored() -> None:
    wire = protocol.encode_message(protocol.message("RESET"), 9)
    answers = FrameDecoder().feed(b"\0\0" + wire + b"\0\0\0" + wire)
    assert [a.seq for a in answers if isinstance(a, protocol.Frame)] == [9, 9]
    assert len(answers) == 2


def test_a_line_without_zeros_keeps_memory_bounded_and_earns_one_too_long() -> None:
    decoder = FrameDecoder()
    for _ in range(100):  # 100 KB of 0x55, never a delimiter
        assert decoder.feed(b"\x55" * 1000) == []
        assert len(decoder._pending) <= protocol.MAX_ENCODED
    wire = protocol.encode_message(protocol.message("HEARTBEAT", uptime_ms=1, state=0), 2)
    answers = decoder.feed(b"\0" + wire)
    assert answers[0] == FrameError(ErrorCode["TOO_LONG"])
    assert isinstance(answers[1], protocol.Frame) and answers[1].seq == 2
    assert len(answers) == 2


def test_a_frame_of_exactly_the_largest_size_passes_and_one_byte_more_does_not() -> None:
    data = bytes(range(1, 256)) * 4 + bytes(range(1, 1 + protocol.IMAGE_CHUNK - 1020))
    assert len(data) == protocol.IMAGE_CHUNK
    biggest = protocol.message("IMAGE", exhibit=1, offset=0, data=data)
    wire = protocol.encode_message(biggest, 1)
    [frame] = FrameDecoder().feed(wire)
    assert protocol.decode_message(frame) == biggest  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exceed max_payload"):
        protocol.message("IMAGE", exhibit=1, offset=0, data=data + b"\1").payload()
    with pytest.raises(ValueError, match="exceeds max_payload"):
        protocol.encode_frame(0x12, 1, bytes(protocol.MAX_PAYLOAD + 1))


def test_an_image_goes_out_in_chunks_and_comes_back_whole() -> None:
    image = random.Random(7).randbytes(protocol.IMAGE_BYTES)
    wire = b"".join(
        protocol.encode_message(protocol.message(
            "IMAGE", exhibit=42, offset=at, data=image[at:at + protocol.IMAGE_CHUNK]), k)
        for k, at in enumerate(range(0, len(image), protocol.IMAGE_CHUNK)))
    wire += protocol.encode_message(protocol.message(
        "IMAGE_DONE", exhibit=42, length=len(image), sha256=hashlib.sha256(image).digest()), 99)
    got = bytearray(protocol.IMAGE_BYTES)
    done = None
    for frame in FrameDecoder().feed(wire):
        msg = protocol.decode_message(frame)  # type: ignore[arg-type]
        if msg.SPEC.name == "IMAGE":
            got[msg.offset:msg.offset + len(msg.data)] = msg.data
        else:
            done = msg
    assert done is not None and done.length == len(image) == 12 * protocol.IMAGE_CHUNK
    assert hashlib.sha256(got).digest() == done.sha256


def test_errors_are_one_device_sentence_with_the_tables_hint() -> None:
    rows = {r.code: r for r in read_protocol_table().errors}
    bad_crc = FrameError(ErrorCode["BAD_CRC"]).error("/dev/ttyACM0")
    assert isinstance(bad_crc, DeviceError) and bad_crc.exit_code == EXIT_EXTERNAL
    assert bad_crc.message == f"/dev/ttyACM0: {rows[1].sentence}"
    assert bad_crc.hint == rows[1].hint
    newer = FrameError(ErrorCode["BAD_VERSION"], version=2, type=1, seq=0, length=0)
    assert newer.error("socket://unit:7000").message == (
        "socket://unit:7000: a frame speaks a protocol version this side does not "
        "(it speaks protocol 2, qcat speaks 1)")
    unknown = ProtocolError(4242, where="/dev/ttyACM1")
    assert unknown.code == 4242 and "error 4242, unknown to this qcat" in unknown.message
    for word in ("issue", "ticket", "release"):
        assert all(word not in f"{r.sentence} {r.hint}".lower() for r in rows.values())


def test_an_error_a_unit_sent_becomes_one_sentence() -> None:
    engine = protocol.message("ERROR", code=ErrorCode["ENGINE"], about_seq=7, detail=9,
                              sentence="slice CRC mismatch in layer 2")
    exc = protocol.unit_error(engine, where="/dev/ttyACM0")
    assert exc.code == ErrorCode["ENGINE"] and exc.exit_code == EXIT_EXTERNAL
    assert exc.message == ("/dev/ttyACM0: the unit's cat engine failed (ERROR.detail is its CAT_E "
                           "code) (detail 9; the unit says: slice CRC mismatch in layer 2)")
    assert "qcat sd weights build" in (exc.hint or "")
    with pytest.raises(ValueError, match="not ACK"):
        protocol.unit_error(protocol.message("ACK", acked_seq=1, state=0))


def test_a_unit_error_with_broken_utf8_is_still_read() -> None:
    payload = (13).to_bytes(2, "little") + (7).to_bytes(2, "little") + (5).to_bytes(4, "little")
    [frame] = FrameDecoder().feed(protocol.encode_frame(0x04, 1, payload + b"bad \xff text"))
    msg = protocol.decode_message(frame)  # type: ignore[arg-type]
    assert msg.code == 13 and msg.detail == 5 and msg.sentence == "bad \ufffd text"


@pytest.mark.parametrize(("name", "fields", "complaint"), [
    ("SPEAK", {"exhibit": 1, "verdict": 1 << 17}, r"'verdict' \(u32\) must be 0..131071"),
    ("HEARTBEAT", {"uptime_ms": 1, "state": 42}, "42 is not a UnitState"),
    ("HEARTBEAT", {"uptime_ms": -1, "state": 0}, "must be 0..4294967295"),
    ("HEARTBEAT", {"uptime_ms": True, "state": 0}, "must be an integer"),
    ("GENERATE", {"exhibit": 1, "latent": [0] * 99, "verdict": 0}, "100 values in -128..127"),
    ("GENERATE", {"exhibit": 1, "latent": [128] * 100, "verdict": 0}, "100 values in -128..127"),
    ("IMAGE_DONE", {"exhibit": 1, "length": 1, "sha256": bytes(31)}, "must be 32 bytes, not 31"),
    ("ERROR", {"code": 1, "about_seq": 0, "detail": 0, "sentence": b"x"}, "must be a str"),
])
def test_building_a_message_with_a_wrong_value_is_a_valueerror(name: str, fields: dict[str, Any],
                                                               complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        protocol.message(name, **fields)


def test_unknown_message_names_and_missing_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="no message 'HELO'"):
        protocol.message("HELO")
    with pytest.raises(TypeError):
        protocol.message("SPEAK", exhibit=1)


def test_the_codec_is_pure() -> None:
    """No port, no clock, no UI: importing it pulls in none of them (nor torch)."""
    code = ("import sys, installation.units.protocol as p; "
            "print(sorted(m for m in ('serial', 'textual', 'torch', 'numpy', 'socket', 'ctypes') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
