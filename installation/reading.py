"""Reading a file someone handed us, the one copy: the bytes, or one sentence saying why not.

Weight images, clip banks, entropy packs, config files and data files are all read through here,
so "does not exist", "is a folder", "permission denied", "is a device" and "far too large" read the
same everywhere and name the file and what it was supposed to be. A device or a pipe is refused
before reading (/dev/zero would never end); a size limit is checked before the read.

A ground module: it imports only the exception tree, so every package may use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from installation.errors import FormatError, InputError


def read_input(path: str | os.PathLike[str], what: str, *, max_bytes: int | None = None,
               hint: str | None = None) -> bytes:
    """The whole of `path`, which should be a `what` ("weight image", "entropy pack", ...).

    InputError when it is missing, a folder, a device or unreadable (the `hint` goes with a
    missing file: it names the command that makes one); FormatError when it is larger than
    `max_bytes`."""
    target = Path(path)
    try:
        info = os.stat(target)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{target} is a folder, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{target} is not a regular file, not a {what}")
        if max_bytes is not None and info.st_size > max_bytes:
            raise FormatError(f"{target} is {info.st_size:,} bytes, far larger than any {what}",
                              hint="check the path")
        return target.read_bytes()
    except OSError as exc:
        raise explain(exc, target, what, hint) from None


def read_text_input(path: str | os.PathLike[str], what: str, *, hint: str | None = None) -> str:
    """`read_input` decoded as UTF-8; text that is not UTF-8 is one sentence too."""
    data = read_input(path, what, hint=hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start} cannot be decoded)",
                         hint=hint) from None


def explain(exc: OSError, path: Path, what: str, hint: str | None = None) -> InputError:
    """The sentence for an OSError met while reading `path` (for callers that open files
    themselves, e.g. to stream them)."""
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{what} {path} does not exist", hint=hint)
    if isinstance(exc, IsADirectoryError):
        return InputError(f"{path} is a folder, not a {what}")
    if isinstance(exc, PermissionError):
        return InputError(f"cannot read {what} {path}: permission denied",
                          hint="check the file's owner and mode")
    return InputError(f"cannot read {what} {path}: {exc.strerror or exc}")
