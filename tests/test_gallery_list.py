"""`gallery list` filters (limit, since, mood, source), newest first, and refuses bad values in
one sentence. Rows are inserted into the real archive on disk; the CLI runs in-process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from installation import curation
from installation.errors import InputError
from installation.gallery import Gallery
from tests.gallery_support import START, fill_gallery

ROWS = 12  # codes 0..11, one minute apart from START; odd = motivated; multiples of 3 = fallback


@pytest.fixture
def filled(qcat_home):
    with Gallery(qcat_home / "gallery.sqlite", qcat_home / "gallery") as gallery:
        fill_gallery(gallery, ROWS)
    return qcat_home


def listed(run_qcat, *args: str) -> list[int]:
    r = run_qcat("gallery", "list", "--json", *args)
    assert r.code == 0, r.err
    return [e["verdict_code"] for e in json.loads(r.out)]


def test_newest_first_and_limit(run_qcat, filled):
    assert listed(run_qcat) == list(range(ROWS - 1, -1, -1))
    assert listed(run_qcat, "--limit", "3") == [11, 10, 9]


def test_mood_and_source_filters(run_qcat, filled):
    assert listed(run_qcat, "--mood", "motivated") == [11, 9, 7, 5, 3, 1]
    assert listed(run_qcat, "--source", "os-fallback") == [9, 6, 3, 0]
    assert listed(run_qcat, "--source", "quantum", "--mood", "demotivated") == [10, 8, 4, 2]


@pytest.mark.parametrize(("since", "expected"), [
    ("2025-01-01T00:09", [11, 10, 9]),  # a datetime without zone is UTC
    ("2025-01-01 00:09:00+00:00", [11, 10, 9]),
    ("2025-01-01T01:10:00+01:00", [11, 10]),  # 00:10 UTC
    ("2025-01-02", []),  # a date is its midnight
    ("2024-12-31", list(range(ROWS - 1, -1, -1))),
])
def test_since(run_qcat, filled, since, expected):
    assert listed(run_qcat, "--since", since) == expected


def test_text_lines_name_the_fallback_and_say_when_nothing_matches(run_qcat, filled):
    r = run_qcat("gallery", "list", "--limit", "2", "--source", "os-fallback")
    lines = r.out.splitlines()
    assert r.code == 0 and len(lines) == 2
    assert "OS-FALLBACK" in lines[0] and "Verdict number 9 " in lines[0]
    r = run_qcat("gallery", "list", "--since", "2030-01-01")
    assert r.code == 0 and r.out.strip() == "no exhibit matches those filters"


def test_an_empty_gallery_says_how_to_start(run_qcat):
    r = run_qcat("gallery", "list")
    assert r.code == 0 and "the gallery is empty" in r.out


@pytest.mark.parametrize(("args", "message"), [
    (("--limit", "0"), "--limit must be 1 or more, not 0"),
    (("--since", "last tuesday"), "--since takes an ISO date"),
    (("--since", "2025-13-01"), "--since takes an ISO date"),
    (("--mood", "happy"), "--mood must be one of motivated, demotivated, not 'happy'"),
    (("--source", "anu"), "--source must be one of quantum, os-fallback, not 'anu'"),
])
def test_bad_values_are_one_sentence_exit_2(run_qcat, filled, args, message):
    r = run_qcat("gallery", "list", *args)
    assert r.code == 2
    assert message in r.err and r.out == ""
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1


def test_the_service_without_argparse(tmp_path):
    with Gallery(tmp_path / "g.sqlite", tmp_path / "files") as gallery:
        fill_gallery(gallery, ROWS)
        since = datetime(2025, 1, 1, 5, 10, tzinfo=timezone(timedelta(hours=5)))  # 00:10 UTC
        got = curation.list_exhibits(gallery, curation.ListQuery(since=since, mood="demotivated"))
        assert [e.verdict_code for e in got] == [10]
        assert got[0].created == (START + timedelta(minutes=10)).isoformat(timespec="milliseconds")
        with pytest.raises(InputError):
            curation.list_exhibits(gallery, curation.ListQuery(limit=-1))
    assert curation.parse_since("2025-03-01") == datetime(2025, 3, 1, tzinfo=UTC)
