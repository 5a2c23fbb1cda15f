"""`qcat entropy ...` end to end against the fake ANU over real HTTP, and promise S1: the API
key never appears in output, errors, logs, the database or packs."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time

import pytest

from installation.commands.entropy import BOX_WIDTH, display_width, warning_box
from tests.fake_anu import KEY, running_fake


@pytest.fixture
def fake():
    with running_fake() as f:
        yield f


@pytest.fixture
def keyed(qcat_home, monkeypatch):
    """A home whose config never retries (no backoff sleeps in tests) and a key in the env."""
    qcat_home.mkdir(parents=True, exist_ok=True)
    (qcat_home / "qcat.toml").write_text("[entropy]\nmax_retries = 0\n")
    monkeypatch.setenv("QCAT_ANU_API_KEY", KEY)
    return qcat_home


def test_fetch_status_draw_round_trip(keyed, fake, run_qcat):
    r = run_qcat("entropy", "fetch", "--bytes", "20000", "--api-url", fake.url)
    assert r.code == 0, r.err
    assert "stored 20,480 usable bytes in 1 batch with 1 request" in r.out
    assert fake.seen[0].headers["x-api-key"] == KEY
    r = run_qcat("entropy", "draw", "--bytes", "16", "--purpose", "script")
    assert r.code == 0 and len(r.out.strip()) == 32 and int(r.out, 16) >= 0
    r = run_qcat("entropy", "draw", "--bytes", "203", "--purpose", "exhibit", "--json")
    doc = json.loads(r.out)
    assert doc["source"] == "anu" and len(bytes.fromhex(doc["hex"])) == 203
    assert doc["provenance"]["segments"][0]["offset"] == 16
    r = run_qcat("entropy", "status", "--json")
    st = json.loads(r.out)
    assert st["available_bytes"] == 20480 - 219 and st["served_bytes"] == 219
    assert st["exhibits_left"] == (20480 - 219) // 203 and st["requests_this_month"] == 1
    assert st["os_fallback_draws"] == 0 and st["os_fallback_warning"] is None
    assert run_qcat("entropy", "audit").code == 0


def test_fetch_that_fails_midway_says_how_much_was_stored(keyed, fake, run_qcat):
    fake.push("ok", "503")
    r = run_qcat("entropy", "fetch", "--bytes", "40000", "--api-url", fake.url)
    assert r.code == 3
    assert "HTTP 503" in r.err and "stored 20,480 of 40,000 bytes" in r.err
    assert "Traceback" not in r.err
    # resumable: the stored batch is there, the next run only needs one more request
    r = run_qcat("entropy", "fetch", "--bytes", "20000", "--api-url", fake.url)
    assert r.code == 0
    assert json.loads(run_qcat("entropy", "status", "--json").out)["available_bytes"] == 40960


def test_keyed_fetch_without_a_key_is_a_config_error(qcat_home, fake, run_qcat):
    r = run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url)
    assert r.code == 2 and "no ANU API key" in r.err and "--legacy" in r.err
    assert fake.seen == []


def test_status_is_loud_about_os_fallback(keyed, run_qcat):
    r = run_qcat("entropy", "draw", "--bytes", "203", "--purpose", "exhibit", "--when-empty",
                 "os")
    assert r.code == 0 and "NOT quantum" in r.err
    r = run_qcat("entropy", "status")
    assert "WARNING" in r.out and "NOT quantum" in r.out and "os-fallback" in r.out
    assert "NOT quantum" in r.err
    r = run_qcat("entropy", "draw", "--bytes", "1", "--purpose", "x", "--when-empty", "fail")
    assert r.code == 3 and "qcat entropy fetch" in r.err


def test_export_import_between_homes(keyed, fake, run_qcat, tmp_path, monkeypatch):
    assert run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url).code == 0
    pack = tmp_path / "reserve.qcatpack"
    r = run_qcat("entropy", "export", "--bytes", "5000", str(pack))
    assert r.code == 0 and "never be served from this pool" in r.out
    r = run_qcat("entropy", "import", str(pack))
    assert r.code == 2 and "already exported from this pool" in r.err
    monkeypatch.setenv("QCAT_HOME", str(tmp_path / "gallery-pi"))
    r = run_qcat("entropy", "import", str(pack))
    assert r.code == 0 and "added 5,000 bytes" in r.out
    assert run_qcat("entropy", "import", str(pack)).code == 2
    garbage = tmp_path / "garbage.qcatpack"
    garbage.write_bytes(os.urandom(300))
    r = run_qcat("entropy", "import", str(garbage))
    assert r.code == 2 and r.err.count("\n") == 2 and "not a valid entropy pack" in r.err


def test_quarantine_lists_reasons(keyed, fake, run_qcat):
    fake.push("stuck")
    assert run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url).code == 0
    r = run_qcat("entropy", "quarantine")
    assert "batch 1" in r.out and "repetition count test" in r.out
    rows = json.loads(run_qcat("entropy", "quarantine", "--json").out)
    assert rows[0]["batch"] == 1


def test_audit_exits_1_naming_the_violation(keyed, fake, run_qcat, qcat_home):
    assert run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url).code == 0
    run_qcat("entropy", "draw", "--bytes", "100", "--purpose", "x")
    raw = sqlite3.connect(qcat_home / "entropy.sqlite")
    raw.execute("DROP TRIGGER batches_no_rewind")
    raw.execute("UPDATE batches SET consumed = 10")
    raw.commit()
    raw.close()
    r = run_qcat("entropy", "audit")
    assert r.code == 1 and "VIOLATION: batch 1" in r.out and "handed out twice" in r.out


def test_a_world_readable_config_with_a_key_is_refused(qcat_home, run_qcat):
    qcat_home.mkdir(parents=True)
    cfg = qcat_home / "qcat.toml"
    cfg.write_text(f'[entropy]\napi_key = "{KEY}"\n')
    cfg.chmod(0o644)
    r = run_qcat("entropy", "status")
    assert r.code == 2 and "chmod 600" in r.err and KEY not in r.err + r.out
    cfg.chmod(0o600)
    assert run_qcat("entropy", "status").code == 0


def test_the_key_never_leaves_the_header(keyed, fake, run_qcat, qcat_home, tmp_path):
    outputs = []
    fake.push("429-throttle", "ok", "403", "success-false", "stuck")
    for args in (
        ["-vv", "entropy", "fetch", "--bytes", "1", "--api-url", fake.url],  # 429, no retries
        ["-vv", "entropy", "fetch", "--bytes", "1", "--api-url", fake.url],  # ok
        ["-vv", "entropy", "fetch", "--bytes", "1", "--api-url", fake.url],  # 403
        ["entropy", "fetch", "--bytes", "1", "--api-url", fake.url],  # success:false
        ["entropy", "fetch", "--bytes", "1", "--api-url", fake.url],  # stuck: quarantined
        ["entropy", "status"], ["entropy", "status", "--json"], ["entropy", "quarantine"],
        ["entropy", "quarantine", "--json"], ["entropy", "audit", "--json"],
        ["entropy", "draw", "--bytes", "203", "--purpose", "exhibit", "--json"],
        ["entropy", "export", "--bytes", "1000", str(tmp_path / "p.qcatpack")],
        ["config", "show"],
    ):
        r = run_qcat(*args)
        outputs.append(r.out + r.err)
    assert all(seen.headers.get("x-api-key") == KEY for seen in fake.seen)  # it *was* used
    assert all(KEY not in seen.path for seen in fake.seen)
    for text in outputs:
        assert KEY not in text
    files = [p for p in qcat_home.rglob("*") if p.is_file()] + [tmp_path / "p.qcatpack"]
    assert any(p.name.startswith("entropy.sqlite") for p in files)
    assert any(p.suffix == ".log" for p in files)
    for p in files:
        assert KEY.encode() not in p.read_bytes(), f"the API key is in {p}"


def requests_this_month(run_qcat) -> tuple[int, int]:
    st = json.loads(run_qcat("entropy", "status", "--json").out)
    return st["requests_this_month"], st["legacy_requests_this_month"]


def test_offline_fetches_leave_the_monthly_count_alone(keyed, fake, run_qcat):
    assert run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url).code == 0
    assert requests_this_month(run_qcat) == (1, 0)
    with running_fake() as gone:
        closed = gone.url  # nothing listens there any more
    for legacy in ([], ["--legacy"]):
        for _ in range(5):
            started = time.monotonic()
            r = run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", closed, *legacy)
            assert r.code == 3 and "cannot connect" in r.err and "Traceback" not in r.err
            assert "never reached the service and do not count" in r.err
            assert time.monotonic() - started < 5  # no pacing wait for a request never sent
    assert requests_this_month(run_qcat) == (1, 0)
    r = run_qcat("entropy", "status")
    assert re.search(r"requests +1 this month of a budget of 100\n", r.out)


def test_a_quota_429_makes_exactly_one_request(qcat_home, fake, run_qcat, monkeypatch):
    qcat_home.mkdir(parents=True, exist_ok=True)
    (qcat_home / "qcat.toml").write_text("[entropy]\nmax_retries = 3\n")  # retries allowed
    monkeypatch.setenv("QCAT_ANU_API_KEY", KEY)
    fake.push("429-quota")
    started = time.monotonic()
    r = run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url)
    assert time.monotonic() - started < 2  # no backoff either
    assert r.code == 3 and len(fake.seen) == 1
    assert "usage plan's request quota is used up" in r.err and "does not retry" in r.err
    assert "hint: fetch again after the plan's quota resets" in r.err
    assert requests_this_month(run_qcat) == (1, 0)


def test_a_day_long_retry_after_is_reported_not_slept(keyed, fake, run_qcat):
    fake.retry_after = "86400"
    fake.push("429-throttle")
    started = time.monotonic()
    r = run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url)
    assert time.monotonic() - started < 5
    assert r.code == 3 and "Retry-After 86400 s" in r.err and "gave up after 0 retries" in r.err


def test_a_wrong_api_path_names_the_url(keyed, fake, run_qcat):
    r = run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url + "/api/v2")
    assert r.code == 3 and f"no ANU API answers at {fake.url}/api/v2/" in r.err
    assert "not a problem with the key" in r.err and "refused the API key" not in r.err


# -- the os-fallback warning box ---------------------------------------------------------------


def box_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("!!")]


def test_status_warning_box_lines_up(keyed, run_qcat):
    for _ in range(3):  # enough draws for a long sentence
        run_qcat("entropy", "draw", "--bytes", "12345", "--purpose", "x", "--when-empty", "os")
    r = run_qcat("entropy", "status")
    box = box_of(r.out)
    assert len(box) >= 4
    widths = {display_width(line) for line in box}
    assert len(widths) == 1 and widths.pop() <= BOX_WIDTH
    assert set(box[0]) == set(box[-1]) == {"!"}
    assert all(line.startswith("!! ") and line.endswith(" !!") for line in box[1:-1])
    said = " ".join(line[3:-3].strip() for line in box[1:-1])
    warning = json.loads(run_qcat("entropy", "status", "--json").out)["os_fallback_warning"]
    assert f"WARNING: {warning}." in said  # wrapped, nothing lost
    assert "3 draws, 37,035 bytes" in said and "import bytes to stop this." in said


@pytest.mark.parametrize("paragraphs", [
    ["short"],
    ["a" * 200],  # one unbreakable word
    ["os-fallback " * 20, "second paragraph"],
    ["wide \u732b\u732b\u732b characters " * 6],  # two columns each
    ["e\u0301" * 40],  # combining marks take no column
])
def test_warning_box_fits_its_content(paragraphs):
    box = warning_box(paragraphs)
    widths = {display_width(line) for line in box}
    assert len(widths) == 1 and widths.pop() <= BOX_WIDTH
    assert "".join(line[3:-3].replace(" ", "") for line in box[1:-1]) == \
        "".join(p.replace(" ", "") for p in paragraphs)


def test_entropy_help_speaks_plainly(run_qcat):
    words = re.compile(r"\b(issues?|releases?|released|tickets?)\b", re.IGNORECASE)
    for args in (["entropy", "--help"], *(["entropy", c, "--help"] for c in (
            "fetch", "status", "draw", "export", "import", "quarantine", "audit"))):
        r = run_qcat(*args)
        assert r.code == 0 and not words.search(r.out + r.err), args
