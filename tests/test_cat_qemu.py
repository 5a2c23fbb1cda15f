"""The cat engine as the unit's RISC-V code under QEMU renders exactly what the host C engine and
the numpy reference render, and its instruction counts per layer and per read feed the time model.

Real parts: `make qemu-cat` compiles cat/qemu_main.c around the engine with the unit's -march,
-mabi and -Os (picolibc, semihosting); `qemu-system-riscv32 -machine virt` runs it on the shipped
demo model and on the full-size synthetic model, reading the weight image and the latents from
files and writing the images and minstret counts back. The host build of the same main, the
ctypes-bound host engine (firmware.cat_engine, -O3) and models.reference render the same latents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware import bench as fb
from firmware import cat_qemu as cq
from firmware.cat_engine import CatEngine
from models import reference, weightimage
from tests.cross_support import require_qemu
from tests.weight_support import format_variants

LATENTS = 20
SEED = 16
# Ceiling on compute instructions per MAC of layers 2-4 (test_instruction_counts_per_layer_are_sane):
# exact under -icount for a given ELF, so a size-like bound, not a timing one.
KERNEL_INSTRUCTIONS_PER_MAC = 4.2


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_qemu()
    return tmp_path_factory.mktemp("cat-qemu")


@pytest.fixture(scope="module")
def full_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("full") / "full-synthetic-1.qcw"
    weightimage.save(weightimage.synthetic("full", seed=1), path)
    return path


def model_path(size: str, full_path: Path) -> Path:
    return weightimage.SHIPPED_DEMO if size == "demo" else full_path


@pytest.fixture(scope="module")
def formats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("formats")
    return {size: format_variants(size, folder) for size in ("demo", "full")}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["v1", "v2", "v3"])
@pytest.mark.parametrize("size", ["demo", "full"])
def test_rv32_under_qemu_equals_host_c_and_reference(size: str, fmt: str, build_dir: Path,
                                                      formats: dict[str, dict[str, Path]]
                                                      ) -> None:
    """Every format version (v1 padded, v2 Huffman, v3 with 4-bit layers) on both sizes: the
    unit's code decodes and computes exactly what the host and the reference do."""
    path = formats[size][fmt]
    img = weightimage.load(path)
    assert img.version == int(fmt[1])
    rng = np.random.default_rng(SEED)
    latents = np.stack([reference.quantize_latent(rng.standard_normal(img.nz), img)
                        for _ in range(LATENTS)]).astype(np.int8)
    run = cq.render(path, latents.tobytes(), build_dir / f"{size}-{fmt}", jobs=2)
    width = img.layers[-1].h_out
    print(f"\n{size} {fmt}: {LATENTS} latents under QEMU in {run.qemu_s:.1f} s ({run.jobs} processes)")
    assert run.latents == LATENTS
    # The same main built for the host, the ctypes host engine (-O3, threaded prefetch) and the
    # reference: every byte of every image.
    with CatEngine(path) as eng:
        host_c = b"".join(eng.generate(z).rgb.tobytes() for z in latents)
    ref = b"".join(reference.to_rgb(last).tobytes()
                   for last in reference.run_batch(img, latents)[-1])
    assert len(ref) == LATENTS * width * width * 3
    for name, theirs in (("host build of qemu_main", run.host_images), ("host C engine", host_c),
                         ("reference", ref)):
        where = cq.first_difference(run.qemu_images, theirs, width)
        assert where is None, f"rv32 under QEMU differs from the {name}: {where}"
    # Not a degenerate image stream: the latents make different images.
    images = np.frombuffer(run.qemu_images, np.uint8).reshape(LATENTS, -1)
    assert len({row.tobytes() for row in images}) == LATENTS


