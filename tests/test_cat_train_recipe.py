"""The cat GAN's training recipe: what it may change (everything but the generator's layers) and
what it must keep (the layers the engines run, exact resume, old checkpoints loading); the
discriminator's spectral norm, minibatch-stddev and R1 pieces each doing their one job; the
checkerboard-free initialisation and the measure that judges it."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from installation.errors import InputError  # noqa: E402
from models import cat, checkerboard, data, quality, quantize, train  # noqa: E402
from models import weightimage as wi  # noqa: E402

pytestmark = pytest.mark.needs_torch

# The demo generator the C engine, the numpy reference and the weight image are built for
# (DESIGN §5 at ngf 32): written out here, not derived, so a drift in the layout is caught too.
DEMO_CONVS = [((100, 256, 4, 4), 1, 0), ((256, 128, 4, 4), 2, 1), ((128, 64, 4, 4), 2, 1),
              ((64, 32, 4, 4), 2, 1), ((32, 3, 4, 4), 2, 1)]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return data.procedural(64, seed=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, images) -> tuple[dict, object]:
    """Four steps of the full recipe (R1 on two of them), the checkpoint as written to disk."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny") / "c.pt"
    train.train(out, images, epochs=1, seed=5, batch_size=16,
                recipe=train.Recipe(r1_every=2))
    return cat.load_checkpoint(out), out


def test_the_generator_keeps_the_engines_layer_list(tiny_run):
    ckpt, _ = tiny_run
    g = cat.generator_from(ckpt)
    kinds = [type(m).__name__ for m in g.main]
    assert kinds == ["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 4 + ["ConvTranspose2d", "Tanh"]
    convs = g.convs()
    assert [(tuple(c.weight.shape), c.stride[0], c.padding[0]) for c in convs] == DEMO_CONVS
    assert all(c.bias is None for c in convs)  # a bias would have no place in the weight image
    # the checkpoint's generator is exactly that module's state: nothing added, nothing renamed
    want = {k: tuple(v.shape) for k, v in g.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ckpt["generator"].items()} == want
    assert {k: tuple(v.shape) for k, v in ckpt["generator_raw"].items()} == want
    assert g.conv_weight_count() == sum(int(np.prod(s)) for s, _, _ in DEMO_CONVS)


def test_the_moving_average_is_what_loads_and_it_quantizes_and_runs(tiny_run):
    ckpt, _ = tiny_run
    assert ckpt["step"] == 4 and ckpt["recipe"] == train.RECIPE
    g = cat.generator_from(ckpt)
    for name, value in g.state_dict().items():
        assert torch.equal(value, ckpt["generator"][name]), name
    # the average is not the trained weights (it lags them) but follows them
    w_ema, w_raw = ckpt["generator"]["main.3.weight"], ckpt["generator_raw"]["main.3.weight"]
    assert not torch.equal(w_ema, w_raw)
    g0, _ = cat.make_models("demo", 5)
    assert (w_ema - w_raw).abs().max() < (w_raw - g0.main[3].weight).abs().max()
    # the EMA generator -> int8 weight image -> the numpy golden reference draws the same cats
    img = wi.decode(wi.encode(quantize.quantize(ckpt, calibration=1000, seed=2,
                                                checkpoint_sha256="cd" * 32, command="test")))
    report = quality.measure(img, g, n=4, seed=3)
    assert report["psnr_db_min"] > 25, report


def test_ema_follows_the_half_life_and_averages_batchnorm_statistics():
    # no EMA, or no images seen yet: the average is a copy
    assert train.ema_beta(10, 64, 0) == 0.0 and train.ema_beta(0, 64, 10_000) == 0.0
    # long into training: exactly the half-life (64 images a step, 10,000 images to halve)
    assert train.ema_beta(100_000, 64, 10_000) == pytest.approx(0.5 ** (64 / 10_000))
    # early on the ramp shortens it: 100 steps of 64 -> at most 5 % of 6,400 images
    assert train.ema_beta(100, 64, 10_000) == pytest.approx(0.5 ** (64 / 320))
    g_ema, _ = cat.make_models("demo", 1)
    g, _ = cat.make_models("demo", 2)
    with torch.no_grad():
        g.bns()[0].running_mean.fill_(1.0)
        g.bns()[0].num_batches_tracked.fill_(7)
    before = g_ema.main[0].weight.clone()
    train.update_ema(g_ema, g, 0.75)
    assert torch.allclose(g_ema.main[0].weight, 0.75 * before + 0.25 * g.main[0].weight)
    assert torch.allclose(g_ema.bns()[0].running_mean, torch.full((256,), 0.25))
    assert int(g_ema.bns()[0].num_batches_tracked) == 7


def test_spectral_norm_keeps_every_discriminator_conv_at_singular_value_one():
    _, d = cat.make_models("demo", 0)
    convs = d.convs()
    assert len(convs) == 5
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    with torch.no_grad():  # weights grown as an unchecked discriminator's do
        for k, conv in enumerate(convs):
            conv.parametrizations.weight.original.mul_(3.0 + k)
    d.train()
    d(torch.randn(8, 3, 64, 64))  # a forward pass runs the power iteration
    for conv in convs:
        assert torch.nn.utils.parametrize.is_parametrized(conv, "weight")
        w = conv.weight.detach().reshape(conv.weight.shape[0], -1)
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.02), conv
        raw = conv.parametrizations.weight.original.detach().reshape(w.shape)
        assert torch.linalg.matrix_norm(raw, ord=2).item() > 2.0  # what D would have used


