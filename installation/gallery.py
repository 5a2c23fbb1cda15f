"""The gallery archive: one SQLite row per exhibit, plus its image and audio files.

Each row records what is needed to re-create and audit the exhibit years later (promises E2, F2):
the exact entropy bytes and their provenance, the model's SHA-256, the engine, the SHA-256 of the
raw RGB image, the verdict code, mood and text, and the hashes of the files written. The *pending*
state of an exhibit is not kept here: it is the entropy draw itself (purpose
``exhibit:<model sha>``), recorded by the pool in the same transaction that hands out the bytes.
An archived row is what completes it; `archived_draw_ids()` tells which draws are done.

Schema versions (``meta.schema_version``): 1 the first archive; 2 adds ``big_png_sha256`` (the
512-px copy's file hash) and an index on ``created``; 3 adds ``die_rolls``, one row per roll of a
die unit (its stream position, the bytes it spent and the draws they came from, the pips and the
face), UNIQUE per (serial, stream position) as an exhibit is per draw. A version-1 archive is migrated when it is
opened; its old rows keep ``big_png_sha256`` NULL (their 512-px files are checked by pixels, and
`qcat gallery repair` records the hash once the pixels are proven). An archive with a newer
version than this qcat knows is refused, never half-read.

Must never: write a row before its files are in place (files first, atomically, then the row),
accept a second exhibit for the same draw (`draw_id` is UNIQUE), or change a row's recorded facts
once written (the only later write fills a NULL ``big_png_sha256``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from installation import database
from installation.errors import CheckFailed, InputError
from quantum.source import EntropySource

SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 30.0
MOODS = ("motivated", "demotivated")

_SCHEMA_V1 = """
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
)
"""

# MIGRATIONS[n] takes an archive from version n - 1 to n (version 0: an empty database).
MIGRATIONS: dict[int, list[str]] = {
    1: [s for s in _SCHEMA_V1.split(";") if s.strip()],
    2: ["ALTER TABLE exhibits ADD COLUMN big_png_sha256 TEXT",
        "CREATE INDEX IF NOT EXISTS exhibits_created ON exhibits (created)"],
    3: ["""CREATE TABLE die_rolls (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            serial        TEXT NOT NULL,
            stream_offset INTEGER NOT NULL,
            used          INTEGER NOT NULL,
            entropy_hex   TEXT NOT NULL,
            draws         TEXT NOT NULL,
            source        TEXT NOT NULL,
            pips          INTEGER NOT NULL,
            face_hex      TEXT NOT NULL,
            model_sha256  TEXT NOT NULL,
            created       TEXT NOT NULL,
            reported      INTEGER NOT NULL,
            UNIQUE (serial, stream_offset))""",
        "CREATE INDEX die_rolls_created ON die_rolls (created)"],
}


@dataclass(frozen=True)
class NewExhibit:
    """What `Gallery.add` archives: a finished exhibit whose files are already written.

    Paths are relative to the gallery folder; hashes are SHA-256 hex of the files' bytes
    (`image_sha256`: of the raw RGB pixels)."""

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
    big_png_sha256: str | None
    wav_path: str | None
    wav_sha256: str | None
    verdict_code: int
    mood: str
    verdict_text: str


@dataclass(frozen=True)
class Exhibit(NewExhibit):
    """One archived exhibit: the record as archived, and the number the archive gave it.
    (`big_png_sha256` is NULL for rows archived before schema 2: checked by pixels.)"""

    id: int

    @property
    def entropy(self) -> bytes:
        return bytes.fromhex(self.entropy_hex)

    @property
    def quantum(self) -> bool:
        """True only when every byte came from the quantum source (never for os-fallback)."""
        return self.source != EntropySource.OS_FALLBACK

    def to_json(self) -> dict[str, Any]:
        """Every field, `id` first (as `--json` has always printed it)."""
        fields_ = asdict(self)
        return {"id": fields_.pop("id"), **fields_}


_COLUMNS = tuple(f.name for f in fields(NewExhibit))


def _connect(db_path: Path, read_only: bool) -> sqlite3.Connection:
    """The one place the archive's connection is made (and its pragmas set)."""
    db = database.connect(db_path, "gallery archive", read_only=read_only,
                          timeout_s=BUSY_TIMEOUT_S)
    if not read_only:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    return db


