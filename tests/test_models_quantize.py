"""Quantization and the two integer paths: BN folding is exact in float, the quantized constants
obey the rules an int32 engine relies on, and numpy reference == torch int64 path per layer."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models import cat, quantize, reference, torch_int  # noqa: E402
from models import weightimage as wi  # noqa: E402

pytestmark = pytest.mark.needs_torch


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def randomized_generator(size: str = "demo", seed: int = 0) -> cat.Generator:
    """An untrained generator whose BatchNorms have non-trivial statistics (as after training):
    running statistics measured on a batch, then random gamma and beta."""
    g, _ = cat.make_models(size, seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in g.bns():
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batch
        g.train()
        g(torch.randn(64, 100, 1, 1, generator=gen))
        for bn in g.bns():
            c = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(c, generator=gen))
            bn.bias.copy_(0.3 * torch.randn(c, generator=gen))
    return g.eval()


@pytest.fixture(scope="module")
def quantized() -> tuple[wi.WeightImage, cat.Generator]:
    torch.set_num_threads(1)
    g = randomized_generator("demo", 4)
    ckpt = cat.new_checkpoint("demo", 4, g, history=[{"epoch": 1, "loss_d": 1.0}])
    img = quantize.quantize(ckpt, calibration=1000, seed=9, checkpoint_sha256="ab" * 32,
                            command="test")
    return wi.decode(wi.encode(img)), g


def test_bn_folding_leaves_the_float_output_unchanged():
    g = randomized_generator("demo", 1).double()
    z = torch.randn(8, 100, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = g(z)
        # also every intermediate: the folded layer i equals conv -> BN -> ReLU of the original
        x, originals = z, []
        for m in g.main:
            x = m(x)
            if isinstance(m, torch.nn.ReLU):
                originals.append(x)
    folded = quantize.folded_forward(quantize.fold_bn(g), g, z)
    assert torch.allclose(torch.tanh(folded[-1]), want, rtol=0, atol=1e-12)
    for i, (a, b) in enumerate(zip(folded[:-1], originals, strict=True)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), f"layer {i}"
    with torch.no_grad():
        single = g.float()(z.float()).double()
    assert float((want - single).abs().max()) > 0  # float32 differs: the test can see error


def test_quantized_constants_follow_the_rules(quantized):
    img, g = quantized
    assert img.conv_weights == g.conv_weight_count() == 1_099_264
    assert img.latent_zp == 0 and img.layers[0].in_zp == 0
    for i, lay in enumerate(img.layers):
        per_channel_max = np.abs(lay.weights.astype(int)).reshape(lay.c_out, -1).max(axis=1)
        assert per_channel_max.max() == 127 and per_channel_max.min() >= 126, i  # symmetric
        assert (lay.shift <= 0).all() and (lay.multiplier >= 2**30).all()
        if lay.activation == wi.ACT_RELU:
            assert lay.out_zp == -128  # ReLU range [0, max]
    # the weights really are the folded weights at the channel's scale
    w, b = quantize.fold_bn(g)[2]
    lay = img.layers[2]
    scale = np.abs(w.numpy()).max(axis=(0, 2, 3)) / 127
    back = lay.weights.transpose(3, 0, 1, 2) * scale[None, :, None, None]
    assert np.abs(back - w.numpy()).max() <= scale.max() / 2 + 1e-12
    prov = img.provenance
    assert prov["calibration"]["latents"] == 1000 and prov["checkpoint_sha256"] == "ab" * 32
    assert prov["final_losses"] == {"epoch": 1, "loss_d": 1.0} and prov["seed"] == 4


def test_calibration_refuses_fewer_than_1000_latents():
    g = randomized_generator()
    with pytest.raises(ValueError, match="at least 1000"):
        quantize.quantize(cat.new_checkpoint("demo", 0, g), calibration=999)


def test_int8_model_tracks_the_float_model(quantized):
    from models import quality

    img, g = quantized
    report = quality.measure(img, g, n=16, seed=3)
    assert report["psnr_db_mean"] > 25, report  # an untrained-but-scaled model, not the goal


def _compare(img: wi.WeightImage, latents: np.ndarray) -> None:
    for n, q in enumerate(reference.quantize_latent(latents, img)):
        problem = reference.first_mismatch(torch_int.run(img, q), reference.run(img, q))
        assert problem is None, f"latent {n}: {problem.describe('torch int64', 'numpy reference')}"


def test_numpy_reference_equals_torch_int64_path_random_weights():
    rng = np.random.default_rng(11)
    for seed in (0, 1, 2):
        _compare(wi.synthetic("demo", seed), rng.standard_normal((4, 100)) * 1.5)


def test_numpy_reference_equals_torch_int64_path_quantized_weights(quantized):
    img, _ = quantized
    _compare(img, quantize.calibration_latents(12, seed=77))


def test_numpy_reference_equals_torch_int64_path_shipped_model():
    img = wi.load(wi.SHIPPED_DEMO)
    _compare(img, quantize.calibration_latents(12, seed=5))


def test_shipped_demo_model_meets_the_quality_goal_and_says_where_it_came_from():
    from models import quality

    img = wi.load(wi.SHIPPED_DEMO)
    g = cat.generator_from(cat.load_checkpoint(wi.SHIPPED_DEMO_STATE))
    assert (img.model_size, img.nz, img.ngf) == ("demo", g.nz, g.ngf)
    prov = img.provenance
    assert "models train cat --data procedural" in prov["training_command"]
    # every run is recorded, and the last one trained it to the epochs it claims
    assert all("models train cat" in c for c in prov["training_commands"])
    assert f"--epochs {prov['epochs']} " in prov["training_commands"][-1]
    assert prov["epochs"] >= 1 and prov["seed"] is not None
    assert {"loss_d", "loss_g"} <= set(prov["final_losses"])
    assert prov["calibration"]["latents"] >= 1000
    report = quality.measure(img, g, n=32, seed=1)
    assert report["psnr_db_mean"] >= 30.0, report


@pytest.mark.slow
def test_numpy_reference_equals_torch_int64_path_full_size():
    img = wi.synthetic("full", seed=3)
    _compare(img, np.random.default_rng(3).standard_normal((1, 100)))


def test_first_mismatch_catches_a_changed_weight_in_the_torch_path():
    """A changed weight really changes the torch path's output, so the comparison can fail; the
    difference is named at that layer, counted from 1, and that output channel."""
    img = wi.synthetic("demo", 0)
    q = reference.quantize_latent(np.ones(100), img)
    good = reference.run(img, q)
    img.layers[1].weights[5] = -img.layers[1].weights[5]
    mm = reference.first_mismatch(torch_int.run(img, q), good)
    assert mm is not None and (mm.layer, mm.channel) == (2, 5)
