"""The die unit's firmware core (firmware/die/die_unit.c) driven directly through ctypes.

No pty here: a board made in the test owns the clock (heartbeats and the button's debounce are
exact), the serial output (decoded with the production codec), the SSD1306's memory and the
button. What the unit answers is decided by the C alone; these tests pin it: the handshake and
heartbeats, the entropy reserve's rules, the roll's recipe (rejection sampling, the latent, the
face against the numpy reference for the same bytes), atomic refusal without entropy, the 2x face
on the OLED, the debounced button, every refusal with its table code, RESET and the fault state.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from firmware.die_engine import DieEngine
from firmware.die_unit import (
    DieUnit,
    Identity,
    Oled,
    builtin_arrays,
    builtin_sha256,
    limits,
    roll_recipe,
)
from installation.units import protocol as P
from models import die_reference as ref

E = P.ErrorCode
S = P.UnitState
LIMITS = limits()
CAP = LIMITS.reserve_bytes
NO_SEQ = 0xFFFF


class Board:
    """A board in the test's hands: the clock and the button move only when told."""

    def __init__(self) -> None:
        self.now = 0
        self.pressed = False
        self.out = bytearray()
        self.oled = Oled()

    def write(self, frame: bytes) -> None:
        self.out += frame

    def millis(self) -> int:
        return self.now

    def oled_write(self, page: int, col: int, data: bytes) -> None:
        self.oled.write(page, col, data)

    def button(self) -> bool:
        return self.pressed


class Rig:
    """A unit core (the compiled-in decoder, or `model`'s), its board, the controller's codec."""

    def __init__(self, model: ref.DieModel | None = None, has_button: bool = True) -> None:
        self.board = Board()
        self.model = model
        engine = DieEngine(*model.engine_arrays()) if model is not None else None
        sha = bytes.fromhex(ref.content_sha256(model)) if model is not None else None
        self.unit = DieUnit(self.board, Identity("die-07", sha), engine, has_button=has_button)
        self.decoder = P.FrameDecoder()
        self.seq = 0
        self.frames: list[P.Frame] = []

    def send(self, name: str, **fields) -> int:
        seq, self.seq = self.seq, self.seq + 1
        self.unit.rx(P.encode_message(P.message(name, **fields), seq))
        return seq

    def topup(self, offset: int, data: bytes) -> list[P.Message]:
        self.send("TOPUP", offset=offset, entropy=data)
        return self.take()

    def take(self) -> list[P.Message]:
        """Everything the unit sent since the last take, decoded (frame errors fail the test)."""
        items = self.decoder.feed(bytes(self.board.out))
        self.board.out.clear()
        assert all(isinstance(f, P.Frame) for f in items), items
        self.frames += items
        return [P.decode_message(f) for f in items]

    def step(self, ms: int, pressed: bool | None = None) -> list[P.Message]:
        """Advance the clock by `ms` in poll-sized steps (the button as given), polling."""
        if pressed is not None:
            self.board.pressed = pressed
        end = self.board.now + ms
        while self.board.now < end:
            self.board.now = min(end, self.board.now + LIMITS.poll_ms)
            self.unit.poll()
        return [m for m in self.take() if m.SPEC.name != "HEARTBEAT"]


def names(msgs: list[P.Message]) -> list[str]:
    return [m.SPEC.name for m in msgs]


def entropy(n: int, seed: int = 0, reject: bool = True) -> bytes:
    """Seeded bytes; reject=False keeps them below 252 (no rejection) for exact byte counts."""
    rng = random.Random(seed)
    return bytes(rng.randrange(256 if reject else ref.REJECT) for _ in range(n))


@pytest.fixture(scope="module")
def model() -> ref.DieModel:
    return ref.random_model(3)


def builtin_model() -> ref.DieModel:
    """The decoder compiled into the firmware, rebuilt for the numpy reference."""
    packed, bias, shift, label_shift = builtin_arrays()
    weights = [ref.unpack_nibbles(p, int(np.prod(s))).reshape(s)
               for p, s in zip(packed, ref.weight_shapes(), strict=True)]
    return ref.DieModel(weights, bias, shift, label_shift)


def expected_face(model: ref.DieModel, data: bytes) -> tuple[ref.Roll, bytes]:
    roll = ref.roll_from_bytes(data)
    assert roll is not None
    return roll, ref.run_banded(model, roll.z[None], roll.pips)[0].tobytes()


