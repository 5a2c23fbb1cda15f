"""`qcat bench`'s formats section: the cat unit's modelled seconds per image for each weight-image
format, on the shipped demo and on full-size stand-ins that compress as trained weights do.

Real parts: the weight images are written and re-read, QEMU counts the unit's instructions on
each (firmware.cat_qemu), the int4 image is quantized from the shipped float generator and
measured against it (the quality gate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from installation import unit_time
from models import weightimage as wi
from tests.cross_support import require_qemu

SLOW_SD = "0.47"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    require_qemu()
    return tmp_path_factory.mktemp("bench"), tmp_path_factory.mktemp("qemu")


def _rows(section: dict) -> dict[tuple[str, str], dict]:
    def key(r: dict) -> str:
        if "as shipped" in r["format"]:
            return "shipped"
        return r["format"].split()[0].rstrip(",") + (" random" if "random" in r["format"] else "")
    return {(r["size"], key(r)): r for r in section["rows"]}


def test_full_size_stand_in_compresses_as_the_trained_demo_does() -> None:
    demo = wi.with_format(wi.load(wi.SHIPPED_DEMO), wi.DEFAULT_VERSION, "huffman")
    like = wi.with_format(wi.synthetic("full", seed=1, like=demo), wi.DEFAULT_VERSION, "huffman")
    random = wi.with_format(wi.synthetic("full", seed=1), wi.DEFAULT_VERSION, "huffman")
    for i, (a, b) in enumerate(zip(demo.layers, like.layers, strict=True)):
        # Drawn from the demo layer's value frequencies: the same values, about as often. (The
        # last layer's 3 slices carry their 20 fixed bytes over 4x fewer weights in the demo.)
        assert set(np.unique(b.weights)) <= set(np.unique(a.weights))
        assert abs(a.bits_per_weight - b.bits_per_weight) < (0.4 if i == 4 else 0.2), (
            i, a.bits_per_weight, b.bits_per_weight)
    # Uniform random weights do not compress: the stand-in is what makes the figure meaningful.
    assert sum(x.stored_bytes for x in random.layers) > 1.1 * sum(x.stored_bytes
                                                                  for x in like.layers)


@pytest.mark.slow
def test_formats_section_without_torch(folders: tuple[Path, Path]) -> None:
    bench, qemu = folders
    section = unit_time.formats_section(wi.SHIPPED_DEMO, bench, qemu, with_torch=False)
    rows = _rows(section)
    assert set(rows) == {("demo", "shipped"), ("demo", "v2"), ("full", "v1 random"),
                         ("full", "v2")}
    assert "--no-torch" in section["int4_gate"]["skipped"]
    for r in section["rows"]:
        assert r["model"] == "measured"
        # A pipeline cannot beat its SD card: every byte of the file but the header is read.
        assert r["seconds"][SLOW_SD] >= 0.98 * r["file_bytes"] / 0.47e6, r
        assert r["seconds"]["8"] < r["seconds"][SLOW_SD]
    assert rows[("demo", "v2")]["file_bytes"] <= rows[("demo", "shipped")]["file_bytes"]
    assert rows[("full", "v2")]["seconds"][SLOW_SD] < rows[("full", "v1 random")]["seconds"][
        SLOW_SD]
    assert section["full_lossless_s"] == rows[("full", "v2")]["seconds"][SLOW_SD]
    assert section["goal_met"] == (section["full_best_s"] <= 13.0)
    lines = unit_time.formats_lines(section)
    assert any("goal 13 s" in line for line in lines)
    # The images are cached by the demo's hash: a second run writes nothing new.
    stamps = {p: p.stat().st_mtime_ns for p in bench.glob("*.qcw")}
    unit_time.formats_section(wi.SHIPPED_DEMO, bench, qemu, with_torch=False)
    assert {p: p.stat().st_mtime_ns for p in bench.glob("*.qcw")} == stamps


@pytest.mark.slow
@pytest.mark.needs_torch
def test_int4_format_is_chosen_behind_the_quality_gate(folders: tuple[Path, Path]) -> None:
    pytest.importorskip("torch")
    bench, qemu = folders
    section = unit_time.formats_section(wi.SHIPPED_DEMO, bench, qemu, with_torch=True)
    gate = section["int4_gate"]
    assert "chosen" in gate, gate
    # The fewest-bytes choice that passes: every choice tried before it failed the gate.
    assert gate["chosen"]["psnr_db_mean"] >= 30.0
    assert all(not t["passed"] and t["psnr_db_mean"] < 30.0 for t in gate["tried"][:-1])
    rows = _rows(section)
    v3 = wi.load(Path(rows[("demo", "v3")]["weights"]))
    assert v3.version == wi.VERSION_INT4
    assert [lay.weight_bits == 4 for lay in v3.layers] == [
        i + 1 in gate["chosen"]["int4_layers"] for i in range(len(v3.layers))]
    assert rows[("full", "v3")]["file_bytes"] < rows[("full", "v2")]["file_bytes"]
    assert section["full_best_s"] == min(rows[("full", "v2")]["seconds"][SLOW_SD],
                                         rows[("full", "v3")]["seconds"][SLOW_SD])