def test_r1_is_positive_on_reals_and_trains_the_discriminator(images):
    _, d = cat.make_models("demo", 0)
    real = train.to_tensor(images[:8]).requires_grad_(True)
    penalty = train.r1_penalty(d(real), real)
    assert penalty.item() > 0
    penalty.backward()  # differentiable: the penalty reaches D's own weights
    for conv in d.convs():  # (biases get none: they do not change D's slope)
        grad = conv.parametrizations.weight.original.grad
        assert grad is not None and grad.abs().sum() > 0, conv


def test_minibatch_stddev_sees_one_changed_image_in_its_group():
    layer = cat.MinibatchStddev(group=4)
    x = torch.randn(8, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    before = layer(x)
    assert before.shape == (8, 17, 4, 4) and torch.equal(before[:, :16], x)
    y = x.clone()
    y[0] += 3.0 * torch.randn(16, 4, 4, generator=torch.Generator().manual_seed(1))
    after = layer(y)[:, 16]
    # groups are images {0, 2, 4, 6} and {1, 3, 5, 7}: image 0's group changes, the other not
    assert not torch.allclose(after[[0, 2, 4, 6]], before[[0, 2, 4, 6], 16])
    assert torch.equal(after[[1, 3, 5, 7]], before[[1, 3, 5, 7], 16])
    # a batch of identical images (total collapse) gives ~0, a varied one does not
    same = layer(x[:1].expand(8, -1, -1, -1))[:, 16]
    assert same.abs().max() < 1e-3 < before[:, 16].abs().min()
    # any batch size works (7 is prime: groups of one)
    assert layer(x[:7]).shape == (7, 17, 4, 4)


def test_diff_augment_is_seeded_and_lets_gradients_through(images):
    x = train.to_tensor(images[:4]).requires_grad_(True)
    policy = train.Recipe().policy()
    a = train.diff_augment(x, policy, train.step_generator(1, 7, train.STREAM_AUGMENT))
    b = train.diff_augment(x, policy, train.step_generator(1, 7, train.STREAM_AUGMENT))
    c = train.diff_augment(x, policy, train.step_generator(1, 8, train.STREAM_AUGMENT))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(InputError, match="unknown augmentation 'flip'"):
        train.Recipe(augment="color,flip")


def test_resume_mid_epoch_is_bit_for_bit(tmp_path, images):
    """N steps straight == N/2 steps, the run stopped with its checkpoint, N/2 more resumed."""
    recipe = train.Recipe(r1_every=2)  # R1 steps on both sides of the cut
    straight = train.train(tmp_path / "a.pt", images, epochs=1, seed=3, batch_size=16,
                           recipe=recipe)
    half = train.train(tmp_path / "b.pt", images, epochs=1, seed=3, batch_size=16,
                       recipe=recipe, stop_after_steps=2)
    assert half["step"] == 2 and half["batch"] == 2 and half["epoch"] == 0
    resumed = train.train(tmp_path / "b.pt", images, epochs=1, seed=3, batch_size=16)
    assert resumed["step"] == straight["step"] == 4
    for part in ("generator", "generator_raw", "discriminator"):  # SN's u vectors too
        assert straight[part].keys() == resumed[part].keys()
        for name, value in straight[part].items():
            assert torch.equal(value, resumed[part][name]), (part, name)
    assert resumed["settings"] == straight["settings"]


def test_an_old_recipe_checkpoint_still_loads_but_is_not_resumed(tmp_path, tiny_run):
    ckpt, _ = tiny_run
    old = {k: v for k, v in ckpt.items() if k not in ("recipe", "settings", "generator_raw")}
    path = tmp_path / "old.pt"
    cat.save_checkpoint(path, old)
    cat.generator_from(cat.load_checkpoint(path))  # quantization and export still read it
    with pytest.raises(InputError, match="plain DCGAN recipe") as err:
        train.train(path, data.procedural(16, 0), epochs=1, batch_size=16)
    assert "--fresh" in (err.value.hint or "")
    # the shipped float generator (a version 1 checkpoint) loads as before
    if wi.SHIPPED_DEMO_STATE.exists():
        g = cat.generator_from(cat.load_checkpoint(wi.SHIPPED_DEMO_STATE))
        assert [tuple(c.weight.shape) for c in g.convs()] == [s for s, _, _ in DEMO_CONVS]


def test_checkerboard_level_scores_a_grid_and_not_a_smooth_image():
    y, x = np.mgrid[:64, :64]
    grid = 128 + 10.0 * (-1.0) ** (x + y)
    assert checkerboard.checkerboard_level(np.stack([grid] * 3, axis=-1)[None]) == \
        pytest.approx(10.0)
    stripes = 128 + 6.0 * (-1.0) ** x
    assert checkerboard.checkerboard_level(stripes[None, :, :, None]) == pytest.approx(6.0)
    # smooth shading and straight ramps are not a checkerboard
    smooth = 128 + 60 * np.sin(x / 9) * np.cos(y / 7) + 2.0 * x
    assert checkerboard.checkerboard_level(smooth[None, :, :, None]) < 0.05
    # one phase of four brighter (a transposed conv's typical artefact), as uint8
    phase = np.full((64, 64, 3), 120, np.uint8)
    phase[::2, ::2] += 8
    assert checkerboard.checkerboard_level(phase) == pytest.approx(8 * np.sqrt(3) / 4)
    with pytest.raises(ValueError, match="multiple of 8"):
        checkerboard.checkerboard_map(np.zeros((1, 60, 64, 3)))


def test_the_training_penalty_is_the_measure_squared_and_pulls_a_grid_out():
    rng = np.random.default_rng(0)
    pixels = rng.normal(128, 20, size=(2, 64, 64, 3))
    x = torch.from_numpy(pixels.transpose(0, 3, 1, 2) / 127.5 - 1).requires_grad_(True)
    energy = train.checkerboard_energy(x)
    want = (checkerboard.checkerboard_map(pixels) ** 2).mean() / 127.5**2
    assert energy.item() == pytest.approx(want, rel=1e-9)
    # one gradient step on the penalty alone lowers the measured level
    energy.backward()
    assert x.grad is not None
    rate = 0.2 * energy.item() / x.grad.square().sum().item()  # ~ a fifth of the energy away
    stepped = (x.detach() - rate * x.grad).numpy().transpose(0, 2, 3, 1)
    assert checkerboard.checkerboard_level((stepped + 1) * 127.5) < \
        checkerboard.checkerboard_level(pixels)


def test_phase_equal_init_gives_a_flat_output_for_a_flat_input():
    g, _ = cat.make_models("demo", 0)
    for conv in g.convs()[1:]:  # the stride-2 layers
        c_in = conv.weight.shape[0]
        with torch.no_grad():
            y = conv(torch.ones(1, c_in, 6, 6))[0, :, 1:-1, 1:-1]  # borders see the padding
        phases = torch.stack([y[:, a::2, b::2] for a in (0, 1) for b in (0, 1)])
        assert torch.allclose(phases, phases[0:1].expand_as(phases), atol=1e-6), conv
        # the mean tap variance stays the DCGAN one
        assert conv.weight.std().item() == pytest.approx(cat.INIT_STD, rel=0.15)
    # the plain DCGAN init has unequal phases: the property is the init's doing
    plain = torch.nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False)
    cat.init_weights(plain)
    with torch.no_grad():
        y = plain(torch.ones(1, 64, 6, 6))[0, :, 1:-1, 1:-1]
    assert (y[:, 0::2, 0::2] - y[:, 1::2, 1::2]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="stride-2"):
        cat.phase_equal_init_(g.convs()[0])