# ------------------------------------------------------------------------------------------------
# Handshake, heartbeats, identity


def test_hello_is_a_die_with_the_decoders_hash_and_a_small_buffer() -> None:
    rig = Rig()
    assert rig.unit.engine_code == 0 and rig.unit.state == S["IDLE"]
    # The controller's own HELLO (88 bytes of payload) fits the die's buffer.
    rig.send("HELLO", protocol=1, kind=P.UnitKind["CONTROLLER"], serial=b"host".ljust(16, b"\0"),
             firmware=1, weights_sha256=bytes(32), clips_sha256=bytes(32),
             max_payload=P.MAX_PAYLOAD)
    (hello,) = rig.take()
    assert hello.SPEC.name == "HELLO"
    assert (hello.kind, hello.protocol) == (P.UnitKind["DIE"], P.VERSION)
    assert hello.serial == b"die-07".ljust(16, b"\0")
    assert hello.firmware == LIMITS.firmware == 0x000100
    assert hello.weights_sha256 == builtin_sha256()
    assert hello.clips_sha256 == bytes(32)
    assert hello.max_payload == LIMITS.max_payload == 108 < P.MAX_PAYLOAD  # GENERATE's size


def test_the_compiled_in_decoder_is_the_one_its_hash_names() -> None:
    """HELLO's weights_sha256 is the content hash of exactly the arrays the firmware computes
    with, and the header's text names the same hash: a controller can match it to a file."""
    model = builtin_model()
    model.check()
    digest = ref.content_sha256(model)
    assert bytes.fromhex(digest) == builtin_sha256()
    assert f'#define DIE_WEIGHTS_SHA256 "{digest}"' in ref.HEADER_PATH.read_text()


def test_the_generated_headers_are_in_sync() -> None:
    """die_gauss.h is the reference's gauss table; die_weights.h carries the digest as bytes."""
    assert ref.GAUSS_HEADER_PATH.read_text() == ref.c_gauss_header()
    text = ref.c_header(ref.random_model(5))
    assert "static const uint8_t die_weights_sha256[32]" in text
    digest = bytes.fromhex(ref.content_sha256(ref.random_model(5)))
    assert f"0x{digest[0]:02x}, 0x{digest[1]:02x}" in text


def test_heartbeats_every_interval_and_the_poll_wants_the_button_often() -> None:
    rig = Rig()
    assert rig.unit.poll() == LIMITS.poll_ms  # a button to watch: come back soon
    (beat,) = rig.take()
    assert (beat.SPEC.name, beat.uptime_ms, beat.state) == ("HEARTBEAT", 0, S["IDLE"])
    rig.board.now = 999
    rig.unit.poll()
    assert rig.take() == []
    rig.board.now = 1_000
    rig.unit.poll()
    (beat,) = rig.take()
    assert beat.uptime_ms == 1_000
    quiet = Rig(has_button=False)  # no button: only the heartbeat wakes it
    quiet.unit.poll()
    quiet.board.now = 400
    assert quiet.unit.poll() == 600


# ------------------------------------------------------------------------------------------------
# The reserve


def reserve(msg: P.Message) -> tuple[int, int, int]:
    assert msg.SPEC.name == "RESERVE", msg
    return msg.start, msg.held, msg.capacity


def test_topup_rules() -> None:
    rig = Rig()
    # Power on: start 0, held 0; an empty TOPUP only asks.
    (r,) = rig.topup(12_345, b"")
    assert reserve(r) == (0, 0, CAP)
    # An empty reserve takes any offset as its new start.
    a = entropy(40, seed=1)
    (r,) = rig.topup(5_000, a)
    assert reserve(r) == (5_000, 40, CAP)
    # Appending at start + held.
    b = entropy(30, seed=2)
    (r,) = rig.topup(5_040, b)
    assert reserve(r) == (5_000, 70, CAP)
    # A repeated TOPUP, or any bytes it already holds, are ignored.
    (r,) = rig.topup(5_000, a)
    assert reserve(r) == (5_000, 70, CAP)
    (r,) = rig.topup(5_010, (a + b)[10:60])
    assert reserve(r) == (5_000, 70, CAP)
    assert rig.unit.reserve.held == a + b
    # A gap, a partial overlap, and bytes before start: the offset it expects.
    for offset, data in ((5_071, b"x"), (5_060, bytes(20)), (4_999, bytes(5))):
        seq = rig.seq
        (err,) = rig.topup(offset, data)
        assert (err.SPEC.name, err.code, err.about_seq, err.detail) == \
            ("ERROR", E["BAD_FIELD"], seq, 5_070)
    # Fill up, then too many for the room left: refused whole, nothing taken, detail = room.
    (r,) = rig.topup(5_070, entropy(LIMITS.topup_max, seed=3))
    held = 70 + LIMITS.topup_max
    assert reserve(r) == (5_000, held, CAP)
    room = CAP - held
    assert 0 < room < LIMITS.topup_max
    (err,) = rig.topup(5_000 + held, bytes(room + 1))
    assert (err.code, err.detail) == (E["BAD_FIELD"], room)
    assert len(rig.unit.reserve.held) == held
    (r,) = rig.topup(5_000 + held, bytes(room))  # exactly full is fine
    assert reserve(r) == (5_000, CAP, CAP)
    assert rig.unit.stats.rolls == 0


