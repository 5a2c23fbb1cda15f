"""`qcat engine run` and `qcat engine compare` through the real CLI, and the torch engine.

run: the C and numpy engines write byte-identical raw images and PNGs of them; a corrupted weight
image stops with exit 2, its error code in the message and no output file at all; bad entropy is
a usage error. compare: identical -> exit 0; a reference that differs -> exit 1 naming
layer/channel/pixel/values (text and --json).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models import weightimage

ENTROPY = bytes(range(200))


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "demo.qcw"
    weightimage.save(weightimage.synthetic("demo", seed=41), path)
    return path


def test_run_c_and_numpy_write_identical_images(run_qcat, demo_file: Path, tmp_path: Path) -> None:
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    raws = {}
    for engine in ("c", "numpy"):
        png, raw = tmp_path / f"{engine}.png", tmp_path / f"{engine}.bin"
        res = run_qcat("engine", "run", "--weights", demo_file, "--entropy-hex", ENTROPY.hex(),
                       "--engine", engine, "--out", png, "--raw", raw, "--json")
        assert res.code == 0, res.err
        doc = json.loads(res.out)
        assert doc["engine"] == engine and doc["model_size"] == "demo"
        raws[engine] = raw.read_bytes()
        assert len(raws[engine]) == 64 * 64 * 3
        with Image.open(png) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
            assert np.asarray(im).tobytes() == raws[engine]
    assert raws["c"] == raws["numpy"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_run_on_a_corrupted_image_writes_nothing(run_qcat, demo_file: Path, tmp_path: Path) -> None:
    data = bytearray(demo_file.read_bytes())
    header_bytes = struct.unpack_from("<H", data, 10)[0]
    data[header_bytes + 5] ^= 0x10  # layer 1, channel 0: a weight byte
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    bad = tmp_path / "bad.qcw"
    bad.write_bytes(bytes(data))
    from firmware.cat_engine import EngineError
    from installation import engines

    # The appliance's entry point: the C engine itself stops on the slice.
    with pytest.raises(EngineError) as info:
        engines.render("c", bad, np.zeros(100, np.int8))
    assert info.value.code_name == "CAT_E_SLICE_CRC"
    # The CLI (which also reads the model's latent scale from the verified file): exit 2.
    out = tmp_path / "cat.png"
    res = run_qcat("engine", "run", "--weights", bad, "--entropy-hex", ENTROPY.hex(),
                   "--engine", "c", "--out", out, "--raw", tmp_path / "cat.bin")
    assert res.code == 2
    assert "qcat: error:" in res.err and "Traceback" not in res.err
    assert not out.exists() and not (tmp_path / "cat.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.qcw"]


def test_run_rejects_bad_entropy(run_qcat, demo_file: Path, tmp_path: Path) -> None:
    for bad in ("zz", "ab" * 199):
        res = run_qcat("engine", "run", "--weights", demo_file, "--entropy-hex", bad,
                       "--engine", "c", "--out", tmp_path / "x.png")
        assert res.code == 2 and "--entropy-hex" in res.err
    assert not (tmp_path / "x.png").exists()


def test_compare_identical(run_qcat, demo_file: Path) -> None:
    res = run_qcat("engine", "compare", "--weights", demo_file, "--latents", "5", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["identical"] is True and doc["latents"] == 5 and doc["first_mismatch"] is None
    res = run_qcat("engine", "compare", "--weights", demo_file, "--latents", "3")
    assert res.code == 0 and "identical: 3 latents x 5 layers" in res.out


def test_compare_reports_the_first_mismatch(run_qcat, demo_file: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference that is off by one at layer 3, channel 7, pixel (2, 5): exit 1, named."""
    from models import reference

    real = reference.run_batch

    def off_by_one(img, latents):
        layers = real(img, latents)
        layers[2][:, 7, 2, 5] = np.where(layers[2][:, 7, 2, 5] < 127,
                                         layers[2][:, 7, 2, 5] + 1, 126).astype(np.int8)
        return layers

    monkeypatch.setattr(reference, "run_batch", off_by_one)
    res = run_qcat("engine", "compare", "--weights", demo_file, "--latents", "2", "--json")
    assert res.code == 1
    first = json.loads(res.out)["first_mismatch"]
    assert (first["latent"], first["layer"], first["channel"], first["pixel"]) == (0, 3, 7, [2, 5])
    assert first["differ"] == 1 and abs(first["c"] - first["reference"]) == 1
    res = run_qcat("engine", "compare", "--weights", demo_file, "--latents", "2")
    assert res.code == 1
    assert "layer 3, channel 7, pixel (2, 5)" in res.err and "1 of 16,384 differ" in res.err


@pytest.mark.needs_torch
def test_torch_engine_renders_the_float_model(demo_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    from installation import engines
    from models import cat

    torch.set_num_threads(1)
    g, _ = cat.make_models("demo", seed=0)
    with torch.no_grad():  # an untrained DCGAN draws flat grey: give its last layer some gain
        g.convs()[-1].weight.mul_(200.0)
    ckpt = tmp_path / "g.pt"
    cat.save_checkpoint(ckpt, cat.new_checkpoint("demo", 0, g))
    img = weightimage.load(demo_file)
    latent = np.arange(-50, 50, dtype=np.int8)
    a = engines.render("torch", demo_file, latent, checkpoint=ckpt)
    assert a.engine == "torch" and a.layers is None
    assert a.rgb.shape == (64, 64, 3) and a.rgb.dtype == np.uint8
    assert len(np.unique(a.rgb)) > 10  # a picture, not a constant
    # The float model on the dequantized latent, pixels mapped like the int8 path (q + 128).
    g.eval()
    z = (latent.astype(np.float64) - img.latent_zp) * float(np.float32(img.latent_scale))
    with torch.no_grad():
        y = g(torch.from_numpy(z.astype(np.float32))[None, :, None, None])[0].double().numpy()
    want = np.clip(np.sign(y) * np.floor(np.abs(y) * 128 + 0.5), -128, 127) + 128
    assert np.array_equal(a.rgb, want.astype(np.uint8).transpose(1, 2, 0))


@pytest.mark.parametrize("n", ["0", "-2"])
def test_compare_needs_at_least_one_latent(run_qcat, demo_file: Path, n: str) -> None:
    res = run_qcat("engine", "compare", "--weights", demo_file, "--latents", n)
    assert res.code == 2 and res.out == ""
    assert f"qcat: error: --latents must be at least 1, not {n}" in res.err
    assert "Traceback" not in res.err
