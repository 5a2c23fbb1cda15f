"""The entropy pool: quantum bytes in SQLite, each handed out exactly once (promises E1, E2).

One SQLite file (`<home>/entropy.sqlite`, WAL, synchronous=FULL) holds:

    batches       every stored batch with its bytes, SHA-256, provenance and status (usable or
                  quarantined with the reason); `consumed` is the batch's cursor: bytes [0,
                  consumed) are spent (drawn or exported), the rest is available, in id order
    block_hashes  SHA-256 of every 64-byte block ever stored (the replay detector)
    draws         every draw with its exact bytes, purpose, source and provenance, including
                  os-fallback draws (so an exhibit can always be re-rendered from its record)
    spans         which bytes [start, stop) of which batch went to which draw or export
    leases        exhibits leased to a unit's SD card: one draw of 203 bytes per record, purposes
                  `lease:<lease_id>:<i>`, all made in one transaction (schema 3)
    lease_returns records of a lease proven unused and given back: each lives again in one
                  new usable batch (`batch_id`), once ever per record (schema 3)
    lease_spent   records a returned card's journal says its unit spent: never returnable (3)
    exports/packs packs moved out, packs taken in (a pack id is accepted once, ever)
    requests      every ANU request attempted, logged *before* it is sent; `reached` = 0 marks
                  one that provably never left this machine (DNS, refused connection, TLS
                  handshake, no key); the keyed API's monthly budget counts the others

How exactly-once holds: a draw reads the cursors, inserts the draw row with its bytes and its
spans, and advances the cursors in one `BEGIN IMMEDIATE` transaction. SQLite's write lock makes
two processes take turns, and a SIGKILL at any instant leaves either the whole transaction or
none of it; with synchronous=FULL a draw that returned survives power loss too. Triggers refuse
any statement that would move a cursor back or delete a record, so even a buggy caller cannot
replay a byte. `audit()` re-proves every invariant from the raw tables.

What this module must never do: serve a byte of a quarantined batch; label os.urandom bytes as
anything but `os-fallback`; keep anything in memory that another process needs to know; store
an API key (it never receives one).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from installation import database, faults
from installation.errors import EntropyExhausted, ExternalError, FormatError, InputError
from quantum import health
from quantum import pack as packfmt
from quantum.latent import EXHIBIT_BYTES
from quantum.source import EntropySource

SCHEMA_VERSION = 3
# PRAGMA application_id of a qcat pool ("qcat" in ASCII): refuses to adopt a foreign database.
APPLICATION_ID = 0x71636174
# How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_S = 30.0
# Waiting for another process's write lock: poll at random intervals in this range (seconds).
LOCK_POLL_S = (0.0002, 0.002)
# With when_empty = "wait": how often to look for new bytes.
WAIT_POLL_S = 0.25
# Largest single draw (a sanity bound for scripts; exhibits draw 203 bytes).
MAX_DRAW_BYTES = 16 * 1024 * 1024
MAX_PURPOSE_CHARS = 200
SOURCES = EntropySource.stored()
OS_FALLBACK = EntropySource.OS_FALLBACK
WHEN_EMPTY = ("fail", "os", "wait")
EMPTY_HINT = ("run `qcat entropy fetch --bytes N` while online, or `qcat entropy import FILE`; "
              "or allow os randomness with entropy.when_empty = \"os\"")

# Version 1. Statements run one by one inside the migration's transaction (executescript would
# commit behind our back).
_SCHEMA_V1 = (
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        api TEXT NOT NULL, base_url TEXT NOT NULL, kind TEXT NOT NULL,
        started TEXT NOT NULL, started_epoch REAL NOT NULL, month TEXT NOT NULL,
        outcome TEXT NOT NULL DEFAULT 'pending', http_status INTEGER, detail TEXT)""",
    """CREATE INDEX requests_month ON requests (month)""",
    """CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL CHECK (source IN ('anu', 'anu-legacy', 'import')),
        status TEXT NOT NULL CHECK (status IN ('usable', 'quarantined')),
        reason TEXT,
        size INTEGER NOT NULL CHECK (size > 0),
        consumed INTEGER NOT NULL DEFAULT 0 CHECK (consumed >= 0 AND consumed <= size),
        sha256 TEXT NOT NULL,
        data BLOB NOT NULL,
        provenance TEXT NOT NULL,
        created TEXT NOT NULL,
        request_id INTEGER REFERENCES requests (id),
        pack_id TEXT,
        CHECK (status = 'usable' OR consumed = 0))""",
    """CREATE INDEX batches_open ON batches (id) WHERE status = 'usable' AND consumed < size""",
    """CREATE INDEX batches_sha ON batches (sha256)""",
    """CREATE TABLE block_hashes (hash BLOB PRIMARY KEY, batch_id INTEGER NOT NULL)
        WITHOUT ROWID""",
    """CREATE TABLE draws (
        id INTEGER PRIMARY KEY,
        purpose TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('anu', 'anu-legacy', 'import', 'os-fallback')),
        size INTEGER NOT NULL CHECK (size > 0),
        data BLOB NOT NULL,
        provenance TEXT NOT NULL,
        created TEXT NOT NULL)""",
    """CREATE INDEX draws_purpose ON draws (purpose, id)""",
    """CREATE TABLE exports (
        id INTEGER PRIMARY KEY, pack_id TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
        file_sha256 TEXT NOT NULL, path TEXT NOT NULL, created TEXT NOT NULL)""",
    """CREATE TABLE spans (
        id INTEGER PRIMARY KEY,
        batch_id INTEGER NOT NULL REFERENCES batches (id),
        start INTEGER NOT NULL, stop INTEGER NOT NULL,
        draw_id INTEGER REFERENCES draws (id),
        export_id INTEGER REFERENCES exports (id),
        CHECK (start >= 0 AND stop > start),
        CHECK ((draw_id IS NULL) != (export_id IS NULL)))""",
    """CREATE INDEX spans_batch ON spans (batch_id, start)""",
    """CREATE INDEX spans_draw ON spans (draw_id)""",
    """CREATE INDEX spans_export ON spans (export_id)""",
    """CREATE TABLE packs (
        pack_id TEXT PRIMARY KEY,
        direction TEXT NOT NULL CHECK (direction IN ('import', 'export')),
        size INTEGER NOT NULL, created TEXT NOT NULL)""",
    # Defence in depth for E1: the database itself refuses a rewind or a deletion.
    """CREATE TRIGGER batches_no_rewind BEFORE UPDATE OF consumed ON batches
        WHEN NEW.consumed < OLD.consumed
        BEGIN SELECT RAISE(ABORT, 'a batch cursor may never move back'); END""",
    """CREATE TRIGGER batches_immutable BEFORE UPDATE OF data, size, sha256, status ON batches
        BEGIN SELECT RAISE(ABORT, 'stored batches are immutable'); END""",
    """CREATE TRIGGER batches_no_delete BEFORE DELETE ON batches
        BEGIN SELECT RAISE(ABORT, 'batches are never deleted'); END""",
    """CREATE TRIGGER draws_immutable BEFORE UPDATE ON draws
        BEGIN SELECT RAISE(ABORT, 'draws are immutable'); END""",
    """CREATE TRIGGER draws_no_delete BEFORE DELETE ON draws
        BEGIN SELECT RAISE(ABORT, 'draws are never deleted'); END""",
    """CREATE TRIGGER spans_no_change BEFORE UPDATE ON spans
        BEGIN SELECT RAISE(ABORT, 'spans are immutable'); END""",
    """CREATE TRIGGER spans_no_delete BEFORE DELETE ON spans
        BEGIN SELECT RAISE(ABORT, 'spans are never deleted'); END""",
)
# Version 2: which requests may have reached the service. Until a request is known not to have
# (it is marked afterwards), it counts: a crash mid-request must not give the budget back. Rows
# of version 1 whose outcome proves they never left the machine are marked too; a version-1
# "connect" row may have been a connection dropped after sending, so it keeps counting.
_SCHEMA_V2 = (
    """ALTER TABLE requests ADD COLUMN reached INTEGER NOT NULL DEFAULT 1
        CHECK (reached IN (0, 1))""",
    """UPDATE requests SET reached = 0 WHERE outcome IN ('dns', 'tls', 'no-key')""",
)
# Version 3: SD-card leases. A lease is `records` ordinary draws (so an exhibit made offline from
# record i is archived later with draw i's id, and the gallery's `draw_id UNIQUE` holds as ever)
# tied together by one row; a return puts records proven unused back as one new batch.
_SCHEMA_V3 = (
    """CREATE TABLE leases (
        lease_id TEXT PRIMARY KEY CHECK (length(lease_id) = 32),
        unit TEXT NOT NULL,
        card_id TEXT NOT NULL,
        records INTEGER NOT NULL CHECK (records > 0),
        first_draw_id INTEGER NOT NULL REFERENCES draws (id),
        created TEXT NOT NULL)""",
    """CREATE TABLE lease_returns (
        lease_id TEXT NOT NULL REFERENCES leases (lease_id),
        record INTEGER NOT NULL CHECK (record >= 0),
        batch_id INTEGER NOT NULL REFERENCES batches (id),
        PRIMARY KEY (lease_id, record)) WITHOUT ROWID""",
    """CREATE INDEX lease_returns_batch ON lease_returns (batch_id)""",
    """CREATE TABLE lease_spent (
        lease_id TEXT NOT NULL REFERENCES leases (lease_id),
        record INTEGER NOT NULL CHECK (record >= 0),
        created TEXT NOT NULL,
        PRIMARY KEY (lease_id, record)) WITHOUT ROWID""",
    """CREATE TRIGGER lease_spent_no_change BEFORE UPDATE ON lease_spent
        BEGIN SELECT RAISE(ABORT, 'spent records are never changed'); END""",
    """CREATE TRIGGER lease_spent_no_delete BEFORE DELETE ON lease_spent
        BEGIN SELECT RAISE(ABORT, 'spent records are never deleted'); END""",
    """CREATE TRIGGER leases_immutable BEFORE UPDATE ON leases
        BEGIN SELECT RAISE(ABORT, 'leases are immutable'); END""",
    """CREATE TRIGGER leases_no_delete BEFORE DELETE ON leases
        BEGIN SELECT RAISE(ABORT, 'leases are never deleted'); END""",
    """CREATE TRIGGER lease_returns_no_change BEFORE UPDATE ON lease_returns
        BEGIN SELECT RAISE(ABORT, 'returned records are never changed'); END""",
    """CREATE TRIGGER lease_returns_no_delete BEFORE DELETE ON lease_returns
        BEGIN SELECT RAISE(ABORT, 'returned records are never deleted'); END""",
)
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}
# A lease's purposes: draw i of lease L is `lease:L:i`.
LEASE_PREFIX = "lease:"
# Largest lease (a sanity bound: 100,000 records are 20.3 MB of quantum bytes on one card).
MAX_LEASE_RECORDS = 100_000
MAX_UNIT_CHARS = 16
LEASE_EMPTY_HINT = ("run `qcat entropy fetch --bytes N` while online, or `qcat entropy import "
                    "FILE`; or lease fewer records")
