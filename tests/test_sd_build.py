"""`qcat sd build` and `qcat sd verify`: a unit's card, built from a real pool, checked whole.

The pool is a real SQLite pool on disk stocked with health-passing bytes; the clip bank is a real
.qcv of synthetic clips (no espeak-ng); images are made with the real dosfstools and mtools and
checked by `fsck.fat -n` and `mdir`. Every flipped bit must be named by verify, file by file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware import cardfmt
from firmware.card import open_card
from installation import sdcard
from installation.errors import ExternalError
from models import reference, weightimage
from quantum import latent
from quantum.pool import EntropyPool
from tests.gallery_support import synthetic_weights, write_clip_bank

BATCH = 20480
IMAGE_TOOLS = ("mkfs.fat", "mcopy", "mdir", "fsck.fat")
needs_tools = pytest.mark.skipif(
    any(shutil.which(t) is None and not Path("/usr/sbin", t).exists() for t in IMAGE_TOOLS),
    reason="dosfstools and mtools are not installed (make test-deps installs them)")


def tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@pytest.fixture
def home(qcat_home: Path) -> Path:
    """A home whose pool holds 3 batches (302 exhibits)."""
    qcat_home.mkdir(parents=True)
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        for i in range(3):
            assert pool.store_batch(os.urandom(BATCH), "anu", {"source": "anu",
                                                               "request_time": f"t{i}"}).usable
    return qcat_home


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    write_clip_bank(tmp_path / "bank.qcv")
    return tmp_path / "bank.qcv"


def pool_of(home: Path) -> EntropyPool:
    return EntropyPool(home / "entropy.sqlite")


def build(run_qcat, out: Path, clips: Path, *extra: str, reserve: int = 40) -> dict:
    r = run_qcat("sd", "build", "--unit", "cat-07", "--reserve", reserve, "--out", out,
                 "--clips", clips, "--json", *extra)
    assert r.code == 0, r.err
    return json.loads(r.out)


def flip(path: Path, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ (1 << bit)]))


def test_a_folder_card_holds_the_lease_the_exhibit_path_latents_and_true_hashes(
        run_qcat, home, clips, tmp_path):
    weights = synthetic_weights(tmp_path)  # not the shipped demo: the card must use this one
    out = tmp_path / "card"
    built = build(run_qcat, out, clips, "--weights", weights)
    assert sorted(p.name for p in out.iterdir()) == sorted(cardfmt.CARD_FILES)
    assert built["records"] == 40 and built["leased_bytes"] == 40 * 203
    with pool_of(home) as pool:
        lease = pool.get_lease(built["lease_id"])
        assert (lease.unit, lease.card_id, lease.records) == ("cat-07", built["card_id"], 40)
        assert pool.audit().ok
    header, states = cardfmt.read_reserve((out / cardfmt.RESERVE).read_bytes())
    assert header.lease_id.hex() == lease.lease_id and header.card_id.hex() == lease.card_id
    assert header.serial == "cat-07" and header.records == 40
    assert header.weights_sha256 == hashlib.sha256(weights.read_bytes()).digest()
    image = weightimage.load(weights)
    for st in states:
        rec = st.record
        assert rec is not None and not st.struck
        raw = lease.record_bytes(st.index)
        assert rec.raw == raw  # every record's bytes are its lease draw's
        # the exhibit path: Box-Muller of bytes 0..199, the image's latent scale, int8
        z, code = latent.split_exhibit(raw)
        want = reference.quantize_latent(z, image)
        assert np.frombuffer(rec.latent, dtype=np.int8).tolist() == want.tolist()
        assert rec.verdict == code.code == latent.verdict_code(raw[200:]).code
    assert (out / cardfmt.WEIGHTS).read_bytes() == weights.read_bytes()
    assert (out / cardfmt.CLIPS).read_bytes() == clips.read_bytes()
    journal = cardfmt.read_journal((out / cardfmt.JOURNAL).read_bytes(), header, states)
    assert journal.state == "clean" and journal.entries == [] and journal.capacity == 40
    manifest = cardfmt.read_manifest((out / cardfmt.MANIFEST).read_bytes())
    assert manifest["sha256"] == cardfmt.manifest_digest(manifest)
    assert (manifest["card_id"], manifest["lease_id"], manifest["unit"],
            manifest["reserve_records"]) == (lease.card_id, lease.lease_id, "cat-07", 40)
    for name in cardfmt.FILE_FORMATS:
        data = (out / name).read_bytes()
        entry = manifest["files"][name]
        assert entry["bytes"] == len(data) and entry["format"] == cardfmt.FILE_FORMATS[name]
        if name == cardfmt.JOURNAL:
            assert "sha256" not in entry
        else:
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    for name in cardfmt.CARD_FILES:  # every file whole sectors, as the format says
        assert (out / name).stat().st_size % 512 == 0
    r = run_qcat("sd", "verify", out)
    assert r.code == 0 and f"{out}: ok (card {lease.card_id} of unit cat-07" in r.out, r.err


def test_the_default_weights_are_the_workspace_s(run_qcat, home, clips, tmp_path):
    out = tmp_path / "card"
    build(run_qcat, out, clips, reserve=1)
    assert (out / cardfmt.WEIGHTS).read_bytes() == weightimage.SHIPPED_DEMO.read_bytes()
    r = run_qcat("entropy", "status")
    assert r.code == 0 and "leased               203 bytes = 1 exhibit on 1 card" in r.out, r.out


@needs_tools
def test_an_image_card_passes_fsck_and_lists_its_five_files(run_qcat, home, clips, tmp_path):
    img = tmp_path / "card.img"
    built = build(run_qcat, img, clips)
    assert built["kind"] == "image" and img.stat().st_size >= 64 * 1024 * 1024
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".qcat-card-")]
    fsck = subprocess.run([tool("fsck.fat"), "-n", img], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    listing = subprocess.run([tool("mdir"), "-b", "-i", img, "::/"], capture_output=True,
                             text=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    assert [ln.rsplit("/", 1)[-1] for ln in listing.stdout.split()] == list(cardfmt.CARD_FILES)
    card = open_card(img)
    for name in cardfmt.CARD_FILES:  # each file in one run of clusters, as a unit likes
        assert len(card.extents(name)) == 1  # type: ignore[attr-defined]
    with pool_of(home) as pool:
        lease = pool.get_lease(built["lease_id"])
    _, states = cardfmt.read_reserve(card.read(cardfmt.RESERVE))
    assert [st.record.raw for st in states if st.record] == lease.raw
    r = run_qcat("sd", "verify", img, "--json")
    report = json.loads(r.out)
    assert r.code == 0 and report["ok"] and report["fsck"] == "ok", r.out
    with pytest.MonkeyPatch.context() as mp:  # without dosfstools: checked, fsck said not run
        mp.setattr(sdcard, "SBIN_DIRS", ())
        mp.setenv("PATH", str(tmp_path))
        report = sdcard.verify_card(img)
        assert report.ok and report.fsck == "not run: dosfstools is not installed"
    # a flipped bit inside the reserve's clusters of the image is named
    at = card.extents(cardfmt.RESERVE)[0].image_at + 512 + 512 * 7 + 20  # type: ignore[attr-defined]
    flip(img, at)
    r = run_qcat("sd", "verify", img)
    assert r.code == 1 and "differs in RESERVE.QCR:" in r.err and "record 7" in r.err


# Where to flip a bit in each file (an offset inside data each check covers).
FLIPS = {
    cardfmt.WEIGHTS: lambda n: n // 2,
    cardfmt.CLIPS: lambda n: n // 2,
    cardfmt.RESERVE: lambda n: 512 + 512 * 3 + 100,  # record 3's raw bytes
    cardfmt.JOURNAL: lambda n: 20,  # the header's lease id
    cardfmt.MANIFEST: lambda n: 40,
}


@pytest.mark.parametrize("name", list(FLIPS))
def test_a_flipped_bit_in_each_file_is_named(run_qcat, home, clips, tmp_path, name):
    out = tmp_path / "card"
    build(run_qcat, out, clips)
    path = out / name
    flip(path, FLIPS[name](path.stat().st_size))
    r = run_qcat("sd", "verify", out)
    assert r.code == 1, r.out
    assert f"the card {out} differs in {name}:" in r.err and "Traceback" not in r.err
    report = json.loads(run_qcat("sd", "verify", out, "--json").out)
    assert report["bad_files"] == [name] and not report["ok"]


def test_a_torn_journal_slot_fails_verify_and_a_struck_record_does_not(
        run_qcat, home, clips, tmp_path):
    out = tmp_path / "card"
    build(run_qcat, out, clips)
    reserve, manifest = out / cardfmt.RESERVE, out / cardfmt.MANIFEST
    # strike record 39 as reconcile would: the reserve's new hash goes into the manifest
    with open(reserve, "r+b") as fh:
        fh.seek(cardfmt.record_offset(39))
        fh.write(cardfmt.STRUCK)
    obj = json.loads(manifest.read_bytes())
    obj["files"][cardfmt.RESERVE]["sha256"] = hashlib.sha256(reserve.read_bytes()).hexdigest()
    manifest.write_bytes(cardfmt.pack_manifest(obj))
    report = json.loads(run_qcat("sd", "verify", out, "--json").out)
    assert report["ok"] and report["struck"] == [39] and report["damaged"] == []
    # a unit's good entry for record 0, then a torn write in slot 1
    header, states = cardfmt.read_reserve(reserve.read_bytes())
    rec0 = states[0].record
    assert rec0 is not None
    entry = cardfmt.Entry(0, rec0.verdict, bytes(32)).pack()
    with open(out / cardfmt.JOURNAL, "r+b") as fh:
        fh.seek(cardfmt.entry_offset(0))
        fh.write(entry)
        fh.seek(cardfmt.entry_offset(1))
        fh.write(entry[:100])
    r = run_qcat("sd", "verify", out)
    assert r.code == 1 and "differs in JOURNAL.QCJ: JOURNAL.QCJ: slot 1 is torn" in r.err


def test_a_record_whose_latent_does_not_follow_from_its_bytes_is_named(
        run_qcat, home, clips, tmp_path):
    out = tmp_path / "card"
    build(run_qcat, out, clips)
    reserve = out / cardfmt.RESERVE
    _, states = cardfmt.read_reserve(reserve.read_bytes())
    rec = states[5].record
    assert rec is not None
    bad_latent = bytes([(rec.latent[0] + 1) & 0xFF]) + rec.latent[1:]  # CRC still good
    forged = cardfmt.Record(5, rec.verdict, rec.raw, bad_latent).pack()
    with open(reserve, "r+b") as fh:
        fh.seek(cardfmt.record_offset(5))
        fh.write(forged)
    manifest = out / cardfmt.MANIFEST
    obj = json.loads(manifest.read_bytes())
    obj["files"][cardfmt.RESERVE]["sha256"] = hashlib.sha256(reserve.read_bytes()).hexdigest()
    manifest.write_bytes(cardfmt.pack_manifest(obj))
    report = json.loads(run_qcat("sd", "verify", out, "--json").out)
    assert report["bad_files"] == [cardfmt.RESERVE] and report["damaged"] == [5]
    assert ("RESERVE.QCR: record 5's latent does not follow from its raw bytes with the card's "
            "weight image") in report["problems"]


def test_a_missing_file_is_named(run_qcat, home, clips, tmp_path):
    out = tmp_path / "card"
    build(run_qcat, out, clips)
    (out / cardfmt.CLIPS).unlink()
    r = run_qcat("sd", "verify", out)
    assert r.code == 1 and "differs in CLIPS.QCV: CLIPS.QCV is missing" in r.err


@pytest.mark.parametrize("args, phrase", [
    (("--unit", "cat-07", "--reserve", "0"), "--reserve 0 is not a number of exhibits"),
    (("--unit", "a-serial-of-17-ch", "--reserve", "5"), "cannot be a unit's serial number"),
    (("--unit", "cat-07", "--reserve", "100001"), "from 1 to 100,000"),
    (("--unit", "cat-07", "--reserve", "303"),  # the pool holds 302 exhibits
     "the entropy pool holds 61,440 usable bytes; a reserve of 303 exhibits needs 61,509"),
])
def test_careless_inputs_are_one_sentence_and_lease_nothing(run_qcat, home, clips, tmp_path,
                                                            args, phrase):
    out = tmp_path / "card"
    r = run_qcat("sd", "build", *args, "--out", out, "--clips", clips)
    assert r.code == 2 and phrase in r.err and "Traceback" not in r.err, r.err
    assert not out.exists() and not list(tmp_path.glob(".qcat-card-*"))
    with pool_of(home) as pool:
        assert pool.leases() == [] and pool.available_bytes() == 3 * BATCH


def test_an_out_folder_that_is_not_empty_is_refused(run_qcat, home, clips, tmp_path):
    out = tmp_path / "card"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = run_qcat("sd", "build", "--unit", "cat-07", "--reserve", "5", "--out", out,
                 "--clips", clips)
    assert r.code == 2 and f"--out {out} is a folder that is not empty" in r.err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    img = tmp_path / "old.img"
    img.write_bytes(b"x")
    r = run_qcat("sd", "build", "--unit", "cat-07", "--reserve", "5", "--out", img,
                 "--clips", clips)
    assert r.code == 2 and "a card image is never overwritten" in r.err
    with pool_of(home) as pool:
        assert pool.leases() == []


def test_an_empty_folder_is_filled_in_place(run_qcat, home, clips, tmp_path):
    out = tmp_path / "mounted-card"
    out.mkdir()
    inode = out.stat().st_ino
    build(run_qcat, out, clips, reserve=2)
    assert out.stat().st_ino == inode  # the same folder (a mount point cannot be replaced)
    assert sorted(p.name for p in out.iterdir()) == sorted(cardfmt.CARD_FILES)


def test_build_refuses_without_a_pool_with_enough_bytes(run_qcat, qcat_home, clips, tmp_path):
    r = run_qcat("sd", "build", "--unit", "cat-07", "--reserve", "1", "--out",
                 tmp_path / "card", "--clips", clips)
    assert r.code == 2 and "the entropy pool holds 0 usable bytes" in r.err
    assert "qcat entropy fetch" in r.err and not (tmp_path / "card").exists()


def test_a_card_without_a_voice_is_refused(run_qcat, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng to render a clip bank with
    r = run_qcat("sd", "build", "--unit", "cat-07", "--reserve", "1", "--out", tmp_path / "c")
    assert r.code == 2 and "there is no clip bank to put on the card" in r.err
    assert "--clips FILE" in r.err
    with pool_of(home) as pool:
        assert pool.leases() == []


def test_a_bad_weight_image_is_one_sentence(run_qcat, home, clips, tmp_path):
    bad = tmp_path / "bad.qcw"
    bad.write_bytes(b"QCWEIGHT" + bytes(600))
    r = run_qcat("sd", "build", "--unit", "cat-07", "--reserve", "1", "--out",
                 tmp_path / "card", "--clips", clips, "--weights", bad)
    assert r.code == 2 and f"weight image {bad}:" in r.err and "Traceback" not in r.err


def test_a_failure_after_the_lease_names_the_spent_lease(home, clips, tmp_path, monkeypatch):
    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sdcard, "_publish_folder", broken)
    with pool_of(home) as pool, pytest.raises(ExternalError) as err:
        sdcard.build_card(pool, weightimage.SHIPPED_DEMO, clips, "cat-07", 3,
                          tmp_path / "card")
    with pool_of(home) as pool:
        (lease,) = pool.leases()  # the lease stays spent: lost bytes, never reused ones
        assert pool.available_bytes() == 3 * BATCH - 3 * 203 and pool.audit().ok
    assert err.value.message == (f"building the card failed (No space left on device); lease "
                                 f"{lease.lease_id} (3 exhibits) was spent on no card and its "
                                 "bytes are gone from the pool")
    assert not (tmp_path / "card").exists() and not list(tmp_path.glob(".qcat-card-*"))


def test_a_missing_image_tool_names_its_package(home, clips, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sdcard, "SBIN_DIRS", ())
    with pool_of(home) as pool, pytest.raises(ExternalError) as err:
        sdcard.build_card(pool, weightimage.SHIPPED_DEMO, clips, "cat-07", 1,
                          tmp_path / "card.img")
    assert err.value.message == "mkfs.fat, which makes FAT32 card images, is not installed"
    assert err.value.hint == "install dosfstools (sudo apt-get install dosfstools)"
    with pool_of(home) as pool:
        assert pool.leases() == []


def test_verify_of_something_that_is_no_card(run_qcat, tmp_path):
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(4096))
    r = run_qcat("sd", "verify", junk)
    assert r.code == 1 and f"{junk} is not a FAT32 card image: its first sector" in r.err
    r = run_qcat("sd", "verify", tmp_path / "nothing")
    assert r.code == 2 and "does not exist" in r.err
