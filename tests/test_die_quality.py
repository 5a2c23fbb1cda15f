"""The shipped die decoder meets its goals, measured (`models.die_quality`, `qcat models quality
die`, `qcat models samples die --source decoder`).

Real parts: the shipped decoder file, the integer reference, the shipped judge and a second judge
trained on other seeds (neither is used in training; the second shows that legibility does not
hinge on one network's quirks). The goals are computed from faces, never read from the file's provenance; a
failure message carries the per-count figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models import die_quality
from models import die_reference as ref
from models.die_judge import SHIPPED_DIR, DieJudge

CHECK_JUDGE = SHIPPED_DIR / "die-judge-check.npz"


@pytest.fixture(scope="module")
def shipped() -> ref.DieModel:
    return ref.load_shipped()


@pytest.fixture(scope="module")
def report(shipped: ref.DieModel) -> dict:
    return die_quality.measure(shipped, DieJudge.load(), per_count=die_quality.DEFAULT_PER_COUNT)


def _figures(report: dict) -> str:
    return (f"legibility {report['legibility']['per_count']}, distinct "
            f"{report['distinct_fraction']['per_count']}")


def test_shipped_decoder_meets_the_goals(report: dict) -> None:
    assert report["faces"] == 6 * die_quality.DEFAULT_PER_COUNT
    for count in map(str, range(1, 7)):
        assert report["legibility"]["per_count"][count] >= die_quality.LEGIBILITY_GOAL, \
            f"{count} pips not legible enough: {_figures(report)}"
        assert report["distinct_fraction"]["per_count"][count] >= die_quality.DISTINCT_GOAL, \
            f"{count} pips: too few distinct faces: {_figures(report)}"
    assert report["ok"]
    lit = report["mean_lit"]["per_count"].values()
    assert all(0.2 < v < 0.8 for v in lit), f"faces nearly blank or full: {lit}"


@pytest.mark.xfail(strict=True, reason="the second judge reads 98.0 % of 6s as 6 (99.0-100 % for "
                   "1-5): a 6 whose pip rows run together into bars is read as 4 by one judge "
                   "more often than by the other")
def test_legibility_holds_for_a_second_judge(shipped: ref.DieModel) -> None:
    """A judge trained on other seeds reads the faces as well: the figure is the faces', not
    one network's."""
    second = DieJudge.load(CHECK_JUDGE)
    first = DieJudge.load()
    assert set(second.provenance["seeds_used"]).isdisjoint(first.provenance["seeds_used"])
    rep = die_quality.measure(shipped, second, per_count=die_quality.DEFAULT_PER_COUNT)
    assert rep["legibility"]["min"] >= die_quality.LEGIBILITY_GOAL, _figures(rep)


def test_shipped_decoder_is_distinct_and_nearly_legible_for_both_judges(
        shipped: ref.DieModel, report: dict) -> None:
    """What the shipped decoder meets with BOTH judges, held so it cannot slip back: distinct
    faces for every count, legibility over 97 % for every count with both judges, and the two
    judges within two points of each other on every count (faces read for what they are, not one network's
    quirks)."""
    second = die_quality.measure(shipped, DieJudge.load(CHECK_JUDGE),
                                 per_count=die_quality.DEFAULT_PER_COUNT)
    assert report["distinct_fraction"]["min"] >= die_quality.DISTINCT_GOAL, _figures(report)
    for rep in (report, second):
        assert rep["legibility"]["min"] >= 0.97, _figures(rep)
    for count in map(str, range(1, 7)):
        a, b = report["legibility"]["per_count"][count], second["legibility"]["per_count"][count]
        assert abs(a - b) <= 0.02, f"{count} pips: shipped judge {a}, second judge {b}"


def test_shipped_provenance_matches_a_fresh_measurement(shipped: ref.DieModel,
                                                        report: dict) -> None:
    p = shipped.provenance
    assert p["source"] == "trained" and p["command"].startswith("qcat models train die ")
    assert json.loads(p["legibility"]) == report["legibility"]["per_count"]
    assert json.loads(p["distinct_fraction"]) == report["distinct_fraction"]["per_count"]


