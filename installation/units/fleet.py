"""A simulated fleet: N `qcat sim cat` processes the dashboard, the kiosk and the demo run on.

Each unit is a real child process (`python -m installation.cli sim cat --serial SIM-n --link
<home>/run/sim-n ...`) serving the units' own C core on a pseudo-terminal, so everything above it
(the supervisor, the station, the screens) runs the production code path. The fleet's ports are
the *links*, not the /dev/pts nodes: a link follows its unit across re-plugs (`--unplug-after`)
as /dev/serial/by-id/ links follow a USB unit, so the supervisor finds it again.

What it must never do is leave a simulator behind. `stop()` (and leaving the `with` block) sends
SIGTERM and then SIGKILL to what is left; if the parent dies without a word (SIGKILL, a closed
terminal), Linux ends the children for it: each child asks the kernel for SIGTERM when its parent
goes (`prctl(PR_SET_PDEATHSIG)`, set between fork and exec; a parent already gone by then is
noticed by `getppid()` and the child ends itself). The kernel ties that signal to the *thread*
that forked the child, so start a fleet from a thread that lives as long as the fleet (the CLI's
main thread). Elsewhere than Linux the `with` block is the only guarantee.

The children run in their own session, so a Ctrl-C or Ctrl-Z typed at the dashboard's terminal is
the dashboard's alone. Their stderr goes to `<home>/logs/sim-n.log`. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from installation.errors import DeviceError, InputError

# The first start may build libcatunit.so (make host: tens of seconds on a busy machine).
START_TIMEOUT_S = 120.0
# After SIGTERM a simulator ends within a read slice; SIGKILL after this long.
STOP_TIMEOUT_S = 10.0
SERIAL_PREFIX = "SIM-"
LINK_PREFIX = "sim-"
TIMINGS = ("fast", "realistic")
DIE_SERIAL_PREFIX = "SIMDIE-"
DIE_EVERY_S = 8.0  # a simulated visitor presses a simulated die this often
MAX_UNITS = 16  # each is a process and a pty; more is a typing mistake, not a bigger room
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class SimSpec:
    """One simulated unit: its serial (what HELLO says), its timing, and `qcat sim cat` fault
    options as they are typed (e.g. `("--unplug-after", "400", "--seed", "3")`). A die
    (`kind` "die") has no timing; its options are `qcat sim die`'s (its `--schedule`)."""

    serial: str
    timing: str = "realistic"
    faults: tuple[str, ...] = ()
    kind: str = "cat"


def specs(count: int, *, timing: str = "realistic", faults: Sequence[str] = (), dice: int = 0,
          die_every_s: float = DIE_EVERY_S) -> list[SimSpec]:
    """`count` alike cat units SIM-1..SIM-count, then `dice` die units SIMDIE-1.. whose button
    a visitor presses every `die_every_s` (InputError for a count out of range)."""
    if not 0 <= count <= MAX_UNITS or not 0 <= dice <= MAX_UNITS or count + dice < 1:
        raise InputError(f"--sim {count} --sim-dice {dice}: give between 1 and {MAX_UNITS} "
                         "simulated units of each kind")
    if timing not in TIMINGS:
        raise InputError(f"timing must be one of {', '.join(TIMINGS)}, not {timing!r}")
    cats = [SimSpec(f"{SERIAL_PREFIX}{n}", timing, tuple(faults)) for n in range(1, count + 1)]
    return cats + [SimSpec(f"{DIE_SERIAL_PREFIX}{n}", faults=("--schedule", f"{die_every_s:g}"),
                           kind="die") for n in range(1, dice + 1)]


@dataclass
class SimProcess:
    """One running simulator: its link (the port to open), the pty it announced last, its log."""

    spec: SimSpec
    link: Path
    log: Path
    proc: subprocess.Popen[bytes]
    pty: str = ""
    plugs: int = 0  # how many ptys it announced (1 + re-plugs)
    _lines: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid


