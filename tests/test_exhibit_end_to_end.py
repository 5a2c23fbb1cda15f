"""Issue 7: exhibits end to end on the controller (promises E1, E2, F1, F2).

Real parts throughout: the SQLite pool and archive on disk in a temporary home, the real CLI in a
child process where a crash is involved, real PNG files. The weight image is a synthetic demo-size
model written to disk (numpy only), so these tests do not depend on the trained model.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from installation.exhibit import read_png_rgb
from quantum import latent
from tests.gallery_support import generate, synthetic_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return synthetic_weights(tmp_path_factory.mktemp("model"))


def test_generate_list_show_verify(run_qcat, qcat_home, weights):
    made = generate(run_qcat, weights, 3)
    assert [e["id"] for e in made] == [1, 2, 3]
    for e in made:
        entropy = bytes.fromhex(e["entropy_hex"])
        assert len(entropy) == latent.EXHIBIT_BYTES
        code = latent.verdict_code(entropy[200:])
        assert e["verdict_code"] == code.code and e["mood"] == code.mood
        png = qcat_home / "gallery" / e["png_path"]
        big = qcat_home / "gallery" / e["big_png_path"]
        assert read_png_rgb(png).shape == (64, 64, 3)
        assert read_png_rgb(big).shape == (512, 512, 3)
        assert np.array_equal(read_png_rgb(big)[::8, ::8], read_png_rgb(png))
        # offline: the pool is empty, the default policy is os and it is labelled so (E2)
        assert e["source"] == "os-fallback"
    listed = json.loads(run_qcat("gallery", "list", "--json").out)
    assert [e["id"] for e in listed] == [3, 2, 1]  # newest first
    r = run_qcat("gallery", "show", "2")
    assert r.code == 0 and made[1]["entropy_hex"] in r.out and "NOT quantum" in r.out
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 0, r.out + r.err
    assert "3 exhibits checked, 0 problems" in r.out


def test_c_engine_exhibits_verify_against_the_numpy_reference(run_qcat, weights):
    """Generate with the C engine (checked against the reference while generating), then
    re-render every exhibit with numpy: the archived image hashes must match exactly."""
    r = run_qcat("generate", "--count", "3", "--engine", "c", "--weights", weights, "--json")
    assert r.code == 0, r.err
    assert {e["engine"] for e in json.loads(r.out)["generated"]} == {"c"}
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 0 and "3 exhibits checked, 0 problems" in r.out


def test_verify_reports_a_tampered_png(run_qcat, qcat_home, weights):
    made = generate(run_qcat, weights, 2)
    png = qcat_home / "gallery" / made[1]["png_path"]
    from PIL import Image

    with Image.open(png) as img:
        pixels = np.asarray(img.convert("RGB")).copy()
    pixels[10, 10, 0] ^= 0x01  # one bit of one pixel
    Image.fromarray(pixels).save(png)
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 1
    assert "exhibit 2: image file" in r.out and "exhibit 1" not in r.out
    assert "1 of 2 exhibits differ" in r.err


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("verdict_code", 5, "does not follow from its bytes"),
        ("verdict_text", "The cat is fine.", "verdict text differs"),
        ("image_sha256", "0" * 64, "re-rendered image differs"),
    ],
)
def test_verify_reports_a_tampered_archive_row(run_qcat, qcat_home, weights, column, value, message):
    generate(run_qcat, weights, 2)
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:
        db.execute(f"UPDATE exhibits SET {column} = ? WHERE id = 1", (value,))
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 1
    assert "exhibit 1: " in r.out and message in r.out
    assert "exhibit 2" not in r.out


def test_verify_reports_tampered_entropy(run_qcat, qcat_home, weights):
    made = generate(run_qcat, weights, 1)
    flipped = bytearray.fromhex(made[0]["entropy_hex"])
    flipped[16] ^= 0x80  # high byte of k[8]: moves u by 0.5, so z and the image change
    with sqlite3.connect(qcat_home / "gallery.sqlite") as db:
        db.execute("UPDATE exhibits SET entropy_hex = ? WHERE id = 1", (flipped.hex(),))
    r = run_qcat("gallery", "verify", "1")
    assert r.code == 1 and "re-rendered image differs" in r.out
    assert "archived entropy differs from the bytes the pool handed out" in r.out


def test_unknown_exhibit_and_bad_usage(run_qcat, weights):
    assert run_qcat("gallery", "show", "99").code == 2
    r = run_qcat("gallery", "verify")
    assert r.code == 2 and "--all" in r.err


def test_contact_sheet(run_qcat, qcat_home, weights, tmp_path):
    made = generate(run_qcat, weights, 2)
    out = tmp_path / "sheet"
    r = run_qcat("gallery", "export", out)
    assert r.code == 0
    page = (out / "index.html").read_text()
    for e in made:
        # linked where it lies in the gallery folder, not copied beside the page
        assert f'href="../home/gallery/{e["big_png_path"]}"' in page
        assert not (out / e["big_png_path"]).exists()
        assert e["verdict_text"].replace("'", "&#x27;") in page
    assert "os-fallback: NOT quantum" in page


@pytest.mark.parametrize("crash_point", ["after-draw", "before-archive"])
def test_sigkill_between_draw_and_archive_completes_with_the_same_bytes(
        qcat_subprocess, qcat_home, weights, crash_point):
    from quantum.pool import EntropyPool

    r = qcat_subprocess("generate", "--engine", "numpy", "--weights", weights,
                        env={"QCAT_CRASH_AT": crash_point})
    assert r.code == -9, (r.code, r.err)
    pool = EntropyPool(qcat_home / "entropy.sqlite")
    draws = pool.draws()
    pool.close()
    assert len(draws) == 1 and draws[0].purpose.startswith("exhibit:")
    drawn = draws[0].data
    png_before = None
    gallery_dir = qcat_home / "gallery"
    if crash_point == "before-archive":
        [png] = [p for p in gallery_dir.glob("cat-*.png") if "512" not in p.name]
        png_before = png.read_bytes()
    # nothing archived yet
    r = qcat_subprocess("gallery", "list", "--json")
    assert json.loads(r.out) == []
    # restart: the pending exhibit is completed, and no new entropy is drawn for it
    r = qcat_subprocess("generate", "--count", "0", "--engine", "numpy", "--weights", weights,
                        "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["generated"] == []
    [done] = doc["completed_pending"]
    assert bytes.fromhex(done["entropy_hex"]) == drawn
    pool = EntropyPool(qcat_home / "entropy.sqlite")
    assert len(pool.draws()) == 1  # no extra bytes drawn
    pool.close()
    png_after = (gallery_dir / done["png_path"]).read_bytes()
    if png_before is not None:
        assert png_after == png_before
    # the image is exactly what the reference renders from those bytes
    assert qcat_subprocess("gallery", "verify", "--all").code == 0
    # and running again completes nothing twice
    r = qcat_subprocess("generate", "--count", "0", "--engine", "numpy", "--weights", weights,
                        "--json")
    assert json.loads(r.out)["completed_pending"] == []


def test_missing_weights_is_a_clear_error(run_qcat, tmp_path):
    r = run_qcat("generate", "--weights", tmp_path / "none.qcw")
    assert r.code == 2 and "does not exist" in r.err


def test_demo_runs_offline_and_says_where_its_entropy_came_from(qcat_subprocess, qcat_home, weights):
    cfg = qcat_home / "qcat.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f'[models]\nweights = "{weights}"\n[engine]\ndefault = "numpy"\n')
    r = qcat_subprocess("demo", "--count", "2", "--no-speech")
    assert r.code == 0, r.err
    assert "os-fallback" in r.out and "NOT quantum" in r.out
    assert "contact sheet:" in r.out and (qcat_home / "contact-sheet" / "index.html").exists()
    assert r.out.count("the cat is ") == 2


def test_quantum_exhibits_record_where_their_bytes_came_from(run_qcat, qcat_home, weights,
                                                             monkeypatch, tmp_path):
    """E2 end to end: bytes fetched over real HTTP from the fake ANU server are what the exhibit
    records, with the batch and request they came from; exactly 203 bytes per exhibit."""
    from quantum.fakeanu import FakeAnu
    from quantum.pool import EntropyPool

    key = "exhibit-test-key-0123456789abcdef"
    monkeypatch.setenv("QCAT_ANU_API_KEY", key)
    with FakeAnu(api_key=key) as fake:
        url = fake.url
        r = run_qcat("entropy", "fetch", "--bytes", "1000", "--api-url", url)
    assert r.code == 0, r.err
    made = generate(run_qcat, weights, 2)
    pool = EntropyPool(qcat_home / "entropy.sqlite")
    status = pool.status()
    draws = {d.id: d for d in pool.draws()}
    pool.close()
    assert status["served_bytes"] == 2 * latent.EXHIBIT_BYTES
    for e in made:
        assert e["source"] == "anu"
        assert bytes.fromhex(e["entropy_hex"]) == draws[e["draw_id"]].data
        [segment] = e["provenance"]["segments"]
        assert segment["request_number"] == 1 and segment["base_url"] == url
        assert key not in json.dumps(e)
    assert made[1]["provenance"]["segments"][0]["offset"] == latent.EXHIBIT_BYTES
    assert "NOT quantum" not in run_qcat("gallery", "show", "1").out
    r = run_qcat("gallery", "export", tmp_path / "sheet")
    page = (tmp_path / "sheet" / "index.html").read_text()
    assert "anu, fetched 20" in page and "NOT quantum" not in page
    assert run_qcat("gallery", "verify", "--all").code == 0


# -- speech in a fresh home (the clip bank is built on first use, or its absence is said) -------

@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng renders the clip bank")
def test_generate_in_a_fresh_home_builds_the_clip_bank_and_speaks(run_qcat, qcat_home, weights):
    result = run_qcat("generate", "--engine", "numpy", "--weights", weights)
    assert result.code == 0, result.err
    assert "speech: clip bank ready (built now: there is no clip bank yet)" in result.out
    wav = qcat_home / "gallery" / "cat-000001.wav"
    assert wav.is_file() and wav.stat().st_size > 16_000  # seconds of 16 kHz speech
    assert "speech: " + str(wav) in result.out


def test_generate_without_espeak_says_so_and_speak_adds_voices_later(
        run_qcat, qcat_home, weights, monkeypatch):
    original_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(qcat_home / "no-tools-here"))
    result = run_qcat("generate", "--engine", "numpy", "--weights", weights, "--count", "2")
    assert result.code == 0, result.err
    assert ("speech: none, there is no clip bank yet and espeak-ng, which renders it, is not "
            "installed; the exhibits are silent for now. Give them their voices later with "
            "`qcat gallery speak --all`") in result.out
    assert not list((qcat_home / "gallery").glob("*.wav"))
    listed = json.loads(run_qcat("gallery", "list", "--json").out)
    assert [e["wav_path"] for e in listed] == [None, None]
    speak = run_qcat("gallery", "speak", "--all")
    assert speak.code == 3 and "espeak-ng, which renders it, is not installed" in speak.err
    if shutil.which("espeak-ng", path=original_path) is None:
        return
    monkeypatch.setenv("PATH", original_path)
    speak = run_qcat("gallery", "speak", "--all", "--json")
    assert speak.code == 0, speak.err
    assert json.loads(speak.out) == {"voiced": [1, 2], "already_spoken": []}
    from phrases.clipbank import ClipBank

    bank = ClipBank.load(qcat_home / "builds" / "verdicts.qcv")
    for e in json.loads(run_qcat("gallery", "list", "--json").out):
        assert (qcat_home / "gallery" / e["wav_path"]).read_bytes() == \
            bank.verdict_wav(e["verdict_code"])
    assert run_qcat("gallery", "verify", "--all").code == 0
    again = run_qcat("gallery", "speak", "1")
    assert again.code == 0 and "1 exhibit already had one" in again.out


def test_count_zero_and_more_than_the_pool_holds_are_said_before_starting(
        run_qcat, qcat_home, weights):
    zero = run_qcat("generate", "--count", "0", "--engine", "numpy", "--weights", weights,
                    "--no-speech")
    assert zero.code == 0
    assert "no new exhibits asked for (--count 0): nothing is drawn from the pool" in zero.out
    many = run_qcat("generate", "--count", "3", "--engine", "numpy", "--weights", weights,
                    "--no-speech")
    assert many.code == 0
    assert ("the pool has no quantum bytes for these 3 exhibits; they will use the operating "
            "system's randomness") in many.out
    demo = run_qcat("demo", "--count", "0", "--no-speech")
    assert demo.code == 0
    assert "these cats use ANU vacuum noise" not in demo.out
    assert "nothing is drawn from the pool" in demo.out
    assert run_qcat("demo", "--count", "-1").code == 2
