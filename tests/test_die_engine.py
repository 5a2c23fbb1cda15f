"""The die decoder: the C engine equals the numpy golden reference byte for byte on every layer,
the banded computation equals the whole-map one, and the RV32EC image fits the CH32V003.

Real parts: the C engine is compiled (host shared library through its ctypes binding; the rv32ec
image with the cross compiler) and run on seeded random weights with the real shapes and bit
widths; the container is written to and read from disk. A mismatch is reported like CMSIS-NN:
face, pips, layer, channel, pixel, values.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware import cat_engine, stackdepth
from firmware.die_engine import DieEngine, DieEngineError, arena_bytes
from installation.errors import FormatError
from models import die_reference as ref
from models import reference
from tests.cross_support import require_cross_compiler

LATENTS = 1000  # x 6 pip counts = 6,000 faces on the main model
SMALL_LATENTS = 100  # on the other seeds
# The part: CH32V003.
FLASH_BYTES = 16 * 1024
RAM_BYTES = 2 * 1024
# The engine's own budgets, leaving the rest to the unit core (protocol, SSD1306, the roll).
ENGINE_FLASH_BYTES = 10 * 1024  # code + weights + tables
ENGINE_RAM_BYTES = 1300  # the arena (896 B since layers 1-2 are 16 wide) + the face + worst stack


def _latents(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n latents x 6 pip counts (z repeated per count): the extremes first, then entropy bytes
    through the Gaussian table, then raw int8 values (the whole range)."""
    rng = np.random.default_rng(seed)
    extremes = [np.full(ref.NZ, -128), np.full(ref.NZ, 127), np.zeros(ref.NZ),
                np.where(np.arange(ref.NZ) % 2 == 0, 127, -128)]
    half = (n - len(extremes)) // 2
    gauss = ref.gauss_table()[rng.integers(0, 256, size=(half, ref.NZ))]
    raw = rng.integers(-128, 128, size=(n - len(extremes) - half, ref.NZ))
    z = np.concatenate([np.array(extremes), gauss, raw]).astype(np.int8)
    return np.repeat(z, ref.PIPS, axis=0), np.tile(np.arange(1, ref.PIPS + 1), n)


def _first_difference(got_pages: np.ndarray, got_maps: list[np.ndarray],
                      want: list[np.ndarray], pips: np.ndarray) -> str | None:
    """None when identical, else the first differing face described layer by layer."""
    got_faces = np.stack([ref.face_from_pages(p) for p in got_pages])[:, None]
    layers_got = [*got_maps, got_faces]
    bad = np.zeros(len(pips), dtype=bool)
    for a, b in zip(layers_got, want, strict=True):
        bad |= (a != b).reshape(len(pips), -1).any(axis=1)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    mm = reference.first_mismatch([layer[i] for layer in layers_got], [layer[i] for layer in want])
    assert mm is not None
    return (f"face {i} (pips {pips[i]}): {mm.describe('C', 'reference')}; "
            f"{int(bad.sum())} of {len(bad)} faces differ")


@pytest.fixture(scope="module")
def model() -> ref.DieModel:
    return ref.random_model(7)


def test_c_equals_reference_on_every_layer(model: ref.DieModel) -> None:
    z, pips = _latents(LATENTS, seed=1)
    pages, maps = DieEngine(*model.engine_arrays()).run(z, pips, layers=True)
    assert maps is not None
    want = ref.run(model, z, pips)
    diff = _first_difference(pages, maps, want, pips)
    assert diff is None, diff
    assert pages.tobytes() == ref.pages(want[-1][:, 0]).tobytes()


@pytest.mark.parametrize("seed", [0, 21, 99])
def test_c_equals_reference_on_other_models(seed: int) -> None:
    m = ref.random_model(seed)
    z, pips = _latents(SMALL_LATENTS, seed=seed + 1)
    pages, maps = DieEngine(*m.engine_arrays()).run(z, pips, layers=True)
    assert maps is not None
    diff = _first_difference(pages, maps, ref.run(m, z, pips), pips)
    assert diff is None, diff


def test_the_comparison_names_a_real_difference(model: ref.DieModel) -> None:
    """One weight of layer 3 changed in the reference's copy only: the difference is found and
    named at layer 3 (counting from 1), not at a later layer it spreads to."""
    z, pips = _latents(40, seed=5)
    pages, maps = DieEngine(*model.engine_arrays()).run(z, pips, layers=True)
    assert maps is not None
    altered = ref.DieModel([w.copy() for w in model.weights], model.bias, model.shift,
                           model.label_shift)
    w = altered.weights[2]
    w[5, 3, 1, 2] = 7 if w[5, 3, 1, 2] != 7 else -7
    diff = _first_difference(pages, maps, ref.run(altered, z, pips), pips)
    assert diff is not None and "layer 3, channel 5, pixel" in diff, diff


