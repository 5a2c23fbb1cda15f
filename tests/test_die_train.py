"""Training the die decoder (`models.die_train`, `qcat models train die`).

Real parts: torch trains the quantization-aware CVAE on rendered faces (a tiny number of steps),
the export is written to disk and read back, and the compiled C engine runs it. What a plausible
bug would break: the float training forward drifting from the integer reference (a rounding
mode, a transposed weight layout, a shift off by one), the export not being the model trained,
non-determinism, a resume that does not continue where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from firmware.die_engine import DieEngine
from models import die_quality
from models import die_reference as ref

torch = pytest.importorskip("torch")
from models import die_train  # noqa: E402  (needs torch)

TINY = die_train.Settings(epochs=2, faces=96, batch_size=32, max_tilt=90)  # every face kept


def _float64_layers(decoder: die_train.QuantDecoder, z: np.ndarray,
                    pips: np.ndarray) -> list[np.ndarray]:
    acts: list[torch.Tensor] = []
    d64 = decoder.double()
    with torch.no_grad():
        logits = d64(torch.from_numpy(z.astype(np.float64)), torch.from_numpy(pips), acts)
    decoder.float()
    return [a.numpy().astype(np.uint8) for a in acts] + [(logits.numpy() > 0).astype(np.uint8)]


@pytest.mark.parametrize("seed", [0, 5])
def test_the_training_forward_is_the_integer_reference(seed: int) -> None:
    """With its weights, biases and scales rounded as training rounds them, the float decoder
    computes exactly the exported integer model on every layer (float64, so no summation-order
    doubt), over the unit's latents and every pip count, with busy layers (not all zero)."""
    torch.manual_seed(seed)
    decoder = die_train.QuantDecoder()
    with torch.no_grad():  # spread the channels' scales so shifts differ between channels
        for w in decoder.tc_w:
            w.mul_(torch.rand(w.shape[0], 1, 1, 1) * 4 + 0.1)
    model = decoder.export()
    z, pips = die_quality.latents(40, seed=seed)
    got = _float64_layers(decoder, z, pips)
    want = ref.run(model, z, pips)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(a, b), f"layer {i + 1}: {(a != b).sum()} values differ"
    for i, act in enumerate(want[:-1]):
        assert 0.05 < (act > 0).mean() < 0.95, f"layer {i + 1} is nearly constant"
    assert len({int(s) for s in np.concatenate(model.shift[1:4])}) > 1


def test_weights_are_exported_in_the_engine_layout() -> None:
    """The engine's transposed-conv weights are [out][in][ky][kx] and the FC's label columns
    come after z's: one known weight put in each place lands where the reference reads it."""
    decoder = die_train.QuantDecoder()
    with torch.no_grad():
        decoder.tc_w[1].zero_()
        decoder.tc_w[1][2, 5, 1, 3] = 3.0  # layer 3, out 2, in 5
        decoder.fc_w[9, ref.NZ + 4] = -5.0  # FC row 9 (channel 2), label column of 5 pips
    model = decoder.export()
    w3 = model.weights[2]
    # the channel scale is a power of two: 3.0 / 2^ceil(log2(3 / 7)) = 6
    assert np.count_nonzero(w3) == 1 and w3[2, 5, 1, 3] == 6
    assert model.weights[0][9, ref.NZ + 4] < 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[die_train.Trained, Path]:
    ckpt = tmp_path_factory.mktemp("die") / "tiny.ckpt"
    calls: list[tuple[int, int, str]] = []
    trained = die_train.train(TINY, checkpoint=ckpt, quality_per_count=20, command="test",
                              progress=lambda d, t, n: calls.append((d, t, n)))
    assert calls[-1][:2] == (6, 6) and calls[0] == (1, 6, "epoch 1/2")  # 3 steps x 2 epochs
    return trained, ckpt