@pytest.mark.parametrize("size", ["demo", "full"])
def test_instruction_counts_per_layer_are_sane(size: str, build_dir: Path,
                                               full_path: Path) -> None:
    path = model_path(size, full_path)
    img = weightimage.load(path)
    counts, seconds = cq.count(path, build_dir / f"count-{size}")
    print(f"\n{size}: one counted latent (-icount shift=0) in {seconds:.1f} s, "
          f"{counts.total:,} instructions")
    n = len(img.layers)
    assert len(counts.fetch) == len(counts.compute) == n
    # Every instruction of cat_generate is somebody's: the phases add up to (nearly) the whole
    # call; counting the wrong interval would give 0 or the total for a layer.
    assert 0.97 * counts.total < sum(counts.fetch) + sum(counts.compute) <= counts.total
    for i, lay in enumerate(img.layers):
        macs = fb.macs_per_channel(lay) * lay.c_out
        per_mac = counts.compute[i] / macs
        weight_bytes = lay.stored_bytes
        per_byte = counts.fetch[i] / weight_bytes
        # Scalar rv32 at -Os: a few to some tens of instructions per MAC (the last layer's 3
        # channels pay the per-pixel requantization and Tanh on few MACs); the CRC a few to a few
        # tens per byte.
        assert 2 < per_mac < (80 if i == n - 1 else 30), f"layer {i + 1}: {per_mac:.1f}/MAC"
        if 1 <= i <= 3:
            # The bulk of the work (layers 2-4) on the unit's scalar kernels: 26 instructions per
            # 8 MACs (10 byte loads, 8 mul, 8 add: two output pixels share an input column) and
            # 11 pointer steps and branches per 8 of those give 3.4; the per-channel weight sums
            # and the per-pixel requantization bring it to 3.5-3.8. One pixel per pass (16 loads
            # per 8 MACs: 4.3), no unrolling (4.6) or the old 64-bit requantization (+0.7 at
            # c_in 64) go over; the plain -Os loop before them took 9.2-9.6.
            assert per_mac < KERNEL_INSTRUCTIONS_PER_MAC, \
                f"layer {i + 1}: {per_mac:.2f} instructions per MAC"
        # The CRC alone costs ~11 instructions per byte; Huffman decoding (one table lookup and
        # a few shifts per weight, ~1.1 weights per stored byte) adds a few tens more, and the
        # layer's 4096-entry decode table weighs on the last layer's 1.3 KB of weights.
        ceiling = (200 if i == n - 1 else 80) if lay.encoding == "huffman" else 40
        assert 2 < per_byte < ceiling, \
            f"layer {i + 1} ({lay.encoding}): {per_byte:.1f} instructions per stored byte"
        assert counts.compute[i] < 0.8 * counts.total
    # The per-read counts are the same instructions, split by read unit.
    assert sum(u.fetch for u in counts.units) == sum(counts.fetch)
    assert sum(u.compute for u in counts.units) == sum(counts.compute)
    # The reads cover every slice of every layer, layer after layer, from after the header.
    units = counts.units
    assert [u.layer for u in units] == sorted(u.layer for u in units)
    assert {u.layer for u in units} == set(range(n))
    assert units[0].offset >= img.header_bytes
    for a, b in zip(units, units[1:], strict=False):
        assert a.offset < b.offset <= a.offset + a.bytes  # no gap in the weight stream
    for i, lay in enumerate(img.layers):
        mine = [u for u in units if u.layer == i]
        got = sum(u.sd_bytes for u in mine)
        # v1: exactly the slices; packed slices read in sector-aligned ranges: a sector more
        # at each end of a read at most.
        assert lay.c_out * lay.slice_bytes <= got <= (lay.c_out * lay.slice_bytes
                                                      + 2 * cq.SECTOR * len(mine))
    assert units[-1].offset + units[-1].bytes <= path.stat().st_size - weightimage.TRAILER_BYTES


def test_counts_are_cached_by_image_and_elf(build_dir: Path, tmp_path: Path) -> None:
    path = weightimage.SHIPPED_DEMO
    first = cq.counts_cached(path, build_dir / "cache")
    second = cq.counts_cached(path, build_dir / "cache")
    assert not first.cached and second.cached
    assert second.counts == first.counts and second.cache_file == first.cache_file
    # Another image is another key: measured, not served from the demo's entry.
    other = tmp_path / "other.qcw"
    weightimage.save(weightimage.synthetic("demo", seed=3), other)
    third = cq.counts_cached(other, build_dir / "cache")
    assert not third.cached and third.cache_file != first.cache_file
    # A damaged cache file is measured again, not trusted.
    first.cache_file.write_text("{not json")
    again = cq.counts_cached(path, build_dir / "cache")
    assert not again.cached and again.counts.units == first.counts.units


def test_read_units_cover_whole_sectors() -> None:
    assert cq.ReadUnit(0, 1024, 512, 0, 0).sd_bytes == 512
    assert cq.ReadUnit(0, 600, 100, 0, 0).sd_bytes == 512        # inside one sector
    assert cq.ReadUnit(0, 1000, 512, 0, 0).sd_bytes == 1024      # straddles two
    assert cq.ReadUnit(0, 512 * 7 + 5, 3 * 512, 0, 0).sd_bytes == 4 * 512


def units(*spec: tuple[int, int, int]) -> list[cq.ReadUnit]:
    """(layer, bytes, instructions) -> back-to-back read units, all instructions compute."""
    out, offset = [], 0
    for layer, n, instructions in spec:
        out.append(cq.ReadUnit(layer, offset, n, 0, instructions))
        offset += n
    return out


