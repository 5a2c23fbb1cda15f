"""The archive's schema: typed records in, versions checked on open, old archives migrated.

Real SQLite files on disk; a schema-1 archive is written with the exact schema qcat 0.1 used.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from installation.errors import CheckFailed, InputError
from installation.gallery import SCHEMA_VERSION, Gallery, NewExhibit
from tests.gallery_support import fill_gallery

SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE exhibits (
    id INTEGER PRIMARY KEY AUTOINCREMENT, draw_id INTEGER NOT NULL UNIQUE, created TEXT NOT NULL,
    entropy_hex TEXT NOT NULL, source TEXT NOT NULL, provenance TEXT NOT NULL,
    model_sha256 TEXT NOT NULL, model_path TEXT NOT NULL, model_size TEXT NOT NULL,
    engine TEXT NOT NULL, image_sha256 TEXT NOT NULL, png_path TEXT NOT NULL,
    png_sha256 TEXT NOT NULL, big_png_path TEXT NOT NULL, wav_path TEXT, wav_sha256 TEXT,
    verdict_code INTEGER NOT NULL, mood TEXT NOT NULL, verdict_text TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO exhibits VALUES (1, 7, '2024-06-01T10:00:00.000+00:00', 'ab', 'anu', '{"batch": 3}',
    'cd', '/m.qcw', 'demo', 'c', 'ef', 'cat-000007.png', '01', 'cat-000007-512.png', NULL, NULL,
    65536, 'motivated', 'A verdict.');
"""


def record(**changes) -> NewExhibit:
    base = NewExhibit(
        draw_id=1, created="2025-01-01T00:00:00.000+00:00", entropy_hex="00" * 203,
        source="anu", provenance={"segments": [{"batch": 1}]}, model_sha256="ab" * 32,
        model_path="/m.qcw", model_size="demo", engine="c", image_sha256="cd" * 32,
        png_path="cat-000001.png", png_sha256="01" * 32, big_png_path="cat-000001-512.png",
        big_png_sha256="02" * 32, wav_path=None, wav_sha256=None, verdict_code=5,
        mood="demotivated", verdict_text="Nope.")
    return dataclasses.replace(base, **changes)


def test_add_takes_a_typed_record_and_returns_it_with_its_id(tmp_path):
    with Gallery(tmp_path / "g.sqlite", tmp_path / "files") as gallery:
        first = gallery.add(record())
        second = gallery.add(record(draw_id=2, big_png_sha256=None))
        assert (first.id, second.id) == (1, 2)
        assert first.provenance == {"segments": [{"batch": 1}]}
        assert first.big_png_sha256 == "02" * 32 and second.big_png_sha256 is None
        # the same draw finished twice (two processes completing one pending exhibit): the
        # first row stays and is what the second gets; another image for it is refused
        again = gallery.add(record(engine="unit:cat:SIM-1"))
        assert (again.id, again.engine) == (1, "c")
        with pytest.raises(CheckFailed, match="entropy draw 1 is archived as exhibit 1"):
            gallery.add(record(image_sha256="ee" * 32))
        assert len(list(gallery.all())) == 2
        # the NULL hash of an old row is filled once, a recorded one never overwritten
        assert gallery.record_big_png_hash(2, "03" * 32) is True
        assert gallery.record_big_png_hash(2, "04" * 32) is False
        assert gallery.record_big_png_hash(1, "05" * 32) is False
        assert gallery.get(2).big_png_sha256 == "03" * 32
        assert gallery.get(1).big_png_sha256 == "02" * 32


def test_a_schema_1_archive_is_migrated_on_open_and_keeps_its_rows(tmp_path):
    db_path = tmp_path / "g.sqlite"
    with sqlite3.connect(db_path) as db:
        db.executescript(SCHEMA_1)
    with Gallery(db_path, tmp_path / "files") as gallery:
        assert gallery.schema_version() == SCHEMA_VERSION == 3
        [old] = list(gallery.all())
        assert (old.id, old.draw_id, old.verdict_code, old.provenance) == (1, 7, 65536, {"batch": 3})
        assert old.big_png_sha256 is None  # stays NULL: checked by pixels until repair proves it
        new = gallery.add(record(draw_id=8))
        assert new.id == 2
    with sqlite3.connect(db_path) as db:
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "exhibits_created" in indexes
    Gallery(db_path, tmp_path / "files").close()  # opening again migrates nothing twice


def test_an_archive_from_a_newer_qcat_is_refused_in_one_sentence(run_qcat, qcat_home):
    qcat_home.mkdir(parents=True)
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:
        db.executescript(SCHEMA_1.replace("'schema_version', '1'", "'schema_version', '9'"))
    r = run_qcat("gallery", "list")
    assert r.code == 2
    assert "was made by a newer qcat (archive schema 9, this qcat knows 3)" in r.err
    assert "Traceback" not in r.err and r.err.count("\n") <= 2
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:  # and it was left untouched
        columns = [r[1] for r in db.execute("PRAGMA table_info(exhibits)")]
    assert "big_png_sha256" not in columns


def test_another_sqlite_database_is_not_taken_for_an_archive(tmp_path):
    db_path = tmp_path / "other.sqlite"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE invoices (n INTEGER)")
    with pytest.raises(InputError, match="not a qcat gallery archive"):
        Gallery(db_path, tmp_path / "files")
    with sqlite3.connect(db_path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"invoices"}  # rolled back, nothing created


def test_a_file_that_is_not_sqlite_is_one_sentence(run_qcat, qcat_home):
    qcat_home.mkdir(parents=True)
    (qcat_home / "gallery.sqlite").write_bytes(b"hello, I am a text file" * 100)
    r = run_qcat("gallery", "list")
    assert r.code == 2 and "is not a readable SQLite database" in r.err


def test_query_filters_in_sql_newest_first(tmp_path):
    statements: list[str] = []
    with Gallery(tmp_path / "g.sqlite", tmp_path / "files") as gallery:
        fill_gallery(gallery, 30)
        gallery._db.set_trace_callback(statements.append)
        got = gallery.query(mood="motivated", quantum=True, limit=4)
    assert [e.verdict_code for e in got] == [29, 25, 23, 19]  # odd, not a multiple of 3
    [sql] = [s for s in statements if s.startswith("SELECT")]
    assert "mood = 'motivated'" in sql and "source != 'os-fallback'" in sql and "LIMIT 4" in sql
    assert json.dumps([e.to_json() for e in got])  # still serialisable


def test_migration_sql_matches_the_dataclass(tmp_path):
    """Every NewExhibit field is a column of a fresh archive (a forgotten migration fails here)."""
    with Gallery(tmp_path / "g.sqlite", tmp_path / "files") as gallery:
        columns = {r[1] for r in gallery._db.execute("PRAGMA table_info(exhibits)")}
    assert {f.name for f in dataclasses.fields(NewExhibit)} | {"id"} == columns



def test_the_gallery_services_stay_off_torch_and_the_ui():
    """The TUI and the kiosk call these services: importing them must not pull in torch, textual
    or rich (same fresh-interpreter probe as tests/test_foundation_imports.py)."""
    from tests.test_foundation_imports import FORBIDDEN_IN_CORE, loaded_after_import

    loaded = loaded_after_import(["installation.curation", "installation.contact_sheet",
                                  "installation.commands.gallery"])
    assert "installation.curation" in loaded  # the probe really imported it
    assert not set(FORBIDDEN_IN_CORE) & loaded
