"""`qcat engine compare die` (installation.engines.compare_die): the die's C engine against its
integer reference on the shipped decoder, every layer, byte for byte.

Real parts: the compiled C engine (host library) and the numpy reference on the shipped trained
decoder; a deliberate difference (the reference's cached copy of the model altered while the C
engine keeps its own) is found and named at the right layer, channel, row and column with the
values each side computed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from firmware.die_engine import DieEngine
from installation import engines
from installation.errors import InputError
from models import die_reference as ref


@pytest.fixture
def decoder(tmp_path: Path):
    path = tmp_path / "die.npz"
    shutil.copy(ref.SHIPPED_DECODER, path)
    yield path
    engines.clear_cache()  # a test may have altered the cached model: forget it


def test_c_equals_reference_on_1000_latents_of_the_shipped_decoder() -> None:
    calls: list[tuple[int, int, str]] = []
    report = engines.compare_die(ref.SHIPPED_DECODER, 1000, seed=0,
                                 progress=lambda d, t, n: calls.append((d, t, n)))
    assert report.identical, report.describe()
    assert (report.latents, report.faces, report.layers) == (1000, 6000, 5)
    assert calls[-1] == (1000, 1000, "0 faces differ")
    assert report.describe().startswith("identical: 1,000 latents x 6 pip counts x 5 layers")


def test_latents_are_the_units_table_and_depend_on_the_seed_only() -> None:
    a = engines.die_compare_latents(4, seed=2)
    assert a.dtype == np.int8 and a.shape == (4, ref.NZ)
    rng = np.random.default_rng(2)
    assert np.array_equal(a[0], ref.latent_from_bytes(rng.bytes(ref.NZ)))
    assert np.array_equal(a, engines.die_compare_latents(4, seed=2))
    assert not np.array_equal(a, engines.die_compare_latents(4, seed=3))


def test_an_altered_model_is_reported_at_its_layer(decoder: Path) -> None:
    """Layer 4 (index 3), output channel 2: every weight negated in the reference's copy only.
    The report's first difference is in layer 4, channel 2, with the values each side really
    computed there; no earlier layer is blamed."""
    model = engines.die_model(decoder)
    engine_copy = ref.load(decoder)
    model.weights[3][2] = -model.weights[3][2]
    report = engines.compare_die(decoder, 20, seed=1)
    assert not report.identical
    first = report.first
    assert first is not None and all(m.where.layer == 4 for m in report.mismatches)
    assert (first.where.layer, first.where.channel) == (4, 2)
    z = engines.die_compare_latents(20, seed=1)[first.latent][None]
    _, c_maps = DieEngine(*engine_copy.engine_arrays()).run(z, first.pips, layers=True)
    want = ref.run(model, z, first.pips)
    y, x = first.where.pixel
    assert c_maps is not None
    assert first.where.ours == int(c_maps[3][0, 2, y, x]) != int(want[3][0, 2, y, x]) \
        == first.where.theirs
    doc = report.as_dict()
    assert doc["first_mismatch"]["layer"] == 4 and doc["first_mismatch"]["row"] == y
    assert report.describe().startswith(f"C engine differs from the reference on "
                                        f"{len(report.mismatches)} of 120 faces; first: latent "
                                        f"{first.latent} with ")


def test_compare_die_cli(run_qcat, decoder: Path) -> None:
    r = run_qcat("engine", "compare", "die", "--decoder", decoder, "--latents", "50")
    assert r.code == 0, r.err
    assert "identical: 50 latents x 6 pip counts x 5 layers of the die decoder" in r.out
    r = run_qcat("engine", "compare", "die", "--latents", "10", "--json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["identical"] and doc["decoder"] == str(ref.SHIPPED_DECODER)
    assert doc["faces"] == 60 and doc["first_mismatch"] is None
    r = run_qcat("engine", "compare", "die", "--latents", "0")
    assert r.code != 0 and "--latents must be at least 1" in r.err
    r = run_qcat("engine", "compare", "die", "--weights", "x.qcw")
    assert r.code != 0 and "--decoder" in r.err and "Traceback" not in r.err
    with pytest.raises(InputError):
        engines.compare_die(decoder, 0, seed=0)


def test_compare_die_names_an_altered_file_in_the_cli(run_qcat, decoder: Path) -> None:
    engines.die_model(decoder).bias[1][0] += 1000  # layer 2's channel 0, reference side only
    r = run_qcat("engine", "compare", "die", "--decoder", decoder, "--latents", "5")
    assert r.code != 0
    assert "layer 2, channel 0, row " in r.err and "Traceback" not in r.err