@pytest.mark.slow
def test_train_command_options_reach_the_checkpoint(run_qcat, tmp_path):
    ckpt = tmp_path / "c.pt"
    args = ["models", "train", "cat", "--images", "32", "--batch-size", "16", "--threads", "1",
            "--epochs", "1", "--out", str(ckpt)]
    res = run_qcat(*args, "--r1-gamma", "0.5", "--ema", "0", "--hf-penalty", "3",
                   "--augment", "none")
    assert res.code == 0, res.err
    assert "checkerboard" in res.out
    saved = cat.load_checkpoint(ckpt)
    assert saved["settings"] == {"r1_gamma": 0.5, "r1_every": train.R1_EVERY,
                                 "ema_halflife": 0.0, "hf_penalty": 3.0,
                                 "lr_d": train.LEARNING_RATE_D, "augment": ""}
    assert "--r1-gamma 0.5 --ema 0 --hf-penalty 3 --augment none" in saved["command"]
    for name, value in saved["generator"].items():  # --ema 0: the average is the trained model
        assert torch.equal(value, saved["generator_raw"][name]), name
    assert 0 <= saved["history"][0]["checkerboard"] < 255
    res = run_qcat(*args, "--fresh", "--ema", "-1")
    assert res.code == 2 and "--ema and --hf-penalty must be at least 0" in res.err
    assert "Traceback" not in res.err
