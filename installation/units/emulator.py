"""The cat unit's own rv32 firmware under QEMU, its serial line on a pseudo-terminal:
`qcat sim cat --emulate`.

The host simulator (firmware/sim.py) runs the unit's C core compiled for this machine; this runs
the unit's whole RISC-V image instead (`make qemu-cat-unit`: unit_main.c, the core, the engine,
the framing, as `make rv32` compiles them, with cat/board_qemu.c as the board) on
`qemu-system-riscv32 -machine virt`. What a controller meets on the pty is the same contract:
the port's path announced once, the same protocol, the same bytes.

How the line is wired: QEMU's NS16550A UART is `-serial pty`; QEMU prints "char device
redirected to /dev/pts/N" and that path is announced. QEMU drops what the guest sends while no one
has the pty's slave open and, after a controller closes it, hears the next controller only once
the guest sends again (up to a heartbeat later). So this process opens the slave itself and holds
it, never reading, as the host simulator holds its own pty's slave: QEMU stays connected, a
controller's request is heard at once, and what the unit sends with no controller reading waits
in the pty (a controller's port open flushes it; when it is full, the board drops whole frames,
as a USB unit drops packets nobody collects).

The guest's files are in a private working folder: WEIGHTS.QCW (a link to the weight image) and,
for a card folder, RESERVE.QCR and JOURNAL.QCJ (links to the card's own files: offline work
writes the card's journal, as the unit does); board_qemu.c opens them through semihosting. The
identity travels on the semihosting command line, hex-encoded.

QEMU runs in its own session (a Ctrl-C at the terminal is this process's alone, which then ends
QEMU) and gets SIGTERM from the kernel if this process dies without a word. Never prints: the
caller hands in `announce(path)` and `note(sentence)`.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from installation.errors import DeviceError, ExternalError, ToolMissing
from installation.units.fleet import die_with_parent

if TYPE_CHECKING:
    from firmware.cat_unit import Identity

QEMU = "qemu-system-riscv32"
QEMU_PACKAGE = "qemu-system-misc"
RV_CC = "riscv64-unknown-elf-gcc"
RV_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"
ELF = Path("qemu") / "cat_unit_qemu.elf"  # under the firmware's build folder
MAKE_TARGET = "qemu-cat-unit"
BUILD_TIMEOUT_S = 300
# QEMU announces its pty within milliseconds; a loaded machine gets generous room.
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
POLL_S = 0.05
PTY_LINE = re.compile(r"char device redirected to (/dev/\S+)")
# The names board_qemu.c opens in QEMU's working folder (the card's own file names).
WEIGHTS_NAME, RESERVE_NAME, JOURNAL_NAME = "WEIGHTS.QCW", "RESERVE.QCR", "JOURNAL.QCJ"
QEMU_STDERR = "qemu.stderr"


def _require(tool: str, package: str, what: str) -> None:
    if shutil.which(tool) is None:
        raise ToolMissing(f"{tool} is not installed, so {what}",
                          hint=f"sudo apt-get install {package}")


def build_elf(note: Callable[[str], None] = lambda s: None) -> Path:
    """The emulated unit's image, built with `make qemu-cat-unit` when it is missing or older
    than any firmware source (into the build folder the host libraries use); its path. `note`
    hears that a build starts (a few seconds: the caller's user may be waiting)."""
    from firmware import cat_engine

    out = cat_engine.build_dir()
    elf = out / ELF
    if not cat_engine.is_stale(elf):
        return elf
    _require(RV_CC, RV_PACKAGES, "the cat unit's firmware cannot be built for QEMU")
    _require("make", "make", "the cat unit's firmware cannot be built for QEMU")
    out.mkdir(parents=True, exist_ok=True)
    # Several emulators may start at once (a test's units, a fleet): one builds, the rest wait.
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cat_engine.is_stale(elf):
            return elf
        cmd = ["make", "--no-print-directory", "-C", str(cat_engine.FIRMWARE_DIR), MAKE_TARGET,
               f"BUILD={out}"]
        note(f"building the unit's RISC-V image for QEMU (make {MAKE_TARGET}) into {out}")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ExternalError(f"building the cat unit's firmware for QEMU took over "
                                f"{BUILD_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ExternalError("building the cat unit's firmware for QEMU failed: "
                                + " / ".join(tail),
                                hint=f"run `make -C {cat_engine.FIRMWARE_DIR} {MAKE_TARGET}` to "
                                     "see the whole output")
        if cat_engine.is_stale(elf):  # make found it current by its own prerequisites
            os.utime(elf)
    return elf


def qemu_command(elf: Path, identity: Identity) -> list[str]:
    """The QEMU command line: the virt board, no display or monitor, the first UART on a new
    pty, semihosting with the identity as the guest's command line (board_qemu.c parses it)."""
    serial = identity.serial.encode("ascii")
    args = ["cat-unit", f"serial={serial.hex()}", f"weights={identity.weights_sha256.hex()}",
            f"clips={identity.clips_sha256.hex()}"]
    return [QEMU, "-machine", "virt", "-bios", "none", "-display", "none", "-monitor", "none",
            "-serial", "pty",
            "-semihosting-config", "enable=on,target=native," + ",".join(f"arg={a}" for a in args),
            "-kernel", str(elf.absolute())]


@dataclass(frozen=True)
class EmulatedCard:
    """What the guest's working folder links to: the weight image and, for a card folder, the
    card's reserve and journal (both or neither)."""

    weights: Path
    reserve: Path | None = None
    journal: Path | None = None


@dataclass
class EmulatorRun:
    """What `serve` saw: the port, the start-up time (QEMU started to the port announced) and
    QEMU's exit status once ended."""

    port: str = ""
    start_s: float = 0.0
    qemu_exit: int | None = None


class CatEmulator:
    """One emulated cat unit. `serve(stop)` builds the image if needed, starts QEMU, announces
    the port and runs until `stop()`; QEMU is ended (SIGTERM, then SIGKILL) on the way out,
    whatever happens. A QEMU that ends on its own is one sentence (ExternalError) with the tail
    of what it said."""

    def __init__(self, files: EmulatedCard, identity: Identity, *,
                 announce: Callable[[str], None] = lambda p: None,
                 note: Callable[[str], None] = lambda s: None, elf: Path | None = None) -> None:
        self.files = files
        self.identity = identity
        self._announce = announce
        self._note = note
        self._elf = elf
        self.run = EmulatorRun()

    def serve(self, stop: Callable[[], bool]) -> EmulatorRun:
        _require(QEMU, QEMU_PACKAGE, "the cat unit's firmware cannot be emulated")
        elf = self._elf or build_elf(self._note)
        with tempfile.TemporaryDirectory(prefix="qcat-emulated-cat-") as folder:
            work = Path(folder)
            self._link_files(work)
            started = time.monotonic()
            with open(work / QEMU_STDERR, "wb") as err:
                proc = subprocess.Popen(qemu_command(elf, self.identity), cwd=work,
                                        stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                        start_new_session=True, preexec_fn=die_with_parent())
            slave = -1
            try:
                path = self._wait_for_port(proc, work / QEMU_STDERR, stop)
                if path is None:
                    return self.run
                # Held, never read: QEMU stays connected across a controller's close and reopen.
                try:
                    slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
                except OSError as exc:
                    raise DeviceError(f"cannot open {path}, the pseudo-terminal {QEMU} made: "
                                      f"{exc.strerror}") from None
                self.run.port = path
                self.run.start_s = time.monotonic() - started
                self._announce(path)
                while not stop():
                    if proc.poll() is not None:
                        raise self._ended(proc, work / QEMU_STDERR)
                    time.sleep(POLL_S)
            finally:
                if slave >= 0:
                    os.close(slave)
                self.run.qemu_exit = _end(proc)
        return self.run

    def _link_files(self, work: Path) -> None:
        os.symlink(self.files.weights.absolute(), work / WEIGHTS_NAME)
        for name, target in ((RESERVE_NAME, self.files.reserve),
                             (JOURNAL_NAME, self.files.journal)):
            if target is not None:
                os.symlink(target.absolute(), work / name)

    def _wait_for_port(self, proc: subprocess.Popen[bytes], stderr: Path,
                       stop: Callable[[], bool]) -> str | None:
        """QEMU's pty, from its "char device redirected to" line; None when stopped first."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not stop():
            found = PTY_LINE.search(stderr.read_text(errors="replace"))
            if found:
                return found.group(1)
            if proc.poll() is not None:
                raise self._ended(proc, stderr)
            if time.monotonic() > deadline:
                raise ExternalError(f"{QEMU} named no pseudo-terminal within "
                                    f"{START_TIMEOUT_S:g} s")
            time.sleep(0.01)
        return None

    def _ended(self, proc: subprocess.Popen[bytes], stderr: Path) -> ExternalError:
        said = " / ".join(stderr.read_text(errors="replace").strip().splitlines()[-2:])
        return ExternalError(f"{QEMU} ended on its own (exit {proc.returncode})"
                             + (f": {said}" if said else ""),
                             hint="run the command again; if it repeats, run "
                                  f"`make -C firmware {MAKE_TARGET}` and QEMU by hand")


def _end(proc: subprocess.Popen[bytes]) -> int:
    """QEMU ended: SIGTERM, and SIGKILL when it does not go within STOP_TIMEOUT_S."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)
