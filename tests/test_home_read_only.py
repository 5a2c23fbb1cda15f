"""A qcat home on read-only media: the read commands work, the writing ones refuse in one sentence.

An archive outlives its controller: burnt to a disc, or on a card mounted read-only, it must still
be listed, shown and verified. The test mounts a populated home read-only for real (a bind mount
inside a private mount namespace made with `unshare`, so nothing outside the test sees it) and
runs the real CLI in a child process there: no traceback anywhere, nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from installation.cli import main
from models import weightimage
from quantum.pool import EntropyPool

REPO = Path(__file__).resolve().parent.parent
POOL_BYTES = 4096


def _can_mount_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount --bind / /mnt 2>/dev/null || "
                            "mount --bind /tmp /tmp"], capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount_read_only(),
                                 reason="no mount namespace here (unshare -rm failed)")


@pytest.fixture(scope="module")
def populated_home(tmp_path_factory) -> Path:
    """A home with a pool (quantum and os-fallback draws), three exhibits and a weight image."""
    root = tmp_path_factory.mktemp("ro")
    home = root / "home"
    model = root / "model.qcw"
    weightimage.save(weightimage.synthetic("demo", seed=3), model)
    with EntropyPool(home / "entropy.sqlite") as pool:
        pool.store_batch(os.urandom(POOL_BYTES), "anu", {"source": "anu", "api": "keyed"})
    code = main(["--home", str(home), "generate", "--count", "3", "--engine", "numpy",
                 "--weights", str(model), "--no-speech", "--json"])
    assert code == 0
    return home


def run_read_only(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`qcat --home HOME ARGS` with HOME bind-mounted read-only over itself, in a private
    mount namespace (the mount vanishes with the process)."""
    qcat = " ".join([sys.executable, "-m", "installation.cli", "--home", str(home), *args])
    script = (f"mount --bind {home} {home} && mount -o remount,bind,ro {home} && "
              f"touch {home}/probe 2>/dev/null && echo 'home is writable' >&2 && exit 99; "
              f"exec {qcat}")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "QCAT_HOME": ""})


@needs_mount
@pytest.mark.parametrize("args", [
    ("gallery", "list", "--json"),
    ("gallery", "show", "2", "--json"),
    ("gallery", "verify", "--all"),
    ("entropy", "status", "--json"),
    ("entropy", "audit"),
    ("phrases", "show", "65536"),
    ("sd", "weights", "inspect", str(weightimage.SHIPPED_DEMO)),
    ("config", "show", "--json"),
])
def test_read_commands_work_on_a_read_only_home(populated_home: Path, args) -> None:
    before = sorted(p.name for p in populated_home.rglob("*"))
    proc = run_read_only(populated_home, *args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr == ""  # not even a warning about the log file
    if "--json" in args:
        json.loads(proc.stdout)
    assert sorted(p.name for p in populated_home.rglob("*")) == before


@needs_mount
def test_what_the_read_commands_see_is_the_archive(populated_home: Path) -> None:
    exhibits = json.loads(run_read_only(populated_home, "gallery", "list", "--json").stdout)
    assert [e["id"] for e in exhibits] and len(exhibits) == 3
    status = json.loads(run_read_only(populated_home, "entropy", "status", "--json").stdout)
    assert status["available_bytes"] == POOL_BYTES - 3 * 203


@needs_mount
@pytest.mark.parametrize("args, says", [
    (("generate", "--engine", "numpy"), "read-only, and `qcat generate` writes to it"),
    (("demo", "--no-speech"), "read-only, and `qcat demo` writes to it"),
    (("entropy", "draw", "--bytes", "16", "--purpose", "test"), "open read-only"),
    (("phrases", "build"), "cannot write"),
    (("gallery", "repair", "--all"), "read-only, and `qcat gallery repair` writes to it"),
    (("gallery", "speak", "--all"), "read-only, and `qcat gallery speak` writes to it"),
])
def test_writing_commands_refuse_in_one_sentence(populated_home: Path, args, says) -> None:
    before = {p: p.stat().st_mtime_ns for p in populated_home.rglob("*")}
    proc = run_read_only(populated_home, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("qcat: error: ") and says in first, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in populated_home.rglob("*")} == before


def test_a_home_that_is_a_file_is_one_sentence(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "home.txt"
    not_a_folder.write_text("oops")
    proc = subprocess.run([sys.executable, "-m", "installation.cli", "gallery", "list"],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "QCAT_HOME": str(not_a_folder)})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"qcat: error: the qcat home {not_a_folder} is a file, not a folder",
        "  hint: point --home (or QCAT_HOME) at a folder; qcat creates it when it does not exist"]
    assert not_a_folder.read_text() == "oops"