# The API whose requests the monthly budget counts (the legacy API is free and key-less).
BUDGET_API = "keyed"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None = None) -> str:
    return (moment or utc_now()).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Draw:
    """One draw: the exact bytes handed out and where they came from."""

    id: int
    data: bytes
    purpose: str
    source: EntropySource
    provenance: dict[str, Any]
    created: str  # ISO-8601 UTC

    @property
    def quantum(self) -> bool:
        return self.source.quantum

    @property
    def hex(self) -> str:
        return self.data.hex()


@dataclass(frozen=True)
class StoredBatch:
    """The outcome of storing one batch: usable, or quarantined with its reasons."""

    id: int
    size: int
    status: str
    reasons: tuple[str, ...]
    source: str

    @property
    def usable(self) -> bool:
        return self.status == "usable"


@dataclass(frozen=True)
class ExportResult:
    pack_id: str
    path: Path
    size: int
    file_sha256: str


@dataclass
class AuditReport:
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class Lease:
    """Exhibits leased to one unit's SD card: record i is draw `draw_ids[i]`, 203 bytes that left
    the pool for good when the lease was made (E1); only `return_records` brings any back."""

    lease_id: str  # 32 lowercase hex digits (a UUID4)
    unit: str
    card_id: str
    records: int
    created: str  # ISO-8601 UTC
    draw_ids: list[int]
    raw: list[bytes] = field(repr=False)  # record i's 203 bytes, as drawn

    def record_bytes(self, index: int) -> bytes:
        return self.raw[index]

    @property
    def size(self) -> int:
        """Bytes leased: 203 per record."""
        return self.records * EXHIBIT_BYTES

    def as_dict(self) -> dict[str, Any]:
        return {"lease_id": self.lease_id, "unit": self.unit, "card_id": self.card_id,
                "records": self.records, "bytes": self.size, "created": self.created,
                "first_draw_id": self.draw_ids[0], "last_draw_id": self.draw_ids[-1]}


def lease_purpose(lease_id: str, index: int) -> str:
    return f"{LEASE_PREFIX}{lease_id}:{index}"


def _is_hex_id(text: object) -> bool:
    return (isinstance(text, str) and len(text) == 32
            and all(c in "0123456789abcdef" for c in text))


@dataclass(frozen=True)
class _Span:
    batch_id: int
    start: int
    stop: int
    source: str
    provenance: dict[str, Any]