def test_spent_bytes_are_never_taken_again_even_after_reset() -> None:
    rig = Rig()
    data = entropy(18, seed=4, reject=False)  # exactly two rolls
    rig.topup(100, data)
    for _ in range(2):
        rig.send("ROLL_REQUEST")
        assert names(rig.take()) == ["ACK", "ROLL"]
    assert (rig.unit.reserve.start, rig.unit.reserve.held) == (118, b"")
    rig.send("RESET")
    (ack,) = rig.take()
    assert (ack.SPEC.name, ack.state) == ("ACK", S["IDLE"])
    # The same TOPUP again (a controller that lost the RESERVE): those bytes are spent.
    (err,) = rig.topup(100, data)
    assert (err.code, err.detail) == (E["BAD_FIELD"], 118)
    # From start on, an empty reserve takes the next bytes, with or without a gap.
    (r,) = rig.topup(150, entropy(9, seed=5, reject=False))
    assert reserve(r) == (150, 9, CAP)
    rig.send("ROLL_REQUEST")
    roll = rig.take()[-1]
    assert (roll.entropy_offset, roll.entropy_used) == (150, 9)


def test_reset_keeps_the_reserve() -> None:
    rig = Rig()
    data = entropy(50, seed=6)
    rig.topup(7, data)
    rig.send("RESET")
    assert names(rig.take()) == ["ACK"]
    assert rig.unit.reserve.start == 7 and rig.unit.reserve.held == data


# ------------------------------------------------------------------------------------------------
# The roll


def test_roll_request_acks_then_rolls_the_reference_face(model: ref.DieModel) -> None:
    rig = Rig(model)
    data = entropy(90, seed=7)
    rig.topup(1_000, data)
    at = 0
    for _ in range(5):
        seq = rig.send("ROLL_REQUEST")
        ack, roll = rig.take()
        assert (ack.SPEC.name, ack.acked_seq, ack.state) == ("ACK", seq, S["ROLLING"])
        assert roll.SPEC.name == "ROLL"
        want, face = expected_face(model, data[at:])
        assert (roll.pips, roll.entropy_offset, roll.entropy_used) == \
            (want.pips, 1_000 + at, want.used)
        assert roll.face == face
        at += want.used
        assert rig.unit.reserve.start == 1_000 + at and rig.unit.reserve.held == data[at:]
        assert rig.unit.state == S["IDLE"]
    assert rig.unit.stats.rolls == 5


def test_many_rolls_equal_the_reference_with_the_compiled_in_decoder() -> None:
    """The firmware's own decoder (die_weights.h) through the protocol: every ROLL re-derived
    from the bytes at [entropy_offset, entropy_offset + entropy_used) of the controller's copy."""
    model = builtin_model()
    rig = Rig()
    stream = entropy(6_000, seed=8)
    sent = 0
    rolls: list[P.Message] = []
    while len(rolls) < 300:
        rig.send("ROLL_REQUEST")
        got = rig.take()
        if got[-1].SPEC.name == "ERROR":
            assert got[-1].code == E["NO_ENTROPY"]
            chunk = stream[sent:sent + LIMITS.topup_max]
            (r,) = rig.topup(sent, chunk)
            assert r.SPEC.name == "RESERVE"
            sent += len(chunk)
            continue
        rolls.append(got[-1])
    offset = 0
    for roll in rolls:
        assert roll.entropy_offset == offset  # the stream is spent in order, without a hole
        data = stream[offset:offset + roll.entropy_used]
        want, face = expected_face(model, data)
        assert want.used == roll.entropy_used and want.pips == roll.pips
        assert roll.face == face, f"roll at {offset}"
        offset += roll.entropy_used
    counts = np.bincount([r.pips for r in rolls], minlength=7)[1:]
    assert counts.min() > 20  # every face comes up
    assert len({r.face for r in rolls}) > 0.9 * len(rolls)  # generated, not six pictures


