"""The controller's side of a die's entropy: its stream of draws, the check of each roll against
the reference, the archive of rolls, and the chi-square fairness test.

Real SQLite pools and archives on disk; the decoder is seeded random weights (the reference is
the same code whatever the weights)."""

from __future__ import annotations

import os
import random
import sqlite3

import pytest

from installation import dice
from installation.errors import CheckFailed, InputError
from installation.gallery import SCHEMA_VERSION, Gallery
from models import die_reference
from quantum.pool import EntropyPool


@pytest.fixture
def pool(tmp_path):
    with EntropyPool(tmp_path / "pool.sqlite3") as p:
        p.store_batch(os.urandom(4096), "anu", {"source": "anu"})
        yield p


@pytest.fixture(scope="module")
def ref():
    model = die_reference.random_model(3)
    return dice.DieModelRef(model, die_reference.content_sha256(model))


def test_a_die_stream_is_its_draws_end_to_end_and_survives_a_restart(pool):
    stream = dice.DieStream(pool, "die-a")
    assert stream.end == 0
    first, a = stream.topup(20)
    second, b = stream.topup(30)
    dice.DieStream(pool, "die-b").topup(5)  # another die's draws are not in this stream
    assert (first, second, stream.end) == (0, 20, 50)
    again = dice.DieStream(pool, "die-a")  # a new controller process reads the same stream
    assert again.end == 50
    data, draws, source = again.slice(15, 10)
    assert data == a[15:] + b[:5]
    ids = [d.id for d in pool.draws("die:die-a")]
    assert draws == [[ids[0], 15, 5], [ids[1], 0, 5]]
    assert source == "anu"
    with pytest.raises(CheckFailed, match="only 50 were ever sent"):
        again.slice(45, 10)


def test_the_recipe_skips_bytes_over_251_and_needs_the_whole_latent():
    r = die_reference.roll_from_bytes(bytes([252, 255, 11]) + bytes(range(100, 108)) + b"\x00")
    assert r is not None and (r.pips, r.used) == (1 + 11 % 6, 11)
    assert list(r.z) == list(die_reference.latent_from_bytes(bytes(range(100, 108))))
    assert die_reference.roll_from_bytes(bytes([255, 3]) + bytes(7)) is None  # one latent byte short: no roll
    assert die_reference.roll_from_bytes(bytes([252] * 20)) is None
    # every face keeps exactly 42 of the 256 byte values
    faces = [die_reference.roll_from_bytes(bytes([b]) + bytes(8)) for b in range(256)]
    counts = {p: sum(1 for f in faces if f and f.pips == p) for p in range(1, 7)}
    assert counts == dict.fromkeys(range(1, 7), 42)


def _honest_roll(ref, stream, offset):
    data, _, _ = stream.slice(offset, stream.end - offset)
    r = die_reference.roll_from_bytes(data)
    assert r is not None
    return r, die_reference.roll_face(ref.model, r)


def test_an_honest_roll_is_accepted_with_its_bytes_and_draws(pool, ref):
    stream = dice.DieStream(pool, "die-a")
    stream.topup(6)
    stream.topup(40)
    r, face = _honest_roll(ref, stream, 2)
    new = dice.check_roll(ref, stream, pips=r.pips, face=face, offset=2, used=r.used)
    assert (new.serial, new.stream_offset, new.used, new.pips) == ("die-a", 2, r.used, r.pips)
    assert bytes.fromhex(new.entropy_hex) == stream.slice(2, r.used)[0]
    assert [d[0] for d in new.draws] == [d.id for d in pool.draws("die:die-a")]
    assert new.model_sha256 == ref.sha256 and new.face_hex == face.hex()


def test_a_roll_that_differs_from_its_bytes_is_a_unit_fault(pool, ref):
    stream = dice.DieStream(pool, "die-a")
    stream.topup(40)
    r, face = _honest_roll(ref, stream, 0)
    with pytest.raises(CheckFailed, match=f"shows {r.pips % 6 + 1} pips; its bytes roll {r.pips}"):
        dice.check_roll(ref, stream, pips=r.pips % 6 + 1, face=face, offset=0, used=r.used)
    bad = bytearray(face)
    bad[77] ^= 0x10
    with pytest.raises(CheckFailed, match="at page byte 77"):
        dice.check_roll(ref, stream, pips=r.pips, face=bytes(bad), offset=0, used=r.used)
    with pytest.raises(CheckFailed, match=f"spent {r.used + 1} bytes"):
        dice.check_roll(ref, stream, pips=r.pips, face=face, offset=0, used=r.used + 1)
    with pytest.raises(CheckFailed, match="only 40 were ever sent"):
        dice.check_roll(ref, stream, pips=r.pips, face=face, offset=35, used=9)


