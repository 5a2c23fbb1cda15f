"""The ground helpers every package shares: atomic writes and reading a file with one sentence.

They exist once (`installation.files`, `installation.reading`); these tests hold the guarantees the
eight former copies each gave only in part: a unique temporary name (two writers never collide),
fsync + rename (a SIGKILL mid-write leaves the old file or the new one), no folder created behind
the caller's back, and every OSError on reading turned into a sentence that names the file.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from installation.errors import FormatError, InputError
from installation.files import atomic_path, check_target, write_atomic
from installation.reading import explain, read_input, read_text_input

REPO = Path(__file__).resolve().parent.parent


def test_write_atomic_writes_returns_the_hash_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    digest = write_atomic(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_mode_is_set_before_the_file_appears(tmp_path: Path) -> None:
    target = tmp_path / "secret.toml"
    write_atomic(target, b"key = 1", mode=0o600)
    assert target.stat().st_mode & 0o777 == 0o600
    with atomic_path(tmp_path / "b.bin", mode=0o600) as tmp:
        tmp.write_bytes(b"x")
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600


def test_a_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "x.wav"
    with pytest.raises(InputError, match=r"the folder .*no/such does not exist"):
        write_atomic(target, b"x")
    assert not (tmp_path / "no").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="file is not a folder"):
        write_atomic(tmp_path / "file" / "x.wav", b"x")
    with pytest.raises(InputError, match="is a folder"):
        check_target(tmp_path)


def test_atomic_path_removes_the_temp_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the library failed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_concurrent_writers_never_share_a_temp_file(tmp_path: Path) -> None:
    """The former copies used a fixed `NAME.tmp`: two builds of one file interleaved their bytes."""
    target = tmp_path / "bank.qcv"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(5):
                write_atomic(target, data)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["bank.qcv"]


WRITER = """
import sys
from installation.files import write_atomic
target, n = sys.argv[1], 0
print("ready", flush=True)
while True:
    n += 1
    write_atomic(target, bytes([n % 251]) * 1_000_000)
"""


def test_sigkill_mid_write_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    target = tmp_path / "image.qcw"
    write_atomic(target, bytes([0]) * 1_000_000)
    kills = 0
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31, 0.43):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL  # it was killed mid-loop, not finished
        kills += 1
        data = target.read_bytes()
        assert len(data) == 1_000_000 and data == bytes([data[0]]) * len(data), \
            f"after kill {kills}: a torn file (first differing byte at {_first_change(data)})"
    assert kills == 6


def _first_change(data: bytes) -> int:
    return next((i for i, b in enumerate(data) if b != data[0]), -1)


# -- reading ---------------------------------------------------------------------------------

def test_read_input_names_the_file_and_what_it_should_be(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^weight image .*absent.qcw does not exist$") as exc:
        read_input(tmp_path / "absent.qcw", "weight image", hint="build one")
    assert exc.value.hint == "build one"
    with pytest.raises(InputError, match="is a folder, not a weight image"):
        read_input(tmp_path, "weight image")
    with pytest.raises(InputError, match="is not a regular file, not a clip bank"):
        read_input("/dev/zero", "clip bank")  # would never end if read
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(2000))
    with pytest.raises(FormatError, match="2,000 bytes, far larger than any entropy pack"):
        read_input(big, "entropy pack", max_bytes=1000)
    assert read_input(big, "entropy pack", max_bytes=2000) == bytes(2000)


def test_permission_denied_is_a_sentence(tmp_path: Path) -> None:
    # root reads any file, so the OSError a user would meet is handed in directly
    exc = explain(PermissionError(13, "Permission denied"), tmp_path / "q.toml", "config file")
    assert exc.message == f"cannot read config file {tmp_path / 'q.toml'}: permission denied"
    other = explain(OSError(5, "Input/output error"), tmp_path / "c.qcv", "clip bank")
    assert other.message.endswith("c.qcv: Input/output error")


def test_text_that_is_not_utf8_is_a_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "bank.toml"
    bad.write_bytes(b"ok\xff\xfe")
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 2"):
        read_text_input(bad, "verdict bank file")