def test_random_models_are_not_degenerate(model: ref.DieModel) -> None:
    """The comparisons above mean something only if every layer is busy."""
    z, pips = _latents(100, seed=3)
    layers = ref.run(model, z, pips)
    for i, act in enumerate(layers[:-1]):
        assert 0.2 < (act == 0).mean() < 0.8, f"layer {i + 1} is mostly one value"
        assert len(np.unique(act)) > 100, f"layer {i + 1} uses few values"
    assert (layers[1] == ref.ACT_MAX).any()  # the clamp is exercised
    lit = layers[-1].mean()
    assert 0.1 < lit < 0.9
    faces = layers[-1].reshape(len(z), -1)
    assert len({f.tobytes() for f in faces}) > 0.9 * len(faces)  # z and pips both matter


def test_bands_equal_whole_maps(model: ref.DieModel) -> None:
    """The banded computation (gather form, rows per page) equals the whole-map one (scatter
    form), and every window a band holds equals those rows of the whole map and fits its
    buffer: no band sees a map it should not."""
    z, pips = _latents(200, seed=9)
    whole = ref.run(model, z, pips)
    windows: list[list[ref.Window]] = []
    banded = ref.run_banded(model, z, pips, windows)
    assert banded.tobytes() == ref.pages(whole[-1][:, 0]).tobytes()
    assert len(windows) == ref.FACE // ref.PAGE_ROWS
    for band in windows:
        for win in band:
            rows = win.data.shape[1]
            assert rows <= ref.WINDOW_ROWS[win.layer - 1]
            full = whole[win.layer - 1].transpose(0, 2, 1, 3)[:, win.row0:win.row0 + rows]
            assert np.array_equal(win.data, full), f"layer {win.layer} rows {win.row0}.."
    # The top layers really are banded: no band holds all of layer 3 or 4.
    assert all(band[3].data.shape[1] < 16 and band[2].data.shape[1] < 8 for band in windows)


def test_pages_layout() -> None:
    """SSD1306 pages: byte p * 32 + x holds rows 8p..8p+7 of column x, LSB on top."""
    face = np.zeros((32, 32), dtype=np.uint8)
    face[11, 5] = 1  # page 1, bit 3
    face[0, 31] = 1  # page 0, bit 0
    face[31, 0] = 1  # page 3, bit 7
    out = ref.pages(face)
    assert out.shape == (128,)
    expected = np.zeros(128, dtype=np.uint8)
    expected[32 + 5], expected[31], expected[96] = 0x08, 0x01, 0x80
    assert out.tobytes() == expected.tobytes()
    assert np.array_equal(ref.face_from_pages(out), face)


def test_engine_refuses_a_bad_pip_count(model: ref.DieModel) -> None:
    z = np.zeros((1, ref.NZ), dtype=np.int8)
    with pytest.raises(DieEngineError, match="outside 1..6") as err:
        DieEngine(*model.engine_arrays()).run(z, 7)
    assert err.value.code == 1


def test_container_round_trip_and_refusals(model: ref.DieModel, tmp_path: Path) -> None:
    path = tmp_path / "die.npz"
    ref.save(model, path)
    back = ref.load(path)
    assert ref.content_sha256(back) == ref.content_sha256(model)
    assert back.provenance == {"source": "random", "seed": "7"}
    z, pips = _latents(10, seed=2)
    assert DieEngine(*back.engine_arrays()).run(z, pips)[0].tobytes() == DieEngine(*model.engine_arrays()).run(z, pips)[0].tobytes()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="not a die weights file"):
        ref.load(tmp_path / "junk.npz")
    bad = ref.DieModel([w.copy() for w in model.weights], model.bias, model.shift, 5)
    bad.weights[1] = bad.weights[1][:4]
    with pytest.raises(FormatError, match="layer 2: weights must be"):
        bad.check()


def test_nibble_packing_is_sign_magnitude() -> None:
    values = np.arange(-7, 8, dtype=np.int8)
    packed = ref.pack_nibbles(values)
    assert packed[:2] == bytes([0xEF, 0xCD])  # -7 = 0xF, -6 = 0xE; -5 = 0xD, -4 = 0xC
    assert np.array_equal(ref.unpack_nibbles(packed, values.size), values)


