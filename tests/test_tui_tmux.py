"""The whole program in a real terminal (tmux), as a person uses it.

`qcat demo` on a terminal: two simulated units start, the dashboard opens, a cat appears with its
verdict, `p` pauses the loop and `g` makes exactly one more cat, `q` quits; afterwards the
gallery verifies, the pool's audit passes and no simulator is left running. `qcat kiosk --sim 1`
ends gracefully (exit 0, nothing left) on SIGTERM and on SIGHUP, and a kiosk killed outright
mid-job (a power cut) leaves its job pending, completed from the same bytes after a restart.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.tmux_support import NO_TMUX, TMUX, Tmux, qcat_processes, wait_no_qcat

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.skipif(TMUX is None, reason=NO_TMUX),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptys, /proc")]
# The first start may build the units' C library; a cat takes about 3 s and its verdict as long
# as it is spoken (realistic timing), so a screen waits this long for what it should show.
SHOW_S = 60.0


def env_for(home: Path) -> dict[str, str]:
    """The program's environment. Half blocks: what these tests read is the screen's text, and
    asking tmux for a graphics protocol first (tests/test_tui_graphics.py covers that) only
    adds a terminal round trip to every start."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "qcat.toml").write_text('[tui]\ngraphics = "halfblocks"\n')
    return {"QCAT_HOME": str(home), "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}


def exhibits(home: Path) -> list[tuple[int, str, str]]:
    """(id, made by, verdict) of every exhibit, oldest first (read-only, beside the running app)."""
    db = home / "gallery.sqlite"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
            return [(i, p, v) for i, p, v in con.execute(
                "SELECT id, engine, verdict_text FROM exhibits ORDER BY id")]
    except sqlite3.OperationalError as exc:  # the app is creating the archive just now
        if "no such table" in str(exc):
            return []
        raise


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


def qcat(home: Path, *args: str) -> tuple[int, str]:
    import subprocess

    r = subprocess.run([sys.executable, "-m", "installation.cli", "--home", str(home), *args],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_demo_on_a_terminal_cats_appear_a_key_makes_one_more_and_quit_leaves_all_sound(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    tmux = Tmux.start([sys.executable, "-m", "installation.cli", "demo", "--no-speech"],
                      env_for(home), REPO)
    try:
        # A cat arrives with its verdict, on the screen (the newest exhibit's caption).
        wait_until(lambda: exhibits(home), SHOW_S, "a first exhibit")
        first = exhibits(home)[0]
        assert first[1].startswith("unit:cat:SIM-"), "made by a simulated unit, not here"
        tmux.wait_for(first[2][:40], SHOW_S, "the first verdict")
        screen = tmux.screen()
        assert "SIM-1" in screen or "sim-1" in screen, "the units table names the units"

        # p: no new jobs; once both cat units' rows show `paused`, nothing more arrives (the
        # die's row and the header say paused too, so counting the word is not enough: a cat may
        # still be finishing its job)...
        tmux.keys("p")

        def cats_paused(screen: str) -> bool:
            rows = [line.lower() for line in screen.splitlines() if " paused " in line]
            return all(any(name in row for row in rows) for name in ("sim-1", "sim-2"))

        tmux.wait_for(cats_paused, SHOW_S, "both cat units paused")
        before = len(exhibits(home))
        time.sleep(2.0)
        assert len(exhibits(home)) == before, "a paused loop took a job"
        # ...and g makes exactly one, on the selected unit, shown when it arrives.
        tmux.keys("g")
        wait_until(lambda: len(exhibits(home)) == before + 1, SHOW_S, "the requested exhibit")
        made = exhibits(home)[-1]
        tmux.wait_for(made[2][:40], SHOW_S, "the requested exhibit's verdict")
        time.sleep(2.0)
        assert len(exhibits(home)) == before + 1, "g made more than one exhibit"

        sims = qcat_processes(home)
        assert len(sims) == 3, sims  # two cat units and the die a simulated visitor rolls
        assert sum(" sim die " in cmd for _, cmd in sims) == 1, sims
        tmux.keys("q")
        assert tmux.wait_exit(SHOW_S) == 0, tmux.screen()
        assert "made by the simulated units in this demo" in tmux.screen()
    finally:
        tmux.kill()
    assert wait_no_qcat(home) == [], "a simulator outlived the dashboard"
    code, out = qcat(home, "gallery", "verify", "--all")
    assert code == 0, out
    code, out = qcat(home, "entropy", "audit")
    assert code == 0, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_kiosk_ends_gracefully_on_sigterm_and_sighup(tmp_path: Path, sig: signal.Signals) -> None:
    home = tmp_path / "home"
    tmux = Tmux.start([sys.executable, "-m", "installation.cli", "kiosk", "--sim", "1"],
                      env_for(home), REPO)
    try:
        wait_until(lambda: exhibits(home), SHOW_S, "a first exhibit")
        tmux.wait_for(exhibits(home)[0][2][:40], SHOW_S, "the first verdict in the kiosk")
        tmux.keys("q")  # a visitor's key: the kiosk has no quit key
        tmux.keys("C-q")
        time.sleep(1.0)
        assert tmux.exit_status() is None, "the kiosk ended on a visitor's key"
        os.kill(tmux.pid, sig)
        assert tmux.wait_exit(SHOW_S) == 0, tmux.screen()
    finally:
        tmux.kill()
    assert wait_no_qcat(home) == [], "a simulator outlived the kiosk"
    code, out = qcat(home, "gallery", "verify", "--all")
    assert code == 0, out  # every drawn job finished or stays pending: nothing half-written
    code, out = qcat(home, "entropy", "audit")
    assert code == 0, out


def test_closing_the_terminal_ends_the_dashboard_and_leaves_nothing(tmp_path: Path) -> None:
    """The window closed (tmux gone): SIGHUP on a hung-up terminal, whose screen Textual can no
    longer close; the station stops first and the process still ends, its simulators with it."""
    home = tmp_path / "home"
    tmux = Tmux.start([sys.executable, "-m", "installation.cli", "tui", "--sim", "2"],
                      env_for(home), REPO)
    try:
        wait_until(lambda: exhibits(home), SHOW_S, "a first exhibit")
        pid = tmux.pid
        assert len(qcat_processes(home)) == 2
    finally:
        tmux.kill()
    wait_until(lambda: not Path(f"/proc/{pid}").exists()
               or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
               SHOW_S, "the dashboard's end")
    assert wait_no_qcat(home) == [], "a simulator outlived the closed terminal"
    code, out = qcat(home, "gallery", "verify", "--all")
    assert code == 0, out
    code, out = qcat(home, "entropy", "audit")
    assert code == 0, out


def pending_draws(home: Path) -> set[int]:
    """Exhibit draws without an exhibit yet (read-only, beside the running kiosk)."""
    pool, gallery = home / "entropy.sqlite", home / "gallery.sqlite"
    if not (pool.exists() and gallery.exists()):
        return set()
    try:
        with sqlite3.connect(f"file:{pool}?mode=ro", uri=True, timeout=10) as con:
            drawn = {i for (i,) in con.execute(
                "SELECT id FROM draws WHERE purpose LIKE 'exhibit:%'")}
        with sqlite3.connect(f"file:{gallery}?mode=ro", uri=True, timeout=10) as con:
            archived = {i for (i,) in con.execute("SELECT draw_id FROM exhibits")}
    except sqlite3.OperationalError as exc:  # a database being created just now
        if "no such table" in str(exc):
            return set()
        raise
    return drawn - archived


def test_kiosk_killed_mid_job_as_by_a_power_cut_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL (no handler runs, as when the power goes) while a unit holds a drawn job: the
    archive and the pool stay consistent, the job stays pending with its bytes, and the kiosk
    started again completes it from those same bytes."""
    home = tmp_path / "home"
    tmux = Tmux.start([sys.executable, "-m", "installation.cli", "kiosk", "--sim", "2"],
                      env_for(home), REPO)
    try:
        wait_until(lambda: len(exhibits(home)) >= 1 and pending_draws(home), SHOW_S,
                   "an exhibit, then a job drawn and under way")
        os.kill(tmux.pid, signal.SIGKILL)
        cut = pending_draws(home)
    finally:
        tmux.kill()
    assert cut, "no job was under way at the cut"
    assert wait_no_qcat(home) == [], "a simulator outlived the killed kiosk"
    code, out = qcat(home, "gallery", "verify", "--all")
    assert code == 0 and "pending" in out, out  # nothing half-written; the cut job is pending
    code, out = qcat(home, "entropy", "audit")
    assert code == 0, out
    tmux = Tmux.start([sys.executable, "-m", "installation.cli", "kiosk", "--sim", "1"],
                      env_for(home), REPO)
    try:
        wait_until(lambda: not (cut & pending_draws(home)), SHOW_S,
                   "the pending jobs completed after the restart")
        os.kill(tmux.pid, signal.SIGTERM)
        assert tmux.wait_exit(SHOW_S) == 0, tmux.screen()
    finally:
        tmux.kill()
    assert wait_no_qcat(home) == []
    code, out = qcat(home, "gallery", "verify", "--all")  # the bytes are the draw's: F1 + E1
    assert code == 0, out
    code, out = qcat(home, "entropy", "audit")
    assert code == 0, out
