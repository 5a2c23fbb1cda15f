"""`qcat models` and `qcat sd weights` end to end through the real CLI entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from installation.cli import main
from models import weightimage as wi


def qcat(tmp_path, *argv: str) -> int:
    return main(["--home", str(tmp_path / "home"), *argv])


@pytest.fixture(scope="module")
def full_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("full") / "full.qcw"
    wi.save(wi.synthetic("full", seed=2), path)
    return path


def test_inspect_full_image_reports_the_designed_sizes(tmp_path, full_image, capsys):
    assert qcat(tmp_path, "sd", "weights", "inspect", str(full_image), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert {"conv_weights", "bytes", "layers", "sha256", "model_size",
            "provenance"} <= set(info)
    assert info["conv_weights"] == 12_654_592 and info["model_size"] == "full"
    assert info["bytes"] == full_image.stat().st_size == 13_575_168  # 12.07 MiB + padding
    assert info["sha256"] == wi.sha256_of(full_image)
    assert [lay["weights"] for lay in info["layers"]] == [1_638_400, 8_388_608, 2_097_152,
                                                          524_288, 6_144]
    assert qcat(tmp_path, "sd", "weights", "inspect", str(full_image)) == 0
    text = capsys.readouterr().out
    assert "12,654,592" in text and "MiB" in text
    # layers counted from 1, as every message about a layer does
    assert [line.split()[1] for line in text.splitlines() if line.strip().startswith("layer ")] \
        == ["1", "2", "3", "4", "5"]


def test_verify_ok_then_names_the_first_bad_slice(tmp_path, capsys):
    path = tmp_path / "d.qcw"
    img = wi.synthetic("demo", seed=1)
    wi.save(img, path)
    assert qcat(tmp_path, "sd", "weights", "verify", str(path)) == 0
    assert ": ok (demo, 483 slices" in capsys.readouterr().out
    data = bytearray(path.read_bytes())
    off = img.header_bytes + 256 * img.layers[0].slice_bytes + 128 * img.layers[1].slice_bytes
    data[off + 17 * img.layers[2].slice_bytes + 40] ^= 4  # index 2 = layer 3, channel 17
    data[-600] ^= 1  # a later slice too: the first one is named
    path.write_bytes(bytes(data))
    assert qcat(tmp_path, "sd", "weights", "verify", str(path)) == 1
    err = capsys.readouterr().err
    assert "layer 3, channel 17: CRC mismatch" in err
    assert "hint: re-run `qcat sd weights build`" in err
    assert "Traceback" not in err
    assert qcat(tmp_path, "sd", "weights", "verify", str(path), "--json") == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


@pytest.mark.parametrize("content", [b"", b"QCWEIGHT", b"hello, not a weight image" * 40])
def test_verify_and_inspect_refuse_garbage_cleanly(tmp_path, content, capsys):
    path = tmp_path / "g.qcw"
    path.write_bytes(content)
    # verify ran its checks and they failed (1); inspect was handed a bad file (2)
    for verb, code in (("verify", 1), ("inspect", 2)):
        assert qcat(tmp_path, "sd", "weights", verb, str(path)) == code
        err = capsys.readouterr().err
        assert err.startswith("qcat: error: ") and "Traceback" not in err


def test_missing_file_is_bad_input(tmp_path, capsys):
    for verb in ("verify", "inspect"):
        assert qcat(tmp_path, "sd", "weights", verb, str(tmp_path / "none.qcw")) == 2
        assert "does not exist" in capsys.readouterr().err


@pytest.mark.needs_torch
def test_init_build_verify_quality(tmp_path, capsys):
    pytest.importorskip("torch")
    ckpt, out = tmp_path / "init.pt", tmp_path / "init.qcw"
    assert qcat(tmp_path, "models", "init", "cat", "--size", "demo", "--seed", "2",
                "--out", str(ckpt)) == 0
    assert "1,099,264 conv weights" in capsys.readouterr().out
    assert qcat(tmp_path, "models", "quantize", str(ckpt), "--out", str(out),
                "--calibration", "999") == 2
    assert qcat(tmp_path, "sd", "weights", "build", str(ckpt), "--out", str(out),
                "--calibration", "1000") == 0
    assert "1,099,264 conv weights" in capsys.readouterr().out
    img = wi.load(out)
    assert img.provenance["checkpoint_sha256"] == wi.sha256_of(ckpt)
    assert img.provenance["calibration"]["latents"] == 1000
    assert "sd weights build" in img.provenance["command"]
    assert qcat(tmp_path, "sd", "weights", "verify", str(out)) == 0
    assert ": ok (demo" in capsys.readouterr().out
    code = qcat(tmp_path, "models", "quality", "--weights", str(out), "--state", str(ckpt),
                "--latents", "8", "--json", "--goal", "0", "-n", "0")
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["latents"] == 8 and "variety" not in report
    # an untrained generator draws one blur: the variety goals fail, and so does the exit code
    code = qcat(tmp_path, "models", "quality", "--weights", str(out), "--state", str(ckpt),
                "--latents", "2", "--json", "--goal", "0", "-n", "40")
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["ok"] and not report["variety"]["ok"]
    assert np.isfinite(report["psnr_db_mean"]) and 0 < report["ssim_mean"] <= 1
    # the generator-only export loads and is much smaller than a training checkpoint
    slim = tmp_path / "g.pt"
    assert qcat(tmp_path, "models", "export", str(ckpt), "--out", str(slim)) == 0
    assert slim.stat().st_size < ckpt.stat().st_size  # no discriminator, no optimizer state
    from models import cat

    assert "discriminator" not in cat.load_checkpoint(slim)
    png = tmp_path / "s.png"
    assert qcat(tmp_path, "models", "samples", "--weights", str(out), "--out", str(png),
                "-n", "4", "--scale", "1") == 0
    from PIL import Image

    assert Image.open(png).size == (2 * 66 + 2, 2 * 66 + 2)
    capsys.readouterr()
    # a checkpoint that is not one
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torch")
    assert qcat(tmp_path, "sd", "weights", "build", str(bad), "--out", str(out)) == 2
    assert "is not a PyTorch checkpoint" in capsys.readouterr().err
    assert wi.verify(out).ok  # the failed build left the old file alone


@pytest.mark.needs_torch
@pytest.mark.slow
def test_train_command_writes_checkpoint_samples_and_resumes(tmp_path, capsys):
    pytest.importorskip("torch")
    from models import cat

    ckpt = tmp_path / "c.pt"
    args = ["models", "train", "cat", "--images", "64", "--batch-size", "32", "--threads", "1",
            "--seed", "4", "--out", str(ckpt)]
    assert qcat(tmp_path, *args, "--epochs", "1") == 0
    assert "trained demo cat model to epoch 1" in capsys.readouterr().out
    assert (tmp_path / "c-samples" / "epoch-001.png").exists()
    loaded = cat.load_checkpoint(ckpt)
    assert loaded["command"].startswith("qcat models train cat --data procedural --images 64")
    assert qcat(tmp_path, *args, "--epochs", "2") == 0  # resumes: one more epoch, not two
    resumed = cat.load_checkpoint(ckpt)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    # provenance keeps every run: the first command and the resume that took it to epoch 2
    commands = cat.training_commands(resumed)
    assert len(commands) == 2 and "--epochs 1" in commands[0] and "--epochs 2" in commands[1]
    assert resumed["command"] == commands[0]
    assert qcat(tmp_path, "models", "train", "cat", "--data", str(tmp_path / "nope"),
                "--out", str(tmp_path / "x.pt")) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("n", ["0", "-4"])
def test_quality_needs_at_least_one_latent(run_qcat, n):
    """One sentence and exit 2, not numpy's "need at least one array to stack" traceback; said
    before torch loads, so it holds on a machine without torch too."""
    res = run_qcat("models", "quality", "--latents", n)
    assert res.code == 2
    assert f"qcat: error: --latents must be at least 1, not {n}" in res.err
    assert "Traceback" not in res.err and res.out == ""