def test_generated_header_is_in_sync() -> None:
    """firmware/die/die_weights.h is what `python -m models.die_reference header` writes: the
    shipped trained decoder."""
    assert ref.HEADER_PATH.read_text() == ref.c_header(ref.load_shipped()), \
        "die_weights.h is stale: run `python -m models.die_reference header`"


# --------------------------------------------------------------------------------------------
# The RV32EC image


def _rv32ec(tmp: Path) -> tuple[str, Path]:
    require_cross_compiler()
    proc = subprocess.run(["make", "--no-print-directory", "-B", "-C", str(cat_engine.FIRMWARE_DIR),
                           "rv32-die", f"BUILD={tmp}"], capture_output=True, text=True,
                          timeout=300)
    print("\n" + proc.stdout)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "warning" not in proc.stderr, proc.stderr
    return proc.stdout, tmp / "rv32" / "die" / "die_unit.elf"


def _sections(elf: Path) -> dict[str, int]:
    out = subprocess.run(["riscv64-unknown-elf-size", "-A", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+", out, re.M)}


def test_rv32ec_image_fits_the_part(tmp_path: Path) -> None:
    """The engine inside the whole unit's image (die_main.c: tests/test_die_unit_sizes.py holds
    the unit's own figures): the part's limits, and the engine's share within its budgets."""
    stdout, elf = _rv32ec(tmp_path)
    sec = _sections(elf)
    flash = sec.get(".init", 0) + sec[".text"] + sec.get(".data", 0) + sec.get(".rodata", 0)
    static_ram = sec.get(".data", 0) + sec.get(".bss", 0)
    stack = re.search(r"worst stack depth: (\d+) bytes \((.+)\)", stdout)
    assert stack, stdout
    depth = int(stack.group(1))
    assert 0 < depth <= sec[".stack"]  # the stack picolibc reserves holds the worst path
    assert flash <= FLASH_BYTES and static_ram + sec[".stack"] <= RAM_BYTES
    # The engine's flash: its code (die_engine.o) and the weights' arrays in the image.
    engine_o = subprocess.run(["riscv64-unknown-elf-size", str(elf.parent / "die_engine.o")],
                              capture_output=True, text=True, check=True).stdout
    engine_code = int(engine_o.splitlines()[1].split()[0])
    nm = subprocess.run(["riscv64-unknown-elf-nm", "-S", str(elf)], capture_output=True,
                        text=True, check=True).stdout
    weights = sum(int(m.group(1), 16) for m in
                  re.finditer(r"^\S+ (\S+) \S (die_[wbs]\d|die_model)$", nm, re.M))
    assert weights >= model_bytes()
    print(f"die engine: code {engine_code} B, weights {weights} B")
    assert engine_code + weights <= ENGINE_FLASH_BYTES
    # The engine's RAM: its arena, the face it fills, the deepest chain from die_generate down.
    frames, edges, _ = stackdepth.parse(elf.parent)
    engine_depth, path = stackdepth.worst(frames, edges, root="die_generate")
    assert path[0] == "die_generate" and engine_depth <= depth
    assert arena_bytes() + ref.PAGE_BYTES + engine_depth <= ENGINE_RAM_BYTES
    # The weights are in flash as const data, not copied to RAM.
    assert sec.get(".data", 0) == 0
    elf_bytes = elf.read_bytes()
    assert elf_bytes[:4] == b"\x7fELF" and elf_bytes[4] == 1  # ELFCLASS32
    assert int.from_bytes(elf_bytes[18:20], "little") == 243  # EM_RISCV
    assert int.from_bytes(elf_bytes[36:40], "little") & 0x8  # EF_RISCV_RVE: 16 registers


def model_bytes() -> int:
    """Packed weights, biases and shifts of a model of the engine's shapes."""
    m = ref.random_model(0)
    return sum(len(ref.pack_nibbles(w)) + 4 * b.size + s.size
               for w, b, s in zip(m.weights, m.bias, m.shift, strict=True))


def test_rv32ec_image_never_multiplies(tmp_path: Path) -> None:
    """RV32EC has no multiplier: a `*` on a variable would make gcc call libgcc's __mulsi3 (code
    and hundreds of cycles per product). The whole linked image is disassembled and searched."""
    _, elf = _rv32ec(tmp_path)
    dis = subprocess.run(["riscv64-unknown-elf-objdump", "-d", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    assert "<die_generate>:" in dis  # the engine really is in the image
    assert "__mulsi3" not in dis and "__muldi3" not in dis
    assert not re.search(r"\tmul[a-z]*\s", dis)
