"""10^5 damaged, truncated, oversized and random frames through both decoders, seeded.

The Python decoder (installation/units/protocol.py) and the C decoder the units run
(firmware/common/frame.c, through firmware/protocol_host.py, one call for the whole batch) get the
same inputs. Each must answer only with its own kinds (Python: Frame or FrameError, and
decode_message only ProtocolError; C: QP_OK or a QP_E_* code), finish quickly (no input makes
either loop), and the two must agree on every input: the same frames with the same payloads, the
same error codes with the same headers, the same verdict on each payload's size. The corpus must
really reach every error (counted), or the test would pass vacuously.
"""

from __future__ import annotations

import random
import struct
import time
from collections import Counter
from typing import Any

import pytest

from firmware import protocol_host as c_frame
from installation.units import protocol
from installation.units.protocol import ErrorCode, Frame, FrameDecoder, FrameError, ProtocolError

SEED = 20240611
N_INPUTS = 100_000
POOL = 400  # valid frames the mutations start from
# Generous: about 5 s here for everything; a decoder that loops or goes quadratic blows it.
MAX_SECONDS = 60
HEADERED = {ErrorCode["BAD_VERSION"], ErrorCode["BAD_LENGTH"]}
MESSAGE_CHECKED = {ErrorCode["UNKNOWN_TYPE"], ErrorCode["WRONG_SIZE"]}


def _random_message(rng: random.Random) -> bytes:
    name = rng.choice(list(protocol.MESSAGES))
    fields: dict[str, Any] = {}
    spec = protocol.MESSAGES[name].SPEC
    for f in spec.fields:
        if f.enum:
            fields[f.name] = rng.choice(list(protocol.UnitKind if f.enum == "kind"
                                             else protocol.UnitState))
        elif f.base in ("u8", "u16", "u32"):
            fields[f.name] = rng.randint(0, f.max or (1 << 8 * f.size) - 1)
        elif f.base == "i8":
            fields[f.name] = [rng.randint(-128, 127) for _ in range(f.count)]
        elif f.base == "utf8":
            fields[f.name] = "x" * rng.randint(0, 80)
        else:
            rest = rng.choice([0, 1, 17, 254, 255, protocol.MAX_PAYLOAD - spec.fixed_size])
            fields[f.name] = bytes(rng.choice([0, 0, 1, rng.randint(0, 255)])
                                   for _ in range(f.count or rest))
    return protocol.encode_message(protocol.message(name, **fields), rng.randint(0, 0xFFFF))


def _raw_frame(rng: random.Random) -> bytes:
    """A frame whose CRC holds but whose header lies: wrong version, length, type or size."""
    spec = rng.choice(list(protocol.MESSAGES.values())).SPEC
    if rng.random() < 0.5:  # a real type with random field values: enums and maxima broken
        kind, payload = spec.code, rng.randbytes(spec.fixed_size)
    else:
        kind = rng.randint(0, 0x30)
        payload = rng.randbytes(rng.choice([0, 3, 5, 8, 9, 38, 88, 108, 134, 300]))
    version = rng.choice([1, 1, 1, 0, 2, 255])
    length = len(payload) + rng.choice([0, 0, 0, 1, -1, 300]) if payload else rng.choice([0, 1])
    body = struct.pack("<BBHH", version, kind, rng.randint(0, 0xFFFF), length & 0xFFFF) + payload
    raw = body + protocol.crc16(body).to_bytes(2, "little")
    return protocol.cobs_encode(raw) + b"\0"


def _corpus(rng: random.Random) -> tuple[list[bytes], Counter[str]]:
    pool = [_random_message(rng) for _ in range(POOL)]
    made: Counter[str] = Counter()
    out: list[bytes] = []
    for _ in range(N_INPUTS):
        kind = rng.choice(("valid", "flipped", "truncated", "random", "oversized", "raw",
                           "spliced", "runs"))
        made[kind] += 1
        frame = bytearray(rng.choice(pool))
        if kind == "flipped":
            for _ in range(rng.randint(1, 3)):
                frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        elif kind == "truncated":
            frame = frame[:rng.randrange(len(frame))] + rng.choice([b"", b"\0"])
        elif kind == "random":
            frame = bytearray(rng.randbytes(rng.randint(0, 300)))
            frame.append(0) if rng.random() < 0.7 else None
        elif kind == "oversized":
            size = rng.randint(protocol.MAX_ENCODED - 8, protocol.MAX_ENCODED + 600)
            frame = bytearray(rng.randint(1, 255) for _ in range(size)) + b"\0"
            if rng.random() < 0.5:  # a valid COBS run of a frame that decodes too large
                frame = bytearray(protocol.cobs_encode(rng.randbytes(size)) + b"\0")
        elif kind == "raw":
            frame = bytearray(_raw_frame(rng))
        elif kind == "spliced":
            at = rng.randrange(len(frame))
            frame[at:at + rng.randint(0, 4)] = rng.randbytes(rng.randint(0, 4))
            frame += rng.choice(pool)  # and a good frame after it: the resynchronisation
        elif kind == "runs":  # long COBS blocks cut short, zeros in runs
            frame = bytearray([0xFF] * rng.randint(1, 300) + [0] * rng.randint(0, 3))
        out.append(bytes(frame))
    return out, made


