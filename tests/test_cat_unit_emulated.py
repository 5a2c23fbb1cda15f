"""`qcat sim cat --emulate`: the cat unit's own rv32 image (unit_main.c + cat/board_qemu.c, `make
qemu-cat-unit`) under qemu-system-riscv32, behind the pseudo-terminal QEMU makes.

The protocol and supervisor tests run against it through tests/cat_sim_support.py's `kind`
(test_cat_unit_sim.py, test_units_supervisor.py); here is what is particular to the emulated
unit: the image builds without a warning; a controller that holds the port without reading
cannot hang the unit (the board drops whole frames while the pty is full, and the next reader
gets a working unit); the card folder's reserve is spent offline and journaled by the rv32 code
through semihosting, with the numpy reference's image hash; and what it cannot do, or cannot
start without, is one sentence.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from firmware import cardfmt
from firmware.cat_engine import FIRMWARE_DIR
from installation.units import emulator
from installation.units import protocol as P
from models.weightimage import SHIPPED_DEMO
from tests.card_support import golden_sha256, make_card
from tests.cat_sim_support import Controller, cat_sim, exhibit_job, image_of
from tests.cross_support import require_cross_compiler, require_qemu

WEIGHTS = SHIPPED_DEMO


@pytest.fixture(scope="module")
def job():
    return exhibit_job(WEIGHTS, seed=11)


def test_the_emulated_image_builds_without_a_warning(tmp_path: Path) -> None:
    require_cross_compiler()
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(FIRMWARE_DIR),
                           "-B", emulator.MAKE_TARGET, f"BUILD={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" not in proc.stderr, proc.stderr
    elf = tmp_path / emulator.ELF
    # an ELF for 32-bit RISC-V (e_machine 243), linked where -bios none starts (0x80000000)
    head = elf.read_bytes()[:28]
    assert head[:5] == b"\x7fELF\x01" and int.from_bytes(head[18:20], "little") == 243
    assert int.from_bytes(head[24:28], "little") == 0x80000000


def test_a_controller_that_stops_reading_cannot_hang_the_unit(tmp_path: Path, job) -> None:
    """Two jobs asked for and never read fill the pty (about 18 KB) in the second image: the
    board waits SERIAL_STALL_MS once, then drops whole frames. A controller that opens the port
    afterwards (pyserial empties the line on open) gets answers and a whole, golden image."""
    with cat_sim(tmp_path / "home", kind="emulate") as sim:
        fd = os.open(sim.path, os.O_RDWR | os.O_NOCTTY)
        try:
            for seq, exhibit in enumerate((1, 2)):
                os.write(fd, b"\0" + P.encode_message(
                    P.message("GENERATE", exhibit=exhibit, latent=job.latent,
                              verdict=job.verdict), seq))
                time.sleep(1.5)  # (the first job is done before the second is asked for)
        finally:
            os.close(fd)
        with Controller(sim.path) as c:
            c.send("HELLO", protocol=P.VERSION, kind=P.UnitKind["CONTROLLER"],
                   serial=b"test".ljust(16, b"\0"), firmware=0x000100,
                   weights_sha256=bytes(32), clips_sha256=bytes(32), max_payload=P.MAX_PAYLOAD)
            got = c.until("HELLO")
            # The byte or two QEMU's UART still held when the line stalled go out first, ended
            # by the delimiter the board sends on recovery: at most one damaged fragment.
            assert len(got) <= 2 and all(isinstance(m, P.FrameError) for m in got[:-1]), got
            assert got[-1].kind == P.UnitKind["CAT"]
            c.send("GENERATE", exhibit=3, latent=job.latent, verdict=job.verdict)
            got = c.until("IMAGE_DONE")
            assert got[0].SPEC.name == "ACK"
            assert image_of(got, 3) == job.golden and got[-1].sha256 == job.golden_sha256


@pytest.mark.slow
def test_a_card_folder_is_spent_offline_by_the_rv32_code_after_30_s_alone(tmp_path: Path) -> None:
    """No controller for the unit's 30 s: the rv32 core spends record 0 and journals it on the
    card folder's JOURNAL.QCJ (semihosting writes the host file) with the numpy reference's image
    hash, and nothing more within the minute's period; a controller's HELLO then meets the card's
    unit."""
    card = make_card(tmp_path / "card", 2, serial="cat-emu-9")
    manifest = cardfmt.read_manifest(card.file(cardfmt.MANIFEST).read_bytes())
    with cat_sim(tmp_path / "home", "--card", str(card.path), kind="emulate") as sim:
        deadline = time.monotonic() + 45
        while not card.journal().entries and time.monotonic() < deadline:
            time.sleep(0.5)
        journal = card.journal()
        assert [e.index for e in journal.entries] == [0], journal
        assert journal.entries[0].image_sha256 == golden_sha256(card, 0)
        assert journal.entries[0].verdict == card.records[0].verdict
        assert journal.state == "clean"
        with Controller(sim.path) as c:
            hello = c.hello()
        assert hello.serial.rstrip(b"\0") == b"cat-emu-9"
        assert hello.weights_sha256.hex() == manifest["files"][cardfmt.WEIGHTS]["sha256"]
    assert len(card.journal().entries) == 1


@pytest.mark.parametrize(("flags", "want"), [
    (("--drop-rate", "0.1"), "--drop-rate is a fault of the host simulator's board"),
    (("--unplug-after", "5"), "--unplug-after is a fault of the host simulator's board"),
    (("--wrong-image-rate", "1"), "--wrong-image-rate is a fault of the host simulator's board"),
    (("--timing", "realistic"), "--timing realistic is the host simulator's time model"),
    (("--card", "CARD", "--offline", "1"), "--offline makes exhibits with the host simulator"),
    (("--card", "CARD.img"), "the emulated unit takes a card folder, not an image"),
])
def test_what_the_emulated_unit_does_not_do_is_one_sentence(run_qcat, tmp_path, flags,
                                                            want) -> None:
    card = make_card(tmp_path / "card", 1)
    image = tmp_path / "card.img"  # a FAT image is a file: refused before it is read
    image.write_bytes(bytes(512))
    argv = [str(image) if f == "CARD.img" else str(card.path) if f == "CARD" else f
            for f in flags]
    r = run_qcat("sim", "cat", "--emulate", *argv)
    assert r.code == 2, r.out + r.err
    assert want in r.err and "hint:" in r.err and "Traceback" not in r.err
    assert r.out == ""


def test_missing_qemu_or_cross_compiler_is_one_sentence_naming_the_package(
        run_qcat, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    r = run_qcat("sim", "cat", "--emulate")
    assert r.code == 3 and r.out == ""
    assert "qemu-system-riscv32 is not installed, so the cat unit's firmware cannot be " \
           "emulated" in r.err and "apt-get install qemu-system-misc" in r.err
    # QEMU there, no image built yet and no cross compiler: the build names its packages.
    (empty / emulator.QEMU).symlink_to("/bin/true")
    monkeypatch.setenv("QCAT_FIRMWARE_BUILD", str(tmp_path / "build"))
    r = run_qcat("sim", "cat", "--emulate")
    assert r.code == 3 and r.out == ""
    assert "riscv64-unknown-elf-gcc is not installed" in r.err
    assert "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf" in r.err
    assert "Traceback" not in r.err


def test_the_default_serial_says_the_unit_is_emulated(tmp_path: Path) -> None:
    with cat_sim(tmp_path / "home", kind="emulate") as sim, Controller(sim.path) as c:
        hello = c.hello()
    assert hello.serial.rstrip(b"\0") == f"emucat-{sim.proc.pid}".encode()
    assert hello.weights_sha256 == hashlib.sha256(WEIGHTS.read_bytes()).digest()


def test_qemu_ends_with_the_simulator(tmp_path: Path) -> None:
    """SIGTERM to `qcat sim cat --emulate` ends its QEMU too (no emulator outlives it)."""
    require_qemu()
    with cat_sim(tmp_path / "home", kind="emulate") as sim:
        children = _children(sim.proc.pid)
        assert any(_comm(pid) == emulator.QEMU[:15] for pid in children), children
        assert sim.stop() == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _comm(pid) == "", pid


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
