"""The cat unit's firmware core (firmware/cat/cat_unit.c) driven directly through ctypes.

No pty here: a board made in the test owns the clock (so heartbeats, rate limits and speaking
times are exact), the serial output (decoded with the production codec) and the weight image. What
the unit answers is decided by the C code alone; these tests pin its state machine: handshake,
heartbeats, a job frame by frame, the image against the numpy golden render, one job at a time,
re-sending a finished job, speech, every refusal with its table code, RESET, engine failures and
the fault state.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from firmware.cat_engine import CODES, ERRORS
from firmware.cat_unit import DEFAULT_FIRMWARE, CatUnit, Identity
from installation.units import protocol as P
from models.weightimage import SHIPPED_DEMO
from tests.cat_sim_support import exhibit_job, image_of

E = P.ErrorCode
S = P.UnitState
WEIGHTS = SHIPPED_DEMO
CLIPS_SHA = hashlib.sha256(b"a clip bank").digest()


class Board:
    """A board in the test's hands: the clock moves only when told (or `tick` ms per read)."""

    def __init__(self, weights: bytes, tick: int = 0) -> None:
        self.weights = weights
        self.now = 0
        self.tick = tick
        self.out = bytearray()
        self.speaking_until = 0
        self.speak_rc = 0
        self.spoken: list[int] = []

    def write(self, frame: bytes) -> None:
        self.out += frame

    def millis(self) -> int:
        self.now += self.tick
        return self.now

    def speak_start(self, verdict: int) -> int:
        self.spoken.append(verdict)
        return self.speak_rc

    def speak_busy(self) -> bool:
        return self.now < self.speaking_until

    def read(self, offset: int, length: int) -> bytes | None:
        return self.weights[offset:offset + length]


class Rig:
    """A unit core, its board, and the controller's codec."""

    def __init__(self, weights: bytes | None = None, tick: int = 0, image_hook=None) -> None:
        self.board = Board(WEIGHTS.read_bytes() if weights is None else weights, tick)
        self.unit = CatUnit(self.board, Identity("cat-07", hashlib.sha256(self.board.weights)
                                                 .digest(), CLIPS_SHA), image_hook=image_hook)
        self.decoder = P.FrameDecoder()
        self.seq = 0
        self.frames: list[P.Frame] = []

    def send(self, name: str, **fields) -> int:
        seq, self.seq = self.seq, self.seq + 1
        self.unit.rx(P.encode_message(P.message(name, **fields), seq))
        return seq

    def take(self) -> list[P.Message]:
        """Everything the unit sent since the last take, decoded (frame errors fail the test)."""
        items = self.decoder.feed(bytes(self.board.out))
        self.board.out.clear()
        assert all(isinstance(f, P.Frame) for f in items), items
        self.frames += items
        return [P.decode_message(f) for f in items]

    def run(self, limit: int = 100) -> list[P.Message]:
        """Poll until the unit has nothing to do right now."""
        for _ in range(limit):
            if self.unit.poll() > 0:
                break
        return self.take()


def names(msgs: list[P.Message]) -> list[str]:
    return [m.SPEC.name for m in msgs]


def no_heartbeats(msgs: list[P.Message]) -> list[P.Message]:
    return [m for m in msgs if m.SPEC.name != "HEARTBEAT"]


@pytest.fixture(scope="module")
def job():
    return exhibit_job(WEIGHTS, seed=11)


def generate(rig: Rig, job, exhibit: int = 7) -> int:
    return rig.send("GENERATE", exhibit=exhibit, latent=job.latent, verdict=job.verdict)


# ------------------------------------------------------------------------------------------------
# Handshake and heartbeats


def test_hello_carries_the_identity_and_the_protocol() -> None:
    rig = Rig()
    assert rig.unit.engine_code == 0 and rig.unit.state == S["IDLE"]
    rig.send("HELLO", protocol=1, kind=P.UnitKind["CONTROLLER"], serial=bytes(16), firmware=1,
             weights_sha256=bytes(32), clips_sha256=bytes(32), max_payload=P.MAX_PAYLOAD)
    (hello,) = rig.take()
    assert hello.SPEC.name == "HELLO"
    assert hello.kind == P.UnitKind["CAT"] and hello.protocol == P.VERSION
    assert hello.serial == b"cat-07".ljust(16, b"\0")
    assert hello.firmware == DEFAULT_FIRMWARE
    assert hello.weights_sha256 == hashlib.sha256(WEIGHTS.read_bytes()).digest()
    assert hello.clips_sha256 == CLIPS_SHA
    assert hello.max_payload == P.MAX_PAYLOAD