def test_the_archive_keeps_one_roll_per_stream_position(tmp_path, pool, ref):
    stream = dice.DieStream(pool, "die-a")
    stream.topup(60)
    with Gallery(tmp_path / "g.sqlite3", tmp_path / "files") as g:
        r, face = _honest_roll(ref, stream, 0)
        new = dice.check_roll(ref, stream, pips=r.pips, face=face, offset=0, used=r.used)
        first = g.add_roll(new)
        assert g.add_roll(new).id == first.id  # reported again: the same row
        other = dice.check_roll(ref, stream, pips=r.pips, face=face, offset=0, used=r.used)
        forged = type(other)(**{**other.__dict__, "pips": r.pips % 6 + 1})
        with pytest.raises(CheckFailed, match="another roll"):
            g.add_roll(forged)
        r2, face2 = _honest_roll(ref, stream, r.used)
        g.add_roll(dice.check_roll(ref, stream, pips=r2.pips, face=face2, offset=r.used,
                                   used=r2.used))
        assert [x.stream_offset for x in g.rolls("die-a")] == [r.used, 0]
        counts = g.roll_counts()
        assert sum(counts.values()) == 2 and set(counts) == set(range(1, 7))
        assert g.rolls("die-b") == []
    db = sqlite3.connect(tmp_path / "g.sqlite3")
    assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)


@pytest.mark.parametrize(("x", "df", "p"), [(3.841459, 1, 0.05), (5.991465, 2, 0.05),
                                            (11.070498, 5, 0.05), (15.086272, 5, 0.01),
                                            (1.610308, 5, 0.9), (0.0, 5, 1.0)])
def test_the_chi_square_tail_matches_the_tables(x, df, p):
    assert dice.chi_square_sf(x, df) == pytest.approx(p, abs=2e-6)


def test_fairness_accepts_a_fair_die_and_catches_a_loaded_one():
    rng = random.Random(5)
    fair = [0] * 6
    for _ in range(6000):
        fair[rng.randrange(6)] += 1
    verdict = dice.fairness(dict(enumerate(fair, 1)))
    assert verdict.fair and verdict.rolls == 6000
    loaded = dict(enumerate(fair, 1))
    loaded[6] += 150  # a face 15 % more likely than it should be: 1,150 instead of ~1,000
    assert not dice.fairness(loaded).fair
    assert dice.fairness({}).p_value == 1.0
    with pytest.raises(InputError):
        dice.fairness({7: 3})


def test_gallery_verify_rederives_every_roll_and_names_a_tampered_one(tmp_path, pool, ref):
    from installation.curation import verify

    stream = dice.DieStream(pool, "die-a")
    stream.topup(200)
    with Gallery(tmp_path / "g.sqlite3", tmp_path / "files") as g:
        at = 0
        for _ in range(5):
            r, face = _honest_roll(ref, stream, at)
            g.add_roll(dice.check_roll(ref, stream, pips=r.pips, face=face, offset=at,
                                       used=r.used))
            at += r.used
        report = verify(g, lambda sha: None, pool=pool, die_ref=ref)
        assert report.ok and report.rolls_checked == 5, report.lines()
        third = g.rolls()[2]
        g._db.execute("UPDATE die_rolls SET face_hex = ? WHERE id = ?",
                      ((b"\xff" + third.face[1:]).hex() if third.face[0] != 0xFF
                       else (b"\x00" + third.face[1:]).hex(), third.id))
        fourth = g.rolls()[1]
        g._db.execute("UPDATE die_rolls SET entropy_hex = ? WHERE id = ?",
                      ("00" + fourth.entropy_hex[2:], fourth.id))
        report = verify(g, lambda sha: None, pool=pool, die_ref=ref)
    assert not report.ok and report.rolls_checked == 5
    assert any(f"die roll {third.id} " in p and "face differs" in p for p in report.roll_problems)
    assert any(f"die roll {fourth.id} " in p and "archived entropy differs" in p
               for p in report.roll_problems)
    assert report.failure() is not None
