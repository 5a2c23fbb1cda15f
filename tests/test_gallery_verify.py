"""`gallery verify` checks every file an exhibit owns; `gallery repair` re-creates damaged files
from the stored bytes and nothing else (promise F2: the archive can be audited and mended).

Real parts: exhibits generated through the real CLI from a synthetic weight image, the SQLite
archive and pool on disk, PNG and WAV files on disk, a real clip bank file. The services are
also driven directly (no argparse), as the TUI will call them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from installation import curation, exhibit
from installation.exhibit import load_model, read_png_rgb
from installation.gallery import Gallery
from quantum import latent
from tests.gallery_support import generate, synthetic_weights, write_clip_bank


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return synthetic_weights(tmp_path_factory.mktemp("model"))


def open_gallery(home: Path) -> Gallery:
    return Gallery(home / "gallery.sqlite", home / "gallery")


def finder(weights: Path) -> curation.FindModel:
    return exhibit.model_finder([weights])


def flip_one_pixel(path: Path) -> None:
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB")).copy()
    pixels[100, 100, 1] ^= 0x01
    Image.fromarray(pixels).save(path)


# ------------------------------------------------------------------------------ the 512-px copy

def test_an_altered_512px_copy_fails_verify_and_repair_restores_it(run_qcat, qcat_home, weights):
    """The brief's demonstration, through the CLI: verify exit 1, repair, verify exit 0."""
    made = generate(run_qcat, weights, 2)
    big = qcat_home / "gallery" / made[1]["big_png_path"]
    original = big.read_bytes()
    flip_one_pixel(big)
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 1
    assert "exhibit 2: 512-px image file" in r.out and "exhibit 1" not in r.out
    assert "exhibit 2 " in r.err or "exhibit 2\n" in r.err  # the failing exhibit is named
    r = run_qcat("gallery", "repair", "--all")
    assert r.code == 0, r.out + r.err
    assert f"exhibit 2: re-created {made[1]['big_png_path']}" in r.out
    assert "2 exhibits checked: 1 repaired, 1 intact, 0 not repairable" in r.out
    assert big.read_bytes() == original  # byte for byte what was archived
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 0 and "2 exhibits checked, 0 problems" in r.out


def test_a_512px_copy_resaved_with_the_same_pixels_is_caught_by_its_recorded_hash(
        run_qcat, qcat_home, weights):
    [made] = generate(run_qcat, weights, 1)
    assert len(made["big_png_sha256"]) == 64  # recorded at archive time (schema 2)
    big = qcat_home / "gallery" / made["big_png_path"]
    with Image.open(big) as img:
        img.convert("RGB").save(big, compress_level=1)  # same pixels, other bytes
    r = run_qcat("gallery", "verify", "1")
    assert r.code == 1 and "512-px image file" in r.out and "hash differs" in r.out
    assert "does not show" not in r.out


def test_verify_finds_a_512px_copy_of_another_cat(run_qcat, qcat_home, weights):
    made = generate(run_qcat, weights, 2)
    gallery_dir = qcat_home / "gallery"
    (gallery_dir / made[0]["big_png_path"]).write_bytes(
        (gallery_dir / made[1]["big_png_path"]).read_bytes())
    report = curation.verify(open_gallery(qcat_home), finder(weights))
    assert [(f.exhibit_id, f.part) for f in report.findings] == [
        (1, curation.Part.BIG_PNG), (1, curation.Part.BIG_PNG)]
    assert any("does not show the re-rendered cat" in f.message for f in report.findings)


# ------------------------------------------------------------------------------ repair

def test_repair_recreates_missing_files_of_one_exhibit(run_qcat, qcat_home, weights):
    made = generate(run_qcat, weights, 2)
    gallery_dir = qcat_home / "gallery"
    small = gallery_dir / made[0]["png_path"]
    before = small.read_bytes()
    small.unlink()
    (gallery_dir / made[0]["big_png_path"]).unlink()
    with open_gallery(qcat_home) as gallery:
        report = curation.repair(gallery, finder(weights), exhibit_id=1)
    assert report.ok and report.repaired == [1] and report.checked == 1
    assert sorted(report.results[0].rebuilt) == sorted([made[0]["png_path"],
                                                         made[0]["big_png_path"]])
    assert small.read_bytes() == before
    assert run_qcat("gallery", "verify", "--all").code == 0