class Fleet:
    """N simulated units (cats, dice) for one home, started by `start()` (or `with`), stopped by `stop()`.

    `home`: the qcat home the units read their card from (the weight image and clip bank the
    controller uses) and where `run/` holds their links and `logs/` their stderr. `config`: the
    config file the controller was given, handed on so both agree on the weights."""

    def __init__(self, home: Path, units: Sequence[SimSpec], *, config: Path | None = None,
                 python: str = sys.executable,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.home = Path(home).absolute()
        self.units_spec = list(units)
        self.config = Path(config).absolute() if config is not None else None
        self.python = python
        self.start_timeout_s = start_timeout_s
        self.units: list[SimProcess] = []
        self._lock = threading.Lock()

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def ports(self) -> list[str]:
        """The links to open, one per unit, in order (stable across re-plugs)."""
        return [str(u.link) for u in self.units]

    # -- start -----------------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Start every unit and wait until each announced its port; returns `ports`. A unit that
        does not come up stops the whole fleet and raises DeviceError with its log's last line."""
        if self.units:
            return self.ports
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        try:
            for n, spec in enumerate(self.units_spec, start=1):
                self.units.append(self._spawn(n, spec))
            deadline = time.monotonic() + self.start_timeout_s
            for unit in self.units:
                self._first_line(unit, deadline)
        except BaseException:
            self.stop()
            raise
        return self.ports

    def _command(self, spec: SimSpec, link: Path) -> list[str]:
        cmd = [self.python, "-m", "installation.cli", "--home", str(self.home)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        timing = ["--timing", spec.timing] if spec.kind == "cat" else []
        return cmd + ["sim", spec.kind, *timing, "--serial", spec.serial, "--link", str(link),
                      *spec.faults]

    def _spawn(self, n: int, spec: SimSpec) -> SimProcess:
        link = self.run_dir / f"{LINK_PREFIX}{n}"
        if link.is_symlink():  # left by a fleet that was SIGKILLed with its children
            link.unlink()
        log_path = self.home / "logs" / f"{LINK_PREFIX}{n}.log"
        with open(log_path, "ab") as err:
            proc = subprocess.Popen(
                self._command(spec, link), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=err, env=child_env(), start_new_session=True,
                preexec_fn=die_with_parent(), bufsize=0)
        return SimProcess(spec, link, log_path, proc)

    def _first_line(self, unit: SimProcess, deadline: float) -> None:
        assert unit.proc.stdout is not None
        line = _read_line(unit.proc.stdout, deadline)
        if not line:
            code = unit.proc.poll()
            why = (f"it ended (exit {code})" if code is not None
                   else f"it announced no port within {self.start_timeout_s:g} s")
            raise DeviceError(f"simulated unit {unit.spec.serial} did not start: {why}: "
                              f"{_last_line(unit.log)}",
                              hint=f"its log is {unit.log}")
        unit.pty, unit.plugs = line, 1
        # Re-plugs print new ptys; keep reading them so the pipe never fills (and for `pty`).
        unit._lines = threading.Thread(target=self._follow, args=(unit,), daemon=True,
                                       name=f"sim {unit.spec.serial} lines")
        unit._lines.start()

    def _follow(self, unit: SimProcess) -> None:
        assert unit.proc.stdout is not None
        for raw in iter(unit.proc.stdout.readline, b""):
            with self._lock:
                unit.pty = raw.decode(errors="replace").strip()
                unit.plugs += 1

    # -- stop ------------------------------------------------------------------------------------

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to every unit, SIGKILL to any still running after `timeout_s`; idempotent."""
        for unit in self.units:
            if unit.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    unit.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for unit in self.units:
            try:
                unit.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                unit.proc.kill()
                unit.proc.wait()
            if unit._lines is not None:
                unit._lines.join(1.0)
            if unit.proc.stdout is not None:
                unit.proc.stdout.close()
            if unit.link.is_symlink():  # a SIGKILLed unit could not remove its own
                unit.link.unlink()

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def child_env() -> dict[str, str]:
    """The environment of a child `python -m installation...`: this copy of qcat first on the
    path (so a checkout runs its own code even where another copy is installed)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root, *rest])
    return env


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive SIGTERM when its parent dies (Linux), or None.

    Resolved here, in the parent: between fork and exec only the already-bound C call and
    getppid run (no import, no allocation worth the name), which is what makes a preexec_fn
    tolerable in a process with threads."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        prctl = ctypes.CDLL(name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    parent = os.getpid()
    term = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: end now
            os.kill(os.getpid(), term)

    return preexec


def _read_line(stream: IO[bytes], deadline: float) -> str:
    """One line from a child's stdout, or "" when it ended or the deadline passed."""
    line = bytearray()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream], [], [], left)[0]:
            return ""
        byte = stream.read(1)
        if not byte:
            return ""
        line += byte
    return line.decode(errors="replace").strip()


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(its log is empty)"