class Gallery:
    """The archive database plus the folder of exhibit files."""

    def __init__(self, db_path: Path, files_dir: Path, *, read_only: bool = False) -> None:
        self.db_path = db_path
        self.files_dir = files_dir
        self.read_only = read_only
        try:
            self._db = _connect(db_path, read_only)
            if not read_only:
                files_dir.mkdir(parents=True, exist_ok=True)
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._unreadable(exc) from None
        except BaseException:
            self._db.close()
            raise
        self._db.row_factory = sqlite3.Row

    def _unreadable(self, exc: Exception) -> InputError:
        return InputError(f"the gallery archive {self.db_path} is not a readable SQLite database "
                          f"({exc})", hint="move the file aside; `qcat generate` starts a new archive")

    def schema_version(self) -> int:
        """The archive's schema version (0 for an empty database)."""
        has_meta = self._db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()[0]
        if not has_meta:
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else 0
        except ValueError:
            raise InputError(f"the gallery archive {self.db_path} has an unreadable schema version "
                             f"({row[0]!r})", hint="move the file aside; `qcat generate` starts a "
                             "new archive") from None

    def _migrate(self) -> None:
        """Bring an older archive up to SCHEMA_VERSION in one transaction; refuse a newer one."""
        version = self.schema_version()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise InputError(f"the gallery archive {self.db_path} was made by a newer qcat "
                             f"(archive schema {version}, this qcat knows {SCHEMA_VERSION})",
                             hint="upgrade qcat to read it")
        if self.read_only:
            return  # read as it is: rows of an older schema lack only newer, optional columns
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self.schema_version()  # another process may have migrated meanwhile
            if version == 0 and self._db.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT IN ('meta', 'exhibits', 'die_rolls')").fetchone()[0]:
                raise InputError(f"{self.db_path} is an SQLite database but not a qcat gallery "
                                 "archive", hint="point --home at a qcat home folder")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    self._db.execute(statement)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, record: NewExhibit) -> Exhibit:
        """Archive a finished exhibit (its files already written). Returns it with its id.

        Two processes may finish the same pending draw (a unit and `qcat generate`, both
        completing what a crash left): the first row stays and is returned to the second, whose
        files were the same bytes (F1: one draw, one image). A different image for an archived
        draw is refused, never recorded."""
        row = asdict(record)
        row["provenance"] = json.dumps(row["provenance"], sort_keys=True)
        names = ", ".join(_COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)
        cur = self._db.execute(f"INSERT INTO exhibits ({names}) VALUES ({marks}) "
                               "ON CONFLICT (draw_id) DO NOTHING",
                               tuple(row[c] for c in _COLUMNS))
        if cur.rowcount == 1:
            return self.get(int(cur.lastrowid or 0))
        first = self.by_draw(record.draw_id)
        if first.image_sha256 != record.image_sha256:
            raise CheckFailed(f"entropy draw {record.draw_id} is archived as exhibit "
                                 f"{first.id} with image {first.image_sha256[:16]}…, and an "
                                 f"image {record.image_sha256[:16]}… was offered for it again",
                                 hint="one draw makes one image: run `qcat gallery verify "
                                      f"{first.id}`")
        return first

    def by_draw(self, draw_id: int) -> Exhibit:
        """The exhibit made from an entropy draw."""
        row = self._db.execute("SELECT * FROM exhibits WHERE draw_id = ?",
                               (draw_id,)).fetchone()
        if row is None:
            raise InputError(f"no exhibit in the archive was made from entropy draw {draw_id}",
                             hint="`qcat entropy audit` lists draws still pending")
        return _exhibit(row)

    def record_big_png_hash(self, exhibit_id: int, sha256: str) -> bool:
        """Fill a NULL `big_png_sha256` (rows from schema 1) once the file's pixels are proven.
        Never overwrites a recorded hash; returns whether it wrote."""
        cur = self._db.execute("UPDATE exhibits SET big_png_sha256 = ? "
                               "WHERE id = ? AND big_png_sha256 IS NULL", (sha256, exhibit_id))
        return cur.rowcount == 1

    def record_speech(self, exhibit_id: int, wav_path: str, wav_sha256: str) -> bool:
        """Give a silent exhibit (made without a clip bank) its voice: fills a NULL `wav_path`
        and its hash, never replaces a recorded one. Returns whether it wrote."""
        cur = self._db.execute("UPDATE exhibits SET wav_path = ?, wav_sha256 = ? "
                               "WHERE id = ? AND wav_path IS NULL", (wav_path, wav_sha256,
                                                                     exhibit_id))
        return cur.rowcount == 1

    def silent_ids(self) -> list[int]:
        """Exhibits archived without speech, oldest first."""
        return [int(r[0]) for r in
                self._db.execute("SELECT id FROM exhibits WHERE wav_path IS NULL ORDER BY id")]

    def get(self, exhibit_id: int) -> Exhibit:
        row = self._db.execute("SELECT * FROM exhibits WHERE id = ?", (exhibit_id,)).fetchone()
        if row is None:
            raise InputError(f"there is no exhibit {exhibit_id} in the archive",
                             hint="`qcat gallery list` shows the exhibits there are")
        return _exhibit(row)

    def all(self) -> Iterator[Exhibit]:
        for row in self._db.execute("SELECT * FROM exhibits ORDER BY id"):
            yield _exhibit(row)

    def query(self, *, since: str | None = None, mood: str | None = None,
              quantum: bool | None = None, ids: list[int] | None = None,
              limit: int | None = None, offset: int = 0) -> list[Exhibit]:
        """Exhibits newest first, filtered in SQL (the archive may hold tens of thousands).

        `since`: an ISO-8601 UTC time in the archive's own format (`created >= since`);
        `quantum`: True for quantum bytes only, False for os-fallback only."""
        sql, args = self._where(since=since, mood=mood, quantum=quantum, ids=ids)
        sql = f"SELECT * FROM exhibits{sql} ORDER BY created DESC, id DESC"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args += [-1 if limit is None else limit, offset]
        return [_exhibit(row) for row in self._db.execute(sql, args)]

    def count(self, *, since: str | None = None, mood: str | None = None,
              quantum: bool | None = None, ids: list[int] | None = None) -> int:
        sql, args = self._where(since=since, mood=mood, quantum=quantum, ids=ids)
        return int(self._db.execute(f"SELECT COUNT(*) FROM exhibits{sql}", args).fetchone()[0])

    @staticmethod
    def _where(*, since: str | None, mood: str | None, quantum: bool | None,
               ids: list[int] | None) -> tuple[str, list[Any]]:
        terms: list[str] = []
        args: list[Any] = []
        if since is not None:
            terms.append("created >= ?")
            args.append(since)
        if mood is not None:
            terms.append("mood = ?")
            args.append(mood)
        if quantum is not None:
            terms.append("source != ?" if quantum else "source = ?")
            args.append(EntropySource.OS_FALLBACK)
        if ids is not None:
            terms.append(f"id IN ({', '.join('?' for _ in ids)})" if ids else "0")
            args += [int(i) for i in ids]
        return (" WHERE " + " AND ".join(terms) if terms else ""), args

    def model_paths(self) -> list[str]:
        """Every weight image path the archive's exhibits were made with (for re-rendering)."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT model_path FROM exhibits")]

    def archived_draw_ids(self) -> set[int]:
        return {int(r[0]) for r in self._db.execute("SELECT draw_id FROM exhibits")}

    def path(self, relative: str) -> Path:
        return self.files_dir / relative

    # -- die rolls ----------------------------------------------------------------------------

    def add_roll(self, roll: NewRoll) -> Roll:
        """Archive a die's roll (already checked against the reference). The same roll reported
        again (a re-sent frame, a reconnect) is the row that is there; a different roll at the
        same stream position is refused: one stretch of bytes makes one roll."""
        row = asdict(roll)
        row["draws"] = json.dumps(row["draws"])
        names = ", ".join(_ROLL_COLUMNS)
        marks = ", ".join("?" for _ in _ROLL_COLUMNS)
        cur = self._db.execute(f"INSERT INTO die_rolls ({names}) VALUES ({marks}) "
                               "ON CONFLICT (serial, stream_offset) DO NOTHING",
                               tuple(row[c] for c in _ROLL_COLUMNS))
        if cur.rowcount == 1:
            return self._roll_where("id = ?", int(cur.lastrowid or 0))
        first = self._roll_where("serial = ? AND stream_offset = ?", roll.serial,
                                 roll.stream_offset)
        if (first.pips, first.face_hex, first.used) != (roll.pips, roll.face_hex, roll.used):
            raise CheckFailed(f"die {roll.serial}'s roll at stream byte {roll.stream_offset} is "
                              f"archived as roll {first.id} ({first.pips} pips), and another roll "
                              f"({roll.pips} pips) was offered for the same bytes",
                              hint="the same bytes make the same roll: the unit is faulty")
        return first

    def _roll_where(self, where: str, *args: Any) -> Roll:
        row = self._db.execute(f"SELECT * FROM die_rolls WHERE {where}", args).fetchone()
        if row is None:
            raise InputError("there is no such die roll in the archive",
                             hint="`qcat units roll` and `qcat units run` archive rolls")
        return _roll(row)

    def rolls(self, serial: str | None = None, limit: int | None = None) -> list[Roll]:
        """Die rolls newest first (of one die)."""
        args: list[Any] = [serial] if serial is not None else []
        sql = "WHERE serial = ?" if serial is not None else ""
        tail = " LIMIT ?" if limit is not None else ""
        args += [limit] if limit is not None else []
        return [_roll(r) for r in self._db.execute(
            f"SELECT * FROM die_rolls {sql} ORDER BY id DESC{tail}", args)]

    def roll_counts(self, serial: str | None = None) -> dict[int, int]:
        """How often each face came up: {pips: rolls} for 1..6, zeros included."""
        sql, args = ("WHERE serial = ?", [serial]) if serial is not None else ("", [])
        counts = dict.fromkeys(range(1, 7), 0)
        for pips, n in self._db.execute(
                f"SELECT pips, COUNT(*) FROM die_rolls {sql} GROUP BY pips", args):
            counts[int(pips)] = int(n)
        return counts


@dataclass(frozen=True)
class NewRoll:
    """A die roll to archive: which bytes of which die's stream, the draws they came from
    (``[[draw_id, first byte in the draw, bytes], ...]``), and what the unit showed."""

    serial: str
    stream_offset: int
    used: int
    entropy_hex: str
    draws: list[list[int]]
    source: str  # the draws' source (quantum, or os-fallback when any byte was)
    pips: int
    face_hex: str  # the 128 SSD1306 page bytes
    model_sha256: str  # the die decoder's content SHA-256
    created: str
    # 1: the unit's ROLL arrived and agreed; 0: its report was lost (a pulled cable) and the roll
    # was re-derived from the bytes the die's reserve shows it spent
    reported: int = 1


@dataclass(frozen=True)
class Roll(NewRoll):
    """One archived die roll and the number the archive gave it."""

    id: int = 0

    @property
    def face(self) -> bytes:
        return bytes.fromhex(self.face_hex)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_ROLL_COLUMNS = [f.name for f in fields(NewRoll)]


def _roll(row: sqlite3.Row) -> Roll:
    data = dict(row)
    data["draws"] = json.loads(data["draws"])
    data["reported"] = int(data["reported"])
    return Roll(**data)


def _exhibit(row: sqlite3.Row) -> Exhibit:
    data = dict(row)
    data.setdefault("big_png_sha256", None)  # a schema-1 archive read where it cannot migrate
    try:
        data["provenance"] = json.loads(data["provenance"])
    except (TypeError, json.JSONDecodeError):
        # A damaged provenance field is kept visible (verify reports it) instead of crashing.
        data["provenance"] = {"unreadable": str(data["provenance"])}
    return Exhibit(**data)
