"""Opening one of qcat's SQLite databases, read-write or read-only, the one copy.

Read-only matters because an archive outlives its controller: a gallery burnt to a disc or a card
mounted read-only must still be listed, shown and verified. SQLite cannot open a WAL database
with `mode=ro` when the folder is read-only and the `-shm` file is absent (it would have to create
it), so a read-only open falls back to `immutable=1`, which reads the file as it is: right for
read-only media, where nobody can be writing.

A ground module: it imports only the exception tree, so every package may use it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from installation.errors import InputError


def connect(path: Path, what: str, *, read_only: bool = False, timeout_s: float = 30.0,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """An autocommit connection (`isolation_level=None`: callers begin their own transactions).

    Read-only: a missing file is one sentence (nothing may be created), and the connection
    refuses every write. Read-write: the folder is created when missing."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, timeout=timeout_s, isolation_level=None,
                               check_same_thread=check_same_thread)
    if not path.is_file():
        raise InputError(f"there is no {what} at {path}, and a read-only home cannot start one",
                         hint="point --home at the folder that holds it")
    uri = "file:" + quote(str(path.absolute()))
    for flags in ("?mode=ro", "?mode=ro&immutable=1"):
        db = sqlite3.connect(uri + flags, uri=True, timeout=timeout_s, isolation_level=None,
                             check_same_thread=check_same_thread)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            db.close()
            continue
        return db
    raise InputError(f"cannot open the {what} {path} for reading",
                     hint="check that the file is readable")
