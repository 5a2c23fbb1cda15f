"""The workspace: one place that resolves what every service needs from the home and the config.

Driven without argparse, as the dashboard will drive it: the weight image in use (its three
sources, in order), the models an archive may refer to, the clip bank and speech settings, the
generator it opens, and the read-only decision that makes writing services refuse up front.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from installation import config as config_mod
from installation.errors import InputError
from installation.paths import Home
from installation.speech import ensure_clip_bank
from installation.workspace import Workspace
from models import weightimage


def _workspace(root: Path, text: str = "", read_only: bool | None = None) -> Workspace:
    home = Home(root)
    cfg_file = root / "qcat.toml"
    root.mkdir(parents=True, exist_ok=True)
    if text:
        cfg_file.write_text(text)
    ws = Workspace.open(home, config_mod.load(cfg_file))
    if read_only is not None:
        ws = Workspace(ws.home, ws.config, read_only=read_only)
    return ws


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "custom.qcw"
    weightimage.save(weightimage.synthetic("demo", seed=11), path)
    return path


def test_weights_come_from_the_option_then_the_config_then_the_shipped_demo(tmp_path, model):
    plain = _workspace(tmp_path / "a")
    assert plain.weights_path() == weightimage.SHIPPED_DEMO
    assert plain.weights_path(model) == model
    configured = _workspace(tmp_path / "b", f'[models]\nweights = "{model}"\n')
    assert configured.weights_path() == model
    other = tmp_path / "other.qcw"
    weightimage.save(weightimage.synthetic("demo", seed=12), other)
    assert configured.weights_path(other) == other  # the option wins over the config
    with pytest.raises(InputError, match=r"from --weights\) does not exist"):
        plain.weights_path(tmp_path / "absent.qcw")
    broken = _workspace(tmp_path / "c", f'[models]\nweights = "{tmp_path / "gone.qcw"}"\n')
    with pytest.raises(InputError, match=r"from models.weights in the config\) does not exist"):
        broken.weights_path()


def test_known_models_lists_each_candidate_once_first_ones_first(tmp_path, model):
    ws = _workspace(tmp_path / "h", f'[models]\nweights = "{model}"\n')
    built = ws.home.builds_dir / "older.qcw"
    weightimage.save(weightimage.synthetic("demo", seed=13), built)
    found = ws.known_models([model, built])
    assert found[:2] == [model.absolute(), built.absolute()]
    assert weightimage.SHIPPED_DEMO.absolute() in found
    retired = [p.absolute() for p in sorted(weightimage.RETIRED_DIR.glob("*.qcw"))]
    assert retired and found[-len(retired):] == retired  # demos shipped before, tried last
    assert len(found) == len(set(found)) == 3 + len(retired)


def test_speech_settings_and_clip_bank_come_from_the_config(tmp_path):
    ws = _workspace(tmp_path / "s", '[phrases]\nvoice = "en-gb"\nwords_per_minute = 150\n')
    assert ws.clip_bank_path == ws.home.builds_dir / "verdicts.qcv"
    speech = ws.speech
    assert (speech.voice, speech.words_per_minute) == ("en-gb", 150)
    assert set(speech.as_kwargs()) == {"voice", "words_per_minute", "pitch", "sample_rate",
                                       "gap_ms", "tempo"}


def test_no_clip_bank_and_no_espeak_is_a_reason_not_an_error(tmp_path, monkeypatch):
    ws = _workspace(tmp_path / "q")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    status = ensure_clip_bank(ws)
    assert status.bank is None and not status.built
    assert status.reason == "there is no clip bank yet and espeak-ng, which renders it, is " \
                            "not installed"
    assert not ws.clip_bank_path.exists()
    assert ensure_clip_bank(ws, build=False).reason == "there is no clip bank yet"


def test_open_generator_uses_the_config_and_finds_older_models(tmp_path, model):
    ws = _workspace(tmp_path / "g", '[engine]\ndefault = "numpy"\n'
                                    '[entropy]\nwhen_empty = "fail"\n')
    gen = ws.open_generator(weights=model)
    try:
        assert gen.engine == "numpy" and gen.when_empty == "fail"
        assert gen.model.path == model
        shipped = weightimage.sha256_of(weightimage.SHIPPED_DEMO)
        found = gen.find_model(shipped)  # a pending exhibit of the shipped model
        assert found is not None and found.path.resolve() == weightimage.SHIPPED_DEMO.resolve()
        assert gen.find_model("0" * 64) is None
    finally:
        gen.pool.close()
        gen.gallery.close()


def test_a_read_only_workspace_refuses_to_make_exhibits_before_touching_anything(tmp_path):
    ws = _workspace(tmp_path / "r", read_only=True)
    before = sorted(os.listdir(ws.home.root))
    with pytest.raises(InputError, match="is read-only, and making exhibits writes to it"):
        ws.open_generator()
    assert sorted(os.listdir(ws.home.root)) == before


def test_the_entropy_plan_says_what_the_pool_covers_under_each_policy():
    from installation.exhibit import EntropyPlan

    assert EntropyPlan(4, 203 * 4, "os").sentence() == (
        "the pool holds 812 quantum bytes: every one of them uses ANU vacuum noise")
    partial = EntropyPlan(5, 203 * 2 + 100, "os")
    assert (partial.quantum, partial.short) == (2, 3)
    assert partial.sentence().startswith("the pool's 506 quantum bytes cover 2 of these 5 "
                                         "exhibits; the other 3 will use the operating system's")
    assert "stops with an error after 2 exhibits" in EntropyPlan(5, 406, "fail").sentence()
    assert "wait up to 30 s each" in EntropyPlan(5, 0, "wait", 30).sentence()
    assert EntropyPlan(1, 0, "os").sentence().startswith(
        "the pool has no quantum bytes for this exhibit; it will use the operating system's")
