"""An exhibit made by a unit: the draw is the pending record, the unit's image is compared byte for
byte with the controller's golden render before anything is archived (F1), and a wrong image
leaves the job pending with its bytes (E1), never archived as good.

The unit's side is stood in for by the numpy reference here (the image a correct unit returns);
the simulator tests drive the same methods through a real pseudo-terminal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from installation import config as config_mod
from installation import curation
from installation.engines import render as engine_render
from installation.exhibit import WrongImage
from installation.paths import Home
from installation.workspace import Workspace
from quantum import latent


@pytest.fixture
def generator(tmp_path: Path):
    ws = Workspace.open(Home(tmp_path / "home"), config_mod.defaults())
    gen = ws.open_generator(engine="numpy")
    gen.clip_bank_path = None
    yield gen
    gen.pool.close()
    gen.gallery.close()


def _pending_job(gen):
    draw = gen.pool.draw(latent.EXHIBIT_BYTES, f"exhibit:{gen.model.sha256}", when_empty="os")
    return gen.unit_job(draw)


def test_the_job_carries_the_int8_latent_and_verdict_of_the_drawn_bytes(generator) -> None:
    job = _pending_job(generator)
    assert job.latent.dtype == np.int8 and job.latent.shape == (100,)
    z, code = latent.split_exhibit(job.draw.data)
    assert job.verdict_code == code.code
    assert generator.pending() == [job.draw]  # the draw is the pending record


def test_a_correct_unit_image_is_archived_under_the_units_name(generator) -> None:
    job = _pending_job(generator)
    rgb = engine_render("numpy", job.model.path, job.latent).rgb
    ex = generator.finish_from_unit(job, rgb.copy(), "unit:cat:C0FFEE")
    assert ex.engine == "unit:cat:C0FFEE" and ex.draw_id == job.draw.id
    assert generator.pending() == []
    report = curation.verify(generator.gallery, lambda sha: job.model, pool=generator.pool)
    assert report.ok, report.lines()


def test_a_wrong_unit_image_is_refused_and_the_job_stays_pending(generator) -> None:
    job = _pending_job(generator)
    rgb = engine_render("numpy", job.model.path, job.latent).rgb.copy()
    rgb[5, 9, 1] ^= 0x10
    with pytest.raises(WrongImage) as exc:
        generator.finish_from_unit(job, rgb, "unit:cat:BADC0DE")
    assert exc.value.exit_code == 3
    assert "unit:cat:BADC0DE returned a wrong image for exhibit" in exc.value.message
    assert "first at pixel (5, 9) channel 1" in exc.value.message
    assert "1 of 12,288 values differ" in exc.value.message
    assert generator.gallery.count() == 0
    assert generator.pending() == [job.draw]  # the same bytes, for a retry
    # the retry with the right image completes the same exhibit: no new draw
    good = engine_render("numpy", job.model.path, job.latent).rgb
    assert generator.finish_from_unit(job, good, "unit:cat:C0FFEE").draw_id == job.draw.id
    assert len(generator.pool.draws()) == 1


def test_a_draw_finished_by_another_process_first_is_not_archived_twice(generator) -> None:
    """A unit and `qcat generate` may both complete one pending draw: the second to archive gets
    the first's exhibit back (the same image), not an integrity error, and the archive holds one
    row for the draw."""
    job = _pending_job(generator)
    [local] = generator.complete_pending()  # the other process won
    rgb = engine_render("numpy", job.model.path, job.latent).rgb
    late = generator.finish_from_unit(job, rgb.copy(), "unit:cat:C0FFEE")
    assert (late.id, late.engine) == (local.id, local.engine) != (late.id, "unit:cat:C0FFEE")
    assert generator.gallery.count() == 1
    report = curation.verify(generator.gallery, lambda sha: job.model, pool=generator.pool)
    assert report.ok, report.lines()