def _python_answers(data: bytes, decoder: FrameDecoder) -> list[tuple[Any, ...]]:
    answers: list[tuple[Any, ...]] = []
    for item in decoder.feed(data):
        if isinstance(item, Frame):
            try:
                protocol.decode_message(item)
                check = 0
            except ProtocolError as exc:
                check = exc.code
            answers.append((0, item.type, item.seq, item.payload, check))
        else:
            assert isinstance(item, FrameError), item
            assert item.code in ErrorCode.__members__.values()
            if item.code in HEADERED:
                answers.append((item.code, item.version, item.type, item.seq, item.length))
            else:
                answers.append((item.code,))
    return answers


def _c_answer(r: c_frame.ScanResult) -> tuple[Any, ...]:
    if r.code == 0:
        return (0, r.type, r.seq, r.payload, r.check)
    if r.code in HEADERED:
        return (r.code, r.version, r.type, r.seq, r.length)
    return (r.code,)


def _same(py: tuple[Any, ...], cc: tuple[Any, ...]) -> bool:
    """Equal, except that C's qp_payload_check leaves field ranges (BAD_FIELD) to the receiver."""
    if py[0] == 0 and cc[0] == 0 and py[4] == ErrorCode["BAD_FIELD"]:
        return py[:4] == cc[:4] and cc[4] == 0
    return py == cc


@pytest.fixture(scope="module")
def corpus() -> tuple[list[bytes], Counter[str]]:
    return _corpus(random.Random(SEED))


@pytest.mark.slow
def test_both_decoders_agree_on_every_input(corpus: tuple[list[bytes], Counter[str]]) -> None:
    inputs, made = corpus
    start = time.perf_counter()
    c_results = c_frame.scan(inputs)
    c_seconds = time.perf_counter() - start
    by_input: list[list[tuple[Any, ...]]] = [[] for _ in inputs]
    for r in c_results:
        by_input[r.input].append(_c_answer(r))

    start = time.perf_counter()
    seen: Counter[int] = Counter()
    checks: Counter[int] = Counter()
    for k, data in enumerate(inputs):
        py = _python_answers(data, FrameDecoder())
        cc = by_input[k]
        assert len(py) == len(cc) and all(map(_same, py, cc)), \
            f"input {k} ({data[:64].hex()}...): Python {py}, C {cc}"
        seen.update(a[0] for a in py)
        checks.update(a[4] for a in py if a[0] == 0)
    py_seconds = time.perf_counter() - start
    print(f"\n{N_INPUTS:,} inputs {dict(made)}: C {c_seconds:.2f} s, Python {py_seconds:.2f} s; "
          f"answers {dict(seen)}, message checks {dict(checks)}")
    assert c_seconds + py_seconds < MAX_SECONDS
    # Not vacuous: every framing error and every message-level refusal was reached, often.
    for code in ("BAD_CRC", "BAD_COBS", "TOO_LONG", "TRUNCATED", "BAD_VERSION", "BAD_LENGTH"):
        assert seen[ErrorCode[code]] >= 200, code
    assert seen[0] >= 20_000
    for code in ("UNKNOWN_TYPE", "WRONG_SIZE", "BAD_FIELD"):
        assert checks[ErrorCode[code]] >= 100, code


@pytest.mark.slow
def test_both_decoders_agree_on_the_whole_corpus_as_one_stream(
        corpus: tuple[list[bytes], Counter[str]]) -> None:
    """One long line instead of fresh decoders: leftovers of one input run into the next, and
    both must resynchronise identically. Python is fed in pieces of random size."""
    inputs, _ = corpus
    inputs = inputs[:30_000]
    cc = [_c_answer(r) for r in c_frame.scan(inputs, stream=True)]
    rng = random.Random(SEED + 1)
    wire = b"".join(inputs)
    decoder = FrameDecoder()
    py: list[tuple[Any, ...]] = []
    at = 0
    while at < len(wire):
        step = rng.randint(1, 2000)
        py += _python_answers(wire[at:at + step], decoder)
        at += step
    assert len(py) == len(cc) > 20_000
    mismatch = next((k for k, (a, b) in enumerate(zip(py, cc, strict=True)) if not _same(a, b)),
                    None)
    assert mismatch is None, f"answer {mismatch}: Python {py[mismatch]}, C {cc[mismatch]}"


def test_a_small_decoder_buffer_refuses_long_frames_and_stays_in_step() -> None:
    """A die unit's decoder keeps 64 bytes: a GENERATE (108-byte payload) is too long for it, the
    HEARTBEAT after it still decodes."""
    generate = protocol.encode_message(protocol.message(
        "GENERATE", exhibit=1, latent=[1] * 100, verdict=0), 1)
    heartbeat = protocol.encode_message(protocol.message("HEARTBEAT", uptime_ms=1, state=0), 2)
    got = c_frame.scan([generate + heartbeat], cap=64)
    assert [r.code for r in got] == [ErrorCode["TOO_LONG"], 0]
    assert got[1].seq == 2
