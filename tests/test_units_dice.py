"""Die units under the controller: `qcat sim die` (the die's own C core behind a real pty) met by
the real CLI, supervisor and pool.

What must hold: every roll that arrives is re-derived from the bytes the controller drew for that
die and archived with its draws; every byte a die spends is a recorded draw with purpose
`die:<serial>` (the audit passes: none handed out twice); `gallery verify --all` re-derives every
roll; 6,000 rolls of the simulated die pass the chi-square test at the 1 % level (seeded bytes in
the pool, so the verdict is the same on every run).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from installation import dice
from models import die_reference
from quantum.pool import EntropyPool
from tests.cat_sim_support import cat_sim, unit_sim

SEED_BYTES = 72 * 1024  # enough for 6,000 rolls (about 9 bytes each) and their top-ups


def _stock(home: Path, n: int = SEED_BYTES, seed: int = 13) -> None:
    """The pool filled with seeded bytes, labelled as an ANU batch (the health tests pass them)."""
    data = random.Random(seed).randbytes(n)
    with EntropyPool(home / "entropy.sqlite") as pool:
        for at in range(0, n, 20480):
            assert pool.store_batch(data[at:at + 20480], "anu", {"source": "anu"}).usable


def _audit_and_verify(run_qcat) -> dict:
    audit = run_qcat("entropy", "audit")
    assert audit.code == 0, audit.out + audit.err
    r = run_qcat("gallery", "verify", "--all", "--json")
    assert r.code == 0, r.out + r.err
    return json.loads(r.out)


def test_units_roll_archives_each_roll_with_its_draws(run_qcat, qcat_home) -> None:
    _stock(qcat_home, 4096)
    with unit_sim(qcat_home, "die", "--serial", "D1") as sim:
        r = run_qcat("units", "roll", sim.path, "--count", "3")
        assert r.code == 0, r.out + r.err
        assert r.out.count("D1: rolled ") == 3
        assert "█" in r.out or "▀" in r.out  # the faces are drawn
        r = run_qcat("units", "roll", sim.path, "--count", "2", "--json")
        assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert len(doc["rolls"]) == 2 and doc["fairness"]["rolls"] == 2
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        draws = {d.id: d for d in pool.draws()}
    assert {d.purpose for d in draws.values()} == {"die:D1"}
    for roll in doc["rolls"]:
        assert 1 <= roll["pips"] <= 6 and len(bytes.fromhex(roll["face_hex"])) == 128
        got = b"".join(draws[i].data[s:s + n] for i, s, n in roll["draws"])
        assert got.hex() == roll["entropy_hex"]  # the bytes are the recorded draws' own
    # the second command took up the stream where the die's reserve stood: no byte twice
    offsets = [r["stream_offset"] for r in doc["rolls"]]
    assert offsets[1] == offsets[0] + doc["rolls"][0]["used"]
    report = _audit_and_verify(run_qcat)
    assert report["rolls_checked"] == 5 and report["ok"]


def test_six_thousand_rolls_pass_the_chi_square_test(run_qcat, qcat_home) -> None:
    _stock(qcat_home)
    with unit_sim(qcat_home, "die", "--serial", "FAIR") as sim:
        r = run_qcat("units", "roll", sim.path, "--count", "6000", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    fairness = doc["fairness"]
    assert fairness["rolls"] == 6000 and fairness["fair"], fairness
    assert fairness["p_value"] >= 0.01
    counts = [fairness["counts"][str(f)] for f in range(1, 7)]
    assert sum(counts) == 6000 and min(counts) > 850, counts
    # the test can fail: the same counts with one face favoured are rejected
    loaded = dict(enumerate(counts, 1))
    loaded[6] += 200
    assert not dice.fairness(loaded).fair
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        spent = sum(len(d.data) for d in pool.draws("die:FAIR"))
    used = sum(x["used"] for x in doc["rolls"])
    assert used <= spent < used + 200  # what the die still holds, at most one reserve
    audit = run_qcat("entropy", "audit")
    assert audit.code == 0, audit.out + audit.err


def test_units_run_takes_in_a_visitors_rolls(run_qcat, qcat_home) -> None:
    _stock(qcat_home, 4096)
    with unit_sim(qcat_home, "die", "--serial", "VISIT", "--schedule", "0.2") as sim:
        r = run_qcat("units", "run", "--port", sim.path, "--count", "4", "--json")
    assert r.code == 0, r.out + r.err
    doc = json.loads(r.out)
    # a visitor's roll in flight when the fourth arrives is archived too: it spent bytes
    assert len(doc["rolls"]) in (4, 5) and doc["archived"] == []
    assert {x["serial"] for x in doc["rolls"]} == {"VISIT"}
    report = _audit_and_verify(run_qcat)
    assert report["rolls_checked"] >= 4


def test_a_die_with_another_decoder_or_a_cat_is_refused(run_qcat, qcat_home, tmp_path) -> None:
    other = tmp_path / "other.npz"
    die_reference.save(die_reference.random_model(99), other)
    _stock(qcat_home, 4096)
    with unit_sim(qcat_home, "die", "--weights", str(other)) as sim:
        r = run_qcat("units", "roll", sim.path)
    assert r.code != 0 and "is not used: its die decoder is" in r.err, r.out + r.err
    with cat_sim(qcat_home) as sim:
        r = run_qcat("units", "roll", sim.path)
    assert r.code != 0 and "is a cat unit, not a die" in r.err, r.out + r.err
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        assert pool.draws() == []  # nothing was drawn for a unit that was refused


def test_a_die_unplugged_between_rolls_is_reconnected_and_loses_nothing(
        run_qcat, qcat_home, tmp_path) -> None:
    _stock(qcat_home, 8192)
    link = tmp_path / "by-id-die"
    # a roll and a heartbeat or two between presses: the cable is pulled every 6 frames, and
    # the visitor keeps rolling while it is out (1 s): those ROLL frames go nowhere
    with unit_sim(qcat_home, "die", "--serial", "PLUG", "--schedule", "0.25",
                  "--unplug-after", "6", "--link", str(link)) as sim:
        r = run_qcat("units", "run", "--port", str(link), "--count", "16", "--json")
        assert sim.next_path() != sim.path  # it was re-plugged at least once
    assert r.code == 0, r.out + r.err
    doc = json.loads(r.out)
    rolls = sorted(doc["rolls"], key=lambda x: x["stream_offset"])
    assert len(rolls) >= 16
    assert any(x["reported"] == 0 for x in rolls), "no roll was made while unplugged"
    assert any(x["reported"] == 1 for x in rolls)
    # every roll the die made is archived once: the stretches tile the stream from its start
    at = 0
    for x in rolls:
        assert x["stream_offset"] == at, (at, x["stream_offset"])
        at += x["used"]
    report = _audit_and_verify(run_qcat)
    assert report["ok"] and report["rolls_checked"] == len(rolls)


def test_units_generate_on_a_die_says_what_it_is(run_qcat, qcat_home) -> None:
    with unit_sim(qcat_home, "die", "--serial", "NOTCAT") as sim:
        r = run_qcat("units", "generate", sim.path)
    assert r.code == 3, r.out + r.err
    assert "is a die unit, not a cat unit" in r.err and "units roll" in r.err