def test_rejection_sampling_skips_and_counts_high_bytes(model: ref.DieModel) -> None:
    rig = Rig(model)
    latent = entropy(8, seed=9)
    data = bytes([252, 255, 253]) + bytes([17]) + latent + bytes(9)
    rig.topup(40, data)
    rig.send("ROLL_REQUEST")
    roll = rig.take()[-1]
    assert (roll.pips, roll.entropy_offset, roll.entropy_used) == (1 + 17 % 6, 40, 12)
    assert roll.face == ref.run_banded(model, ref.latent_from_bytes(latent)[None], 6)[0].tobytes()
    assert rig.unit.stats.rejected == 3
    assert rig.unit.reserve.start == 52


def test_the_recipe_is_unbiased_and_equals_the_reference() -> None:
    """Every pips byte value: 0..251 give 1 + b mod 6 (42 each), 252..255 are skipped; and the
    C's recipe equals `models.die_reference.roll_from_bytes` on random and edge inputs."""
    tail = bytes(range(8))
    seen = [0] * 7
    for b in range(256):
        got = roll_recipe(bytes([b, 5]) + tail)
        assert got is not None
        used, pips, _ = got
        if b >= ref.REJECT:
            assert (used, pips) == (10, 1 + 5 % 6)
        else:
            assert (used, pips) == (9, 1 + b % 6)
            seen[pips] += 1
    assert seen[1:] == [42] * 6
    rng = random.Random(10)
    cases = [b"", bytes(8), bytes([255] * 30), bytes([252] * 3 + [1] * 8), bytes([252] * 3 + [1] * 9)]
    cases += [bytes(rng.choice([0, 100, 251, 252, 255]) for _ in range(rng.randrange(30)))
              for _ in range(300)]
    for data in cases:
        got, want = roll_recipe(data), ref.roll_from_bytes(data)
        if want is None:
            assert got is None, data
            continue
        assert got is not None, data
        assert (got[0], got[1]) == (want.used, want.pips) and np.array_equal(got[2], want.z)


def no_entropy_face() -> np.ndarray:
    """The documented "no entropy" pattern: the square's outline and both diagonals."""
    face = np.zeros((32, 32), dtype=np.uint8)
    face[0, :] = face[-1, :] = face[:, 0] = face[:, -1] = 1
    idx = np.arange(32)
    face[idx, idx] = face[idx, 31 - idx] = 1
    return face


def panel_of(face: np.ndarray) -> np.ndarray:
    """The 32x32 face at 2x, centred on the 128x64 panel."""
    panel = np.zeros((64, 128), dtype=np.uint8)
    panel[:, 32:96] = np.kron(face, np.ones((2, 2), dtype=np.uint8))
    return panel


def test_without_entropy_nothing_is_spent_and_the_oled_says_so() -> None:
    rig = Rig()
    data = bytes([253, 254]) + entropy(8, seed=11, reject=False)  # one byte short of a roll
    rig.topup(0, data)
    seq = rig.send("ROLL_REQUEST")
    (err,) = rig.take()  # no ACK: the request is refused
    assert (err.SPEC.name, err.code, err.about_seq, err.detail) == \
        ("ERROR", E["NO_ENTROPY"], seq, 10)
    assert rig.unit.reserve.start == 0 and rig.unit.reserve.held == data  # not even the 253s
    assert rig.unit.stats.rejected == 0 and rig.unit.stats.refused == 1
    assert np.array_equal(rig.board.oled.pixels(), panel_of(no_entropy_face()))
    # One more byte pays for the roll, from the same first byte.
    rig.topup(10, bytes([3]))
    rig.send("ROLL_REQUEST")
    roll = rig.take()[-1]
    assert (roll.entropy_offset, roll.entropy_used) == (0, 11)
    assert rig.unit.stats.rejected == 2


