"""Training data and the training loop: deterministic procedural cats, a folder loader that
survives bad files, and training that resumes to exactly where an uninterrupted run gets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from installation.errors import InputError
from models import data


def test_procedural_cats_are_deterministic_and_varied():
    a = data.procedural(24, seed=5)
    assert a.shape == (24, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, data.procedural(24, seed=5))
    assert np.array_equal(a[7], data.cat_face(5, 7))
    assert not np.array_equal(a, data.procedural(24, seed=6))
    # every picture differs from every other, and they use many colours
    flat = a.reshape(24, -1)
    assert len({row.tobytes() for row in flat}) == 24
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 2000


def test_a_centred_cat_on_a_plain_wall_has_a_face_in_the_middle():
    # the attributes steer the picture: a plain light background is uniform at the corners, and a
    # centred head (darker or lighter) covers the middle
    index = next(i for i in range(400) if data.cat_attributes(0, i)["background"] == "light"
                 and data.cat_attributes(0, i)["position"] == "centre")
    img = data.cat_face(0, index).astype(int)
    corner = img[:3, :3].reshape(-1, 3)
    assert (corner.max(axis=0) - corner.min(axis=0)).max() <= 2
    centre = img[26:38, 26:38].reshape(-1, 3)
    assert np.abs(centre - corner[0]).sum(axis=1).mean() > 30


def test_load_folder_crops_resizes_and_skips_bad_files(tmp_path):
    Image.new("RGB", (120, 80), (255, 0, 0)).save(tmp_path / "wide.png")
    sub = tmp_path / "more"
    sub.mkdir()
    Image.new("RGB", (50, 90), (0, 0, 255)).save(sub / "tall.jpg")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    imgs = data.load_folder(tmp_path)
    assert imgs.shape == (2, 64, 64, 3)
    blue, red = imgs  # sorted paths: more/tall.jpg, then wide.png (broken.png skipped)
    assert red[..., 0].min() == 255 and red[..., 1:].max() == 0
    assert blue[..., 2].min() > 240 and blue[..., :2].max() < 15  # JPEG is lossy


def test_load_folder_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        data.load_folder(tmp_path / "none")
    with pytest.raises(InputError, match="no images"):
        data.load_folder(tmp_path)


def test_grid_tiles_images():
    imgs = np.stack([np.full((4, 4, 3), i, np.uint8) for i in range(5)])
    g = data.grid(imgs, cols=3, pad=1)
    assert g.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert g[1, 1, 0] == 0 and g[1, 6, 0] == 1 and g[6, 6, 0] == 4 and g[6, 11, 0] == 255


@pytest.mark.needs_torch
@pytest.mark.slow
def test_training_resumes_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    from models import cat, train

    torch.set_num_threads(1)
    images = data.procedural(64, seed=1)
    straight = train.train(tmp_path / "a.pt", images, epochs=2, seed=3, batch_size=32,
                           samples_dir=tmp_path / "sa")
    train.train(tmp_path / "b.pt", images, epochs=1, seed=3, batch_size=32)
    resumed = train.train(tmp_path / "b.pt", images, epochs=2, seed=3, batch_size=32)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for name, value in straight["generator"].items():
        assert torch.equal(value, resumed["generator"][name]), name
    assert (tmp_path / "sa" / "epoch-002.png").exists()
    # the checkpoint on disk loads as a generator that draws images
    g = cat.generator_from(cat.load_checkpoint(tmp_path / "b.pt"))
    out = g(torch.zeros(2, 100))
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1
    # training changed the weights
    g0, _ = cat.make_models("demo", 3)
    assert not torch.equal(g0.state_dict()["main.0.weight"], resumed["generator"]["main.0.weight"])
