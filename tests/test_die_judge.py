"""The judge (models.die_judge): the shipped weights read fresh faces, greyscale and 1-bit, in
numpy; the check can fail; the file format is guarded; the numpy pass is the torch network's."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from installation.errors import FormatError, UsageError
from models import dice
from models.die_judge import DEFAULT_EVAL_SEED, SHIPPED_JUDGE, DieJudge, evaluate

# A seed no training run of the shipped judge drew from (asserted below, not assumed).
TEST_SEED = 4_242_424
GOAL = 0.995


@pytest.fixture(scope="module")
def judge() -> DieJudge:
    return DieJudge.load()


@pytest.fixture(scope="module")
def fresh() -> tuple[np.ndarray, np.ndarray]:
    return dice.balanced(100, TEST_SEED)


# The shipped judge reads fresh faces


def test_shipped_judge_is_small_and_says_where_it_came_from(judge):
    p = judge.provenance
    assert p["format"] == "qcat-die-judge" and p["version"] == 1
    assert {"seed", "epochs", "date", "command", "accuracy_grey", "accuracy_one_bit",
            "seeds_used", "train_faces"} <= set(p)
    assert TEST_SEED not in p["seeds_used"] and DEFAULT_EVAL_SEED not in p["seeds_used"]
    assert 1000 < judge.parameter_count() == p["parameters"] < 10_000
    assert SHIPPED_JUDGE.stat().st_size < 64 * 1024


def test_shipped_judge_reads_fresh_greyscale_faces(judge, fresh):
    images, labels = fresh
    assert judge.accuracy(images, labels) >= GOAL
    # uint8 and float inputs are the same faces to the judge
    assert (judge.predict(dice.to_float(images)) == judge.predict(images)).all()


def test_shipped_judge_reads_fresh_one_bit_faces(judge, fresh):
    images, labels = fresh
    assert judge.accuracy(dice.one_bit(images), labels) >= GOAL


def test_shipped_judge_fails_faces_whose_pips_are_gone(judge):
    """The accuracy check can fail: the same faces with their pips shrunk to nothing (a generator
    that draws blank dice) are read as the asked-for count at most by chance."""
    labels = np.repeat(np.arange(1, 7), 30)
    blank = np.stack([dice.downscale(dice.render_large(replace(s, pip_radius=(0.0,) * s.pips)))
                      for s in dice.draw_styles(labels, TEST_SEED)])
    assert judge.accuracy(blank, labels) < 0.4


def test_shipped_judge_fails_mislabelled_and_noise_faces(judge, fresh):
    images, labels = fresh
    assert judge.accuracy(images, labels % 6 + 1) < 0.05
    noise = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
    assert judge.accuracy(noise, labels) < 0.4


def test_evaluate_reports_per_count_and_refuses_a_training_seed(judge):
    report = evaluate(judge, 10, DEFAULT_EVAL_SEED)
    assert report["faces"] == 60
    for kind in ("grey", "one_bit"):
        assert list(report[kind]["per_count"]) == ["1", "2", "3", "4", "5", "6"]
        assert report[kind]["overall"] == pytest.approx(
            np.mean(list(report[kind]["per_count"].values())))
    with pytest.raises(UsageError, match="not held out"):
        evaluate(judge, 10, judge.provenance["seeds_used"][0])


# The file format


def test_encode_decode_round_trip(judge):
    again = DieJudge.decode(judge.encode())
    assert again.provenance == judge.provenance
    assert all((again.weights[k] == v).all() for k, v in judge.weights.items())


def _with(judge: DieJudge, **changes) -> bytes:
    return DieJudge({**judge.weights}, {**judge.provenance, **changes}).encode()


@pytest.mark.parametrize("damage, words", [
    (lambda j: b"not an npz at all", "is not a die judge"),
    (lambda j: _with(j, format="something-else"), "not a qcat die judge"),
    (lambda j: _with(j, version=2), "version 2; this qcat reads version 1"),
    (lambda j: DieJudge({k: v for k, v in j.weights.items() if k != "fc.bias"},
                        j.provenance).encode(), "lacks the array 'fc.bias'"),
    (lambda j: DieJudge({**j.weights, "conv1.weight": np.zeros((4, 1, 3, 3), np.float32)},
                        j.provenance).encode(), "conv1.weight is float32 (4, 1, 3, 3)"),
])
def test_damaged_files_are_refused_with_the_retrain_hint(judge, damage, words):
    with pytest.raises(FormatError, match=re.escape(words)) as exc:
        DieJudge.decode(damage(judge), "x.npz")
    assert "qcat models train judge" in (exc.value.hint or "")


# The CLI


def test_quality_judge_json(run_qcat):
    r = run_qcat("models", "quality", "judge", "--per-count", "20", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["ok"] is True and report["faces"] == 120 and report["seed"] == DEFAULT_EVAL_SEED
    assert report["grey"]["overall"] >= GOAL and report["one_bit"]["overall"] >= GOAL


def test_quality_judge_table_and_a_goal_it_cannot_meet(run_qcat):
    r = run_qcat("models", "quality", "judge", "--per-count", "5")
    assert r.code == 0, r.err
    assert "1-bit" in r.out and "goal 99.5 % on both: met" in r.out
    r = run_qcat("models", "quality", "judge", "--per-count", "5", "--goal", "100.1")
    assert r.code == 1 and "NOT met" in r.out


def test_quality_judge_with_a_bad_file_is_one_sentence(run_qcat, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    r = run_qcat("models", "quality", "judge", "--judge", bad)
    assert r.code == 2 and "is not a die judge" in r.err and "Traceback" not in r.err


# numpy against torch


@pytest.mark.needs_torch
def test_numpy_forward_is_the_torch_networks_argmax(judge):
    torch = pytest.importorskip("torch")
    from models.die_judge_train import JudgeNet, to_judge

    rng = np.random.default_rng(1)
    images, _ = dice.dataset(240, seed=TEST_SEED + 1)
    noisy = np.clip(dice.to_float(images) + rng.normal(0, 0.1, images.shape), 0, 1)
    inputs = np.concatenate([dice.to_float(images), dice.to_float(dice.one_bit(images)),
                             noisy.astype(np.float32)])
    torch.manual_seed(5)
    untrained = JudgeNet()
    shipped = JudgeNet()
    shipped.load_state_dict({k: torch.from_numpy(v) for k, v in judge.weights.items()})
    for net, numpy_judge in ((shipped, judge), (untrained, to_judge(untrained, {}))):
        with torch.no_grad():
            logits = net(torch.from_numpy(inputs)[:, None]).numpy()
        np.testing.assert_allclose(numpy_judge.logits(inputs), logits, rtol=1e-4, atol=1e-4)
        assert (numpy_judge.predict(inputs) == logits.argmax(1) + 1).all()


@pytest.mark.needs_torch
@pytest.mark.slow
def test_train_judge_cli_writes_a_loadable_file(run_qcat, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "j.npz"
    r = run_qcat("models", "train", "judge", "--epochs", "1", "--images", "600", "--out", out)
    assert r.code == 0, r.err
    assert "trained the die judge" in r.out
    p = DieJudge.load(out).provenance
    assert p["epochs"] == 1 and p["train_faces"] == 600 and p["seeds_used"] == [1, 2]
    assert "qcat models train judge" in p["command"]