def test_the_oled_shows_the_face_at_twice_its_size_centred() -> None:
    rig = Rig()
    # At power on the whole panel was written blank (no 1 KB framebuffer: page runs only).
    assert rig.board.oled.writes >= 8 and not any(rig.board.oled.ram)
    rig.board.oled.ram[:] = b"\xff" * len(rig.board.oled.ram)  # whatever was there before
    rig.topup(0, entropy(9, seed=12, reject=False))
    before = rig.board.oled.writes
    rig.send("ROLL_REQUEST")
    roll = rig.take()[-1]
    assert rig.board.oled.writes - before == 8  # one run of 64 columns per page
    shown = rig.board.oled.pixels()
    assert np.array_equal(shown[:, 32:96], panel_of(ref.face_from_pages(roll.face))[:, 32:96])
    assert shown[:, 32:96].any() and not shown[:, 32:96].all()


# ------------------------------------------------------------------------------------------------
# The button


def test_a_debounced_press_rolls_once_unasked() -> None:
    rig = Rig()
    rig.topup(0, entropy(50, seed=13, reject=False))
    rig.step(10)
    # Contact bounce shorter than the debounce time: nothing.
    for _ in range(5):
        assert rig.step(LIMITS.poll_ms, pressed=True) == []
        assert rig.step(LIMITS.poll_ms, pressed=False) == []
    # A real press: one ROLL, no ACK (nobody asked), however long it is held.
    got = rig.step(LIMITS.debounce_ms + 2 * LIMITS.poll_ms, pressed=True)
    assert names(got) == ["ROLL"]
    assert got[0].entropy_offset == 0 and got[0].entropy_used == 9
    assert rig.step(500) == []
    assert rig.step(LIMITS.debounce_ms + LIMITS.poll_ms, pressed=False) == []
    assert names(rig.step(LIMITS.debounce_ms + LIMITS.poll_ms, pressed=True)) == ["ROLL"]
    assert rig.unit.stats.presses == 2 and rig.unit.stats.rolls == 2


def test_a_press_without_entropy_is_an_error_about_no_frame() -> None:
    rig = Rig()
    rig.step(10)
    got = rig.step(LIMITS.debounce_ms + 2 * LIMITS.poll_ms, pressed=True)
    assert [(m.SPEC.name, m.code, m.about_seq) for m in got] == \
        [("ERROR", E["NO_ENTROPY"], NO_SEQ)]
    assert np.array_equal(rig.board.oled.pixels(), panel_of(no_entropy_face()))


def test_a_button_held_at_power_on_does_not_roll() -> None:
    rig = Rig()
    rig.board.pressed = True
    rig.unit = DieUnit(rig.board, Identity("die-07"))  # booted with the button down
    rig.topup(0, entropy(20, seed=14))
    assert rig.step(200) == []
    assert names(rig.step(50, pressed=False) + rig.step(50, pressed=True)) == ["ROLL"]


# ------------------------------------------------------------------------------------------------
# Refusals, RESET, the fault state


def _frame(type_: int, seq: int, payload: bytes, version: int = P.VERSION) -> bytes:
    body = bytes([version, type_]) + seq.to_bytes(2, "little") + len(payload).to_bytes(2, "little")
    body += payload
    return P.cobs_encode(body + P.crc16(body).to_bytes(2, "little")) + b"\0"


