"""Known answers for the serial protocol, one file for both languages: tests/vectors/protocol.json.

The same vectors go through the Python codec (installation/units/protocol.py) and through the C
framing the units compile (firmware/common/frame.c, via firmware/protocol_host.py): COBS (the
worked examples of the COBS paper and edge cases: empty, 254/255-byte runs, all zeros), CRC-16
(the standard check value of "123456789", 0x29B1), whole frames of every message type with their
exact bytes, and damaged frames with the one error each must earn.
"""

from __future__ import annotations

import binascii
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from firmware import protocol_host as c_frame
from installation.units import protocol

VECTORS = json.loads((Path(__file__).parent / "vectors" / "protocol.json").read_text())
CODES = {protocol.error_name(code): code for code in protocol.ErrorCode}


def _ids(cases: list[dict[str, Any]], key: str = "name") -> list[str]:
    return [str(case[key]) for case in cases]


def test_the_vectors_are_for_this_protocol_version_and_cover_every_message() -> None:
    assert VECTORS["protocol_version"] == protocol.VERSION
    assert {f["message"] for f in VECTORS["frames"]} == set(protocol.MESSAGES)


@pytest.mark.parametrize("case", VECTORS["cobs"], ids=_ids(VECTORS["cobs"]))
def test_cobs_known_answers_in_python_and_c(case: dict[str, str]) -> None:
    decoded, encoded = bytes.fromhex(case["decoded"]), bytes.fromhex(case["encoded"])
    assert protocol.cobs_encode(decoded) == encoded
    assert protocol.cobs_decode(encoded) == decoded
    assert c_frame.cobs_encode(decoded) == encoded
    assert c_frame.cobs_decode(encoded) == decoded


def test_cobs_decoders_refuse_a_block_past_the_end_and_a_zero_inside() -> None:
    bad_cobs = CODES["QP_E_BAD_COBS"]
    for data in (b"\x05\x11\x22", b"\x03\x11\x00\x22", b"\x00"):
        with pytest.raises(protocol.ProtocolError) as info:
            protocol.cobs_decode(data)
        assert info.value.code == bad_cobs
        assert c_frame.cobs_decode(data) == bad_cobs
    # and the C decoder never writes past the buffer it was given
    assert c_frame.cobs_decode(b"\x05\x11\x22\x33\x44", cap=3) == CODES["QP_E_TOO_LONG"]


@pytest.mark.parametrize("case", VECTORS["crc16"], ids=_ids(VECTORS["crc16"]))
def test_crc16_known_answers_in_python_and_c(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["data"])
    assert protocol.crc16(data) == case["crc"]
    assert c_frame.crc16(data) == case["crc"]
    # a running CRC over two pieces is the CRC of the whole (frame.c feeds header, then payload)
    half = len(data) // 2
    assert c_frame.crc16(data[half:], c_frame.crc16(data[:half])) == case["crc"]


def test_one_frame_rebuilt_from_the_spec_alone() -> None:
    """The HEARTBEAT vector from first principles (struct, crc_hqx, COBS by hand), so the vectors
    are not merely what the codec happened to write."""
    vector = next(f for f in VECTORS["frames"] if f["message"] == "HEARTBEAT")
    payload = struct.pack("<IB", 123456, 1)
    body = struct.pack("<BBHH", 1, 0x02, vector["seq"], len(payload)) + payload
    raw = body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "little")
    assert len(raw) < 254  # so every COBS block ends at a zero (or the end), none is full
    zeros = [i for i, b in enumerate(raw) if b == 0]
    blocks, start = [], 0
    for z in [*zeros, len(raw)]:
        blocks.append(bytes([z - start + 1]) + raw[start:z])
        start = z + 1
    assert bytes.fromhex(vector["wire"]) == b"".join(blocks) + b"\0"


def _fields(message: str, fields: dict[str, Any]) -> dict[str, Any]:
    spec = protocol.MESSAGES[message].SPEC
    return {f.name: bytes.fromhex(fields[f.name]) if f.base == "bytes" else fields[f.name]
            for f in spec.fields}


@pytest.mark.parametrize("case", VECTORS["frames"], ids=_ids(VECTORS["frames"], "message"))
def test_whole_frames_in_python(case: dict[str, Any]) -> None:
    msg = protocol.message(case["message"], **_fields(case["message"], case["fields"]))
    wire = bytes.fromhex(case["wire"])
    assert msg.payload().hex() == case["payload"]
    assert protocol.encode_message(msg, case["seq"]) == wire
    [frame] = protocol.FrameDecoder().feed(wire)
    assert isinstance(frame, protocol.Frame)
    assert (frame.version, frame.type, frame.seq) == (1, case["type"], case["seq"])
    assert protocol.decode_message(frame) == msg


@pytest.mark.parametrize("case", VECTORS["frames"], ids=_ids(VECTORS["frames"], "message"))
def test_whole_frames_in_c(case: dict[str, Any]) -> None:
    payload, wire = bytes.fromhex(case["payload"]), bytes.fromhex(case["wire"])
    assert c_frame.encode_frame(case["type"], case["seq"], payload) == wire
    [got] = c_frame.scan([wire])
    assert (got.code, got.version, got.type, got.seq) == (0, 1, case["type"], case["seq"])
    assert got.payload == payload and got.length == len(payload)
    assert got.check == 0  # qp_payload_check: the right size for its type


def test_c_encoder_refuses_what_does_not_fit() -> None:
    assert c_frame.encode_frame(0x12, 1, bytes(protocol.MAX_PAYLOAD + 1)) == b""
    assert c_frame.encode_frame(0x12, 1, bytes(100), cap=50) == b""
    assert len(c_frame.encode_frame(0x12, 1, bytes(range(1, 256)) * 4 + bytes(10))) <= \
        protocol.MAX_ENCODED + 1


@pytest.mark.parametrize("case", VECTORS["frame_errors"], ids=_ids(VECTORS["frame_errors"]))
def test_damaged_frames_earn_the_same_error_in_python_and_c(case: dict[str, Any]) -> None:
    wire = bytes.fromhex(case["wire"])
    [py] = protocol.FrameDecoder().feed(wire)
    [cc] = c_frame.scan([wire])
    assert isinstance(py, protocol.FrameError)
    assert protocol.error_name(py.code) == case["error"]
    assert cc.code == CODES[case["error"]]
    if "version" in case:  # the CRC held: the header is known, in both
        assert (py.version, py.seq) == (cc.version, cc.seq) == (case["version"], case["seq"])


@pytest.mark.parametrize("case", VECTORS["message_errors"], ids=_ids(VECTORS["message_errors"]))
def test_good_frames_with_bad_messages_are_refused_alike(case: dict[str, Any]) -> None:
    wire = bytes.fromhex(case["wire"])
    [frame] = protocol.FrameDecoder().feed(wire)
    assert isinstance(frame, protocol.Frame)
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode_message(frame, where="/dev/ttyACM0")
    assert protocol.error_name(info.value.code) == case["error"]
    assert info.value.message.startswith("/dev/ttyACM0: ")
    [cc] = c_frame.scan([wire])
    assert cc.code == 0  # a good frame to the framing...
    # ...and qp_payload_check() refuses the type and size errors the same way (field ranges are
    # the receiver's state machine's business in C)
    want = CODES[case["error"]] if case["error"] != "QP_E_BAD_FIELD" else 0
    assert cc.check == want