def test_heartbeats_come_every_interval_with_uptime_and_state() -> None:
    rig = Rig()  # booted at 0 ms
    assert names(rig.run()) == ["HEARTBEAT"]  # heard at once
    rig.board.now = 999
    assert rig.unit.poll() == 1 and rig.take() == []  # due in 1 ms, not yet
    rig.board.now = 1_000
    assert rig.unit.poll() == 1_000
    (beat,) = rig.take()
    assert beat.uptime_ms == 1_000 and beat.state == S["IDLE"]
    late = Rig()
    late.board.now = 5_000  # a unit that started at 0 and was first polled at 5 s
    (beat,) = late.run()
    assert beat.uptime_ms == 5_000


# ------------------------------------------------------------------------------------------------
# One job


def test_a_job_acks_reports_progress_and_sends_the_golden_image(job) -> None:
    rig = Rig()
    rig.run()  # the first heartbeat
    seq = generate(rig, job, exhibit=41)
    (ack,) = rig.take()
    assert ack.SPEC.name == "ACK" and ack.acked_seq == seq and ack.state == S["GENERATING"]
    msgs = rig.run()
    kinds = names(msgs)
    assert kinds[-1] == "IMAGE_DONE" and kinds.count("IMAGE") == 12
    progress = [m for m in msgs if m.SPEC.name == "PROGRESS"]
    assert kinds.index("IMAGE") > max(i for i, k in enumerate(kinds) if k == "PROGRESS")
    assert [p.layer for p in progress] == sorted(p.layer for p in progress)
    assert {p.layer for p in progress} == {1, 2, 3, 4, 5}
    assert progress[-1].slice == progress[-1].slices == sum(lay.c_out for lay in rig.unit.layers)
    assert all(p.exhibit == 41 for p in progress)
    image = image_of(msgs, 41)
    assert image == job.golden  # F1: the unit's bytes are the numpy reference's
    done = msgs[-1]
    assert done.exhibit == 41 and done.length == P.IMAGE_BYTES
    assert done.sha256 == job.golden_sha256
    assert rig.unit.state == S["IDLE"]
    # The unit numbers its frames 0, 1, 2, ... without a gap.
    assert [f.seq for f in rig.frames] == list(range(len(rig.frames)))


def test_progress_is_rate_limited_and_heartbeats_go_on_during_a_long_job(job) -> None:
    rig = Rig(tick=3)  # the clock moves 3 ms per look: about 1.5 s for the whole job
    rig.run()
    generate(rig, job)
    rig.take()
    stamps: list[tuple[P.Message, int]] = []
    decoder = P.FrameDecoder()

    def write(frame: bytes) -> None:
        (f,) = decoder.feed(frame)
        stamps.append((P.decode_message(f), rig.board.now))

    rig.board.write = write  # type: ignore[method-assign]
    rig.unit.poll()  # runs the whole generation
    progress = [(m, t) for m, t in stamps if m.SPEC.name == "PROGRESS"]
    beats = [t for m, t in stamps if m.SPEC.name == "HEARTBEAT"]
    # The job outlasted a heartbeat interval, and the unit's pulse went on inside it.
    assert progress[-1][1] - progress[0][1] > 1000
    assert beats and all(progress[0][1] < t < progress[-1][1] for t in beats)
    # Within a layer, at most one PROGRESS per CAT_UNIT_PROGRESS_MS; a new layer and the last
    # slice are reported at once.
    for (a, ta), (b, tb) in zip(progress, progress[1:], strict=False):
        if a.layer == b.layer and b.slice != b.slices:
            assert tb - ta >= 250, (a, b, ta, tb)
    assert {m.layer for m, _ in progress} == {1, 2, 3, 4, 5}
    assert len(progress) < 20  # not one per slice (483)


def test_one_job_at_a_time_and_a_repeated_generate_is_the_same_job(job) -> None:
    rig = Rig()
    rig.run()
    first = generate(rig, job, exhibit=1)
    again = generate(rig, job, exhibit=1)  # the controller repeated itself before the run
    other = generate(rig, job, exhibit=2)
    ack1, ack2, busy = rig.take()
    assert (ack1.acked_seq, ack2.acked_seq) == (first, again)
    assert busy.SPEC.name == "ERROR" and busy.code == E["BUSY"]
    assert busy.about_seq == other and busy.detail == 1  # names the job it is busy with
    msgs = rig.run()
    assert names(msgs).count("IMAGE_DONE") == 1 and rig.unit.stats.jobs_run == 1


def test_a_finished_job_asked_again_is_resent_not_rerun(job) -> None:
    rig = Rig()
    generate(rig, job, exhibit=5)
    first = rig.run()
    seq = generate(rig, job, exhibit=5)  # after a reconnect: the same exhibit, the same bytes
    ack = rig.take()[0]
    assert ack.acked_seq == seq and ack.state == S["SENDING"]
    again = rig.run()
    assert image_of(again, 5) == image_of(first, 5) == job.golden
    assert no_heartbeats(again)[-1].sha256 == job.golden_sha256
    assert rig.unit.stats.jobs_run == 1 and rig.unit.stats.jobs_resent == 1
    # The same exhibit id with other bytes is another job: it runs.
    rig.send("GENERATE", exhibit=5, latent=tuple(-v for v in job.latent), verdict=job.verdict)
    rerun = rig.run()
    assert rig.unit.stats.jobs_run == 2 and image_of(rerun, 5) != job.golden


