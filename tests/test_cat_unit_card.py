"""The cat unit working offline from its card's reserve (firmware/cat/cat_unit.c), and
`qcat sim cat --card DIR [--offline N]`.

The C core is driven directly through ctypes with a board whose clock and card (the reserve and
the journal as bytes in memory) are in the test's hands; the card is built from its parts by
tests/card_support.py. What these tests hold the unit to is docs/formats.md, "The unit's rules":
records spent in order and each once, the journal entry (the very bytes `cardfmt.Entry.pack()`
makes, its image hash the numpy reference's: F1) on the card before the cat is shown or spoken,
and nothing written past a journal or a record the unit cannot trust. Then the simulator's
command line, as a subprocess, on a card folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware import cardfmt
from firmware.cat_unit import CardFile, CatUnit, Identity, Offline, OfflineWhy
from installation.units import protocol as P
from tests.card_support import BuiltCard, golden_sha256, make_card

REPO = Path(__file__).resolve().parent.parent
S = P.UnitState
FILES = {CardFile.RESERVE: cardfmt.RESERVE, CardFile.JOURNAL: cardfmt.JOURNAL}


@pytest.fixture(scope="module")
def card3(tmp_path_factory: pytest.TempPathFactory) -> BuiltCard:
    return make_card(tmp_path_factory.mktemp("card") / "card", 3)


@pytest.fixture(scope="module")
def golden(card3: BuiltCard) -> list[bytes]:
    return [golden_sha256(card3, i) for i in range(3)]


class CardBoard:
    """A board in the test's hands: the clock moves only when told; the card's reserve and
    journal are bytearrays (so a test can garble them); every event is logged in order."""

    def __init__(self, card: BuiltCard, *, reserve: bytes | None = None,
                 journal: bytes | None = None) -> None:
        self.weights = card.weights.read_bytes()
        self.files = {
            cardfmt.RESERVE: bytearray(reserve if reserve is not None
                                       else card.file(cardfmt.RESERVE).read_bytes()),
            cardfmt.JOURNAL: bytearray(journal if journal is not None
                                       else card.file(cardfmt.JOURNAL).read_bytes()),
        }
        self.now = 0
        self.out = bytearray()
        self.speaking_until = 0
        self.speak_ms = 0
        self.write_ok = True
        self.events: list[tuple[str, object]] = []

    # firmware.cat_unit.Board
    def write(self, frame: bytes) -> None:
        self.out += frame

    def millis(self) -> int:
        return self.now

    def speak_start(self, verdict: int) -> int:
        self.events.append(("speak", verdict))
        self.speaking_until = self.now + self.speak_ms
        return 0

    def speak_busy(self) -> bool:
        return self.now < self.speaking_until

    def read(self, offset: int, length: int) -> bytes | None:
        return self.weights[offset:offset + length]

    # firmware.cat_unit.Card
    def card_read(self, file: CardFile, offset: int, length: int) -> bytes | None:
        return bytes(self.files[FILES[file]][offset:offset + length])

    def card_write(self, file: CardFile, offset: int, data: bytes) -> bool:
        if not self.write_ok:
            return False
        target = self.files[FILES[file]]
        assert offset + len(data) <= len(target), "the unit grew a card file"
        target[offset:offset + len(data)] = data
        self.events.append(("journal", offset))
        return True

    def display(self, rgb: bytes) -> None:
        self.events.append(("show", hashlib.sha256(rgb).digest()))

    def journal_slot(self, k: int) -> bytes:
        return bytes(self.files[cardfmt.JOURNAL][cardfmt.entry_offset(k):
                                                 cardfmt.entry_offset(k + 1)])


def unit_on(board: CardBoard, card: BuiltCard, after_ms: int = 0, period_ms: int = 0) -> CatUnit:
    identity = Identity("cat-07", hashlib.sha256(board.weights).digest(), bytes(32))
    return CatUnit(board, identity, card=board, display=board.display,
                   offline=Offline(after_ms, period_ms))


def run(unit: CatUnit, limit: int = 50) -> None:
    """Poll until the unit wants to sleep (its clock does not move by itself)."""
    for _ in range(limit):
        if unit.poll() > 0:
            return


def take(board: CardBoard) -> list[P.Message]:
    frames = P.FrameDecoder().feed(bytes(board.out))
    board.out.clear()
    return [P.decode_message(f) for f in frames if isinstance(f, P.Frame)]


def hello(unit: CatUnit) -> None:
    unit.rx(P.encode_message(P.message(
        "HELLO", protocol=1, kind=P.UnitKind["CONTROLLER"], serial=bytes(16), firmware=1,
        weights_sha256=bytes(32), clips_sha256=bytes(32), max_payload=P.MAX_PAYLOAD), 0))


# ------------------------------------------------------------------------------------------------
# Spending the reserve


def test_offline_exhibits_journal_cardfmt_entries_with_golden_images(card3, golden) -> None:
    board = CardBoard(card3)
    board.now = 1_000  # the unit starts at 1 s on its clock: uptime counts from there
    unit = unit_on(board, card3)
    assert unit.offline.why == OfflineWhy.READY and unit.offline.next_record == 0
    board.now = 5_000
    run(unit)
    # All three records, in order, each once; then the unit knows the reserve is spent.
    assert unit.stats.offline_exhibits == 3
    assert unit.offline.why == OfflineWhy.SPENT and unit.offline.next_record == 3
    for k, rec in enumerate(card3.records):
        # Byte for byte what the controller's codec packs for the same facts; the image hash
        # is the numpy reference's render of the record's latent (F1).
        want = cardfmt.Entry(k, rec.verdict, golden[k], uptime_ms=4_000).pack()
        assert board.journal_slot(k) == want, f"journal slot {k} differs"
    # Each entry is on the card before that cat is shown and spoken.
    assert board.events == [e for k, rec in enumerate(card3.records)
                            for e in (("journal", cardfmt.entry_offset(k)), ("show", golden[k]),
                                      ("speak", rec.verdict))]
    # The controller's reader finds a clean journal of three entries; nothing was sent as a job.
    journal = cardfmt.read_journal(bytes(board.files[cardfmt.JOURNAL]), card3.header)
    assert journal.state == "clean" and len(journal.entries) == 3
    assert {m.SPEC.name for m in take(board)} == {"HEARTBEAT"}
    assert unit.state == S["IDLE"]


def test_offline_mode_waits_for_a_quiet_line_and_keeps_its_period(card3) -> None:
    board = CardBoard(card3)
    unit = unit_on(board, card3, after_ms=30_000, period_ms=60_000)
    board.speak_ms = 4_000
    board.now = 20_000
    run(unit)
    unit.rx(P.encode_message(P.message("HEARTBEAT", uptime_ms=1, state=0), 0))  # a controller
    board.now = 49_999
    assert unit.poll() == 1 and not unit.offline.active  # 30 s after that frame, not before
    board.now = 50_000
    assert unit.poll() == 0 and unit.offline.active  # offline now; the exhibit at the next poll
    assert unit.stats.offline_exhibits == 0
    unit.poll()
    assert unit.stats.offline_exhibits == 1
    assert unit.state == S["SPEAKING"]
    board.now = 54_000  # the verdict is spoken: the next is due a period later
    run(unit)
    assert unit.state == S["IDLE"] and unit.stats.offline_exhibits == 1
    board.now = 113_999
    run(unit)
    assert unit.stats.offline_exhibits == 1
    board.now = 114_000
    run(unit)
    assert unit.stats.offline_exhibits == 2
    # No SPOKEN (nobody asked for these exhibits) and no PROGRESS went out.
    assert {m.SPEC.name for m in take(board)} == {"HEARTBEAT"}


def test_a_controllers_hello_ends_offline_mode(card3, golden) -> None:
    board = CardBoard(card3)
    board.speak_ms = 3_000
    unit = unit_on(board, card3, after_ms=30_000, period_ms=0)
    board.now = 30_000
    run(unit)
    assert unit.offline.active and unit.stats.offline_exhibits == 1
    hello(unit)
    msgs = take(board)
    assert "HELLO" in [m.SPEC.name for m in msgs] and not unit.offline.active
    # The offline verdict is still being spoken: a job waits (BUSY) until it ends.
    latent = tuple(np.frombuffer(card3.records[1].latent, dtype=np.int8).tolist())
    unit.rx(P.encode_message(P.message("GENERATE", exhibit=9, latent=latent, verdict=1), 1))
    (err,) = [m for m in take(board) if m.SPEC.name == "ERROR"]
    assert err.code == P.ErrorCode["BUSY"]
    board.now = 33_000
    run(unit)
    assert unit.state == S["IDLE"] and "SPOKEN" not in [m.SPEC.name for m in take(board)]
    # With the controller there, the period of 0 spends nothing more: the line is not quiet.
    board.now = 59_999
    run(unit)
    assert unit.stats.offline_exhibits == 1 and unit.offline.next_record == 1
    assert board.journal_slot(1) == cardfmt.EMPTY_SLOT
    # The controller's own job runs as ever.
    unit.rx(P.encode_message(P.message("GENERATE", exhibit=9, latent=latent, verdict=1), 2))
    run(unit)
    assert "IMAGE_DONE" in [m.SPEC.name for m in take(board)]
    # And when it goes quiet again, the unit goes on with the next record.
    board.now = 59_999 + 30_000
    run(unit)
    assert unit.stats.offline_exhibits == 2 and board.events[-2] == ("show", golden[1])


def test_a_restarted_unit_continues_at_the_next_record(card3) -> None:
    board = CardBoard(card3)
    board.speak_ms = 1_000
    unit = unit_on(board, card3)
    run(unit)  # record 0 made, its verdict being spoken
    board.now = 1_000
    run(unit)  # spoken; record 1 made
    assert unit.stats.offline_exhibits == 2
    del unit  # power off while record 1's verdict plays
    again = unit_on(board, card3)
    assert again.offline.why == OfflineWhy.READY and again.offline.next_record == 2
    board.now = 10_000
    run(again)
    board.now = 20_000
    run(again)
    assert again.stats.offline_exhibits == 1
    spoken = [v for kind, v in board.events if kind == "speak"]
    assert spoken == [rec.verdict for rec in card3.records]  # each record once, in order
    journal = cardfmt.read_journal(bytes(board.files[cardfmt.JOURNAL]), card3.header)
    assert journal.state == "clean" and [e.index for e in journal.entries] == [0, 1, 2]
    # A unit started on a spent card makes nothing and says so.
    spent = unit_on(board, card3)
    assert spent.offline.why == OfflineWhy.SPENT and spent.offline.detail == 3


# ------------------------------------------------------------------------------------------------
# What stops offline work


def spend(card: BuiltCard, n: int) -> CardBoard:
    """A board whose journal holds n entries written by a unit."""
    board = CardBoard(card)
    unit = unit_on(board, card)
    while unit.stats.offline_exhibits < n:
        unit.poll()
    return board


@pytest.mark.parametrize("garble", ["torn last entry", "entry after the end", "wrong index"])
def test_a_journal_that_is_not_entries_then_empty_stops_offline_work(card3, garble) -> None:
    board = spend(card3, 2)
    journal = board.files[cardfmt.JOURNAL]
    if garble == "torn last entry":  # a power cut in the middle of entry 1's sector
        at = cardfmt.entry_offset(1) + 300
        journal[at:cardfmt.entry_offset(2)] = bytes(cardfmt.entry_offset(2) - at)
        slot = 1
    elif garble == "entry after the end":
        journal[cardfmt.entry_offset(1):cardfmt.entry_offset(2)] = cardfmt.EMPTY_SLOT
        journal[cardfmt.entry_offset(2) + 7] = 1
        slot = 2
    else:  # a good seal on an entry that names another record
        journal[cardfmt.entry_offset(1):cardfmt.entry_offset(2)] = cardfmt.Entry(
            0, card3.records[0].verdict, bytes(32)).pack()
        slot = 1
    before = bytes(journal)
    board.events.clear()
    unit = unit_on(board, card3)
    assert unit.offline.why == OfflineWhy.TORN and unit.offline.detail == slot
    assert f"slot {slot}" in unit.offline.sentence
    for now in (0, 100_000, 200_000):
        board.now = now
        run(unit)
    # Nothing written past what it cannot read, nothing shown or spoken.
    assert bytes(journal) == before and board.events == []
    assert unit.stats.offline_exhibits == 0 and not unit.offline.active


@pytest.mark.parametrize("fault", ["struck", "damaged"])
def test_a_struck_or_damaged_record_ends_offline_work(card3, golden, fault) -> None:
    reserve = bytearray(card3.file(cardfmt.RESERVE).read_bytes())
    at = cardfmt.record_offset(1)
    if fault == "struck":
        reserve[at:at + cardfmt.RECORD_BYTES] = cardfmt.STRUCK
    else:
        reserve[at + 20] ^= 0x10  # one raw byte: the record's CRC no longer holds
    board = CardBoard(card3, reserve=bytes(reserve))
    unit = unit_on(board, card3)
    run(unit)
    assert unit.stats.offline_exhibits == 1  # record 0 only
    assert unit.offline.why == OfflineWhy[fault.upper()] and unit.offline.detail == 1
    assert board.journal_slot(0) == cardfmt.Entry(0, card3.records[0].verdict, golden[0],
                                                  uptime_ms=0).pack()
    assert board.journal_slot(1) == cardfmt.EMPTY_SLOT
    assert [k for k, _ in board.events].count("show") == 1


def test_a_record_whose_verdict_does_not_follow_from_its_bytes_is_damaged(card3) -> None:
    rec = card3.records[0]
    forged = cardfmt.Record(0, rec.verdict ^ 1, rec.raw, rec.latent)
    reserve = bytearray(card3.file(cardfmt.RESERVE).read_bytes())
    reserve[cardfmt.record_offset(0):cardfmt.record_offset(1)] = forged.pack()  # sealed, but lying
    board = CardBoard(card3, reserve=bytes(reserve))
    unit = unit_on(board, card3)
    run(unit)
    assert unit.offline.why == OfflineWhy.DAMAGED and unit.stats.offline_exhibits == 0


def test_a_failed_journal_write_shows_nothing_and_stops(card3) -> None:
    board = CardBoard(card3)
    board.write_ok = False
    unit = unit_on(board, card3)
    run(unit)
    assert unit.offline.why == OfflineWhy.WRITE and unit.offline.detail == 0
    assert board.events == [] and unit.stats.offline_exhibits == 0


def test_a_card_that_does_not_hang_together_is_refused_at_start(card3, tmp_path) -> None:
    other = make_card(tmp_path / "other", 3, seed=1)
    other_journal = cardfmt.empty_journal(bytes(16), other.header.card_id, 3)
    assert unit_on(CardBoard(card3, journal=other_journal), card3).offline.why == \
        OfflineWhy.MISMATCH
    short_journal = cardfmt.empty_journal(card3.header.lease_id, card3.header.card_id, 2)
    assert unit_on(CardBoard(card3, journal=short_journal), card3).offline.why == \
        OfflineWhy.MISMATCH
    bad = bytearray(card3.file(cardfmt.RESERVE).read_bytes())
    bad[70] ^= 1  # inside the header: its CRC no longer holds
    assert unit_on(CardBoard(card3, reserve=bytes(bad)), card3).offline.why == \
        OfflineWhy.RESERVE
    bad_journal = bytearray(card3.file(cardfmt.JOURNAL).read_bytes())
    bad_journal[0] = ord("X")
    assert unit_on(CardBoard(card3, journal=bytes(bad_journal)), card3).offline.why == \
        OfflineWhy.JOURNAL
    # A reserve whose latents were quantized for another weight image.
    board = CardBoard(card3)
    unit = CatUnit(board, Identity("cat-07", bytes([1]) * 32, bytes(32)), card=board,
                   offline=Offline(0, 0))
    assert unit.offline.why == OfflineWhy.WEIGHTS
    run(unit)
    assert board.events == []


def test_without_card_access_the_unit_is_as_before(card3) -> None:
    board = CardBoard(card3)
    unit = CatUnit(board, Identity("cat-07"), offline=Offline(0, 0))
    assert unit.offline.why == OfflineWhy.NO_CARD
    for now in (0, 100_000):
        board.now = now
        run(unit)
    assert board.events == [] and unit.stats.offline_exhibits == 0


# ------------------------------------------------------------------------------------------------
# qcat sim cat --card


def qcat(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QCAT_HOME": str(home)}
    env.pop("QCAT_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "installation.cli", *argv], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_sim_offline_prints_three_exhibits_and_the_journal_reads_clean(tmp_path) -> None:
    card = make_card(tmp_path / "card", 4, seed=3)
    proc = qcat(tmp_path / "home", "sim", "cat", "--card", str(card.path), "--offline", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and "3 offline exhibits journaled" in lines[3] and "1 of 4" in lines[3]
    for k, line in enumerate(lines[:3]):
        rec = card.records[k]
        assert line.split() == ["record", str(k), "verdict", str(rec.verdict), "image",
                                golden_sha256(card, k).hex()[:16]]
    journal = card.journal()
    assert journal.state == "clean" and [e.index for e in journal.entries] == [0, 1, 2]
    assert [e.image_sha256 for e in journal.entries] == [golden_sha256(card, k) for k in range(3)]
    assert "Traceback" not in proc.stderr


def test_sim_offline_asked_for_more_than_the_reserve_makes_what_is_left_and_exits_1(
        tmp_path) -> None:
    card = make_card(tmp_path / "card", 3)
    proc = qcat(tmp_path / "home", "sim", "cat", "--card", str(card.path), "--offline", "5")
    assert proc.returncode == 1, proc.stderr
    assert [line.split()[1] for line in proc.stdout.splitlines()[:3]] == ["0", "1", "2"]
    assert len(proc.stdout.splitlines()) == 4
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("qcat: error:")]
    assert "3 of the 5" in error and "spent" in error and "Traceback" not in proc.stderr
    assert len(card.journal().entries) == 3


@pytest.mark.parametrize("fault", ["nonexistent", "missing file", "altered manifest"])
def test_a_bad_card_is_one_sentence_and_exit_2(tmp_path, fault) -> None:
    if fault == "nonexistent":
        path = tmp_path / "nonexistent"
        want = "does not exist"
    else:
        card = make_card(tmp_path / "card", 1)
        path = card.path
        if fault == "missing file":
            card.file(cardfmt.RESERVE).unlink()
            want = "has no RESERVE.QCR"
        else:
            text = card.file(cardfmt.MANIFEST).read_text().replace('"cat-07"', '"cat-08"')
            card.file(cardfmt.MANIFEST).write_text(text)
            want = "SHA-256 does not match"
    proc = qcat(tmp_path / "home", "sim", "cat", "--card", str(path), "--offline", "1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("qcat: error: card ") and want in proc.stderr.splitlines()[0]
    assert "Traceback" not in proc.stderr


def test_a_served_unit_with_a_card_says_who_the_card_says_it_is(tmp_path) -> None:
    from tests.cat_sim_support import Controller, cat_sim

    card = make_card(tmp_path / "card", 1, serial="cat-42")
    manifest = cardfmt.read_manifest(card.file(cardfmt.MANIFEST).read_bytes())
    with cat_sim(tmp_path / "home", "--card", str(card.path)) as sim, Controller(sim.path) as c:
        got = c.hello()
    assert got.serial == b"cat-42".ljust(16, b"\0")
    assert got.weights_sha256.hex() == manifest["files"][cardfmt.WEIGHTS]["sha256"]
    assert got.clips_sha256.hex() == manifest["files"][cardfmt.CLIPS]["sha256"]
    # Served and talked to, the unit spent nothing (the default wait is 30 s of silence).
    assert card.journal().entries == []


def test_a_served_unit_goes_offline_when_no_controller_talks_and_back_at_hello(tmp_path) -> None:
    """The simulator's serve loop (the pty, a real clock) with a short offline wait: the unit
    spends a record when the line stays quiet, says so, and stops at a controller's HELLO."""
    import threading
    import time

    from firmware.card import open_card
    from firmware.sim import CatSimulator
    from tests.cat_sim_support import Controller

    card = make_card(tmp_path / "card", 3)
    notes: list[str] = []
    ports: list[str] = []
    stopping = threading.Event()
    sim = CatSimulator(None, Identity("cat-07", hashlib.sha256(card.weights.read_bytes()).digest()),
                       card=open_card(card.path), offline=Offline(300, 60_000),
                       announce=ports.append, note=notes.append)
    thread = threading.Thread(target=sim.serve, args=(stopping.is_set,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(card.journal().entries) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.index for e in card.journal().entries] == [0]
        # The note came before the exhibit (the unit goes offline one poll before it spends).
        assert any(n.startswith("no controller: the unit works offline from the card's reserve "
                                "(record 0 of 3 next)") for n in notes), notes
        with Controller(ports[0]) as controller:
            assert controller.hello().serial == b"cat-07".ljust(16, b"\0")
            deadline = time.monotonic() + 5
            while not any("offline mode ends" in n for n in notes) and time.monotonic() < deadline:
                time.sleep(0.02)
        assert any("a controller is talking: offline mode ends" in n for n in notes), notes
        assert len(card.journal().entries) == 1  # the period (60 s) keeps the next one away
    finally:
        stopping.set()
        thread.join(10)
