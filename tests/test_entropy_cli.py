"""`qcat entropy ...` end to end against the fake ANU over real HTTP, and promise S1: the API
key never appears in output, errors, logs, the database or packs."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

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
    assert "stored 20,480 usable bytes in 1 batch(es) with 1 request(s)" in r.out
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
    fake.push("429", "ok", "403", "success-false", "stuck")
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