# ------------------------------------------------------------------------------------------------
# Speech


def test_speak_acks_then_spoken_after_the_dac_is_done(job) -> None:
    rig = Rig()
    rig.run()
    seq = rig.send("SPEAK", exhibit=9, verdict=job.verdict)
    (refused,) = rig.take()
    assert refused.code == E["NO_JOB"] and refused.about_seq == seq and refused.detail == 9
    generate(rig, job, exhibit=9)
    rig.run()
    rig.board.now, rig.board.speaking_until = 10_000, 12_345
    seq = rig.send("SPEAK", exhibit=9, verdict=job.verdict)
    (ack,) = rig.take()
    assert ack.acked_seq == seq and ack.state == S["SPEAKING"]
    assert rig.board.spoken == [job.verdict]
    busy_gen = generate(rig, job, exhibit=10)
    busy_speak = rig.send("SPEAK", exhibit=9, verdict=job.verdict)
    errors = rig.take()
    assert [(m.code, m.about_seq) for m in errors] == [(E["BUSY"], busy_gen),
                                                       (E["BUSY"], busy_speak)]
    rig.board.now = 12_000
    assert rig.unit.poll() == 10  # looks again soon while the DAC plays
    assert no_heartbeats(rig.take()) == []
    rig.board.now = 12_345
    rig.unit.poll()
    (spoken,) = no_heartbeats(rig.take())
    assert spoken.SPEC.name == "SPOKEN" and spoken.exhibit == 9 and spoken.ms == 2_345
    assert rig.unit.state == S["IDLE"]


def test_a_unit_that_cannot_speak_says_so(job) -> None:
    rig = Rig()
    generate(rig, job)
    rig.run()
    rig.board.speak_rc = 3
    seq = rig.send("SPEAK", exhibit=7, verdict=job.verdict)
    (err,) = rig.take()
    assert (err.code, err.about_seq, err.detail) == (E["SPEECH"], seq, 3)
    assert rig.unit.state == S["IDLE"]


# ------------------------------------------------------------------------------------------------
# Refusals: every one an ERROR with the table's code, and the unit carries on


def _frame(type_: int, seq: int, payload: bytes, version: int = P.VERSION) -> bytes:
    body = bytes([version, type_]) + seq.to_bytes(2, "little") + len(payload).to_bytes(2, "little")
    body += payload
    return P.cobs_encode(body + P.crc16(body).to_bytes(2, "little")) + b"\0"


def test_bad_frames_and_bad_messages_get_their_error_codes(job) -> None:
    rig = Rig()
    good = P.encode_message(P.message("RESET"), 3)
    damaged = bytearray(good)
    damaged[2] ^= 0x40
    gen = P.message("GENERATE", exhibit=1, latent=job.latent, verdict=1).payload()
    cases = [
        (bytes(damaged), E["BAD_CRC"], 0xFFFF, 0),
        (b"\x01\x02\x03\0", E["TRUNCATED"], 0xFFFF, 0),
        (_frame(0x05, 8, b"", version=2), E["BAD_VERSION"], 8, 2),
        (_frame(0x7E, 9, b""), E["UNKNOWN_TYPE"], 9, 0x7E),
        (_frame(0x10, 10, gen[:-1]), E["WRONG_SIZE"], 10, len(gen) - 1),
        (_frame(0x10, 11, gen[:-4] + (1 << 17).to_bytes(4, "little")), E["BAD_FIELD"], 11, 1 << 17),
        (_frame(0x11, 12, bytes(9)), E["UNEXPECTED"], 12, 0x11),  # PROGRESS is the unit's to send
        (_frame(0x21, 13, bytes(8)), E["UNEXPECTED"], 13, 0x21),  # TOPUP is for a die unit
    ]
    for wire, code, about, detail in cases:
        rig.unit.rx(wire)
        (err,) = rig.take()
        assert (err.SPEC.name, err.code, err.about_seq, err.detail) == \
            ("ERROR", code, about, detail), (wire, err)
        assert err.sentence == ""  # the table's own sentence stands
    # An ERROR or ACK from the controller is never answered (no ping-pong), and the unit works.
    rig.send("ERROR", code=1, about_seq=0, detail=0, sentence="")
    assert rig.take() == []
    assert rig.unit.stats.frames_bad == len(cases)
    # The decoder passed all but the damaged, the short and the other-version frame; and the ERROR.
    assert rig.unit.stats.frames_in == len(cases) - 3 + 1
    generate(rig, job)
    assert image_of(rig.run(), 7) == job.golden


