"""Atomic file writes, the one copy: a reader sees the old file or the new one, never half.

Every file qcat writes (weight images, clip banks, packs, PNGs, WAVs, checkpoints, config,
contact sheets) goes through here. The recipe: a temporary file with a unique name in the target's
own folder (so two builds never collide and the rename stays on one filesystem), written and
fsynced, renamed over the target with `os.replace`, then the folder fsynced so the rename itself
survives a power cut. A crash at any instant leaves at most a stray ``.NAME.*.tmp`` file, never a
truncated target; an exception removes the temporary file.

Three shapes of the same recipe:
    write_atomic(path, data)           bytes in memory
    with atomic_path(path) as tmp:     a library that insists on writing a path itself
                                       (torch.save, PIL, espeak-ng); renamed when the block ends
    tmp = write_temp(path, data)       two phases: the caller renames with `publish(tmp, path)`
                                       at the instant it chooses (inside a database transaction)

None of them creates folders: a missing folder is the caller's decision (the home creates its
own; a path a user typed is checked with `check_target` and refused with a sentence, never
created behind their back).

A ground module: it imports only the exception tree, so every package may use it. Hashing a file
on disk is `models.weightimage.sha256_of`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from installation.errors import InputError

TEMP_SUFFIX = ".tmp"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a whole file, streamed in 1 MiB blocks (a full weight image is 13 MB): the
    model hash recorded with every exhibit, a unit's weights and clips identity, the QEMU count
    cache's key, the appliance's hash of checkpoints, PNGs and WAVs."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> str:
    """Write `data` to `path` atomically; returns its SHA-256 (hex). `mode` sets the
    permissions before the file appears under its name (0o600 for anything secret)."""
    target = Path(path)
    publish(write_temp(target, data, mode=mode), target)
    return hashlib.sha256(data).hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally the file written there
    is fsynced and renamed over `path`, when it raises the temporary file is removed."""
    target = Path(path)
    tmp = _temp_name(target)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        publish(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_temp(path: Path, data: bytes, *, mode: int | None = None) -> Path:
    """Write `data` fsynced to a fresh temporary file beside `path`; the caller publishes it."""
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def publish(tmp: Path, path: Path) -> None:
    """Give a temporary file its final name atomically, and make the rename durable."""
    os.replace(tmp, path)
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # a folder we cannot open (some network filesystems): the rename is done anyway
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def check_target(path: str | os.PathLike[str], option: str | None = None,
                 example: str = "out") -> Path:
    """`path` as a file someone asked us to write (named with `option`, e.g. "--wav"), checked
    before any work: its folder must exist (a missing folder is a typo far more often than a
    wish, so it is never created) and it must not be a folder itself. InputError otherwise."""
    target = Path(path)
    named = f"{option} {path}" if option else str(path)
    if target.is_dir():
        raise InputError(f"{named} is a folder, not a file",
                         hint=f"name a file inside it, e.g. {option + ' ' if option else ''}"
                              f"{Path(path) / example}")
    parent = target.absolute().parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise InputError(f"cannot write {path}: the folder {parent} {what}",
                         hint="create the folder first, or name a file in an existing one")
    return target


def _temp_name(path: Path) -> Path:
    """A new, empty, uniquely named file in `path`'s folder (created, so no one else takes it)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except (FileNotFoundError, NotADirectoryError):
        check_target(path)  # names what is wrong with the folder
        raise
    os.close(fd)
    return Path(name)
