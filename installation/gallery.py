"""The gallery archive: one SQLite row per exhibit, plus its image and audio files.

Each row records what is needed to re-create and audit the exhibit years later (promises E2, F2):
the exact entropy bytes and their provenance, the model's SHA-256, the engine, the SHA-256 of the
raw RGB image, the verdict code, mood and text, and the hashes of the files written. The *pending*
state of an exhibit is not kept here: it is the entropy draw itself (purpose
``exhibit:<model sha>``), recorded by the pool in the same transaction that hands out the bytes.
An archived row is what completes it; `pending_draw_ids()` tells which draws still wait.

Must never: write a row before its files are in place (files first, atomically, then the row), or
accept a second exhibit for the same draw (`draw_id` is UNIQUE).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from installation import database
from installation.errors import InputError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exhibits (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    draw_id       INTEGER NOT NULL UNIQUE,
    created       TEXT NOT NULL,
    entropy_hex   TEXT NOT NULL,
    source        TEXT NOT NULL,
    provenance    TEXT NOT NULL,
    model_sha256  TEXT NOT NULL,
    model_path    TEXT NOT NULL,
    model_size    TEXT NOT NULL,
    engine        TEXT NOT NULL,
    image_sha256  TEXT NOT NULL,
    png_path      TEXT NOT NULL,
    png_sha256    TEXT NOT NULL,
    big_png_path  TEXT NOT NULL,
    wav_path      TEXT,
    wav_sha256    TEXT,
    verdict_code  INTEGER NOT NULL,
    mood          TEXT NOT NULL,
    verdict_text  TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Exhibit:
    """One archived exhibit. Paths are relative to the gallery folder."""

    id: int
    draw_id: int
    created: str
    entropy_hex: str
    source: str
    provenance: dict[str, Any]
    model_sha256: str
    model_path: str
    model_size: str
    engine: str
    image_sha256: str
    png_path: str
    png_sha256: str
    big_png_path: str
    wav_path: str | None
    wav_sha256: str | None
    verdict_code: int
    mood: str
    verdict_text: str

    @property
    def entropy(self) -> bytes:
        return bytes.fromhex(self.entropy_hex)

    @property
    def quantum(self) -> bool:
        """True only when every byte came from the quantum source (never for os-fallback)."""
        return self.source != "os-fallback"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Gallery:
    """The archive database plus the folder of exhibit files."""

    def __init__(self, db_path: Path, files_dir: Path, *, read_only: bool = False) -> None:
        self.db_path = db_path
        self.files_dir = files_dir
        self.read_only = read_only
        try:
            self._db = database.connect(db_path, "gallery archive", read_only=read_only,
                                        timeout_s=BUSY_TIMEOUT_S)
            if not read_only:
                files_dir.mkdir(parents=True, exist_ok=True)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise InputError(f"the gallery archive {db_path} is not a readable SQLite database ({exc})",
                             hint="move the file aside; `qcat generate` starts a new archive") from None
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, fields: dict[str, Any]) -> Exhibit:
        """Archive a finished exhibit (its files already written). Returns it with its id."""
        row = dict(fields)
        row["provenance"] = json.dumps(row["provenance"], sort_keys=True)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = self._db.execute(f"INSERT INTO exhibits ({names}) VALUES ({marks})", tuple(row.values()))
        return self.get(int(cur.lastrowid or 0))

    def get(self, exhibit_id: int) -> Exhibit:
        row = self._db.execute("SELECT * FROM exhibits WHERE id = ?", (exhibit_id,)).fetchone()
        if row is None:
            raise InputError(f"there is no exhibit {exhibit_id} in the archive",
                             hint="`qcat gallery list` shows the exhibits there are")
        return _exhibit(row)

    def all(self) -> Iterator[Exhibit]:
        for row in self._db.execute("SELECT * FROM exhibits ORDER BY id"):
            yield _exhibit(row)

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM exhibits").fetchone()[0])

    def model_paths(self) -> list[str]:
        """Every weight image path the archive's exhibits were made with (for re-rendering)."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT model_path FROM exhibits")]

    def archived_draw_ids(self) -> set[int]:
        return {int(r[0]) for r in self._db.execute("SELECT draw_id FROM exhibits")}

    def path(self, relative: str) -> Path:
        return self.files_dir / relative


def _exhibit(row: sqlite3.Row) -> Exhibit:
    data = dict(row)
    try:
        data["provenance"] = json.loads(data["provenance"])
    except (TypeError, json.JSONDecodeError):
        # A damaged provenance field is kept visible (verify reports it) instead of crashing.
        data["provenance"] = {"unreadable": str(data["provenance"])}
    return Exhibit(**data)