def test_measured_model_is_the_double_buffered_pipeline() -> None:
    clock, cpi = fb.UNIT_CLOCK_HZ, fb.CYCLES_PER_INSTRUCTION
    # SD-bound: the card never waits for the CPU, so the total is every byte over the throughput.
    sd = units((0, 1 << 20, 1000), (0, 1 << 20, 1000), (1, 1 << 20, 1000))
    t = fb.measured_time(sd, 1e6)
    assert t.total_s == pytest.approx(3 * (1 << 20) / 1e6 + 1000 * cpi / clock)
    assert [lay.bound for lay in t.layers] == ["SD", "SD"]
    assert [lay.layer for lay in t.layers] == [1, 2] and t.layers[0].reads == 2
    # Compute-bound: the first read, then every unit's instructions.
    cpu = units((0, 512, 400_000_000), (1, 512, 800_000_000))
    t = fb.measured_time(cpu, 1e6)
    assert t.total_s == pytest.approx(512 / 1e6 + 3.0 * cpi)
    assert t.layers[1].cpu_s == pytest.approx(2.0 * cpi) and t.layers[1].bound == "compute"
    # Fetch instructions (CRC, decoding) cost CPU time like compute does.
    both = [cq.ReadUnit(0, 0, 512, 200_000_000, 200_000_000)]
    assert fb.measured_time(both, 1e12, cpi=2.0).layers[0].cpu_s == pytest.approx(2.0)
    with pytest.raises(ValueError):
        fb.measured_time([], 1e6)


def test_first_difference_names_latent_and_pixel() -> None:
    a = bytes(2 * 4 * 4 * 3)
    b = bytearray(a)
    b[4 * 4 * 3 + (2 * 4 + 1) * 3 + 2] = 7  # latent 1, y 2, x 1, blue
    assert cq.first_difference(a, a, 4) is None
    assert cq.first_difference(a, bytes(b), 4) == "latent 1, pixel (2, 1), channel 2: 0 vs 7"
    assert cq.first_difference(a, a[:48], 4) == "2 images vs 1"


def test_bench_unit_model_measured_and_assumed(build_dir: Path) -> None:
    from installation.unit_time import unit_model

    path = weightimage.SHIPPED_DEMO
    img = weightimage.load(path)
    model, speeds = unit_model(path, img, build_dir / "bench")
    assert model["kind"] == "measured" and model["cycles_per_instruction"] == 1.0
    assert 2 < model["instructions_per_mac"] < 30
    assert [s["sd_mb_per_s"] for s in speeds] == [0.47, 8.0]
    slow, fast = speeds
    for s in speeds:
        assert [lay["layer"] for lay in s["layers"]] == [1, 2, 3, 4, 5]
        assert s["total_s_range"][0] < s["total_s"] < s["total_s_range"][1]
        assert s["total_s"] == pytest.approx(s["first_read_s"]
                                             + sum(lay["time_s"] for lay in s["layers"]))
    # The same bytes and instructions at both speeds; a faster card moves layers from SD-bound
    # to compute-bound, never the other way.
    for a, b in zip(slow["layers"], fast["layers"], strict=True):
        assert (a["bytes"], a["compute_instructions"]) == (b["bytes"], b["compute_instructions"])
        assert a["read_s"] * 0.47 == pytest.approx(b["read_s"] * 8.0)
        assert not (a["bound"] == "compute" and b["bound"] == "SD")
        lay = img.layers[a["layer"] - 1]
        assert a["bytes"] >= lay.stored_bytes  # at least every stored slice (whole sectors)
    assert fast["total_s"] < slow["total_s"]
    # --no-qemu: the assumed model, saying so.
    model, speeds = unit_model(path, img, None)
    assert model["kind"] == "assumed" and "--no-qemu" in model["note"]
    assert "fetch_instructions" not in speeds[0]["layers"][0]


@pytest.mark.slow
def test_qcat_bench_reports_measured_model(run_qcat, build_dir: Path) -> None:
    import json

    flags = ("bench", "--quick", "--no-torch", "--no-entropy", "--no-units", "--no-tui",
             "--no-die")
    res = run_qcat(*flags, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["unit_assumptions"]["anchor_s"] == 26.0 and doc["unit_assumptions"]["goal_s"] == 13.0
    for size in ("demo", "full"):
        row = doc["engines"][size]
        assert row["unit_model"]["kind"] == "measured"
        assert {u["sd_mb_per_s"] for u in row["unit"]} == {0.47, 8.0}
        assert all(len(u["layers"]) == 5 for u in row["unit"])
    full = doc["engines"]["full"]
    # The full model at 0.47 MB/s is SD-bound in its big layers: near the 26 s anchor.
    slow = next(u for u in full["unit"] if u["sd_mb_per_s"] == 0.47)
    assert 0.9 * 26 < slow["total_s"] < 1.4 * 26
    assert slow["layers"][1]["bound"] == "SD"
    # A second run takes the counts from the cache.
    res = run_qcat(*flags)
    assert res.code == 0, res.err
    assert "cached" in res.out and "per MAC" in res.out and "13 s" in res.out
    res = run_qcat(*flags, "--no-qemu")
    assert res.code == 0 and "not measured (--no-qemu)" in res.out
