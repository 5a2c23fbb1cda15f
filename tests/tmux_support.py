"""Driving qcat in a real terminal, as a person does: a tmux session on its own server socket.

`Tmux.start(argv, env)` runs one command in a detached 200x60 session whose pane stays after the
command ends (so its exit status can be read); `screen()` is what a person would see, `keys()`
types, `wait_for(text)` polls the screen. `qcat_processes(home)` finds every qcat process (the
dashboard and its simulators) still running for a home, the "nothing left behind" check.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

TMUX = shutil.which("tmux")
NO_TMUX = "tmux is not installed (make test installs it from the Makefile's DEB_PACKAGES)"
COLUMNS, ROWS = 200, 60


class Tmux:
    """One detached session running one command, on a private tmux server."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.rc_file = Path()

    @classmethod
    def start(cls, argv: Sequence[str], env: dict[str, str], cwd: Path) -> Tmux:
        """Run `argv` in the pane under `sh`, which writes its exit status to a file: tmux
        itself does not always reap a pane's process promptly enough to report it."""
        assert TMUX, NO_TMUX
        t = cls(f"qcat-test-{uuid.uuid4().hex[:8]}")
        t.rc_file = Path(tempfile.mkdtemp(prefix="qcat-tmux-")) / "rc"
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        script = f'"$@"; echo $? > {shlex.quote(str(t.rc_file))}'
        t._tmux("-f", "/dev/null", "new-session", "-d", "-x", str(COLUMNS), "-y", str(ROWS),
                "-s", "qcat", "-c", str(cwd), *env_args,
                # pytest's COLUMNS=80 and LINES=24 would win over the pane's real size
                "env", "-u", "COLUMNS", "-u", "LINES", "sh", "-c", script, "sh", *argv,
                ";", "set-option", "-t", "qcat", "remain-on-exit", "on")
        return t

    def _tmux(self, *args: str) -> str:
        assert TMUX
        return subprocess.run([TMUX, "-L", self.socket, *args], check=True, text=True,
                              capture_output=True, timeout=30).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "qcat")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "qcat", *keys)

    def _pane(self, fmt: str) -> str:
        return self._tmux("display-message", "-p", "-t", "qcat", fmt).strip()

    @property
    def pid(self) -> int:
        """The program's pid (the child of the pane's shell)."""
        shell = int(self._pane("#{pane_pid}"))
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == shell:
                    return int(entry.name)
        raise AssertionError(f"the pane's shell {shell} runs no program")

    def exit_status(self) -> int | None:
        """The program's exit status once it ended, else None."""
        try:
            return int(self.rc_file.read_text())
        except (OSError, ValueError):  # not yet, or being written
            return None

    def wait_for(self, check: str | Callable[[str], bool], timeout_s: float,
                 what: str = "") -> str:
        """Poll the screen until it shows `check` (text, or a predicate); the screen then."""
        test = (lambda s: check in s) if isinstance(check, str) else check
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if test(screen):
                return screen
            time.sleep(0.3)
        raise AssertionError(f"the screen never showed {what or check!r} within {timeout_s} s; "
                             f"it shows:\n{screen}")

    def wait_exit(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.exit_status()
            if status is not None:
                return status
            time.sleep(0.2)
        raise AssertionError(f"the program did not end within {timeout_s} s:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run([TMUX or "tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30)
        shutil.rmtree(self.rc_file.parent, ignore_errors=True)


def qcat_processes(home: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every running process whose command line names `home`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (str(home) in cmd and "installation.cli" in cmd and state != "Z"
                and not cmd.startswith(TMUX or "tmux")):  # (the tmux server names it too)
            found.append((int(entry.name), cmd.strip()))
    return found


def wait_no_qcat(home: Path, timeout_s: float = 15.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout_s
    while (left := qcat_processes(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
