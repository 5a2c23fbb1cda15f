"""`qcat tui`, `qcat kiosk`, `qcat tui --web` at the edges: what they refuse, in one sentence,
and the pieces they are made of (ports resolved as `units run`, the per-home station lock, the
browser session's command line, loopback or not).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from installation.errors import DeviceError
from installation.faces import (
    has_screen,
    is_loopback,
    station_lock,
    web_session_command,
)
from installation.units.link import resolve_ports

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv", [["tui"], ["tui", "--sim", "2"], ["kiosk"]])
def test_without_a_terminal_one_sentence_exit_2(qcat_subprocess, argv: list[str],
                                                qcat_home: Path) -> None:
    result = qcat_subprocess(*argv)  # stdin/stdout are pipes here
    assert result.code == 2
    assert "needs a terminal" in result.err and "Traceback" not in result.err
    assert "hint:" in result.err
    # nothing was started for a face that cannot show
    assert not (qcat_home / "run" / "sim-1").exists()


def test_host_without_web_is_a_usage_error(run_qcat) -> None:
    result = run_qcat("tui", "--host", "0.0.0.0")
    assert result.code == 2 and "go with --web" in result.err


def test_negative_sim_is_a_usage_error(run_qcat, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("installation.faces.has_screen", lambda *a: True)
    result = run_qcat("tui", "--sim", "-1")
    assert result.code == 2 and "--sim -1" in result.err


def test_ports_resolve_as_units_run_does() -> None:
    found = {"called": []}

    def discover(configured):
        found["called"].append(list(configured))
        return [*configured, "/dev/serial/by-id/usb-wch-1"]

    assert resolve_ports(["/dev/a", "/dev/a", "/dev/b"], ["/dev/c"], discover) == \
        ["/dev/a", "/dev/b"], "--port wins, duplicates once"
    assert found["called"] == [], "no discovery when ports were given"
    assert resolve_ports([], ["/dev/c"], discover) == ["/dev/c", "/dev/serial/by-id/usb-wch-1"]


def test_a_second_station_on_one_home_is_refused_naming_the_first(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from pathlib import Path\n"
         "from installation.faces import station_lock\n"
         f"with station_lock(Path({str(tmp_path)!r})):\n"
         "    print('held', flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DeviceError) as err, station_lock(tmp_path):
            pass
        assert f"pid {holder.pid}" in err.value.message
    finally:
        holder.kill()
        holder.wait()
    with station_lock(tmp_path):  # released when its holder died: taken again
        assert (tmp_path / "run" / "station.lock").read_text().strip() == str(os.getpid())


def test_screen_detection() -> None:
    class Tty:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    env = os.environ.pop("TEXTUAL_DRIVER", None)
    try:
        assert has_screen(Tty(True), Tty(True))
        assert not has_screen(Tty(True), Tty(False))
        assert not has_screen(Tty(False), Tty(True))
        os.environ["TEXTUAL_DRIVER"] = "textual.drivers.web_driver:WebDriver"
        assert has_screen(Tty(False), Tty(False)), "a browser session draws through pipes"
    finally:
        os.environ.pop("TEXTUAL_DRIVER", None)
        if env is not None:
            os.environ["TEXTUAL_DRIVER"] = env


def test_loopback() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "example.org"))


def test_browser_session_command_runs_this_qcat_over_fixed_ports(tmp_path: Path) -> None:
    cmd = web_session_command(tmp_path / "h", ["/r/sim-1", "/dev/tty ACM0"],
                              config=tmp_path / "c.toml", paused=True, python="/py")
    words = shlex.split(cmd)
    assert words[0] == f"PYTHONPATH={REPO}" or words[0].startswith(f"PYTHONPATH={REPO}:")
    assert words[1:] == ["exec", "/py", "-m", "installation.cli", "--home", str(tmp_path / "h"),
                         "--config", str(tmp_path / "c.toml"), "tui", "--port", "/r/sim-1",
                         "--port", "/dev/tty ACM0", "--paused"]
    assert "--sim" not in words and "--web" not in words, "sessions never start simulators"


def test_kiosk_help_names_the_apps_exit_chord(run_qcat) -> None:
    from tui.app import KIOSK_EXIT_CHORD

    result = run_qcat("kiosk", "--help")
    assert result.code == 0
    assert KIOSK_EXIT_CHORD in " ".join(result.out.split()), "the help and the app disagree"