def test_bad_frames_and_messages_not_for_a_die_get_their_error_codes() -> None:
    rig = Rig()
    good = P.encode_message(P.message("RESET"), 3)
    damaged = bytearray(good)
    damaged[2] ^= 0x40
    hello = P.message("HELLO", protocol=1, kind=0, serial=bytes(16), firmware=0,
                      weights_sha256=bytes(32), clips_sha256=bytes(32), max_payload=64).payload()
    big_topup = (0).to_bytes(4, "little") + bytes(LIMITS.topup_max + 1)
    gen = P.message("GENERATE", exhibit=1, latent=(0,) * 100, verdict=1).payload()
    cases = [
        (bytes(damaged), E["BAD_CRC"], NO_SEQ, 0),
        (b"\x01\x02\x03\0", E["TRUNCATED"], NO_SEQ, 0),
        (_frame(0x22, 8, b"", version=2), E["BAD_VERSION"], 8, 2),
        (_frame(0x7E, 9, b""), E["UNKNOWN_TYPE"], 9, 0x7E),
        (_frame(0x22, 10, b"\x01"), E["WRONG_SIZE"], 10, 1),
        (_frame(0x01, 11, hello[:-1]), E["WRONG_SIZE"], 11, len(hello) - 1),
        (_frame(0x01, 12, hello[:1] + b"\x07" + hello[2:]), E["BAD_FIELD"], 12, 7),
        (_frame(0x21, 13, big_topup), E["TOO_LONG"], NO_SEQ, 0),  # beyond the die's buffer
        (_frame(0x10, 14, gen), E["UNEXPECTED"], 14, 0x10),        # GENERATE: a cat's
        (_frame(0x13, 14, bytes(38)), E["UNEXPECTED"], 14, 0x13),  # IMAGE_DONE: a cat's
        (_frame(0x14, 15, bytes(8)), E["UNEXPECTED"], 15, 0x14),   # SPEAK: a cat's
        (_frame(0x20, 16, bytes(134)), E["TOO_LONG"], NO_SEQ, 0),   # ROLL: longer than it takes
        (_frame(0x23, 17, bytes(8)), E["UNEXPECTED"], 17, 0x23),   # RESERVE: the die's own
        (_frame(0x11, 18, bytes(9)), E["UNEXPECTED"], 18, 0x11),   # PROGRESS
        (_frame(0x15, 19, bytes(8)), E["UNEXPECTED"], 19, 0x15),   # SPOKEN
    ]
    for wire, code, about, detail in cases:
        rig.unit.rx(wire)
        (err,) = rig.take()
        assert (err.SPEC.name, err.code, err.about_seq, err.detail) == \
            ("ERROR", code, about, detail), (wire, err)
        assert err.sentence == ""
    assert rig.unit.reserve.held == b""  # the oversized TOPUP took nothing
    # The controller's HEARTBEAT, ACK and ERROR are never answered.
    rig.send("HEARTBEAT", uptime_ms=5, state=0)
    rig.send("ACK", acked_seq=1, state=0)
    rig.send("ERROR", code=1, about_seq=0, detail=0, sentence="")
    assert rig.take() == []
    assert rig.unit.stats.frames_bad == len(cases)
    # The decoder passed all but the damaged, short, other-version and two oversized frames.
    assert rig.unit.stats.frames_in == len(cases) - 5 + 3
    rig.topup(0, entropy(9, seed=15, reject=False))
    rig.send("ROLL_REQUEST")
    assert names(rig.take()) == ["ACK", "ROLL"]


def test_a_half_frame_is_forgotten_when_the_line_is_reopened() -> None:
    rig = Rig()
    rig.unit.rx(P.encode_message(P.message("RESET"), 0)[:5])  # the cable was pulled mid-frame
    rig.unit.line_reset()
    seq = rig.send("RESET")
    (ack,) = rig.take()
    assert ack.SPEC.name == "ACK" and ack.acked_seq == seq


def test_frames_are_numbered_from_zero() -> None:
    rig = Rig()
    rig.unit.poll()
    rig.topup(0, b"")
    rig.send("RESET")
    rig.take()
    assert [f.seq for f in rig.frames] == [0, 1, 2]


def test_a_decoder_the_engine_refuses_leaves_the_unit_talking_in_its_fault_state(
        model: ref.DieModel) -> None:
    bad = ref.DieModel(model.weights, model.bias, [s.copy() for s in model.shift],
                       model.label_shift)
    bad.shift[2][1] = 30  # over the engine's 24
    board = Board()
    packed, bias, shift, label = bad.weights, bad.bias, bad.shift, bad.label_shift
    engine = DieEngine([ref.pack_nibbles(w) for w in packed], bias, shift, label)
    unit = DieUnit(board, Identity("die-bad", bytes(32)), engine)
    assert unit.engine_code == 2 and unit.state == S["FAULT"]
    rig = Rig()
    rig.board, rig.unit = board, unit
    rig.topup(0, entropy(20, seed=16))
    seq = rig.send("ROLL_REQUEST")
    (err,) = rig.take()
    assert (err.code, err.about_seq, err.detail) == (E["ENGINE"], seq, 2)
    assert len(unit.reserve.held) == 20  # nothing spent
    rig.unit.poll()
    (beat,) = rig.take()
    assert beat.state == S["FAULT"]
    rig.send("RESET")
    (ack,) = rig.take()
    assert ack.state == S["FAULT"]


def test_an_exception_in_a_board_callback_surfaces_after_the_call() -> None:
    rig = Rig()

    def broken(frame: bytes) -> None:
        raise OSError("the line is gone")

    rig.board.write = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="the line is gone"):
        rig.send("RESET")
