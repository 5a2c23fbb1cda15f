"""`qcat kiosk install`: the systemd unit that starts the kiosk on tty1 on boot, checked by
`systemd-analyze verify` where it exists; written atomically, never to /etc in a test."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from installation import kiosk_install
from installation.errors import InputError

ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def system_dir(tmp_path, monkeypatch):
    """The 'system unit folder' of these tests: never the real /etc/systemd/system."""
    folder = tmp_path / "etc-systemd-system"
    folder.mkdir()
    monkeypatch.setattr(kiosk_install, "SYSTEM_UNIT_DIR", folder)
    return folder


def unwritable_folder(tmp_path: Path) -> Path | None:
    """A folder this process cannot create files in (root ignores mode bits, so try /sys too)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for folder in (locked, Path("/sys")):
        probe = folder / ".qcat-probe"
        try:
            probe.write_bytes(b"")
        except OSError:
            return folder
        probe.unlink()
    return None


def settings(text: str) -> list[tuple[str, str]]:
    """(key, value) of every setting line of a unit, comments left out."""
    return [tuple(line.split("=", 1)) for line in text.splitlines()  # type: ignore[misc]
            if line and not line.startswith(("#", "["))]


def test_dry_run_prints_the_unit_and_writes_nothing(run_qcat, qcat_home, system_dir):
    r = run_qcat("kiosk", "install", "--dry-run")
    assert r.code == 0, r.err
    unit = dict(settings(r.out))
    assert unit["ExecStart"] == f"{sys.executable} -m installation.cli kiosk"
    assert unit["Restart"] == "always" and unit["RestartSec"] == "2"
    assert unit["User"] == ME
    assert ("Environment", f"QCAT_HOME={qcat_home}") in settings(r.out)
    assert unit["TTYPath"] == "/dev/tty1" and unit["StandardInput"] == "tty"
    assert unit["StandardError"] == "tty"  # Textual draws on stderr
    assert unit["Conflicts"] == "getty@tty1.service" and unit["WantedBy"] == "multi-user.target"
    assert "udev-settle" not in r.out.replace("udev to settle", "")
    # every setting line is explained by a comment just above it (or a block of them)
    lines = r.out.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[", "Description=")):
            above = lines[i - 1]
            assert above.startswith("#") or "=" in above, f"no comment above {line!r}"
    assert list(system_dir.iterdir()) == []
    assert "systemctl daemon-reload && sudo systemctl enable --now qcat-kiosk" in r.err
    assert "do_boot_behaviour B1" in r.err and "B2" in r.err


def test_the_qcat_script_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    script = tmp_path / "venv" / "bin" / "qcat"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert kiosk_install.qcat_command("venv/bin/qcat") == (str(script),)
    assert kiosk_install.qcat_command("/usr/lib/python3/site-packages/installation/cli.py",
                                      python="/opt/py/bin/python3") == (
        "/opt/py/bin/python3", "-m", "installation.cli")


def test_output_writes_the_unit_atomically(run_qcat, qcat_home, tmp_path, system_dir):
    target = tmp_path / "out" / "qcat-kiosk.service"
    target.parent.mkdir()
    target.write_text("an old unit\n")
    r = run_qcat("kiosk", "install", "--output", target)
    assert r.code == 0, r.err
    dry = run_qcat("kiosk", "install", "--dry-run").out
    assert target.read_text() == dry
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["qcat-kiosk.service"]  # no temp
    assert f"wrote {target}" in r.out
    assert f"sudo install -m 644 {target} {system_dir / 'qcat-kiosk.service'}" in r.out
    assert list(system_dir.iterdir()) == []


def test_the_default_target_is_the_system_unit_folder(run_qcat, system_dir):
    r = run_qcat("kiosk", "install")
    assert r.code == 0, r.err
    assert (system_dir / "qcat-kiosk.service").read_text().startswith("# qcat-kiosk.service")
    assert "sudo install" not in r.out  # already where systemd looks


def test_a_folder_it_cannot_write_is_one_sentence_exit_2(run_qcat, qcat_home, tmp_path,
                                                         monkeypatch):
    folder = unwritable_folder(tmp_path)
    if folder is None:
        pytest.skip("no folder here refuses this process a new file")
    # the default target in a folder only root may write: what a user without sudo meets
    monkeypatch.setattr(kiosk_install, "SYSTEM_UNIT_DIR", folder)
    r = run_qcat("kiosk", "install")
    assert r.code == 2 and "Traceback" not in r.err
    errors = [line for line in r.err.splitlines() if line.startswith("qcat: error:")]
    assert errors == [f"qcat: error: cannot write {folder / 'qcat-kiosk.service'}: "
                      "Permission denied"] or "Read-only" in r.err
    assert f"sudo {sys.executable} -m installation.cli --home {qcat_home} kiosk install " \
           f"--user {ME}" in r.err
    assert "--dry-run" in r.err and "--output FILE" in r.err
    assert not (folder / "qcat-kiosk.service").exists()
    # the same for --output into such a folder: the sudo command keeps the --output
    r = run_qcat("kiosk", "install", "--output", folder / "k.service")
    assert r.code == 2 and f"--output {folder / 'k.service'}" in r.err


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed on this machine")
def test_systemd_analyze_verify_accepts_the_unit(run_qcat, tmp_path):
    target = tmp_path / "qcat-kiosk.service"
    assert run_qcat("kiosk", "install", "--output", target).code == 0
    proc = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    complaints = [line for line in proc.stderr.splitlines() if "qcat-kiosk" in line]
    assert proc.returncode == 0 and complaints == [], proc.stderr
    # and it does complain about a broken one (the check is not vacuous)
    target.write_text(target.read_text().replace("Restart=always", "Restart=sometimes"))
    proc = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert "sometimes" in proc.stderr


def test_paths_with_spaces_percent_and_dollar_are_quoted_for_systemd():
    text = kiosk_install.render_unit(["/opt/my qcat/bin/qcat$1"], Path("/srv/50% home"), ME)
    unit = settings(text)
    assert ("ExecStart", '"/opt/my qcat/bin/qcat$$1" kiosk') in unit
    assert ("Environment", '"QCAT_HOME=/srv/50%% home"') in unit
    with pytest.raises(InputError, match="control character"):
        kiosk_install.render_unit(["/opt/q\ncat"], Path("/srv"), ME)
    with pytest.raises(InputError, match="cannot be written into a systemd unit"):
        kiosk_install.render_unit(["/opt/qcat"], Path("/srv"), "evil\nUser=root")


def test_under_sudo_an_unnamed_home_is_refused(tmp_path):
    with pytest.raises(InputError, match="root's own") as info:
        kiosk_install.install(Path("/root/.local/share/qcat"), dry_run=True, home_named=False,
                              uid=0, environ={"SUDO_USER": ME}, command=["/usr/bin/qcat"])
    assert "--home DIR kiosk install" in (info.value.hint or "")
    done = kiosk_install.install(tmp_path, dry_run=True, home_named=True, uid=0,
                                 environ={"SUDO_USER": ME}, command=["/usr/bin/qcat"])
    assert done.user == ME and not done.written  # the user who typed sudo, not root


def test_an_unknown_user_is_one_sentence(run_qcat):
    r = run_qcat("kiosk", "install", "--dry-run", "--user", "no-such-user-qcat")
    assert r.code == 2 and "there is no user 'no-such-user-qcat'" in r.err
    assert "Traceback" not in r.err and r.out == ""


def test_bare_kiosk_without_a_terminal_says_it_needs_one_and_install_is_still_there(run_qcat):
    r = run_qcat("kiosk")  # (pytest's stdout is not a terminal)
    assert r.code == 2 and "`qcat kiosk` needs a terminal" in r.err and "Traceback" not in r.err
    r = run_qcat("kiosk", "install", "--dry-run")
    assert r.code == 0 and "Restart=always" in r.out
