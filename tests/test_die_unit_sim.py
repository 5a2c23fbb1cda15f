"""`qcat sim die`: the die unit's own C core behind a real pseudo-terminal, met by a controller made
of production parts only (installation.units.link and the protocol codec).

Real parts: the simulator runs as a child process exactly as an operator starts it; the
controller opens the printed /dev/pts path and speaks frames. Every face that comes back is
re-derived with the numpy reference (models.die_reference) from the entropy bytes the controller
sent: the bytes at [entropy_offset, entropy_offset + entropy_used).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pytest

from firmware.die_unit import builtin_arrays, builtin_sha256, limits
from installation.units import protocol as P
from models import die_reference as ref
from tests.cat_sim_support import Controller, unit_sim

E = P.ErrorCode
S = P.UnitState
NO_SEQ = 0xFFFF


def builtin_model() -> ref.DieModel:
    packed, bias, shift, label_shift = builtin_arrays()
    weights = [ref.unpack_nibbles(p, int(np.prod(s))).reshape(s)
               for p, s in zip(packed, ref.weight_shapes(), strict=True)]
    return ref.DieModel(weights, bias, shift, label_shift)


def check_roll(roll: P.Message, stream: bytes, model: ref.DieModel) -> None:
    """The ROLL is what the reference makes of the bytes it names."""
    data = stream[roll.entropy_offset:roll.entropy_offset + roll.entropy_used]
    want = ref.roll_from_bytes(data)
    assert want is not None and (want.used, want.pips) == (roll.entropy_used, roll.pips)
    assert roll.face == ref.run_banded(model, want.z[None], want.pips)[0].tobytes()


def topup(ctl: Controller, offset: int, data: bytes) -> P.Message:
    ctl.send("TOPUP", offset=offset, entropy=data)
    return ctl.expect("RESERVE")


def test_handshake_topup_roll_request_and_no_entropy(qcat_home: Path) -> None:
    model = builtin_model()
    stream = random.Random(1).randbytes(400)
    with unit_sim(qcat_home, "die", "--serial", "die-sim-1") as sim, Controller(sim.path) as ctl:
        hello = ctl.hello()
        assert hello.kind == P.UnitKind["DIE"] and hello.serial == b"die-sim-1".ljust(16, b"\0")
        assert hello.weights_sha256 == builtin_sha256() and hello.clips_sha256 == bytes(32)
        assert hello.max_payload == limits().max_payload
        # Power-on: nothing held, so a roll is refused, naming the request.
        seq = ctl.send("ROLL_REQUEST")
        err = ctl.expect("ERROR")
        assert (err.code, err.about_seq, err.detail) == (E["NO_ENTROPY"], seq, 0)
        # Fill the reserve in two chunks the die's buffer takes, then roll until it runs dry.
        chunk = min(limits().topup_max, limits().reserve_bytes // 2)
        sent = 0
        for _ in range(2):
            r = topup(ctl, sent, stream[sent:sent + chunk])
            sent += chunk
            assert (r.start, r.held) == (0, sent)
        rolls = []
        while True:
            seq = ctl.send("ROLL_REQUEST")
            first = ctl.receive()
            assert isinstance(first, P.Message)
            if first.SPEC.name == "ERROR":
                assert (first.code, first.about_seq) == (E["NO_ENTROPY"], seq)
                break
            assert (first.SPEC.name, first.acked_seq, first.state) == ("ACK", seq, S["ROLLING"])
            rolls.append(ctl.expect("ROLL"))
        assert len(rolls) >= sent // (ref.ROLL_BYTES + 2)
        for roll in rolls:
            check_roll(roll, stream, model)
        spent = rolls[-1].entropy_offset + rolls[-1].entropy_used
        assert spent > sent - ref.ROLL_BYTES
        ctl.send("TOPUP", offset=sent, entropy=b"")
        r = ctl.expect("RESERVE")
        assert (r.start, r.start + r.held) == (spent, sent)
        assert ctl.silent(1.2) == []  # the pulse goes on, nothing else
        assert ctl.heartbeats and all(h.state == S["IDLE"] for h in ctl.heartbeats)


def test_a_scheduled_press_rolls_unasked(qcat_home: Path) -> None:
    model = builtin_model()
    stream = random.Random(2).randbytes(limits().topup_max)
    with unit_sim(qcat_home, "die", "--schedule", "0.4") as sim, Controller(sim.path) as ctl:
        # Nothing held: a press is refused, about no frame of ours (perhaps before the HELLO).
        ctl.send("HELLO", protocol=P.VERSION, kind=P.UnitKind["CONTROLLER"], serial=bytes(16),
                 firmware=1, weights_sha256=bytes(32), clips_sha256=bytes(32),
                 max_payload=P.MAX_PAYLOAD)
        got = [m for m in ctl.until("HELLO", timeout_s=3) if m.SPEC.name == "ERROR"]
        err = got[0] if got else ctl.expect("ERROR", timeout_s=3)
        assert (err.code, err.about_seq) == (E["NO_ENTROPY"], NO_SEQ)
        topup(ctl, 1_000, stream)
        got = ctl.until("ROLL", timeout_s=3)
        roll = got[-1]
        assert not any(isinstance(m, P.Message) and m.SPEC.name == "ACK" for m in got)
        assert roll.entropy_offset >= 1_000
        check_roll(roll, bytes(1_000) + stream, model)
        second = ctl.until("ROLL", timeout_s=3)[-1]  # and again, on schedule
        assert second.entropy_offset == roll.entropy_offset + roll.entropy_used
        assert "pressed every 0.4 s" in sim.stderr


def test_a_key_press_on_the_terminal_rolls(qcat_home: Path) -> None:
    master, slave = os.openpty()
    try:
        with unit_sim(qcat_home, "die", stdin=slave) as sim, Controller(sim.path) as ctl:
            ctl.hello()
            topup(ctl, 0, random.Random(3).randbytes(40))
            os.write(master, b"\n")
            roll = ctl.expect("ROLL", timeout_s=3)
            assert roll.entropy_offset == 0
            os.write(master, b"x")  # not a roll key
            assert ctl.silent(0.5) == []
            os.write(master, b" ")
            assert ctl.expect("ROLL", timeout_s=3).entropy_offset == roll.entropy_used
            assert "press Enter or space" in sim.stderr
    finally:
        os.close(master)
        os.close(slave)


def test_another_decoder_from_a_weights_file(qcat_home: Path, tmp_path: Path) -> None:
    model = ref.random_model(11)
    path = tmp_path / "die.npz"
    ref.save(model, path)
    stream = random.Random(4).randbytes(60)
    with unit_sim(qcat_home, "die", "--weights", str(path)) as sim, Controller(sim.path) as ctl:
        assert ctl.hello().weights_sha256 == bytes.fromhex(ref.content_sha256(model))
        topup(ctl, 0, stream)
        ctl.send("ROLL_REQUEST")
        ctl.expect("ACK")
        check_roll(ctl.expect("ROLL"), stream, model)


def test_the_shared_plumbing_unplugs_the_die_too(qcat_home: Path) -> None:
    with unit_sim(qcat_home, "die", "--unplug-after", "3") as sim:
        with Controller(sim.path) as ctl:
            # Nothing is read here: the third frame (a heartbeat or this RESERVE) pulls the cable.
            ctl.send("TOPUP", offset=0, entropy=bytes(20))
            new_path = sim.next_path(timeout_s=5)
        assert new_path != sim.path
        with Controller(new_path) as ctl:
            ctl.send("TOPUP", offset=0, entropy=b"")
            r = ctl.expect("RESERVE")
            assert (r.start, r.held) == (0, 20)  # the unit kept its state across the re-plug


@pytest.mark.parametrize(("flags", "says"), [
    (("--schedule", "0"), "give a positive number"),
    (("--schedule", "0.05"), "cannot be pressed more often than every 0.2 s"),
    (("--serial", "x" * 17), "cannot be a unit's serial number"),
    (("--weights", "/nowhere/die.npz"), "die weights /nowhere/die.npz (from --weights) do not "
                                        "exist"),
    (("--drop-rate", "2"), "not a probability"),
])
def test_bad_flags_are_one_sentence(run_qcat, flags: tuple[str, ...], says: str) -> None:
    r = run_qcat("sim", "die", *flags)
    assert r.code == 2 and says in r.err and "Traceback" not in r.err


def test_a_weights_file_that_is_not_one_is_refused(run_qcat, tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    r = run_qcat("sim", "die", "--weights", junk)
    assert r.code != 0 and "not a die weights file" in r.err and "Traceback" not in r.err


def test_the_simulator_presses_long_enough_for_the_debounce() -> None:
    from firmware.sim import MIN_SCHEDULE_S, PRESS_S

    assert limits().debounce_ms * 2 <= PRESS_S * 1000
    assert MIN_SCHEDULE_S >= 2 * PRESS_S


def test_press_from_another_thread_queues(tmp_path: Path) -> None:
    """DieSimulator.press() (what a supervisor's test or a dashboard could call): presses that
    come faster than a press lasts are queued, each rolls once."""
    import threading

    from firmware.die_unit import Identity
    from firmware.sim import DieSimulator

    paths: list[str] = []
    sim = DieSimulator(Identity("die-q"), announce=paths.append)
    stop = threading.Event()
    worker = threading.Thread(target=sim.serve, args=(stop.is_set,), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while not paths and time.monotonic() < deadline:
            time.sleep(0.01)
        with Controller(paths[0]) as ctl:
            ctl.send("TOPUP", offset=0, entropy=random.Random(5).randbytes(60))
            ctl.expect("RESERVE")
            for _ in range(3):
                sim.press()
            rolls = [ctl.expect("ROLL", timeout_s=3) for _ in range(3)]
            assert ctl.silent(0.4) == []
            assert [r.entropy_offset for r in rolls[1:]] == \
                [r.entropy_offset + r.entropy_used for r in rolls[:-1]]
            assert sim.presses == 3 and sim.unit.stats.rolls == 3
    finally:
        stop.set()
        worker.join(5)