def test_an_inconsistent_row_is_not_repairable_and_nothing_is_touched(run_qcat, qcat_home,
                                                                      weights):
    made = generate(run_qcat, weights, 2)
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:
        db.execute("UPDATE exhibits SET image_sha256 = ? WHERE id = 2", ("0" * 64,))
    big = qcat_home / "gallery" / made[1]["big_png_path"]
    big.unlink()  # damaged too, but the row itself is wrong: repair must not trust it
    r = run_qcat("gallery", "repair", "--all")
    assert r.code == 1
    assert "exhibit 2: cannot be repaired: re-rendered image differs" in r.out
    assert "exhibit 2 is not repairable" in r.err
    assert "1 intact, 1 not repairable" in r.out
    assert not big.exists()
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:
        assert db.execute("SELECT image_sha256 FROM exhibits WHERE id = 2").fetchone()[0] == "0" * 64


def test_bytes_that_differ_from_the_pools_draw_are_not_repairable(run_qcat, qcat_home, weights):
    made = generate(run_qcat, weights, 1)
    (qcat_home / "gallery" / made[0]["png_path"]).unlink()
    changed = bytearray.fromhex(made[0]["entropy_hex"])
    changed[202] ^= 0x01  # a slot nibble: same cat, another verdict
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:
        db.execute("UPDATE exhibits SET entropy_hex = ?", (changed.hex(),))
    r = run_qcat("gallery", "repair", "1", "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["not_repairable"] == [1] and doc["exhibits"][0]["rebuilt"] == []
    assert any("differs from the bytes the pool handed out" in m
               for m in doc["exhibits"][0]["reasons"])
    assert not (qcat_home / "gallery" / made[0]["png_path"]).exists()


def test_repair_never_writes_bytes_the_row_does_not_record(run_qcat, qcat_home, weights):
    """If the re-created PNG does not hash to the recorded one (another PNG encoder archived it;
    simulated by a different recorded hash), the file is not replaced and the row not changed."""
    [made] = generate(run_qcat, weights, 1)
    png = qcat_home / "gallery" / made["png_path"]
    png.write_bytes(b"damaged")
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:
        db.execute("UPDATE exhibits SET png_sha256 = ?", ("ee" * 32,))
    with open_gallery(qcat_home) as gallery:
        report = curation.repair(gallery, finder(weights))
        assert gallery.get(1).png_sha256 == "ee" * 32
    assert report.not_repairable == [1] and report.results[0].rebuilt == []
    assert "does not hash to the recorded" in report.results[0].reasons[0]
    assert png.read_bytes() == b"damaged"


def test_repair_with_no_model_is_not_repairable(run_qcat, qcat_home, weights):
    generate(run_qcat, weights, 1)
    with open_gallery(qcat_home) as gallery:
        report = curation.repair(gallery, lambda sha: None)
    assert report.not_repairable == [1]
    assert "not available to re-render it" in report.results[0].reasons[0]


def test_wav_is_rebuilt_from_the_clip_bank_and_said_to_need_one_without(run_qcat, qcat_home,
                                                                        weights):
    bank = write_clip_bank(qcat_home / "builds" / "verdicts.qcv")
    [made] = generate(run_qcat, weights, 1)
    wav = qcat_home / "gallery" / made["wav_path"]
    original = wav.read_bytes()
    wav.write_bytes(original[:-100])
    r = run_qcat("gallery", "verify", "1")
    assert r.code == 1 and f"verdict audio {made['wav_path']} was modified" in r.out
    bank_bytes = bank.read_bytes()
    bank.unlink()
    r = run_qcat("gallery", "repair", "1")
    assert r.code == 1
    assert "verdict audio cannot be rebuilt: there is no clip bank at" in r.out
    assert "qcat phrases build" in r.out and "Traceback" not in r.err
    bank.write_bytes(bank_bytes)
    r = run_qcat("gallery", "repair", "1")
    assert r.code == 0, r.out + r.err
    assert wav.read_bytes() == original
    assert run_qcat("gallery", "verify", "1").code == 0


def test_a_second_repair_finds_nothing_to_do(run_qcat, qcat_home, weights):
    generate(run_qcat, weights, 3)
    with open_gallery(qcat_home) as gallery:
        report = curation.repair(gallery, finder(weights))
    assert report.ok and report.intact == 3 and report.results == []
    assert report.summary() == "3 exhibits checked: 0 repaired, 3 intact, 0 not repairable"


# ------------------------------------------------------------------------------ pending, progress

def test_pending_exhibits_are_reported_but_not_failures(run_qcat, qcat_home, weights):
    from quantum.pool import EntropyPool

    generate(run_qcat, weights, 1)
    model = load_model(weights)
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        draw = pool.draw(latent.EXHIBIT_BYTES, f"exhibit:{model.sha256}", when_empty="os")
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 0, r.out + r.err
    assert "1 exhibit checked, 0 problems" in r.out
    assert f"1 exhibit pending (entropy draw {draw.id}): not a failure" in r.out
    doc = json.loads(run_qcat("gallery", "verify", "--all", "--json").out)
    assert doc["pending_draw_ids"] == [draw.id] and doc["ok"] is True


def test_verify_service_reports_progress_and_the_cli_draws_no_bar_off_a_terminal(
        run_qcat, qcat_home, weights):
    generate(run_qcat, weights, 3)
    calls: list[tuple[int, int]] = []
    with open_gallery(qcat_home) as gallery:
        report = curation.verify(gallery, finder(weights),
                                 progress=lambda done, total, note: calls.append((done, total)))
    assert report.ok and report.checked == 3 and report.pending_draw_ids is None
    assert calls == [(1, 3), (2, 3), (3, 3)]
    r = run_qcat("gallery", "verify", "--all")  # stderr is captured here, not a terminal
    assert r.code == 0 and "verifying" not in r.err


def test_model_finder_loads_only_the_model_asked_for(tmp_path, weights):
    missing = tmp_path / "gone.qcw"
    broken = tmp_path / "broken.qcw"
    broken.write_bytes(b"not a weight image")
    find = exhibit.model_finder([missing, broken, weights])
    model = load_model(weights)
    assert find("0" * 64) is None
    found = find(model.sha256)
    assert found is not None and found.path == weights
    assert find(model.sha256) is found  # loaded once


# ------------------------------------------------------------------------------ old archives

def test_a_schema_1_archive_is_checked_by_pixels_and_repair_records_the_hash(
        run_qcat, qcat_home, weights):
    """Rows archived before schema 2 have no 512-px hash: verify still catches a changed copy
    (by pixels), and repair records the hash once the pixels are proven."""
    made = generate(run_qcat, weights, 2)
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:
        db.execute("UPDATE exhibits SET big_png_sha256 = NULL")
    flip_one_pixel(qcat_home / "gallery" / made[0]["big_png_path"])
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 1 and "exhibit 1: 512-px image file" in r.out and "hash differs" not in r.out
    r = run_qcat("gallery", "repair", "--all", "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["repaired"] == [1]
    assert {e["exhibit"]: e["recorded_big_png_hash"] for e in doc["exhibits"]} == {1: True, 2: True}
    with open_gallery(qcat_home) as gallery:
        for ex in gallery.all():
            assert ex.big_png_sha256 is not None
            assert np.array_equal(read_png_rgb(gallery.path(ex.big_png_path))[::8, ::8],
                                  read_png_rgb(gallery.path(ex.png_path)))
    assert run_qcat("gallery", "verify", "--all").code == 0


def test_repair_needs_an_id_or_all(run_qcat):
    r = run_qcat("gallery", "repair")
    assert r.code == 2 and "--all" in r.err
    assert run_qcat("gallery", "repair", "7").code == 2  # no such exhibit: one sentence


def test_verify_draws_a_progress_bar_on_a_terminal(qcat_home, run_qcat, weights):
    """stderr on a real pseudo-terminal: the bar is drawn; with --json it is not."""
    import os
    import pty
    import subprocess
    import sys

    from tests.conftest import REPO

    generate(run_qcat, weights, 2)

    def stderr_on_a_terminal(*args: str) -> str:
        leader, follower = pty.openpty()
        try:
            try:
                proc = subprocess.run([sys.executable, "-m", "installation.cli", *args],
                                      stdout=subprocess.PIPE, stderr=follower, cwd=REPO,
                                      env=os.environ.copy(), timeout=120)
            finally:
                os.close(follower)
            assert proc.returncode == 0
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # Linux: EIO once the terminal is drained
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", "replace")
        finally:
            os.close(leader)

    assert "verifying [" in stderr_on_a_terminal("gallery", "verify", "--all")
    assert "verifying" not in stderr_on_a_terminal("gallery", "verify", "--all", "--json")


def test_an_exhibit_made_with_a_retired_shipped_model_still_verifies(run_qcat, qcat_home,
                                                                      tmp_path):
    """When qcat ships a new demo model, exhibits archived with the old one keep verifying: the
    old image stays in models/shipped/retired, where `gallery verify` looks for it by hash."""
    from models import weightimage

    retired = sorted(weightimage.RETIRED_DIR.glob("*.qcw"))
    assert retired, "no retired demo image is kept"
    copy = tmp_path / "old-demo.qcw"
    copy.write_bytes(retired[0].read_bytes())
    made = generate(run_qcat, copy, 1)
    copy.unlink()  # the exhibit's model file is gone; only the retired copy has those bytes
    res = run_qcat("gallery", "verify", "--all", "--json")
    assert res.code == 0, res.out + res.err
    report = json.loads(res.out)  # re-rendered with the retired image, found by its hash
    assert report["checked"] == 1 and report["ok"] is True and report["problems"] == [], report
    assert made[0]["model_sha256"] == weightimage.sha256_of(retired[0])
