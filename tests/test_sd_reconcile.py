"""`qcat sd reconcile`: a card back from a unit that worked offline.

The end-to-end test runs the real chain: `qcat sd build` leases from a pool on disk, `qcat sim
cat --card CARD --offline N` (the C core, in a child process) spends records and journals them,
`qcat sd reconcile` archives them. The other tests write journals by hand with the codec (the facts
a unit would journal, the golden render's hash) to reach the cases a healthy unit never makes:
tampering, torn writes, a wrong image, a copied card, a crash between striking and returning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware import cardfmt
from firmware.card import open_card
from installation.faults import CRASH_ENV
from models.weightimage import SHIPPED_DEMO
from quantum.pool import EntropyPool
from tests.conftest import REPO
from tests.gallery_support import write_clip_bank

RESERVE = 6


@pytest.fixture
def pool_path(qcat_home: Path) -> Path:
    qcat_home.mkdir(parents=True, exist_ok=True)
    path = qcat_home / "entropy.sqlite"
    with EntropyPool(path) as pool:
        pool.store_batch(os.urandom(8192), "anu", {"source": "anu"})
    return path


@pytest.fixture
def card(run_qcat, pool_path: Path, tmp_path: Path) -> Path:
    clips = write_clip_bank(tmp_path / "clips.qcv")
    out = tmp_path / "card"
    r = run_qcat("sd", "build", "--unit", "cat-west-2", "--reserve", RESERVE, "--out", out,
                 "--weights", SHIPPED_DEMO, "--clips", clips)
    assert r.code == 0, r.err
    return out


def records_of(card: Path) -> list[cardfmt.RecordState]:
    with open_card(card) as c:  # a folder or an image
        return cardfmt.read_reserve(c.read(cardfmt.RESERVE))[1]


def golden_sha(latent: bytes) -> bytes:
    from installation.engines import render

    rgb = render("numpy", SHIPPED_DEMO, np.frombuffer(latent, dtype=np.int8)).rgb
    return hashlib.sha256(rgb.tobytes()).digest()


def journal(card: Path, k: int, *, sha: bytes | None = None, verdict: int | None = None) -> None:
    """Write journal entry k as a unit would (the golden image's hash unless `sha`)."""
    rec = records_of(card)[k].record
    assert rec is not None
    entry = cardfmt.Entry(k, rec.verdict if verdict is None else verdict,
                          golden_sha(rec.latent) if sha is None else sha, 1000 * k)
    with open_card(card) as c:
        c.pwrite(cardfmt.JOURNAL, cardfmt.entry_offset(k), entry.pack())


def reconcile(run_qcat, card: Path) -> tuple[int, dict, str]:
    r = run_qcat("sd", "reconcile", card, "--json")
    return r.code, (json.loads(r.out) if r.out.strip() else {}), r.err


def lease_of(pool_path: Path):
    with EntropyPool(pool_path) as pool:
        (lease,) = pool.leases()
        return lease


def snapshot(card: Path, pool_path: Path, qcat_home: Path) -> tuple:
    """Everything reconcile could change: the card's bytes, the pool's and the gallery's rows."""
    import sqlite3

    files = tuple(sorted((p.name, p.read_bytes()) for p in card.iterdir()))
    rows = []
    for db, tables in ((pool_path, ("batches", "draws", "lease_returns", "lease_spent")),
                       (qcat_home / "gallery.sqlite", ("exhibits",))):
        for t in tables:  # (a gallery not yet created is an empty one)
            if not db.exists():
                rows.append(())
                continue
            with sqlite3.connect(db) as con:
                rows.append(tuple(con.execute(f"SELECT * FROM {t} ORDER BY 1, 2")))
    return files, tuple(rows)


def test_build_then_offline_then_reconcile_archives_returns_and_keeps_every_promise(
        run_qcat, card: Path, pool_path: Path, qcat_home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "QCAT_HOME": str(qcat_home)}
    sim = subprocess.run([sys.executable, "-m", "installation.cli", "sim", "cat", "--card",
                          str(card), "--offline", "3"], cwd=REPO, env=env, text=True,
                         capture_output=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    lease = lease_of(pool_path)
    spent_bytes = [lease.record_bytes(i) for i in range(3)]
    unused_bytes = [lease.record_bytes(i) for i in range(3, RESERVE)]

    code, rep, err = reconcile(run_qcat, card)
    assert code == 0, err
    assert rep["journal"] == "clean" and rep["spent"] == 3 and len(rep["archived"]) == 3
    assert rep["returned"] == [3, 4, 5] and rep["struck"] == [3, 4, 5] and rep["ok"]

    # The exhibits are the records' own draws, their images the golden renders.
    r = run_qcat("gallery", "list", "--json")
    assert r.code == 0, r.err
    listed = json.loads(r.out)
    shown = listed["exhibits"] if isinstance(listed, dict) else listed
    assert sorted(e["draw_id"] for e in shown) == lease.draw_ids[:3]
    for e in shown:
        assert bytes.fromhex(e["entropy_hex"]) in spent_bytes
    assert run_qcat("gallery", "verify", "--all").code == 0
    audit = run_qcat("entropy", "audit")
    assert audit.code == 0, audit.out + audit.err

    # The card: the unused records are struck, the manifest follows, verify passes.
    states = records_of(card)
    assert [s.struck for s in states] == [False] * 3 + [True] * 3
    assert run_qcat("sd", "verify", card).code == 0

    # No spent byte can be drawn again, from this pool or onto another card; the returned
    # records are drawn exactly once more.
    with EntropyPool(pool_path) as pool:
        rest = pool.draw(pool.available_bytes(), "test:drain").data
    for b in spent_bytes:
        assert b not in rest
    for b in unused_bytes:
        assert rest.count(b) == 1
    with EntropyPool(pool_path) as pool:
        pool.store_batch(os.urandom(4096), "anu", {"source": "anu"})
    second = tmp_path / "second"
    r = run_qcat("sd", "build", "--unit", "cat-east-1", "--reserve", 5, "--out", second,
                 "--weights", SHIPPED_DEMO, "--clips", tmp_path / "clips.qcv")
    assert r.code == 0, r.err
    for s in records_of(second):
        assert s.record is not None and s.record.raw not in spent_bytes + unused_bytes

    # Once more: nothing changes.
    before = snapshot(card, pool_path, qcat_home)
    code, rep, _ = reconcile(run_qcat, card)
    assert code == 0 and rep["archived"] == [] and rep["already_archived"] == 3
    assert rep["returned"] == [] and rep["already_returned"] == 3 and rep["struck"] == []
    assert snapshot(card, pool_path, qcat_home) == before


def test_a_journal_that_spent_records_cannot_give_them_back(run_qcat, card: Path,
                                                             pool_path: Path) -> None:
    journal(card, 0)
    journal(card, 1)
    assert reconcile(run_qcat, card)[0] == 0
    lease = lease_of(pool_path)
    from installation.errors import InputError

    with EntropyPool(pool_path) as pool:
        assert pool.spent_records(lease.lease_id) == {0, 1}
        with pytest.raises(InputError, match="spent by its unit"):
            pool.return_records(lease.lease_id, [1])
        assert pool.returned_records(lease.lease_id) == {2, 3, 4, 5}


@pytest.mark.parametrize("tamper", ["verdict", "index", "after-the-end", "other-lease"])
def test_a_tampered_journal_is_refused_and_nothing_changes(run_qcat, card: Path,
                                                            pool_path: Path, qcat_home: Path,
                                                            tamper: str) -> None:
    journal(card, 0)
    journal(card, 1)
    path = card / cardfmt.JOURNAL
    data = bytearray(path.read_bytes())
    if tamper == "verdict":  # a good CRC over a verdict the record does not hold
        rec = records_of(card)[1].record
        assert rec is not None
        journal(card, 1, verdict=rec.verdict ^ 1)
        data = bytearray(path.read_bytes())
    elif tamper == "index":
        rec = records_of(card)[2].record
        assert rec is not None
        block = cardfmt.Entry(2, rec.verdict, golden_sha(rec.latent)).pack()
        data[cardfmt.entry_offset(1):cardfmt.entry_offset(2)] = block
    elif tamper == "after-the-end":  # a torn slot 1 and a good-looking slot 2 after it
        data[cardfmt.entry_offset(1) + 9] ^= 0x10
        rec = records_of(card)[2].record
        assert rec is not None
        data[cardfmt.entry_offset(2):cardfmt.entry_offset(3)] = cardfmt.Entry(
            2, rec.verdict, golden_sha(rec.latent)).pack()
    else:  # the header names another lease (its CRC made good again)
        data[16] ^= 0xFF
        data[12:16] = bytes(4)
        data[12:16] = cardfmt.crc32(bytes(data[:512])).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    before = snapshot(card, pool_path, qcat_home)
    r = run_qcat("sd", "reconcile", card)
    assert r.code == 1
    assert "journal is refused" in r.err and "nothing was archived" in r.err
    assert "Traceback" not in r.err
    assert snapshot(card, pool_path, qcat_home) == before


def test_a_torn_journal_archives_what_it_can_and_returns_nothing(run_qcat, card: Path,
                                                                  pool_path: Path) -> None:
    journal(card, 0)
    journal(card, 1)
    journal(card, 2)
    path = card / cardfmt.JOURNAL
    data = bytearray(path.read_bytes())
    data[cardfmt.entry_offset(2) + 20] ^= 0x01  # the power went during the third write
    path.write_bytes(bytes(data))
    code, rep, err = reconcile(run_qcat, card)
    assert code == 0, err
    assert rep["journal"] == "torn" and rep["spent"] == 3 and rep["torn_record"] == 2
    assert len(rep["archived"]) == 2 and rep["returned"] == [] and rep["struck"] == []
    lease = lease_of(pool_path)
    with EntropyPool(pool_path) as pool:
        assert pool.spent_records(lease.lease_id) == {0, 1, 2}
        assert pool.returned_records(lease.lease_id) == set()
    assert all(not s.struck for s in records_of(card))
    r = run_qcat("sd", "reconcile", card)
    assert r.code == 0 and "torn" in r.out and "nothing goes back" in r.out


def test_a_wrong_image_is_a_unit_fault_not_an_exhibit(run_qcat, card: Path,
                                                      pool_path: Path) -> None:
    journal(card, 0)
    journal(card, 1, sha=hashlib.sha256(b"not the cat").digest())
    code, rep, _ = reconcile(run_qcat, card)
    assert code == 1 and not rep["ok"]
    assert len(rep["archived"]) == 1
    (fault,) = rep["unit_faults"]
    assert fault.startswith("record 1:") and "golden render" in fault
    lease = lease_of(pool_path)
    with EntropyPool(pool_path) as pool:  # spent all the same: it was shown to someone
        assert 1 in pool.spent_records(lease.lease_id)
        assert 1 not in pool.returned_records(lease.lease_id)


def test_a_copied_card_that_spent_returned_records_is_reported(run_qcat, card: Path,
                                                               tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(card, twin)
    journal(card, 0)
    assert reconcile(run_qcat, card)[0] == 0  # records 1.. go back to the pool
    journal(twin, 0)
    journal(twin, 1)  # the twin spent record 1 too: its bytes are now in the pool as well
    code, rep, _ = reconcile(run_qcat, twin)
    assert code == 1 and rep["breaches"] == [1] and rep["archived"] == []
    r = run_qcat("sd", "reconcile", twin)
    assert "a copy of this card was used" in r.out


def test_sigkill_between_strike_and_return_loses_nothing_and_returns_once(
        run_qcat, card: Path, pool_path: Path, qcat_home: Path) -> None:
    journal(card, 0)
    env = {**os.environ, "QCAT_HOME": str(qcat_home), CRASH_ENV: "reconcile-after-strike"}
    proc = subprocess.run([sys.executable, "-m", "installation.cli", "sd", "reconcile",
                           str(card)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    lease = lease_of(pool_path)
    # Struck on the card (no unit can spend them), not yet in the pool: lost for now, never twice.
    assert [s.struck for s in records_of(card)] == [False] + [True] * (RESERVE - 1)
    with EntropyPool(pool_path) as pool:
        assert pool.returned_records(lease.lease_id) == set()
        assert pool.audit().ok
    code, rep, err = reconcile(run_qcat, card)
    assert code == 0, err
    assert rep["returned"] == list(range(1, RESERVE)) and rep["struck"] == []
    assert rep["already_archived"] == 1
    with EntropyPool(pool_path) as pool:
        assert pool.returned_records(lease.lease_id) == set(range(1, RESERVE))
        assert pool.audit().ok
    assert run_qcat("sd", "verify", card).code == 0


def test_a_card_of_another_pool_and_careless_paths_are_one_sentence(run_qcat, card: Path,
                                                                    tmp_path: Path,
                                                                    monkeypatch) -> None:
    r = run_qcat("sd", "reconcile", tmp_path / "nowhere")
    assert r.code == 2 and "does not exist" in r.err
    other = tmp_path / "other-home"
    monkeypatch.setenv("QCAT_HOME", str(other))
    r = run_qcat("sd", "reconcile", card)
    assert r.code == 2 and "Traceback" not in r.err
    assert "lease" in r.err


def test_sd_write_will_not_overwrite_a_card_that_was_not_reconciled(run_qcat, pool_path: Path,
                                                                     tmp_path: Path) -> None:
    clips = write_clip_bank(tmp_path / "clips.qcv")
    used, fresh = tmp_path / "used.img", tmp_path / "fresh.img"
    for out in (used, fresh):
        r = run_qcat("sd", "build", "--unit", "cat-west-2", "--reserve", 2, "--out", out,
                     "--weights", SHIPPED_DEMO, "--clips", clips)
        assert r.code == 0, r.err
    journal(used, 0)
    before = used.read_bytes()
    r = run_qcat("sd", "write", fresh, used)
    assert r.code == 2 and "1 offline exhibit not yet reconciled" in r.err
    assert f"qcat sd reconcile {used}" in r.err and used.read_bytes() == before
    assert run_qcat("sd", "reconcile", used).code == 0
    r = run_qcat("sd", "write", fresh, used)
    assert r.code == 0, r.err
    assert used.read_bytes() == fresh.read_bytes()
