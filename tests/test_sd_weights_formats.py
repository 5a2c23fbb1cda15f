"""`qcat sd weights` with the packed formats, through the real CLI entry point: convert re-encodes
losslessly (the old file stays, the new one decodes to the same model), inspect shows bits per
weight per layer and v1's padding tax, and the quality gate of `--int4-layers` refuses an image
under 30 dB (naming the figure, writing nothing) and writes one above it as format version 3."""

from __future__ import annotations

import json

import numpy as np
import pytest

from installation.cli import main
from models import weightimage as wi

# The trained demo as shipped in format version 1, kept for archived exhibits
# (models/shipped/retired): the v1 file these conversions start from.
V1_DEMO = wi.RETIRED_DIR / "cat-demo-5558a138.qcw"


def qcat(tmp_path, *argv: str) -> int:
    return main(["--home", str(tmp_path / "home"), *argv])


def test_convert_v1_to_v2_is_lossless_and_leaves_the_old_file(tmp_path, capsys) -> None:
    out = tmp_path / "demo-v2.qcw"
    before = wi.sha256_of(V1_DEMO)
    assert qcat(tmp_path, "sd", "weights", "convert", str(V1_DEMO), "--out", str(out),
                "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format_version"] == 2 and report["bytes"] == out.stat().st_size == 941_568
    assert [lay["encoding"] for lay in report["layers"]] == ["huffman"] * 5
    assert report["sha256"] == wi.sha256_of(out) != before
    assert wi.sha256_of(V1_DEMO) == before  # the archived exhibits' image is untouched
    old, new = wi.load(V1_DEMO), wi.load(out)
    for a, b in zip(old.layers, new.layers, strict=True):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    # and back to version 1: byte-identical to the shipped file
    back = tmp_path / "back.qcw"
    assert qcat(tmp_path, "sd", "weights", "convert", str(out), "--out", str(back),
                "--format", "1") == 0
    assert back.read_bytes() == V1_DEMO.read_bytes()
    capsys.readouterr()
    # refusals: a version that cannot hold the model, the source as its own target
    assert qcat(tmp_path, "sd", "weights", "convert", str(out), "--out", str(tmp_path / "x.qcw"),
                "--format", "3") == 2
    assert "version 3 is for models with 4-bit layers" in capsys.readouterr().err
    assert qcat(tmp_path, "sd", "weights", "convert", str(out), "--out", str(out)) == 2
    assert "must name a new file" in capsys.readouterr().err


def test_inspect_shows_bits_per_weight_and_the_padding_tax(tmp_path, capsys) -> None:
    assert qcat(tmp_path, "sd", "weights", "inspect", str(V1_DEMO), "--json") == 0
    v1 = json.loads(capsys.readouterr().out)
    assert v1["format_version"] == 1 and v1["padding_percent"] == 20.13
    assert v1["layers"][1]["encoding"] == "raw" and v1["layers"][1]["slice_bytes"] == 4608
    out = tmp_path / "v2.qcw"
    assert qcat(tmp_path, "sd", "weights", "convert", str(V1_DEMO), "--out", str(out)) == 0
    capsys.readouterr()
    assert qcat(tmp_path, "sd", "weights", "inspect", str(out)) == 0
    text = capsys.readouterr().out
    assert "format       version 2" in text
    assert "huffman 8-bit    524,288 weights     456,576 B  6.967 bits/weight" in text
    assert "1,099,264 weights in 935,570 bytes of slices: 6.809 bits per weight" in text
    assert "sector padding" not in text


@pytest.mark.needs_torch
@pytest.mark.slow
def test_int4_layers_pass_or_fail_the_quality_gate(tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    ckpt = str(wi.SHIPPED_DEMO_STATE)
    bad = tmp_path / "all-int4.qcw"
    # every layer 4-bit: about 27 dB on the trained demo, under the 30 dB gate
    assert qcat(tmp_path, "models", "quantize", ckpt, "--out", str(bad), "--calibration", "1000",
                "--int4-layers", "1,2,3,4,5", "--gate-latents", "16") == 1
    err = capsys.readouterr().err
    assert "dB PSNR against the float model over 16 latents, under the 30 dB gate" in err
    figure = float(err.split(" measures ")[1].split(" dB")[0])
    assert 20 < figure < 30
    assert not bad.exists()
    good = tmp_path / "int4.qcw"
    assert qcat(tmp_path, "sd", "weights", "build", ckpt, "--out", str(good), "--calibration",
                "1000", "--int4-layers", "2,3", "--gate-latents", "16", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format_version"] == 3 and report["quality_gate"]["psnr_db_mean"] >= 30
    img = wi.load(good)
    assert [lay.weight_bits for lay in img.layers] == [8, 4, 4, 8, 8]
    assert all(np.abs(img.layers[i].weights).max() <= 7 for i in (1, 2))
    assert img.provenance["int4_layers"] == [2, 3]
    assert "--int4-layers 2,3" in img.provenance["command"]
    assert img.file_bytes < 0.7 * V1_DEMO.stat().st_size
    # a contradiction and a layer that does not exist are refused before any work
    assert qcat(tmp_path, "models", "quantize", ckpt, "--out", str(good), "--int4-layers", "2",
                "--format", "2") == 2
    assert qcat(tmp_path, "models", "quantize", ckpt, "--out", str(good), "--int4-layers",
                "0,9") == 2
    assert "--int4-layers must name layers 1..5" in capsys.readouterr().err