def test_smoke_training_exports_a_model_the_c_engine_runs_identically(
        tiny: tuple[die_train.Trained, Path], tmp_path: Path) -> None:
    trained, _ = tiny
    path = tmp_path / "die.npz"
    ref.save(trained.model, path)
    model = ref.load(path)
    assert ref.content_sha256(model) == ref.content_sha256(trained.model)
    z, pips = die_quality.latents(50, seed=3)
    pages, maps = DieEngine(*model.engine_arrays()).run(z, pips, layers=True)
    want = ref.run(model, z, pips)
    assert maps is not None
    for i, (a, b) in enumerate(zip(maps, want[:-1], strict=True)):
        assert np.array_equal(a, b), f"layer {i + 1} differs"
    assert pages.tobytes() == ref.pages(want[-1][:, 0]).tobytes()
    # ... and it is the network training ran, not merely a model of the right shape.
    assert np.array_equal(_float64_layers(trained.decoder, z, pips)[-1], want[-1])


def test_provenance_says_how_to_make_it_again(tiny: tuple[die_train.Trained, Path]) -> None:
    trained, _ = tiny
    p = trained.model.provenance
    assert all(isinstance(v, str) for v in p.values())  # the container's contract
    assert (p["source"], p["seed"], p["data_seed"], p["epochs"], p["command"]) == \
        ("trained", "0", str(TINY.data_seed), "2", "test")
    assert p["tool"].startswith("qcat ") and p["judge_in_training"] == "no"
    assert set(json.loads(p["legibility"])) == {"1", "2", "3", "4", "5", "6"}
    assert float(p["distinct_min"]) == min(json.loads(p["distinct_fraction"]).values())
    assert json.loads(p["settings"])["faces"] == TINY.faces
    assert [h["epoch"] for h in trained.history] == [1, 2]


def test_training_is_deterministic_and_resumes_where_it_stopped(
        tiny: tuple[die_train.Trained, Path], tmp_path: Path) -> None:
    """Stopped after epoch 1 (the progress callback raises), then resumed from the checkpoint:
    the same model as the uninterrupted run, which is itself the same on every run."""
    trained, _ = tiny
    ckpt = tmp_path / "stopped.ckpt"

    class Stop(Exception):
        pass

    def stop_in_epoch_2(done: int, total: int, note: str) -> None:
        if note == "epoch 2/2":
            raise Stop

    with pytest.raises(Stop):
        die_train.train(TINY, checkpoint=ckpt, quality_per_count=20, progress=stop_in_epoch_2)
    resumed = die_train.train(TINY, checkpoint=ckpt, resume=True, quality_per_count=20)
    assert ref.content_sha256(resumed.model) == ref.content_sha256(trained.model)
    assert resumed.history == trained.history


def test_resume_refuses_a_checkpoint_of_other_settings(
        tiny: tuple[die_train.Trained, Path]) -> None:
    from dataclasses import replace

    from installation.errors import FormatError

    _, ckpt = tiny
    with pytest.raises(FormatError, match=r"other settings \(data_seed\)"):
        die_train.train(replace(TINY, data_seed=99), checkpoint=ckpt, resume=True)


def test_train_die_cli_then_compare_and_quality(run_qcat, tmp_path: Path) -> None:
    """`qcat models train die` writes a loadable decoder with its checkpoint; `qcat engine
    compare die` finds the C engine equal to the reference on it; `--resume` without a
    checkpoint is one sentence."""
    out = tmp_path / "d.npz"
    r = run_qcat("models", "train", "die", "--epochs", "1", "--images", "64", "--out", out,
                 "--threads", "1")
    assert r.code == 0, r.err
    assert "trained the die decoder (7,616 4-bit weights, 1 epochs" in r.out
    assert out.with_suffix(".ckpt").exists()
    model = ref.load(out)
    assert model.provenance["command"] == (f"qcat models train die --epochs 1 --seed 0 "
                                           f"--data-seed 11 --images 64 --threads 1 --out {out}")
    r = run_qcat("engine", "compare", "die", "--decoder", out, "--latents", "30", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["identical"] is True
    r = run_qcat("models", "train", "die", "--out", tmp_path / "none.npz", "--resume")
    assert r.code != 0 and "no checkpoint" in r.err and "Traceback" not in r.err
