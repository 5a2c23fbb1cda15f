"""`qcat sim cat` through a real pseudo-terminal, with the controller's production parts.

Each test starts the simulator as a child process (the unit's C core behind /dev/pts/N), reads the
port from its first line and talks to it with installation.units.link.Link and the
installation.units.protocol codec, exactly as the supervisor will. The image a unit returns is
compared byte for byte with the numpy reference render of a real exhibit's bytes. Every fault flag
is shown to do what it says, with a fixed seed.

The protocol tests run against both builds of the unit (`kind`: the host-built core and the
unit's own rv32 image under QEMU, `qcat sim cat --emulate`); faults and realistic timing are the
host simulator's alone.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from installation.errors import DeviceError
from installation.units import protocol as P
from models.weightimage import SHIPPED_DEMO
from tests.cat_sim_support import (
    JOB_SETTLE_S,
    SIM_KINDS,
    Controller,
    cat_sim,
    exhibit_job,
    image_of,
)
from tests.gallery_support import write_clip_bank

E = P.ErrorCode
S = P.UnitState
WEIGHTS = SHIPPED_DEMO


@pytest.fixture(scope="module")
def job():
    return exhibit_job(WEIGHTS, seed=203)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(params=SIM_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def generate(c: Controller, job, exhibit: int = 7) -> int:
    return c.send("GENERATE", exhibit=exhibit, latent=job.latent, verdict=job.verdict)


def names(items) -> list[str]:
    return [m.SPEC.name if isinstance(m, P.Message) else "FRAME_ERROR" for m in items]


def test_handshake_names_the_unit_and_its_weights_and_it_exits_quietly(home: Path,
                                                                       kind: str) -> None:
    with cat_sim(home, "--serial", "cat-west-2", kind=kind) as sim:
        assert sim.path.startswith("/dev/pts/")
        with Controller(sim.path) as c:
            hello = c.hello()
            assert hello.kind == P.UnitKind["CAT"] and hello.protocol == P.VERSION
            assert hello.serial.rstrip(b"\0") == b"cat-west-2"
            assert hello.weights_sha256 == hashlib.sha256(WEIGHTS.read_bytes()).digest()
            assert hello.clips_sha256 == bytes(32)  # no clip bank in this home
            assert hello.max_payload == P.MAX_PAYLOAD
            c.silent(1.1)
            assert c.heartbeats and c.heartbeats[-1].state == S["IDLE"]
        assert sim.stop() == 0  # SIGTERM: exit 0, quietly
        assert sim.proc.stdout is not None and sim.proc.stdout.read() == b""  # the path only
        err = sim.stderr
        assert "no clip bank at" in err and "Traceback" not in err and "interrupted" not in err


def test_a_real_exhibit_comes_back_as_the_golden_image_and_is_spoken(home: Path, job,
                                                                     kind: str) -> None:
    with cat_sim(home, kind=kind) as sim, Controller(sim.path) as c:
        c.hello()
        seq = generate(c, job, exhibit=1234)
        got = c.until("IMAGE_DONE")
        ack = got[0]
        assert ack.SPEC.name == "ACK" and ack.acked_seq == seq and ack.state == S["GENERATING"]
        kinds = names(got)
        assert kinds.count("PROGRESS") >= 5 and kinds.count("IMAGE") == 12
        assert "FRAME_ERROR" not in kinds and "ERROR" not in kinds
        progress = [m for m in got if m.SPEC.name == "PROGRESS"]
        assert progress[-1].slice == progress[-1].slices and progress[-1].exhibit == 1234
        assert image_of(got, 1234) == job.golden
        assert got[-1].sha256 == job.golden_sha256 == hashlib.sha256(job.golden).digest()
        seq = c.send("SPEAK", exhibit=1234, verdict=job.verdict)
        ack = c.expect("ACK")
        assert ack.acked_seq == seq and ack.state == S["SPEAKING"]
        spoken = c.expect("SPOKEN")
        assert spoken.exhibit == 1234
        # The unit numbered everything it sent 0, 1, 2, ... (nothing lost on a clean line).
        seqs = [f.seq for f in c.frames]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_bad_frames_get_errors_and_the_unit_keeps_working(home: Path, job, kind: str) -> None:
    with cat_sim(home, kind=kind) as sim, Controller(sim.path) as c:
        c.send_raw(b"\0hello, is this a modem?\r\n\0")  # another device's text
        err = c.expect("ERROR")
        assert err.code in (E["BAD_CRC"], E["TRUNCATED"], E["BAD_COBS"])
        assert err.about_seq == P.NO_SEQ
        wire = bytearray(P.encode_message(P.message("RESET"), 77))
        wire[3] ^= 0x10
        c.send_raw(b"\0" + bytes(wire))
        assert c.expect("ERROR").code == E["BAD_CRC"]
        seq = c.send("SPEAK", exhibit=5, verdict=1)
        err = c.expect("ERROR")
        assert (err.code, err.about_seq, err.detail) == (E["NO_JOB"], seq, 5)
        # two jobs in one write, so the second arrives while the first is surely queued (sent
        # apart, a fast unit may have finished the first before the second arrives)
        first = c.seq
        busy = (first + 1) % P.SEQ_MODULO
        c.send_raw(b"\0" + P.encode_message(P.message("GENERATE", exhibit=2, latent=job.latent,
                                                        verdict=job.verdict), first)
                   + P.encode_message(P.message("GENERATE", exhibit=3, latent=job.latent,
                                                verdict=job.verdict), busy))
        c.seq = (busy + 1) % P.SEQ_MODULO
        got = c.until("IMAGE_DONE")
        refusal = next(m for m in got if m.SPEC.name == "ERROR")
        assert (refusal.code, refusal.about_seq, refusal.detail) == (E["BUSY"], busy, 2)
        assert image_of(got, 2) == job.golden
        # RESET: the job is dropped, the unit is idle, and it still answers HELLO.
        seq = c.send("RESET")
        ack = c.expect("ACK")
        assert ack.acked_seq == seq and ack.state == S["IDLE"]
        c.send("SPEAK", exhibit=2, verdict=job.verdict)
        assert c.expect("ERROR").code == E["NO_JOB"]
        assert c.hello().kind == P.UnitKind["CAT"]


def test_a_reconnect_asking_for_the_same_exhibit_gets_the_same_bytes(home: Path, job,
                                                                     kind: str) -> None:
    with cat_sim(home, kind=kind) as sim:
        with Controller(sim.path) as c:
            generate(c, job, exhibit=9)
            c.expect("ACK")  # the controller goes away before the image comes
        time.sleep(JOB_SETTLE_S[kind])  # (the unit finishes the job meanwhile)
        with Controller(sim.path) as c:
            c.hello()
            seq = generate(c, job, exhibit=9)
            got = c.until("IMAGE_DONE")
            assert got[0].acked_seq == seq and got[0].state == S["SENDING"]  # kept, not re-run
            assert image_of(got, 9) == job.golden


# ------------------------------------------------------------------------------------------------
# Timing


def test_realistic_timing_takes_the_modelled_time_and_the_verdicts_length(home: Path,
                                                                          job) -> None:
    from firmware.cat_unit import Identity
    from firmware.sim import CatSimulator, Timing
    from phrases.clipbank import ClipBank

    bank_path = write_clip_bank(home / "bank.qcv")
    bank = ClipBank.load(bank_path)
    model = CatSimulator(WEIGHTS, Identity("x"), timing=Timing(realistic=True))
    modelled_s = model.modelled_generation_s
    model.close()
    assert 1.0 < modelled_s < 10.0  # the demo model on a SPI-mode card: a few seconds
    with cat_sim(home, "--clips", str(bank_path), timing="realistic") as sim, \
            Controller(sim.path) as c:
        assert c.hello().clips_sha256 == hashlib.sha256(bank_path.read_bytes()).digest()
        start = time.monotonic()
        generate(c, job)
        c.expect("ACK")
        beats_before = len(c.heartbeats)
        got = c.until("IMAGE_DONE", timeout_s=modelled_s + 10)
        took = time.monotonic() - start
        assert modelled_s * 0.9 <= took <= modelled_s + 3.0
        assert image_of(got, 7) == job.golden
        # The unit's pulse goes on while it computes: no lost-unit alarm during a long job.
        assert len(c.heartbeats) - beats_before >= int(modelled_s) - 1
        c.send("SPEAK", exhibit=7, verdict=job.verdict)
        c.expect("ACK")
        spoken = c.expect("SPOKEN")
        want_ms = round(bank.verdict_seconds(job.verdict) * 1000)
        assert want_ms <= spoken.ms <= want_ms + 150


# ------------------------------------------------------------------------------------------------
# Faults


def test_wrong_image_rate_sends_a_consistent_but_wrong_image(home: Path, job) -> None:
    with cat_sim(home, "--wrong-image-rate", "1") as sim, Controller(sim.path) as c:
        generate(c, job)
        got = c.until("IMAGE_DONE")
        image = image_of(got, 7)
        assert "FRAME_ERROR" not in names(got)  # every CRC holds
        assert got[-1].sha256 == hashlib.sha256(image).digest()  # and the hash matches
        assert got[-1].sha256 != job.golden_sha256  # only the golden compare catches it
        assert sum(bin(a ^ b).count("1") for a, b in zip(image, job.golden, strict=True)) == 1


def test_drop_rate_loses_whole_frames_and_corrupt_rate_damages_them(home: Path, job) -> None:
    with cat_sim(home, "--drop-rate", "0.3", "--seed", "4") as sim, Controller(sim.path) as c:
        generate(c, job)
        got = c.silent(0.5)
        seqs = [f.seq for f in c.frames]
        assert seqs == sorted(seqs)
        missing = (seqs[-1] - seqs[0] + 1) - len(seqs)
        assert missing >= 3  # gaps in the unit's seq numbers...
        assert not [m for m in got if isinstance(m, P.FrameError)]  # ...and nothing damaged
    with cat_sim(home, "--corrupt-rate", "0.3", "--seed", "4") as sim, Controller(sim.path) as c:
        generate(c, job)
        got = c.silent(0.5)
        errors = [m for m in got if isinstance(m, P.FrameError)]
        assert len(errors) >= 3
        assert {e.code for e in errors} <= {E["BAD_CRC"], E["BAD_COBS"], E["TRUNCATED"],
                                            E["TOO_LONG"]}
        # A flipped bit costs exactly its frame: every frame sent is one frame or one error.
        seqs = [f.seq for f in c.frames]
        assert len(seqs) + len(errors) >= seqs[-1] - seqs[0] + 1


def test_hang_after_goes_silent_with_the_port_open(home: Path) -> None:
    with cat_sim(home, "--hang-after", "2") as sim, Controller(sim.path) as c:
        c.hello()  # frame 2: the first heartbeat, at start, was frame 1
        c.send("RESET")
        assert c.silent(1.5) == []  # no ACK
        assert all(b.uptime_ms < 1000 for b in c.heartbeats)  # and no heartbeat after the first
        assert sim.proc.poll() is None  # still running, and the port still reads (nothing)
        assert c.link.read(16, timeout_s=0.1) == b""


def test_unplug_mid_job_and_the_job_completes_on_the_new_port(home: Path, job) -> None:
    # Frames: heartbeat, HELLO, ACK, 6 PROGRESS, then IMAGE chunks: the 20th frame is the 11th
    # chunk of 12, so the cable goes mid-image. After the re-plug the job needs about 16 frames.
    with cat_sim(home, "--unplug-after", "20") as sim:
        with Controller(sim.path) as c:
            c.hello()
            first: list = []
            # (on a loaded machine, early heartbeats can use up the port's frames before the
            # job is even taken, or before it can be written at all: then the new port computes
            # it; otherwise it re-sends it)
            with pytest.raises(DeviceError, match=sim.path):  # the device is gone
                generate(c, job, exhibit=31)
                while (item := c.receive(2.0)) is not None:
                    first.append(item)
            assert "IMAGE_DONE" not in names(first)
            took_job = "ACK" in names(first)
        new_path = sim.next_path()
        assert new_path.startswith("/dev/pts/") and new_path != sim.path
        with Controller(new_path) as c:
            c.hello()
            generate(c, job, exhibit=31)  # the same job, the same bytes
            got = c.until("IMAGE_DONE")
            # The unit finished computing while unplugged and kept the image: it is re-sent.
            # (Without an ACK seen, the unit may still have taken the job: its ACK can be the
            # frame the cable took with it.)
            assert got[0].SPEC.name == "ACK"
            assert got[0].state in ({S["SENDING"]} if took_job
                                    else {S["SENDING"], S["GENERATING"]})
            assert image_of(got, 31) == job.golden
            assert got[-1].sha256 == job.golden_sha256


def test_the_link_is_gone_while_unplugged_and_follows_the_replug(home: Path,
                                                                  tmp_path: Path) -> None:
    """As udev removes a by-id link when the device goes: a stale link would lead a reconnecting
    controller to whatever device gets the old pty number next (another unit, on a busy host).
    The unit sends a heartbeat a second unasked, so after 5 frames the cable goes; for the
    second of the pause before the re-plug there is no link at all, then it names the new pty."""
    link = tmp_path / "by-id-cat"
    with cat_sim(home, "--unplug-after", "5", "--link", str(link)) as sim:
        seen_old = seen_gone = False
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            if not link.is_symlink():
                seen_gone = True
                break
            seen_old = seen_old or os.readlink(link) == sim.path
            time.sleep(0.005)
        assert seen_old and seen_gone, "the link was never absent between unplug and re-plug"
        new_path = sim.next_path()
        assert link.resolve() == Path(new_path).resolve() != Path(sim.path).resolve()


# ------------------------------------------------------------------------------------------------
# The command line


def test_bad_flags_are_one_sentence(run_qcat) -> None:
    r = run_qcat("sim", "cat", "--drop-rate", "1.5")
    assert r.code == 2 and "1.5 is not a probability between 0 and 1" in r.err
    r = run_qcat("sim", "cat", "--unplug-after", "0")
    assert r.code == 2 and "give at least 1" in r.err
    r = run_qcat("sim", "cat", "--serial", "a-serial-far-too-long")
    assert r.code == 2 and "cannot be a unit's serial number" in r.err and "hint:" in r.err
    r = run_qcat("sim", "cat", "--weights", "/nowhere/cat.qcw")
    assert r.code == 2 and "weight image /nowhere/cat.qcw (from --weights) does not exist" in r.err
    r = run_qcat("sim", "cat", "--clips", "/nowhere/v.qcv")
    assert r.code == 2 and "clip bank /nowhere/v.qcv (from --clips) does not exist" in r.err
    assert "Traceback" not in r.err