class EntropyPool:
    """`EntropyPool(path)`: open (or create) the pool; safe to share between threads and
    processes (each process opens its own).

    `clock` gives the time draws are stamped with (UTC); tests hand in one that stands still
    or jumps, so the recent exhibit rate (`draws_since`) can be checked against known times.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = BUSY_TIMEOUT_S,
                 read_only: bool = False, clock: Callable[[], datetime] = utc_now):
        self.path = Path(path)
        self.read_only = read_only
        self._clock = clock
        self._lock = threading.RLock()
        self._busy_timeout_s = busy_timeout_s
        try:
            self._db = database.connect(self.path, "entropy pool", read_only=read_only,
                                        timeout_s=busy_timeout_s, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ExternalError(f"cannot open the entropy pool {self.path}: {exc}") from None
        try:
            if read_only:
                self._check_readable_schema()
            else:
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise ExternalError(f"the entropy pool {self.path} cannot use WAL journaling "
                                        f"(got {mode})", hint="keep the qcat home on a local disk")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._migrate()
            self.pool_id = self._meta("pool_id")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise FormatError(f"{self.path} is not a qcat entropy pool (SQLite says: {exc})",
                                  hint="move the file aside; qcat creates a fresh pool") from None
            raise ExternalError(f"cannot open the entropy pool {self.path}: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EntropyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: all of it is committed, or none of it."""
        if self.read_only:
            raise InputError(f"the entropy pool {self.path} is open read-only; nothing was "
                             "drawn, stored or changed",
                             hint="run this on a writable copy of the qcat home")
        with self._lock:
            self._begin_immediate()
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _begin_immediate(self) -> None:
        """BEGIN IMMEDIATE, polling the lock ourselves at short random intervals.

        SQLite's own busy handler backs off to 100 ms sleeps; a process drawing in a loop
        re-takes the lock within microseconds of releasing it, so a second process waiting that
        way starves. Polling every fraction of a millisecond gives waiters a fair chance.
        """
        deadline = time.monotonic() + self._busy_timeout_s
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() > deadline:
                        raise self._locked(exc) from None
                time.sleep(random.uniform(*LOCK_POLL_S))
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")

    def _locked(self, exc: sqlite3.OperationalError) -> ExternalError:
        if _is_busy(exc):
            return ExternalError(f"the entropy pool {self.path} stayed locked by another process "
                                 f"for {self._busy_timeout_s:g} s",
                                 hint="another qcat is fetching or exporting; try again")
        return ExternalError(f"the entropy pool {self.path} failed: {exc}")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return self._check_identity()
        if version > SCHEMA_VERSION:
            raise FormatError(f"{self.path} was written by a newer qcat (pool schema {version}, "
                              f"this qcat knows {SCHEMA_VERSION})", hint="upgrade qcat")
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # another process won?
            if version == 0:
                tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                app = db.execute("PRAGMA application_id").fetchone()[0]
                if tables or app not in (0, APPLICATION_ID):
                    raise FormatError(f"{self.path} is an SQLite database but not a qcat "
                                      "entropy pool", hint="point --home at a qcat home folder")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    db.execute(statement)
                if step == 1:
                    db.execute("INSERT INTO meta VALUES ('pool_id', ?), ('created', ?)",
                               (uuid.uuid4().hex, _iso()))
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return None

    def _check_readable_schema(self) -> None:
        """A read-only pool cannot be migrated: it must already be this qcat's schema."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            newer = "a newer" if version > SCHEMA_VERSION else "an older"
            raise FormatError(f"{self.path} was written by {newer} qcat (pool schema {version}, "
                              f"this qcat reads {SCHEMA_VERSION}) and is read-only here",
                              hint="open it once on writable storage with this qcat to upgrade it"
                              if version < SCHEMA_VERSION else "upgrade qcat")
        self._check_identity()

    def _check_identity(self) -> None:
        app = self._db.execute("PRAGMA application_id").fetchone()[0]
        if app != APPLICATION_ID:
            raise FormatError(f"{self.path} is an SQLite database but not a qcat entropy pool",
                              hint="point --home at a qcat home folder")

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else ""

    # -- requests (the monthly budget) ----------------------------------------------------------

    def begin_request(self, api: str, base_url: str, kind: str,
                      now: datetime | None = None) -> int:
        """Record an ANU request *before* it is sent: a crash mid-request still counts."""
        moment = now or utc_now()
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO requests (api, base_url, kind, started, started_epoch, month) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (api, base_url, kind, _iso(moment), moment.timestamp(), moment.strftime("%Y-%m")))
            return int(cur.lastrowid or 0)

    def finish_request(self, request_id: int, outcome: str, http_status: int | None = None,
                       detail: str = "", *, reached: bool = True) -> None:
        """Record how a request ended; `reached=False` (it provably never left this machine)
        takes it out of the monthly budget and the pacing."""
        with self._write() as db:
            db.execute("UPDATE requests SET outcome = ?, http_status = ?, detail = ?, "
                       "reached = ? WHERE id = ?",
                       (outcome, http_status, detail[:300], int(reached), request_id))

    def requests_this_month(self, now: datetime | None = None, api: str = BUDGET_API) -> int:
        """Requests of `api` this (UTC) month that may have reached the service."""
        month = (now or utc_now()).strftime("%Y-%m")
        with self._lock:
            return self._db.execute("SELECT count(*) FROM requests WHERE month = ? AND api = ? "
                                    "AND reached = 1", (month, api)).fetchone()[0]

    def last_request_epoch(self, api: str) -> float | None:
        """When the last request of `api` that may have reached the service began (pacing)."""
        with self._lock:
            row = self._db.execute("SELECT max(started_epoch) FROM requests WHERE api = ? "
                                   "AND reached = 1", (api,)).fetchone()
        return row[0]

    # -- storing batches ------------------------------------------------------------------------

    def store_batch(self, data: bytes, source: str, provenance: dict[str, Any], *,
                    request_id: int | None = None, pack_id: str | None = None) -> StoredBatch:
        """Health-check and store one batch; durable when this returns (usable or quarantined)."""
        if source not in SOURCES:
            raise ValueError(f"unknown batch source {source!r}")  # a bug
        with self._write() as db:
            stored = self._store_in(db, data, source, provenance, pack_id, request_id)
            if request_id is not None:
                db.execute("UPDATE requests SET outcome = ?, http_status = 200, detail = ? "
                           "WHERE id = ?", ("stored" if stored.usable else "quarantined",
                                            f"batch {stored.id}", request_id))
        return stored

    @staticmethod
    def _duplicate_reasons(db: sqlite3.Connection, sha: str, blocks: list[bytes],
                           reasons: list[str]) -> None:
        row = db.execute("SELECT id FROM batches WHERE sha256 = ? LIMIT 1", (sha,)).fetchone()
        if row:
            reasons.append(f"duplicate: the whole batch equals batch {row[0]} (a replayed reply)")
            return
        seen = 0
        first = None
        for h in blocks:
            hit = db.execute("SELECT batch_id FROM block_hashes WHERE hash = ?", (h,)).fetchone()
            if hit:
                seen += 1
                first = first or hit[0]
        if seen:
            reasons.append(f"duplicate: {seen} of its 64-byte blocks were stored before "
                           f"(first in batch {first})")

    # -- drawing --------------------------------------------------------------------------------

    def draw(self, n: int, purpose: str, when_empty: str = "fail",
             wait_timeout_s: float = 0.0) -> Draw:
        """Hand out `n` bytes exactly once, recorded with their provenance before returning.

        Served wholly from quantum bytes, or, when fewer than `n` usable bytes are left, wholly
        by the policy: "os" (os.urandom, source os-fallback), "wait" (poll until bytes arrive
        or `wait_timeout_s` passes), "fail" (EntropyExhausted).
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_DRAW_BYTES:
            raise InputError(f"a draw needs between 1 and {MAX_DRAW_BYTES} bytes, not {n!r}")
        if not isinstance(purpose, str) or not purpose.strip() or len(purpose) > MAX_PURPOSE_CHARS:
            raise InputError(f"a draw needs a purpose of 1 to {MAX_PURPOSE_CHARS} characters")
        if when_empty not in WHEN_EMPTY:
            raise InputError(f"when_empty must be one of {', '.join(WHEN_EMPTY)}, "
                             f"not {when_empty!r}")
        deadline = time.monotonic() + max(0.0, wait_timeout_s)
        while True:
            with self._write() as db:
                spans, available = self._take(db, n)
                if spans:
                    return self._record_draw(db, n, purpose, spans)
                if when_empty == "os":
                    return self._record_os_draw(db, n, purpose, available)
            left = deadline - time.monotonic()
            if when_empty == "wait" and left > 0:
                time.sleep(min(WAIT_POLL_S, left))
                continue
            waited = f" after waiting {wait_timeout_s:g} s" if when_empty == "wait" else ""
            raise EntropyExhausted(f"the entropy pool holds {available:,} usable bytes, "
                                   f"{n:,} were needed{waited}", hint=EMPTY_HINT)

    def _take(self, db: sqlite3.Connection, n: int) -> tuple[list[_Span], int]:
        """The next `n` unspent bytes as spans (inside a write transaction), or ([], available)."""
        spans: list[_Span] = []
        need = n
        got = 0
        for batch_id, size, consumed, source, prov in db.execute(
                "SELECT id, size, consumed, source, provenance FROM batches "
                "WHERE status = 'usable' AND consumed < size ORDER BY id"):
            take = min(need, size - consumed)
            spans.append(_Span(batch_id, consumed, consumed + take, source, json.loads(prov)))
            need -= take
            got += size - consumed
            if need == 0:
                return spans, got
        return [], got

    def _consume(self, db: sqlite3.Connection, spans: list[_Span], owner: str,
                 owner_id: int) -> None:
        for s in spans:
            # The WHERE re-checks the cursor: if anything else had moved it, nothing is updated
            # and we stop rather than hand out the same bytes twice.
            cur = db.execute("UPDATE batches SET consumed = ? WHERE id = ? AND consumed = ?",
                             (s.stop, s.batch_id, s.start))
            if cur.rowcount != 1:
                raise RuntimeError(f"cursor of batch {s.batch_id} moved under a write lock")
            db.execute(f"INSERT INTO spans (batch_id, start, stop, {owner}) VALUES (?, ?, ?, ?)",
                       (s.batch_id, s.start, s.stop, owner_id))

    @staticmethod
    def _bytes_of(db: sqlite3.Connection, spans: list[_Span]) -> bytes:
        parts = []
        for s in spans:
            (chunk,) = db.execute("SELECT substr(data, ?, ?) FROM batches WHERE id = ?",
                                  (s.start + 1, s.stop - s.start, s.batch_id)).fetchone()
            parts.append(bytes(chunk))
        return b"".join(parts)

    @staticmethod
    def _segments(spans: list[_Span]) -> list[dict[str, Any]]:
        keep = ("source", "api", "base_url", "request_time", "server_date", "request_number",
                "sha256", "pack_id", "pack_created")
        return [{"batch": s.batch_id, "offset": s.start, "length": s.stop - s.start,
                 **{k: s.provenance[k] for k in keep if k in s.provenance}} for s in spans]

    def _record_draw(self, db: sqlite3.Connection, n: int, purpose: str,
                     spans: list[_Span]) -> Draw:
        data = self._bytes_of(db, spans)
        if len(data) != n:
            raise RuntimeError(f"pool read {len(data)} bytes for a draw of {n}")  # a bug
        prov = {"segments": self._segments(spans), "pool_id": self.pool_id}
        source = EntropySource(spans[0].source)
        created = _iso(self._clock())
        cur = db.execute("INSERT INTO draws (purpose, source, size, data, provenance, created) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (purpose, source, n, data, json.dumps(prov, sort_keys=True), created))
        draw_id = int(cur.lastrowid or 0)
        self._consume(db, spans, "draw_id", draw_id)
        return Draw(draw_id, data, purpose, source, prov, created)

    def _record_os_draw(self, db: sqlite3.Connection, n: int, purpose: str,
                        available: int) -> Draw:
        data = os.urandom(n)
        prov = {"source": OS_FALLBACK, "policy": "os", "pool_id": self.pool_id,
                "reason": f"the pool held {available} usable bytes, {n} were needed"}
        created = _iso(self._clock())
        cur = db.execute("INSERT INTO draws (purpose, source, size, data, provenance, created) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (purpose, OS_FALLBACK, n, data, json.dumps(prov, sort_keys=True),
                          created))
        return Draw(int(cur.lastrowid or 0), data, purpose, OS_FALLBACK, prov, created)

    # -- reading draws --------------------------------------------------------------------------

    _DRAW_COLUMNS = "id, data, purpose, source, provenance, created"

    @staticmethod
    def _draw_from_row(row: tuple[Any, ...]) -> Draw:
        return Draw(row[0], bytes(row[1]), row[2], EntropySource(row[3]), json.loads(row[4]),
                    row[5])

    def get_draw(self, draw_id: int) -> Draw:
        """The exact bytes and provenance of a past draw."""
        with self._lock:
            row = self._db.execute(f"SELECT {self._DRAW_COLUMNS} FROM draws WHERE id = ?",
                                   (draw_id,)).fetchone()
        if row is None:
            raise InputError(f"the entropy pool has no draw {draw_id}")
        return self._draw_from_row(row)

    def draws(self, purpose: str | None = None) -> list[Draw]:
        """Every draw (of one purpose), oldest first."""
        sql = f"SELECT {self._DRAW_COLUMNS} FROM draws"
        args: tuple[Any, ...] = ()
        if purpose is not None:
            sql += " WHERE purpose = ?"
            args = (purpose,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [self._draw_from_row(r) for r in rows]

    def draw_purposes(self, prefix: str = "") -> list[tuple[int, str]]:
        """(id, purpose) of every draw whose purpose starts with `prefix`, oldest first, without
        their bytes: cheap enough to call before every exhibit however long the history."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, purpose FROM draws WHERE substr(purpose, 1, ?) = ? ORDER BY id",
                (len(prefix), prefix)).fetchall()
        return [(int(i), str(p)) for i, p in rows]

    def draws_since(self, moment: datetime, purpose_prefix: str = "") -> int:
        """How many draws (os-fallback ones too: they met a demand) whose purpose starts with
        `purpose_prefix` were made at or after `moment`: the recent exhibit rate.

        `created` is stored as ISO-8601 UTC text of one fixed shape, so text order is time
        order and the comparison stays in SQL, however long the history."""
        since = _iso(moment.astimezone(UTC))
        with self._lock:
            return int(self._db.execute(
                "SELECT count(*) FROM draws WHERE created >= ? AND substr(purpose, 1, ?) = ?",
                (since, len(purpose_prefix), purpose_prefix)).fetchone()[0])

    # -- SD-card leases -------------------------------------------------------------------------

    def lease(self, records: int, unit: str, card_id: str) -> Lease:
        """Lease `records` exhibits' bytes to one unit's card, for good, in one transaction.

        Each record is one ordinary draw of 203 bytes (purpose `lease:<lease_id>:<i>`), so an
        exhibit the unit makes offline from record i is later archived with draw i's id, and
        the gallery's checks work unchanged. Quantum bytes only: a card's reserve is never
        os-fallback, and a pool holding fewer than `records` exhibits leases nothing. A crash
        at any instant leaves the whole lease or none of it.
        """
        if isinstance(records, bool) or not isinstance(records, int) or \
                not 0 < records <= MAX_LEASE_RECORDS:
            raise InputError(f"a lease needs between 1 and {MAX_LEASE_RECORDS:,} records, "
                             f"not {records!r}")
        if not isinstance(unit, str) or not 0 < len(unit) <= MAX_UNIT_CHARS or \
                not unit.isascii() or not unit.isprintable():
            raise InputError(f"unit serial {unit!r} is not 1 to {MAX_UNIT_CHARS} printable "
                             "ASCII characters")
        if not _is_hex_id(card_id):
            raise InputError(f"card id {card_id!r} is not 32 lowercase hex digits")
        need = records * EXHIBIT_BYTES
        lease_id = uuid.uuid4().hex
        with self._write() as db:
            available = db.execute("SELECT coalesce(sum(size - consumed), 0) FROM batches "
                                   "WHERE status = 'usable'").fetchone()[0]
            if available < need:
                raise EntropyExhausted(f"the entropy pool holds {available:,} usable bytes, "
                                       f"{need:,} were needed (a lease of {records:,} "
                                       f"records); nothing was leased", hint=LEASE_EMPTY_HINT)
            draws: list[Draw] = []
            for i in range(records):
                if i == records // 2:
                    faults.point("lease-mid")  # half the draws made: all or nothing must hold
                spans, _ = self._take(db, EXHIBIT_BYTES)
                if not spans:
                    raise RuntimeError("the pool ran dry inside a lease it had counted")  # a bug
                draws.append(self._record_draw(db, EXHIBIT_BYTES, lease_purpose(lease_id, i),
                                               spans))
            created = _iso(self._clock())
            db.execute("INSERT INTO leases (lease_id, unit, card_id, records, first_draw_id, "
                       "created) VALUES (?, ?, ?, ?, ?, ?)",
                       (lease_id, unit, card_id, records, draws[0].id, created))
            faults.point("lease-before-commit")
        return Lease(lease_id, unit, card_id, records, created, [d.id for d in draws],
                     [d.data for d in draws])

    def _lease_row(self, db: sqlite3.Connection, lease_id: str) -> tuple[str, str, int, int, str]:
        row = db.execute("SELECT unit, card_id, records, first_draw_id, created FROM leases "
                         "WHERE lease_id = ?", (lease_id,)).fetchone() \
            if isinstance(lease_id, str) else None
        if row is None:
            raise InputError(f"the entropy pool has no lease {lease_id!r}",
                             hint="`qcat sd verify CARD` shows the lease id a card carries")
        return row

    def _lease_draws(self, db: sqlite3.Connection, lease_id: str, first: int,
                     records: int) -> list[Draw]:
        rows = db.execute(f"SELECT {self._DRAW_COLUMNS} FROM draws WHERE id >= ? AND id < ? "
                          "ORDER BY id", (first, first + records)).fetchall()
        found = [self._draw_from_row(r) for r in rows]
        if [d.purpose for d in found] != [lease_purpose(lease_id, i) for i in range(records)]:
            raise RuntimeError(f"lease {lease_id}'s draws are not where its row says")  # audit
        return found

    def get_lease(self, lease_id: str) -> Lease:
        """A lease with its records' bytes; InputError for an unknown id."""
        with self._lock:
            unit, card_id, records, first, created = self._lease_row(self._db, lease_id)
            found = self._lease_draws(self._db, lease_id, first, records)
        return Lease(lease_id, unit, card_id, records, created, [d.id for d in found],
                     [d.data for d in found])

    def lease_draws(self, lease_id: str) -> list[Draw]:
        """A lease's draws in record order, with their provenance (what an offline exhibit of
        record i is archived with)."""
        with self._lock:
            _, _, records, first, _ = self._lease_row(self._db, lease_id)
            return self._lease_draws(self._db, lease_id, first, records)

    def leases(self) -> list[Lease]:
        """Every lease, oldest first."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT lease_id FROM leases "
                                                  "ORDER BY first_draw_id")]
        return [self.get_lease(i) for i in ids]

    def returned_records(self, lease_id: str) -> set[int]:
        """The records of a lease already given back to the pool."""
        with self._lock:
            self._lease_row(self._db, lease_id)
            return {int(r[0]) for r in self._db.execute(
                "SELECT record FROM lease_returns WHERE lease_id = ?", (lease_id,))}

    def spent_records(self, lease_id: str) -> set[int]:
        """The records of a lease that a reconciled journal says its unit spent."""
        with self._lock:
            self._lease_row(self._db, lease_id)
            return {int(r[0]) for r in self._db.execute(
                "SELECT record FROM lease_spent WHERE lease_id = ?", (lease_id,))}

    def mark_spent(self, lease_id: str, indices: Iterable[int]) -> int:
        """Record that a card's unit spent these records (its journal says so), in one
        transaction; returns how many were new. Marking twice changes nothing. A spent record
        can never be returned (`return_records` refuses it): a journal that says a record was
        spent cannot give it back. A record already returned is not marked (the caller reports
        that as a copied card: its bytes now live in the pool)."""
        wanted = sorted(set(indices))
        with self._write() as db:
            _, _, records, _, _ = self._lease_row(db, lease_id)
            bad = [i for i in wanted if not 0 <= i < records]
            if bad:
                raise InputError(f"lease {lease_id} has records 0 to {records - 1}; there is no "
                                 f"record {bad[0]}")
            returned = {int(r[0]) for r in db.execute(
                "SELECT record FROM lease_returns WHERE lease_id = ?", (lease_id,))}
            now = _iso()
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO lease_spent (lease_id, record, created) "
                           "VALUES (?, ?, ?)",
                           ((lease_id, i, now) for i in wanted if i not in returned))
            return db.total_changes - before

    def return_records(self, lease_id: str, indices: Iterable[int]) -> StoredBatch:
        """Give records of a lease that are proven unused back to the pool, in one transaction.

        The records' bytes, in index order, become one new usable batch whose source is the
        draws' (the first record's, should the lease have spanned batches of two sources: the
        provenance keeps every original segment) and whose provenance says where they came
        back from. A record goes back once, ever (`lease_returns`' primary key); after that its
        bytes are drawable again exactly once, as any batch's.

        Only a caller that has *proof* that the records were never shown may call this (a
        clean journal, `firmware.cardfmt.Journal.proves_unused`): a byte that was spent on a
        card must never come back.

        The health tests and the replay detector are not run on these bytes, and their block
        hashes are not added: the detector exists to refuse material *arriving from outside*
        that this pool already holds, and returned bytes are, by construction, bytes it holds
        (their original batches stay stored, spent), so it would be right to refuse them and
        wrong to do so; they passed the health tests inside their original batch. `audit()`
        checks a return batch instead against the lease draws it came from.
        """
        wanted = list(indices)
        if not wanted:
            raise InputError("no records were named to return", hint="name at least one record")
        if any(isinstance(i, bool) or not isinstance(i, int) for i in wanted):
            raise InputError(f"record numbers must be whole numbers, not {wanted!r}")
        if len(set(wanted)) != len(wanted):
            twice = sorted({i for i in wanted if wanted.count(i) > 1})
            raise InputError(f"record {twice[0]} is named twice in one return")
        order = sorted(wanted)
        with self._write() as db:
            _, _, records, first, _ = self._lease_row(db, lease_id)
            bad = [i for i in order if not 0 <= i < records]
            if bad:
                raise InputError(f"lease {lease_id} has records 0 to {records - 1}; there is no "
                                 f"record {bad[0]}")
            for i in order:
                if db.execute("SELECT 1 FROM lease_spent WHERE lease_id = ? AND record = ?",
                              (lease_id, i)).fetchone():
                    raise InputError(f"record {i} of lease {lease_id} was spent by its unit (a "
                                     "reconciled journal says so); a spent record never comes "
                                     "back", hint="nothing was returned this time")
                row = db.execute("SELECT batch_id FROM lease_returns WHERE lease_id = ? AND "
                                 "record = ?", (lease_id, i)).fetchone()
                if row is not None:
                    raise InputError(f"record {i} of lease {lease_id} was already returned to "
                                     f"the pool (batch {row[0]}); a record goes back once",
                                     hint="nothing was returned this time")
            draws = self._lease_draws(db, lease_id, first, records)
            chosen = [draws[i] for i in order]
            data = b"".join(d.data for d in chosen)
            source = chosen[0].source
            if source == OS_FALLBACK:
                raise RuntimeError(f"lease {lease_id} holds os-fallback bytes")  # a bug
            sha = hashlib.sha256(data).hexdigest()
            prov = {"source": str(source), "sha256": sha, "size": len(data),
                    "returned_from": {"lease_id": lease_id, "records": order},
                    "segments": [seg for d in chosen for seg in d.provenance["segments"]]}
            cur = db.execute(
                "INSERT INTO batches (source, status, reason, size, sha256, data, provenance, "
                "created) VALUES (?, 'usable', NULL, ?, ?, ?, ?, ?)",
                (str(source), len(data), sha, data, json.dumps(prov, sort_keys=True), _iso()))
            batch_id = int(cur.lastrowid or 0)
            db.executemany("INSERT INTO lease_returns (lease_id, record, batch_id) VALUES "
                           "(?, ?, ?)", ((lease_id, i, batch_id) for i in order))
        return StoredBatch(batch_id, len(data), "usable", (), str(source))

    # -- packs ----------------------------------------------------------------------------------

    def export_pack(self, n: int, path: str | os.PathLike[str]) -> ExportResult:
        """Move `n` bytes out of the pool into a pack file; they are never served here again.

        The pack is written and fsynced under a temporary name inside the transaction that
        spends the bytes; after COMMIT it is renamed into place. A crash before COMMIT leaves
        the bytes in the pool (and only a `.partial` file); after COMMIT the bytes are gone
        from here whatever happens, so no byte can ever be served in two places.
        """
        out = Path(path)
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise InputError(f"an export needs a positive number of bytes, not {n!r}")
        if out.exists():
            raise InputError(f"{out} already exists; a pack is never overwritten "
                             "(the bytes in it would be lost)", hint="choose a new file name")
        if not out.parent.is_dir():
            raise InputError(f"folder {out.parent} does not exist")
        with self._write() as db:
            spans, available = self._take(db, n)
            if not spans:
                raise InputError(f"the pool holds {available} usable bytes; cannot export {n}",
                                 hint="export fewer bytes, or fetch more first")
            data = self._bytes_of(db, spans)
            pack_id = packfmt.new_pack_id()
            created = _iso()
            prov = {"format": "qcat entropy pack", "pack_id": pack_id, "created": created,
                    "pool_id": self.pool_id, "bytes": n,
                    "data_sha256": hashlib.sha256(data).hexdigest(),
                    "segments": self._segments(spans)}
            blob = packfmt.encode(packfmt.Pack(pack_id, data, prov))
            file_sha = hashlib.sha256(blob).hexdigest()
            cur = db.execute("INSERT INTO exports (pack_id, size, file_sha256, path, created) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (pack_id, n, file_sha, str(out.absolute()), created))
            self._consume(db, spans, "export_id", int(cur.lastrowid or 0))
            db.execute("INSERT INTO packs VALUES (?, 'export', ?, ?)", (pack_id, n, created))
            try:
                tmp = packfmt.write_temp(out, blob)
            except OSError as exc:
                raise InputError(f"cannot write {out}: {exc.strerror}; nothing was exported") \
                    from None
        packfmt.publish(tmp, out)
        return ExportResult(pack_id, out, n, file_sha)

    def import_pack(self, path: str | os.PathLike[str]) -> StoredBatch:
        """Add a pack's bytes as one batch (health-checked); a pack id is accepted once, ever."""
        p = packfmt.read(Path(path))
        with self._lock:
            row = self._db.execute("SELECT direction, created FROM packs WHERE pack_id = ?",
                                   (p.pack_id,)).fetchone()
        if row is None and p.provenance.get("pool_id") == self.pool_id:
            row = ("export", "")
        if row is not None:
            done = "imported into" if row[0] == "import" else "exported from"
            raise InputError(f"pack {p.pack_id} was already {done} this pool; "
                             "its bytes may not be used twice",
                             hint="each pack is imported once, into one pool")
        prov = {"source": "import", "pack_id": p.pack_id, "pack_created":
                p.provenance.get("created"), "from_pool": p.provenance.get("pool_id"),
                "from_segments": p.provenance.get("segments", [])}
        # store_batch and the pack record must be one transaction: re-check inside it.
        with self._write() as db:
            if db.execute("SELECT 1 FROM packs WHERE pack_id = ?", (p.pack_id,)).fetchone():
                raise InputError(f"pack {p.pack_id} was already imported into this pool")
            db.execute("INSERT INTO packs VALUES (?, 'import', ?, ?)",
                       (p.pack_id, len(p.data), _iso()))
            stored = self._store_in(db, p.data, "import", prov, pack_id=p.pack_id)
        return stored

    def _store_in(self, db: sqlite3.Connection, data: bytes, source: str,
                  provenance: dict[str, Any], pack_id: str | None = None,
                  request_id: int | None = None) -> StoredBatch:
        """Health-check and insert one batch (the caller holds the write transaction)."""
        report = health.check(data)
        sha = hashlib.sha256(data).hexdigest()
        blocks = health.block_hashes(data)
        reasons = list(report.failures)
        self._duplicate_reasons(db, sha, blocks, reasons)
        status = "quarantined" if reasons else "usable"
        prov = dict(provenance, sha256=sha, size=len(data))
        if report.chi2 is not None:
            prov["chi_square"] = round(report.chi2, 2)
        if request_id is not None:
            prov["request_number"] = request_id
        cur = db.execute(
            "INSERT INTO batches (source, status, reason, size, sha256, data, provenance, "
            "created, request_id, pack_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (source, status, "; ".join(reasons) or None, len(data), sha, data,
             json.dumps(prov, sort_keys=True), _iso(), request_id, pack_id))
        batch_id = int(cur.lastrowid or 0)
        db.executemany("INSERT OR IGNORE INTO block_hashes VALUES (?, ?)",
                       ((h, batch_id) for h in blocks))
        return StoredBatch(batch_id, len(data), status, tuple(reasons), source)

    # -- looking at the pool --------------------------------------------------------------------

    def available_bytes(self) -> int:
        with self._lock:
            return self._db.execute("SELECT coalesce(sum(size - consumed), 0) FROM batches "
                                    "WHERE status = 'usable'").fetchone()[0]

    def quarantined(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, source, size, created, reason, provenance "
                                    "FROM batches WHERE status = 'quarantined' ORDER BY id"
                                    ).fetchall()
        return [{"batch": r[0], "source": r[1], "size": r[2], "created": r[3], "reason": r[4],
                 "provenance": json.loads(r[5])} for r in rows]

    def batch_data(self, batch_id: int) -> bytes:
        """A stored batch's bytes, for inspection only (never hand these out: use draw)."""
        with self._lock:
            row = self._db.execute("SELECT data FROM batches WHERE id = ?",
                                   (batch_id,)).fetchone()
        if row is None:
            raise InputError(f"the entropy pool has no batch {batch_id}")
        return bytes(row[0])

    def recent_requests(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, api, base_url, kind, started, outcome, "
                                    "http_status, detail, reached FROM requests "
                                    "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        keys = ("id", "api", "base_url", "kind", "started", "outcome", "http_status", "detail",
                "reached")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def status(self) -> dict[str, Any]:
        """The numbers `qcat entropy status --json` prints (no secret can be among them)."""
        q = self._lock
        with q:
            one = lambda sql, *a: self._db.execute(sql, a).fetchone()  # noqa: E731
            available = one("SELECT coalesce(sum(size - consumed), 0) FROM batches "
                            "WHERE status = 'usable'")[0]
            usable, stored = one("SELECT count(*) FILTER (WHERE status = 'usable'), count(*) "
                                 "FROM batches")
            quarantined = stored - usable
            served = one("SELECT coalesce(sum(size), 0), count(*) FROM draws "
                         "WHERE source != 'os-fallback'")
            fallback = one("SELECT coalesce(sum(size), 0), count(*), max(created) FROM draws "
                           "WHERE source = 'os-fallback'")
            exported = one("SELECT coalesce(sum(size), 0), count(*) FROM exports")
            # a return batch (records given back by a card) is neither an import nor a fetch
            not_returned = "id NOT IN (SELECT batch_id FROM lease_returns)"
            imported = one("SELECT coalesce(sum(size), 0), count(*) FROM batches "
                           f"WHERE source = 'import' AND status = 'usable' AND {not_returned}")
            last_fetch = one("SELECT max(created) FROM batches WHERE source != 'import' "
                             f"AND {not_returned}")[0]
            nxt = one("SELECT source FROM batches WHERE status = 'usable' AND consumed < size "
                      "ORDER BY id LIMIT 1")
            requests_total = one("SELECT count(*) FROM requests")[0]
            leased = one("SELECT count(*), coalesce(sum(records), 0) FROM leases")
            returned = one("SELECT count(*) FROM lease_returns")[0]
        return {
            "available_bytes": available,
            "exhibits_left": available // EXHIBIT_BYTES,
            "served_bytes": served[0],
            "draws": served[1] + fallback[1],
            "exported_bytes": exported[0],
            "exports": exported[1],
            "imported_bytes": imported[0],
            "batches": stored,
            "usable_batches": usable,
            "quarantined_batches": quarantined,
            "requests_this_month": self.requests_this_month(),
            "legacy_requests_this_month": self.requests_this_month(api="legacy"),
            "requests_total": requests_total,
            "last_fetch": last_fetch,
            "source": nxt[0] if nxt else "empty",
            "os_fallback_draws": fallback[1],
            "os_fallback_bytes": fallback[0],
            "last_os_fallback": fallback[2],
            "leases": leased[0],
            "leased_records": leased[1],
            "leased_bytes": leased[1] * EXHIBIT_BYTES,
            "returned_records": returned,
            "pool_id": self.pool_id,
            "path": str(self.path),
        }

    # -- audit ----------------------------------------------------------------------------------

    def audit(self) -> AuditReport:
        """Re-prove every invariant from the raw tables; each violation is one sentence."""
        rep = AuditReport()
        v = rep.violations
        with self._lock:
            db = self._db
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            if integrity != "ok":
                v.append(f"SQLite integrity check failed: {integrity}")
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                v.append("the schema version is not the one this qcat wrote")
            batches = {r[0]: r for r in db.execute(
                "SELECT id, source, status, size, consumed, sha256, length(data), data FROM "
                "batches ORDER BY id")}
            spans_by_batch: dict[int, list[tuple[int, int, int | None, int | None]]] = {}
            for batch_id, start, stop, draw_id, export_id in db.execute(
                    "SELECT batch_id, start, stop, draw_id, export_id FROM spans "
                    "ORDER BY batch_id, start"):
                spans_by_batch.setdefault(batch_id, []).append((start, stop, draw_id, export_id))
            known_blocks = {bytes(r[0]) for r in db.execute("SELECT hash FROM block_hashes")}
            # Return batches hold bytes this pool already held (their hashes are not added: see
            # return_records); they are checked against their lease draws below instead.
            return_batches = {r[0] for r in db.execute(
                "SELECT DISTINCT batch_id FROM lease_returns")}
            for bid, _source, status, size, consumed, sha, length, data in batches.values():
                data = bytes(data)
                if length != size:
                    v.append(f"batch {bid}: holds {length} bytes, its size says {size}")
                if hashlib.sha256(data).hexdigest() != sha:
                    v.append(f"batch {bid}: its bytes no longer match their SHA-256")
                if not 0 <= consumed <= size:
                    v.append(f"batch {bid}: cursor {consumed} is outside 0..{size}")
                if bid not in return_batches and \
                        any(h not in known_blocks for h in health.block_hashes(data)):
                    v.append(f"batch {bid}: some 64-byte block hashes are missing "
                             "(replays of it would go unnoticed)")
                spans = spans_by_batch.pop(bid, [])
                if status == "quarantined" and (consumed or spans):
                    v.append(f"batch {bid}: quarantined, yet {consumed} of its bytes were spent")
                    continue
                pos = 0
                for start, stop, draw_id, export_id in spans:
                    owner = f"draw {draw_id}" if draw_id is not None else f"export {export_id}"
                    if start < pos:
                        v.append(f"batch {bid}: bytes {start}..{min(pos, stop) - 1} were handed "
                                 f"out twice (again to {owner})")
                    elif start > pos:
                        v.append(f"batch {bid}: bytes {pos}..{start - 1} were spent without "
                                 "a draw or export owning them")
                    pos = max(pos, stop)
                if pos > consumed:
                    v.append(f"batch {bid}: cursor is {consumed} but bytes up to {pos} were "
                             f"handed out: bytes {consumed}..{pos - 1} would be handed out twice")
                elif pos < consumed:
                    v.append(f"batch {bid}: bytes {pos}..{consumed - 1} were spent without a "
                             "draw or export owning them")
            for bid in spans_by_batch:
                v.append(f"spans point at batch {bid}, which does not exist")
            n_draws = n_fallback = 0
            draw_spans: dict[int, list[tuple[int, int, int]]] = {}
            for draw_id, batch_id, start, stop in db.execute(
                    "SELECT draw_id, batch_id, start, stop FROM spans WHERE draw_id IS NOT NULL "
                    "ORDER BY id"):
                draw_spans.setdefault(draw_id, []).append((batch_id, start, stop))
            for did, source, size, data in db.execute(
                    "SELECT id, source, size, data FROM draws ORDER BY id"):
                n_draws += 1
                data = bytes(data)
                spans_d = draw_spans.pop(did, [])
                if len(data) != size:
                    v.append(f"draw {did}: holds {len(data)} bytes, its size says {size}")
                if source == OS_FALLBACK:
                    n_fallback += 1
                    if spans_d:
                        v.append(f"draw {did}: labelled os-fallback but owns pool bytes")
                    continue
                if not spans_d:
                    v.append(f"draw {did}: labelled {source} but owns no pool bytes")
                    continue
                expect = b"".join(bytes(batches[b][7][s:e]) for b, s, e in spans_d
                                  if b in batches)
                if expect != data:
                    v.append(f"draw {did}: its recorded bytes differ from the pool bytes it owns"
                             + _first_mismatch(data, expect))
                if spans_d[0][0] in batches and batches[spans_d[0][0]][1] != source:
                    v.append(f"draw {did}: labelled {source}, but its first batch is "
                             f"{batches[spans_d[0][0]][1]}")
            for did in draw_spans:
                v.append(f"spans point at draw {did}, which does not exist")
            for eid, size in db.execute("SELECT id, size FROM exports"):
                total = db.execute("SELECT coalesce(sum(stop - start), 0) FROM spans "
                                   "WHERE export_id = ?", (eid,)).fetchone()[0]
                if total != size:
                    v.append(f"export {eid}: owns {total} bytes, its size says {size}")
            n_leases = self._audit_leases(db, batches, v)
            rep.counts = {"batches": len(batches), "draws": n_draws,
                          "os_fallback_draws": n_fallback, "leases": n_leases,
                          "returned_records": db.execute(
                              "SELECT count(*) FROM lease_returns").fetchone()[0],
                          "exports": db.execute("SELECT count(*) FROM exports").fetchone()[0]}
        return rep

    @staticmethod
    def _audit_leases(db: sqlite3.Connection, batches: dict[int, tuple[Any, ...]],
                      v: list[str]) -> int:
        """The leases' invariants (schema 3); appends violations to `v`, returns the lease count.

        Every lease owns exactly `records` quantum draws of 203 bytes, `lease:<id>:<i>` in
        record order; every return batch holds exactly its records' draw bytes in index order;
        no record went back twice; no batch claims to be a return without the table saying so
        (that would bring spent bytes back). With these and the per-batch span checks above, a
        returned byte is handed out at most once after its return, and a byte spent on a card
        never again.
        """
        n = 0
        for lease_id, records, first in db.execute(
                "SELECT lease_id, records, first_draw_id FROM leases ORDER BY first_draw_id"
                ).fetchall():
            n += 1
            rows = db.execute("SELECT id, purpose, source, size FROM draws WHERE id >= ? AND "
                              "id < ? ORDER BY id", (first, first + records)).fetchall()
            if len(rows) != records:
                v.append(f"lease {lease_id}: {records} records, but {len(rows)} of its draws "
                         "exist")
            for i, (did, purpose, source, size) in enumerate(rows):
                if purpose != lease_purpose(lease_id, i):
                    v.append(f"lease {lease_id}: draw {did} is {purpose!r}, not record {i}'s")
                elif size != EXHIBIT_BYTES:
                    v.append(f"lease {lease_id}: record {i} (draw {did}) holds {size} bytes, "
                             f"not {EXHIBIT_BYTES}")
                elif source == OS_FALLBACK:
                    v.append(f"lease {lease_id}: record {i} (draw {did}) is os-fallback")
            others = db.execute("SELECT count(*) FROM draws WHERE substr(purpose, 1, ?) = ?",
                                (len(LEASE_PREFIX) + 33, f"{LEASE_PREFIX}{lease_id}:")
                                ).fetchone()[0]
            if others != records:
                v.append(f"lease {lease_id}: {others} draws carry its purpose, it has "
                         f"{records} records")
        for lease_id, record, batch_id in db.execute(
                "SELECT r.lease_id, r.record, r.batch_id FROM lease_returns r LEFT JOIN leases l "
                "USING (lease_id) WHERE l.lease_id IS NULL OR r.record >= l.records").fetchall():
            v.append(f"batch {batch_id}: returns record {record} of lease {lease_id}, which "
                     "has no such record")
        by_batch: dict[int, list[tuple[str, int]]] = {}
        for lease_id, record, batch_id in db.execute(
                "SELECT lease_id, record, batch_id FROM lease_returns ORDER BY batch_id, record"):
            by_batch.setdefault(batch_id, []).append((lease_id, record))
        for bid, row in batches.items():
            returned = by_batch.get(bid)
            claims = "returned_from" in json.loads(db.execute(
                "SELECT provenance FROM batches WHERE id = ?", (bid,)).fetchone()[0])
            if claims and returned is None:
                v.append(f"batch {bid}: says it holds returned records, but no return names it")
            if returned is None:
                continue
            if len({lease for lease, _ in returned}) != 1:
                v.append(f"batch {bid}: holds records of more than one lease")
            expect = b""
            for lease_id, record in returned:
                got = db.execute("SELECT d.data FROM leases l JOIN draws d ON d.id = "
                                 "l.first_draw_id + ? WHERE l.lease_id = ? AND d.purpose = ?",
                                 (record, lease_id, lease_purpose(lease_id, record))).fetchone()
                expect += bytes(got[0]) if got else b""
            if bytes(row[7]) != expect:
                v.append(f"batch {bid}: its bytes differ from the lease records it returns"
                         + _first_mismatch(bytes(row[7]), expect))
        for lease_id, record in db.execute(
                "SELECT s.lease_id, s.record FROM lease_spent s JOIN lease_returns r "
                "USING (lease_id, record)").fetchall():
            v.append(f"lease {lease_id}: record {record} is both spent on its card and "
                     "returned to the pool")
        for bid in by_batch:
            if bid not in batches:
                v.append(f"returned records point at batch {bid}, which does not exist")
        return n


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _first_mismatch(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f" (first at byte {i}: recorded 0x{x:02x}, pool 0x{y:02x})"
    return f" (lengths {len(a)} and {len(b)})"
