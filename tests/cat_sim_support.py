"""Helpers for tests that talk to a simulated unit through a real pseudo-terminal.

`cat_sim(home, *flags)` starts `qcat sim cat --timing fast ...` as a child process and reads the
port's path from its first line (`unit_sim(home, "die", ...)` the same for a die unit); `Controller(path)` is the controller's side made only of the
production pieces (installation.units.link.Link and the installation.units.protocol codec): it
sends messages and collects what the unit answers, keeping heartbeats apart. `exhibit_job(seed)`
makes a real exhibit's GENERATE (203 bytes -> quantum.latent -> quantize_latent) and its golden
numpy render. The supervisor's tests can reuse all three.

Two builds of the unit serve the same contract: `kind="host"` (the firmware core built for this
machine, firmware/sim.py) and `kind="emulate"` (`qcat sim cat --emulate`: the unit's own rv32
image under qemu-system-riscv32, skipped where QEMU or the cross compiler is missing, failed in
CI). Tests of the protocol and the supervisor run against both (`SIM_KINDS`); the host
simulator's faults and timing model exist only there.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installation.units import protocol
from installation.units.link import Link

REPO = Path(__file__).resolve().parent.parent
# The first start may build libcatunit.so (make host: a few seconds on a busy machine).
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 5.0
SIM_KINDS = ("host", "emulate")
# How long a unit may take to finish a demo job nobody reads (the emulated one runs rv32 code
# under QEMU: about 0.4 s measured, more on a loaded machine).
JOB_SETTLE_S = {"host": 0.2, "emulate": 2.0}


@dataclass
class SimUnit:
    """A running `qcat sim cat`: its process, the port it announced, its stderr file."""

    proc: subprocess.Popen[bytes]
    path: str
    stderr_file: Path
    _line: bytearray = field(default_factory=bytearray)

    def next_path(self, timeout_s: float = REPLY_TIMEOUT_S) -> str:
        """The next line the simulator prints: the new port after a re-plug."""
        return _read_line(self.proc, timeout_s)

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text()

    def stop(self) -> int:
        """SIGTERM and its exit status (the simulator exits 0 quietly)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = bytearray()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise TimeoutError(f"the simulator printed no line within {timeout_s} s "
                               f"(so far {bytes(line)!r})")
        byte = proc.stdout.read(1)
        if not byte:
            raise EOFError(f"the simulator ended (exit {proc.wait()}) before printing a line")
        line += byte
    return line.decode().strip()


def kind_flags(kind: str) -> tuple[str, ...]:
    """The flags that choose the unit's build: none for the host build, `--emulate` for the
    rv32 image under QEMU (the test is skipped where QEMU or the cross compiler is missing)."""
    if kind == "host":
        return ()
    assert kind == "emulate", kind
    from tests.cross_support import require_qemu

    require_qemu()
    return ("--emulate",)


@contextmanager
def cat_sim(home: Path, *flags: str, timing: str = "fast", kind: str = "host") -> Iterator[SimUnit]:
    """`qcat sim cat --timing TIMING FLAGS...` on a pty for the duration of the block (`kind`:
    "host" or "emulate", see kind_flags); leaving it normally stops the simulator with SIGTERM
    and checks it exited 0 without a traceback."""
    with unit_sim(home, "cat", "--timing", timing, *kind_flags(kind), *flags) as unit:
        yield unit


@contextmanager
def unit_sim(home: Path, kind: str, *flags: str, stdin: int | None = None) -> Iterator[SimUnit]:
    """`qcat sim KIND FLAGS...` (cat or die) as cat_sim runs it; `stdin` a file descriptor for
    the simulator's standard input (a terminal's, for the die's keys), else none."""
    home.mkdir(parents=True, exist_ok=True)
    err = home / f"sim-{time.monotonic_ns()}.stderr"
    env = {**os.environ, "QCAT_HOME": str(home)}
    env.pop("QCAT_CONFIG", None)
    with open(err, "wb") as err_out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "installation.cli", "sim", kind, *flags],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=err_out, env=env, cwd=REPO, bufsize=0)
    try:
        try:
            path = _read_line(proc, START_TIMEOUT_S)
        except (TimeoutError, EOFError) as exc:
            raise AssertionError(f"{exc}; stderr: {err.read_text()}") from None
        unit = SimUnit(proc, path, err)
        yield unit
        # Leaving the block stops it as a service manager would: SIGTERM, exit 0, no traceback.
        code = unit.stop()
        assert code == 0, f"the simulator exited {code}; stderr: {unit.stderr}"
        assert "Traceback" not in unit.stderr, unit.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


