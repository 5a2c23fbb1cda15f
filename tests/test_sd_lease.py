"""The pool's SD-card leases (schema 3): E1 across cards.

A lease takes `records` exhibits' bytes out of the pool for good, in one transaction; records
proven unused go back once, as one new batch, and are then drawn exactly once more. Every test
ends with `audit()` re-proving the invariants from the raw tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid

import pytest

from installation.errors import EntropyExhausted, InputError
from installation.faults import CRASH_ENV
from quantum import health
from quantum.latent import EXHIBIT_BYTES
from quantum.pool import SCHEMA_VERSION, EntropyPool, lease_purpose
from tests.conftest import REPO

BATCH = 20480


def stock(pool: EntropyPool, batches: int = 2, size: int = BATCH) -> list[bytes]:
    datas = [os.urandom(size) for _ in range(batches)]
    for i, data in enumerate(datas):
        assert pool.store_batch(data, "anu", {"source": "anu", "request_time": f"t{i}"}).usable
    return datas


def card() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def pool(tmp_path):
    with EntropyPool(tmp_path / "entropy.sqlite") as p:
        yield p


def assert_audit_ok(pool: EntropyPool) -> None:
    report = pool.audit()
    assert report.ok, report.violations


def test_a_lease_takes_its_bytes_out_for_good(pool):
    datas = stock(pool, 2)
    pool.draw(100, "exhibit:x")  # the lease starts mid-batch
    lease = pool.lease(120, "cat-07", card())  # 24,360 bytes: spans the two batches
    assert lease.records == 120 and len(lease.draw_ids) == 120 and len(lease.lease_id) == 32
    whole = b"".join(datas)
    assert b"".join(lease.raw) == whole[100:100 + 120 * EXHIBIT_BYTES]
    for i, did in enumerate(lease.draw_ids):
        d = pool.get_draw(did)
        assert d.purpose == lease_purpose(lease.lease_id, i) == f"lease:{lease.lease_id}:{i}"
        assert d.data == lease.record_bytes(i) and len(d.data) == EXHIBIT_BYTES
        assert d.provenance["segments"]  # provenance as any draw's
    assert pool.get_lease(lease.lease_id) == lease and pool.leases() == [lease]
    assert [d.data for d in pool.lease_draws(lease.lease_id)] == lease.raw
    # everything after the lease is what later draws get; never a leased byte
    rest = pool.draw(pool.available_bytes(), "exhibit:y")
    assert rest.data == whole[100 + 120 * EXHIBIT_BYTES:]
    with pytest.raises(EntropyExhausted):
        pool.draw(1, "exhibit:z")
    st = pool.status()
    assert (st["leases"], st["leased_records"], st["leased_bytes"]) == (1, 120, 120 * 203)
    assert st["returned_records"] == 0
    assert_audit_ok(pool)


def test_a_lease_larger_than_the_pool_leases_nothing(pool):
    stock(pool, 1)
    before = pool.available_bytes()
    with pytest.raises(EntropyExhausted) as err:
        pool.lease(BATCH // EXHIBIT_BYTES + 1, "cat-07", card())
    assert "20,480 usable bytes" in err.value.message and "nothing was leased" in err.value.message
    assert err.value.hint and "entropy fetch" in err.value.hint
    assert pool.available_bytes() == before and pool.leases() == [] and pool.draws() == []
    # an empty pool: the same, never os-fallback
    with EntropyPool(pool.path.parent / "empty.sqlite") as empty:
        with pytest.raises(EntropyExhausted):
            empty.lease(1, "cat-07", card())
        assert empty.draws() == []
    assert_audit_ok(pool)


@pytest.mark.parametrize("records, unit, card_id, phrase", [
    (0, "cat-07", "a" * 32, "between 1 and 100,000 records"),
    (100_001, "cat-07", "a" * 32, "between 1 and 100,000 records"),
    (True, "cat-07", "a" * 32, "between 1 and 100,000 records"),
    (1, "", "a" * 32, "unit serial"),
    (1, "x" * 17, "a" * 32, "unit serial"),
    (1, "caté", "a" * 32, "unit serial"),
    (1, "cat-07", "A" * 32, "card id"),
    (1, "cat-07", "a" * 31, "card id"),
])
def test_bad_lease_arguments_are_one_sentence(pool, records, unit, card_id, phrase):
    stock(pool, 1)
    with pytest.raises(InputError) as err:
        pool.lease(records, unit, card_id)
    assert phrase in err.value.message and pool.draws() == []


@pytest.mark.parametrize("crash_at", ["lease-mid", "lease-before-commit"])
def test_sigkill_during_a_lease_leaves_all_or_nothing(tmp_path, crash_at):
    path = tmp_path / "entropy.sqlite"
    with EntropyPool(path) as pool:
        stock(pool, 2)
        before = pool.available_bytes()
    child = ("import sys, uuid\nfrom quantum.pool import EntropyPool\n"
             "EntropyPool(sys.argv[1]).lease(150, 'cat-07', uuid.uuid4().hex)\n"
             "print('returned')\n")
    proc = subprocess.run([sys.executable, "-c", child, str(path)], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, CRASH_ENV: crash_at},
                          timeout=120)
    # the crash point was reached: the child died by SIGKILL inside the transaction
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "returned" not in proc.stdout
    with EntropyPool(path) as pool:
        assert pool.leases() == [] and pool.draws() == []
        assert pool.available_bytes() == before
        assert_audit_ok(pool)
        lease = pool.lease(150, "cat-07", card())  # the same bytes, leased once, now
        assert pool.available_bytes() == before - 150 * EXHIBIT_BYTES
        assert lease.draw_ids == list(range(1, 151))
        assert_audit_ok(pool)


def test_returned_records_are_drawn_again_exactly_once(pool):
    stock(pool, 1)
    lease = pool.lease(10, "cat-07", card())
    pool.draw(pool.available_bytes(), "exhibit:rest")  # the pool is now empty
    batch = pool.return_records(lease.lease_id, [7, 2, 5])
    assert batch.usable and batch.size == 3 * EXHIBIT_BYTES and batch.source == "anu"
    want = lease.record_bytes(2) + lease.record_bytes(5) + lease.record_bytes(7)  # index order
    assert pool.batch_data(batch.id) == want
    assert pool.quarantined() == []  # never health-checked into quarantine: see return_records
    assert pool.returned_records(lease.lease_id) == {2, 5, 7}
    assert pool.status()["returned_records"] == 3
    assert_audit_ok(pool)
    again = pool.draw(3 * EXHIBIT_BYTES, "exhibit:again")
    assert again.data == want and again.source == "anu"
    assert again.provenance["segments"][0]["batch"] == batch.id
    with pytest.raises(EntropyExhausted):
        pool.draw(1, "exhibit:more")
    assert_audit_ok(pool)


def test_a_return_batch_says_where_its_bytes_came_from(pool):
    stock(pool, 1)
    lease = pool.lease(4, "cat-07", card())
    batch = pool.return_records(lease.lease_id, [3, 1])
    (raw,) = pool._db.execute("SELECT provenance FROM batches WHERE id = ?",
                              (batch.id,)).fetchone()
    prov = json.loads(raw)
    assert prov["returned_from"] == {"lease_id": lease.lease_id, "records": [1, 3]}
    draws = pool.lease_draws(lease.lease_id)
    assert prov["segments"] == draws[1].provenance["segments"] + draws[3].provenance["segments"]
    # no new block hashes: the replay detector still knows only what arrived from outside
    (hashes,) = pool._db.execute("SELECT count(*) FROM block_hashes WHERE batch_id = ?",
                                 (batch.id,)).fetchone()
    assert hashes == 0


def test_return_records_refuses_what_may_not_go_back(pool):
    stock(pool, 1)
    lease = pool.lease(5, "cat-07", card())
    pool.return_records(lease.lease_id, [1])
    before = pool.available_bytes()
    cases = [
        ((lease.lease_id, [1]), "record 1 of lease " + lease.lease_id + " was already returned"),
        ((lease.lease_id, [0, 1]), "was already returned"),
        ((lease.lease_id, [5]), "has records 0 to 4; there is no record 5"),
        ((lease.lease_id, [-1]), "there is no record -1"),
        (("f" * 32, [0]), "has no lease"),
        ((lease.lease_id, []), "no records were named"),
        ((lease.lease_id, [2, 2]), "named twice"),
    ]
    for (lease_id, indices), phrase in cases:
        with pytest.raises(InputError) as err:
            pool.return_records(lease_id, indices)
        assert phrase in err.value.message, err.value.message
        assert "\n" not in err.value.message
    assert pool.available_bytes() == before and pool.returned_records(lease.lease_id) == {1}
    with pytest.raises(InputError):
        pool.returned_records("0" * 32)
    assert_audit_ok(pool)


@pytest.mark.parametrize("statement, phrase", [
    # a forged return: bytes that were spent on a card brought back as a batch
    ("INSERT INTO batches (source, status, size, sha256, data, provenance, created) "
     "SELECT 'anu', 'usable', 203, 'x', data, '{\"returned_from\": {}}', 't' FROM draws "
     "WHERE id = 1", "says it holds returned records"),
    ("UPDATE draws SET purpose = 'exhibit:x' WHERE id = 2", "is 'exhibit:x', not record 1's"),
])
def test_audit_names_a_broken_lease(pool, tmp_path, statement, phrase):
    stock(pool, 1)
    pool.lease(3, "cat-07", card())
    raw = sqlite3.connect(pool.path)
    raw.execute("DROP TRIGGER draws_immutable")
    raw.execute(statement)
    raw.commit()
    raw.close()
    report = pool.audit()
    assert any(phrase in v for v in report.violations), report.violations


def test_audit_names_a_return_batch_whose_bytes_differ(pool):
    stock(pool, 1)
    lease = pool.lease(3, "cat-07", card())
    batch = pool.return_records(lease.lease_id, [0])
    raw = sqlite3.connect(pool.path)
    raw.execute("DROP TRIGGER batches_immutable")
    raw.execute("UPDATE batches SET data = ?, sha256 = ? WHERE id = ?",
                (b"\x00" + lease.record_bytes(0)[1:], "x", batch.id))
    raw.commit()
    raw.close()
    assert any(f"batch {batch.id}: its bytes differ from the lease records" in v
               for v in pool.audit().violations)


def test_the_database_refuses_to_change_or_forget_a_lease(pool):
    stock(pool, 1)
    lease = pool.lease(2, "cat-07", card())
    pool.return_records(lease.lease_id, [0])
    for sql in ("UPDATE leases SET records = 1", "DELETE FROM leases",
                "DELETE FROM lease_returns", "UPDATE lease_returns SET record = 1"):
        with pytest.raises(sqlite3.DatabaseError):
            pool._db.execute(sql)


def _version_2_pool(path) -> bytes:
    """An empty pool as qcat wrote it before leases (schema 2), and the bytes to fill it with."""
    from quantum import pool as poolmod

    raw = sqlite3.connect(path)
    for step in (1, 2):
        for statement in poolmod.MIGRATIONS[step]:
            raw.execute(statement)
    raw.execute("INSERT INTO meta VALUES ('pool_id', 'old-pool'), ('created', '2024-01-01')")
    raw.execute(f"PRAGMA application_id = {poolmod.APPLICATION_ID}")
    raw.execute("PRAGMA user_version = 2")
    raw.commit()
    raw.close()
    return os.urandom(BATCH)


def test_a_version_2_pool_migrates_in_one_step_and_leases(tmp_path):
    path = tmp_path / "entropy.sqlite"
    data = _version_2_pool(path)
    # fill it through SQL as version 2 did (no qcat of this version may touch it before)
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO batches (source, status, size, sha256, data, provenance, created) "
                "VALUES ('anu', 'usable', ?, ?, ?, '{}', 't')",
                (len(data), hashlib.sha256(data).hexdigest(), data))
    raw.executemany("INSERT INTO block_hashes VALUES (?, 1)",
                    ((h,) for h in health.block_hashes(data)))
    raw.commit()
    raw.close()
    with EntropyPool(path) as pool:
        assert pool._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert pool.pool_id == "old-pool" and pool.available_bytes() == BATCH
        assert_audit_ok(pool)
        lease = pool.lease(3, "cat-07", card())
        assert b"".join(lease.raw) == data[:3 * EXHIBIT_BYTES]
        pool.return_records(lease.lease_id, [2])
        assert_audit_ok(pool)
    with EntropyPool(path, read_only=True) as ro:  # the migrated file reads as version 3
        assert [le.lease_id for le in ro.leases()] == [lease.lease_id]
