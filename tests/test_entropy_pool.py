"""The pool on a real SQLite file: draws, policies, provenance, the database's own guards, and
an audit that catches each way the invariants could be broken."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from installation.errors import EntropyExhausted, FormatError, InputError
from quantum.pool import EntropyPool


def stock(pool: EntropyPool, batches: int = 2, size: int = 20480) -> list[bytes]:
    datas = [os.urandom(size) for _ in range(batches)]
    for i, data in enumerate(datas):
        stored = pool.store_batch(data, "anu", {"source": "anu", "base_url": "https://b",
                                                "request_time": f"t{i}"})
        assert stored.usable
    return datas


@pytest.fixture
def pool(tmp_path):
    with EntropyPool(tmp_path / "entropy.sqlite") as p:
        yield p


def test_draws_come_in_order_and_span_batches(pool):
    a, b = stock(pool)
    d1 = pool.draw(20000, "x")
    d2 = pool.draw(1000, "exhibit")  # 480 from batch 1, 520 from batch 2
    assert d1.data == a[:20000] and d2.data == a[20000:] + b[:520]
    segs = d2.provenance["segments"]
    assert [(s["batch"], s["offset"], s["length"]) for s in segs] == [(1, 20000, 480), (2, 0, 520)]
    assert d2.source == "anu" and segs[0]["base_url"] == "https://b"
    assert pool.available_bytes() == 2 * 20480 - 21000


def test_draw_records_are_durable_and_retrievable(pool, tmp_path):
    stock(pool, 1)
    d = pool.draw(203, "exhibit")
    pool.draw(5, "other")
    with EntropyPool(tmp_path / "entropy.sqlite") as again:  # as another process would
        got = again.get_draw(d.id)
        assert (got.data, got.purpose, got.source, got.provenance, got.created) == \
            (d.data, d.purpose, d.source, d.provenance, d.created)
        assert [x.id for x in again.draws("exhibit")] == [d.id]
        assert len(again.draws()) == 2
    with pytest.raises(InputError, match="no draw 99"):
        pool.get_draw(99)


def test_fail_policy_serves_nothing_partial(pool):
    stock(pool, 1, 2000)
    with pytest.raises(EntropyExhausted, match="holds 2,000 usable bytes, 2,001 were needed") as i:
        pool.draw(2001, "exhibit", when_empty="fail")
    assert "qcat entropy fetch" in i.value.hint and i.value.exit_code == 3
    assert pool.available_bytes() == 2000 and pool.draws() == []


def test_os_policy_is_labelled_and_recorded_loudly(pool):
    stock(pool, 1, 2000)
    d = pool.draw(3000, "exhibit", when_empty="os")
    assert d.source == "os-fallback" and len(d.data) == 3000
    assert d.provenance["source"] == "os-fallback" and "2000 usable" in d.provenance["reason"]
    assert pool.available_bytes() == 2000  # wholly by policy: no quantum byte mixed in
    assert pool.get_draw(d.id).data == d.data  # recorded with its bytes (E2)
    st = pool.status()
    assert st["os_fallback_draws"] == 1 and st["os_fallback_bytes"] == 3000
    assert st["served_bytes"] == 0


def test_wait_policy_gets_bytes_that_arrive_meanwhile(pool, tmp_path):
    def later():
        time.sleep(0.3)
        with EntropyPool(tmp_path / "entropy.sqlite") as other:
            stock(other, 1)

    t = threading.Thread(target=later)
    t.start()
    d = pool.draw(203, "exhibit", when_empty="wait", wait_timeout_s=10)
    t.join()
    assert d.source == "anu"


def test_wait_policy_times_out(pool):
    start = time.monotonic()
    with pytest.raises(EntropyExhausted, match="after waiting 0.3 s"):
        pool.draw(1, "x", when_empty="wait", wait_timeout_s=0.3)
    assert time.monotonic() - start >= 0.3


@pytest.mark.parametrize(("n", "purpose", "policy"), [
    (0, "x", "fail"), (-1, "x", "fail"), (True, "x", "fail"), (1.5, "x", "fail"),
    (1, "", "fail"), (1, "x" * 201, "fail"), (1, "x", "maybe"),
])
def test_bad_draw_arguments_are_refused(pool, n, purpose, policy):
    stock(pool, 1)
    with pytest.raises(InputError):
        pool.draw(n, purpose, when_empty=policy)
    assert pool.draws() == []


def test_quarantined_batches_are_never_served(pool):
    good = stock(pool, 1)[0]
    bad = pool.store_batch(b"\x00" * 20480, "anu", {"source": "anu"})
    assert not bad.usable and "repetition count" in bad.reasons[0]
    replay = pool.store_batch(good, "anu", {"source": "anu"})
    assert not replay.usable and "batch 1" in replay.reasons[-1]
    partial = pool.store_batch(os.urandom(640) + good[:64] + os.urandom(640), "anu", {})
    assert not partial.usable and "1 of its 64-byte blocks" in partial.reasons[-1]
    assert pool.available_bytes() == 20480
    assert pool.draw(20480, "all").data == good
    with pytest.raises(EntropyExhausted):
        pool.draw(1, "more")
    assert pool.status()["quarantined_batches"] == 3


def test_status_has_the_documented_keys(pool):
    stock(pool, 1)
    pool.draw(203, "exhibit")
    st = pool.status()
    for key in ("available_bytes", "served_bytes", "exported_bytes", "quarantined_batches",
                "batches", "requests_this_month", "exhibits_left", "last_fetch", "source"):
        assert key in st
    assert st["available_bytes"] == 20480 - 203 and st["exhibits_left"] == (20480 - 203) // 203
    assert st["served_bytes"] == 203 and st["source"] == "anu" and st["last_fetch"]


def test_the_database_refuses_rewinds_and_deletions(pool, tmp_path):
    stock(pool, 1)
    pool.draw(100, "x")
    raw = sqlite3.connect(tmp_path / "entropy.sqlite")
    for sql in ("UPDATE batches SET consumed = 0", "DELETE FROM draws", "DELETE FROM spans",
                "UPDATE draws SET data = x'00'", "DELETE FROM batches",
                "UPDATE batches SET status = 'usable'"):
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute(sql)
    raw.close()


def tamper(path, *statements: str) -> None:
    """Edit the pool the way a careless person with the sqlite3 shell might (triggers off)."""
    raw = sqlite3.connect(path)
    for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        raw.execute(f"DROP TRIGGER {name}")
    for s in statements:
        raw.execute(s)
    raw.commit()
    raw.close()


@pytest.mark.parametrize(("statements", "phrase"), [
    (["UPDATE batches SET consumed = 50 WHERE id = 1"], "bytes 50..119 would be handed out twice"),
    (["UPDATE spans SET start = 90 WHERE draw_id = 2"], "were handed out twice"),
    (["UPDATE batches SET consumed = 150 WHERE id = 1"], "bytes 120..149 were spent without a draw"),
    (["UPDATE draws SET data = zeroblob(100) WHERE id = 1"], "recorded bytes differ"),
    (["UPDATE batches SET data = zeroblob(20480) WHERE id = 1"], "SHA-256"),
    (["DELETE FROM spans WHERE draw_id = 2"], "owns no pool bytes"),
    (["UPDATE draws SET source = 'os-fallback' WHERE id = 1"], "labelled os-fallback but owns"),
    (["UPDATE draws SET source = 'import' WHERE id = 1"], "its first batch is anu"),
    (["DELETE FROM block_hashes"], "block hashes are missing"),
])
def test_audit_names_each_violation(pool, tmp_path, statements, phrase):
    stock(pool, 1)
    pool.draw(100, "x")
    pool.draw(20, "y")
    assert pool.audit().ok
    tamper(tmp_path / "entropy.sqlite", *statements)
    report = pool.audit()
    assert not report.ok
    assert any(phrase in v for v in report.violations), report.violations


def test_not_a_database_is_refused_clearly(tmp_path):
    path = tmp_path / "entropy.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FormatError, match="not a qcat entropy pool"):
        EntropyPool(path)


def test_a_foreign_sqlite_database_is_not_adopted(tmp_path):
    path = tmp_path / "other.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    with pytest.raises(FormatError, match="not a qcat entropy pool"):
        EntropyPool(path)


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "entropy.sqlite"
    EntropyPool(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(FormatError, match="newer qcat"):
        EntropyPool(path)


def test_wal_and_full_sync_are_in_force(pool, tmp_path):
    assert pool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert pool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_draw_purposes_lists_ids_by_prefix_without_bytes(tmp_path):
    from quantum.pool import EntropyPool

    with EntropyPool(tmp_path / "p.sqlite") as pool:
        a = pool.draw(10, "exhibit:abc", when_empty="os")
        pool.draw(10, "card", when_empty="os")
        c = pool.draw(10, "exhibit:def", when_empty="os")
        pool.draw(10, "exhibitor", when_empty="os")
        assert pool.draw_purposes("exhibit:") == [(a.id, "exhibit:abc"), (c.id, "exhibit:def")]
        assert len(pool.draw_purposes()) == 4


def _version_1_pool(path, requests: list[tuple[str, str, str]]) -> None:
    """A pool as qcat wrote it before `requests.reached` existed (schema version 1), holding
    `requests` rows of (api, month, outcome)."""
    from quantum import pool as poolmod

    raw = sqlite3.connect(path)
    for statement in poolmod._SCHEMA_V1:
        raw.execute(statement)
    raw.execute("INSERT INTO meta VALUES ('pool_id', 'old-pool'), ('created', '2024-01-01')")
    for i, (api, month, outcome) in enumerate(requests):
        raw.execute("INSERT INTO requests (api, base_url, kind, started, started_epoch, month, "
                    "outcome) VALUES (?, 'https://b', 'k', 't', ?, ?, ?)",
                    (api, 1000.0 + i, month, outcome))
    raw.execute(f"PRAGMA application_id = {poolmod.APPLICATION_ID}")
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()


def test_a_version_1_pool_opens_and_counts_only_requests_that_may_have_reached(tmp_path):
    from quantum.pool import SCHEMA_VERSION, utc_now

    month = utc_now().strftime("%Y-%m")
    path = tmp_path / "entropy.sqlite"
    _version_1_pool(path, [
        ("keyed", month, "stored"), ("keyed", month, "timeout"),
        ("keyed", month, "connect"),  # version 1 could not tell refused from dropped: counts
        ("keyed", month, "dns"), ("keyed", month, "tls"), ("keyed", month, "no-key"),
        ("legacy", month, "stored"),  # free: not the keyed budget's
        ("keyed", "2000-01", "stored"),  # another month
    ])
    with EntropyPool(path) as pool:
        assert pool._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert pool.pool_id == "old-pool"
        assert pool.requests_this_month() == 3
        assert pool.requests_this_month(api="legacy") == 1
        assert pool.last_request_epoch("keyed") == 1007.0
        stock(pool, 1)
        rid = pool.begin_request("keyed", "https://b", "k")
        pool.finish_request(rid, "connect", None, "refused", reached=False)
        assert pool.requests_this_month() == 3
        assert len(pool.draw(203, "exhibit").data) == 203
        assert pool.audit().ok
    with EntropyPool(path) as again:  # opening a migrated pool is a no-op
        assert again.requests_this_month() == 3