def test_latents_are_the_units_and_seeded() -> None:
    z, pips = die_quality.latents(5, seed=4)
    assert z.shape == (30, ref.NZ) and z.dtype == np.int8
    assert list(pips) == [k for k in range(1, 7) for _ in range(5)]
    rng = np.random.default_rng(4)
    first = ref.latent_from_bytes(rng.bytes(ref.NZ))
    assert np.array_equal(z[0], first)
    assert np.array_equal(z, die_quality.latents(5, seed=4)[0])
    assert not np.array_equal(z, die_quality.latents(5, seed=5)[0])


def test_a_decoder_that_ignores_z_is_not_distinct(shipped: ref.DieModel) -> None:
    """With the FC's latent columns zeroed, each count has one face: distinct = 1/N, exactly,
    and the goals fail."""
    weights = [w.copy() for w in shipped.weights]
    weights[0][:, :ref.NZ] = 0
    flat = ref.DieModel(weights, shipped.bias, shipped.shift, shipped.label_shift)
    rep = die_quality.measure(flat, DieJudge.load(), per_count=50)
    assert rep["distinct_fraction"]["per_count"] == {str(k): 1 / 50 for k in range(1, 7)}
    assert not rep["ok"]


def test_random_weights_are_not_legible() -> None:
    rep = die_quality.measure(ref.random_model(3), DieJudge.load(), per_count=100)
    assert rep["legibility"]["overall"] < 0.5 and not rep["ok"]


def test_quality_die_cli_json_and_table(run_qcat, tmp_path: Path) -> None:
    r = run_qcat("models", "quality", "die", "--per-count", "100", "--json")
    doc = json.loads(r.out)
    met = (min(doc["legibility"]["per_count"].values()) >= 0.99
           and min(doc["distinct_fraction"]["per_count"].values()) >= 0.9)
    assert doc["ok"] is met and r.code == (0 if met else 1), r.err  # exit status follows goals
    assert doc["faces"] == 600 and doc["judge"] == "shipped"
    assert set(doc["legibility"]) == {"per_count", "overall", "min"}
    assert doc["decoder"] == str(ref.SHIPPED_DECODER)
    bad = tmp_path / "random.npz"
    ref.save(ref.random_model(3), bad)
    r = run_qcat("models", "quality", "die", "--decoder", bad, "--per-count", "50")
    assert r.code == 1
    assert "legibility" in r.out and "distinct" in r.out and "NOT met" in r.out
    r = run_qcat("models", "quality", "die", "--decoder", tmp_path / "missing.npz")
    assert r.code != 0 and "Traceback" not in r.err and "missing.npz" in r.err


def test_samples_die_from_the_decoder(run_qcat, tmp_path: Path) -> None:
    out = tmp_path / "faces.png"
    r = run_qcat("models", "samples", "die", "--source", "decoder", "--out", out, "--scale", "2")
    assert r.code == 0, r.err
    im = np.asarray(Image.open(out).convert("L"))
    assert im.shape == (2 * (6 * 33 + 1), 2 * (12 * 33 + 1))
    assert set(np.unique(im)) <= {0, 96, 255}  # 1-bit faces on the grey grid
    faces = die_quality.sample_sheet(ref.load_shipped(), 0)
    assert np.array_equal(im[::2, ::2], faces)


def test_docs_picture_is_the_shipped_decoders() -> None:
    """docs/die-faces.png is `qcat models samples die --source decoder` of the shipped file."""
    png = Path(__file__).resolve().parent.parent / "docs" / "die-faces.png"
    im = np.asarray(Image.open(png).convert("L"))
    scale = im.shape[0] // (6 * 33 + 1)
    assert np.array_equal(im[::scale, ::scale], die_quality.sample_sheet(ref.load_shipped(), 0)), \
        "docs/die-faces.png is stale: qcat models samples die --source decoder --out docs/die-faces.png"