def test_a_half_frame_is_forgotten_when_the_line_is_reopened() -> None:
    rig = Rig()
    rig.unit.rx(P.encode_message(P.message("RESET"), 0)[:5])  # the cable was pulled mid-frame
    rig.unit.line_reset()
    seq = rig.send("RESET")
    (ack,) = rig.take()
    assert ack.SPEC.name == "ACK" and ack.acked_seq == seq


def test_reset_mid_image_drops_the_job(job) -> None:
    rig = Rig()
    generate(rig, job)
    rig.take()
    rig.unit.poll()  # the engine runs
    rig.unit.poll()
    rig.unit.poll()  # two chunks out
    sent = rig.take()
    assert names(sent).count("IMAGE") == 2
    seq = rig.send("RESET")
    (ack,) = rig.take()
    assert ack.acked_seq == seq and ack.state == S["IDLE"]
    assert "IMAGE" not in names(rig.run())
    rig.send("SPEAK", exhibit=7, verdict=job.verdict)
    assert rig.take()[0].code == E["NO_JOB"]  # the job is gone
    generate(rig, job)  # and the same GENERATE runs it afresh
    assert image_of(rig.run(), 7) == job.golden and rig.unit.stats.jobs_run == 2


# ------------------------------------------------------------------------------------------------
# The engine and the card


def test_an_engine_failure_is_an_error_with_its_cat_e_code_and_no_image(job) -> None:
    data = bytearray(WEIGHTS.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a weight slice: its CRC-32 no longer holds
    rig = Rig(bytes(data))
    assert rig.unit.engine_code == 0  # the header is fine: the damage shows when it is read
    seq = generate(rig, job)
    msgs = no_heartbeats(rig.run())
    assert names(msgs)[0] == "ACK"
    err = msgs[-1]
    assert err.SPEC.name == "ERROR" and err.code == E["ENGINE"] and err.about_seq == seq
    assert err.detail == CODES["CAT_E_SLICE_CRC"]
    assert err.sentence == ERRORS[err.detail].sentence
    assert "IMAGE" not in names(msgs) and "IMAGE_DONE" not in names(msgs)
    assert rig.unit.state == S["IDLE"]
    text = P.unit_error(err, "/dev/pts/9").message
    assert text.startswith("/dev/pts/9: the unit's cat engine failed") and "detail 10" in text


def test_a_card_the_engine_refuses_leaves_the_unit_talking_in_its_fault_state(job) -> None:
    data = bytearray(WEIGHTS.read_bytes())
    data[0] ^= 0xFF  # the magic
    rig = Rig(bytes(data))
    assert rig.unit.engine_code == CODES["CAT_E_MAGIC"]
    (beat,) = rig.run()
    assert beat.state == S["FAULT"] and rig.unit.layers == []
    rig.send("HELLO", protocol=1, kind=0, serial=bytes(16), firmware=1,
             weights_sha256=bytes(32), clips_sha256=bytes(32), max_payload=P.MAX_PAYLOAD)
    assert names(rig.take()) == ["HELLO"]
    generate(rig, job)
    (err,) = rig.take()
    assert err.code == E["ENGINE"] and err.detail == CODES["CAT_E_MAGIC"]
    rig.send("RESET")
    assert rig.take()[0].state == S["FAULT"]  # a reset does not mend the card


def test_a_model_with_another_latent_size_refuses_generate(tmp_path: Path, monkeypatch, job) -> None:
    import models.weightimage as wi

    monkeypatch.setattr(wi, "NZ", 64)
    rig = Rig(wi.encode(wi.synthetic("demo", seed=3)))
    assert rig.unit.engine_code == 0 and rig.unit.layers[0].c_in == 64
    seq = generate(rig, job)
    (err,) = rig.take()
    assert (err.code, err.about_seq, err.detail) == (E["BAD_LATENT"], seq, 64)


def test_the_image_hook_sees_the_image_before_it_is_hashed(job) -> None:
    def flip(rgb: memoryview) -> None:
        rgb[100] ^= 0x04

    rig = Rig(image_hook=flip)
    generate(rig, job)
    msgs = rig.run()
    image = image_of(msgs, 7)
    assert image != job.golden and sum(a != b for a, b in zip(image, job.golden, strict=True)) == 1
    assert no_heartbeats(msgs)[-1].sha256 == hashlib.sha256(image).digest()


def test_an_exception_in_a_board_callback_surfaces_after_the_call(job) -> None:
    rig = Rig()

    def broken(offset: int, length: int) -> bytes:
        raise RuntimeError("the board's SD driver is broken")

    rig.board.read = broken  # type: ignore[method-assign]
    generate(rig, job)
    with pytest.raises(RuntimeError, match="SD driver"):
        rig.run()