Received = protocol.Message | protocol.FrameError


class Controller:
    """The controller's end of the cable, from production parts only."""

    def __init__(self, port: str) -> None:
        self.link = Link.open(port)
        self.decoder = protocol.FrameDecoder()
        self.seq = 0
        self.heartbeats: list[protocol.Message] = []
        self.frames: list[protocol.Frame] = []  # every good frame, in order (seq checks)
        self._pending: list[Received] = []

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, name: str, **fields: Any) -> int:
        """One message; returns the seq it went out with. Leads with 0x00 (docs/protocol.md)."""
        seq = self.seq
        self.seq = (self.seq + 1) % protocol.SEQ_MODULO
        self.link.write(b"\0" + protocol.encode_message(protocol.message(name, **fields), seq))
        return seq

    def send_raw(self, data: bytes) -> None:
        self.link.write(data)

    def hello(self) -> protocol.Message:
        self.send("HELLO", protocol=protocol.VERSION, kind=protocol.UnitKind["CONTROLLER"],
                  serial=b"test".ljust(16, b"\0"), firmware=0x000100,
                  weights_sha256=bytes(32), clips_sha256=bytes(32),
                  max_payload=protocol.MAX_PAYLOAD)
        return self.expect("HELLO")

    def receive(self, timeout_s: float = REPLY_TIMEOUT_S) -> Received | None:
        """The next message or frame error (heartbeats are set aside in `heartbeats`)."""
        deadline = time.monotonic() + timeout_s
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for item in self.decoder.feed(self.link.read(4096, min(left, 0.05))):
                if isinstance(item, protocol.FrameError):
                    self._pending.append(item)
                    continue
                self.frames.append(item)
                msg = protocol.decode_message(item)
                if msg.SPEC.name == "HEARTBEAT":
                    self.heartbeats.append(msg)
                else:
                    self._pending.append(msg)
        return self._pending.pop(0)

    def until(self, name: str, timeout_s: float = REPLY_TIMEOUT_S) -> list[Received]:
        """Everything received up to and including the first `name` message."""
        got: list[Received] = []
        deadline = time.monotonic() + timeout_s
        while True:
            item = self.receive(max(0.0, deadline - time.monotonic()))
            if item is None:
                raise AssertionError(f"no {name} within {timeout_s} s; got {got!r}"[:2000])
            got.append(item)
            if isinstance(item, protocol.Message) and item.SPEC.name == name:
                return got

    def expect(self, name: str, timeout_s: float = REPLY_TIMEOUT_S) -> protocol.Message:
        """The next message, which must be `name`."""
        item = self.receive(timeout_s)
        assert isinstance(item, protocol.Message) and item.SPEC.name == name, \
            f"expected {name}, got {item!r}"[:2000]
        return item

    def silent(self, seconds: float) -> list[Received]:
        """What arrives (heartbeats aside) within `seconds`: a quiet unit gives []."""
        got: list[Received] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            item = self.receive(left)
            if item is not None:
                got.append(item)
        return got


@dataclass(frozen=True)
class ExhibitJob:
    """A real exhibit's bytes, its GENERATE fields and its golden (numpy reference) image."""

    entropy: bytes
    latent: tuple[int, ...]
    verdict: int
    golden: bytes

    @property
    def golden_sha256(self) -> bytes:
        return hashlib.sha256(self.golden).digest()


def exhibit_job(weights: Path, seed: int) -> ExhibitJob:
    from installation.engines import render, weight_image
    from models.reference import quantize_latent
    from quantum.latent import split_exhibit

    entropy = random.Random(seed).randbytes(203)
    z, verdict = split_exhibit(entropy)
    latent_q = quantize_latent(z, weight_image(weights))
    golden = render("numpy", weights, latent_q).rgb.tobytes()
    return ExhibitJob(entropy, tuple(int(v) for v in latent_q), verdict.code, golden)


def image_of(messages: list[Received], exhibit: int) -> bytes:
    """The image assembled from IMAGE chunks (in the order they came, checked contiguous)."""
    out = bytearray()
    for m in messages:
        if isinstance(m, protocol.Message) and m.SPEC.name == "IMAGE" and m.exhibit == exhibit:
            assert m.offset == len(out), f"chunk at {m.offset}, expected {len(out)}"
            out += m.data
    return bytes(out)
