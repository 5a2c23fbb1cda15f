"""The C engine refuses bad weight images with a distinct code, and never hands back an image.

Corrupted slices (a flipped bit: CRC; a slice moved to the wrong place with a valid CRC: index),
damaged headers, truncated files, a model too big for the 512 KB arena; the arena figures
themselves; the CRC-32 against zlib's; the error table against the compiled C; building the
library on demand (stale detection, the read-only fallback, a missing compiler).
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from firmware import cat_engine
from firmware.cat_engine import CODES, ERRORS, CatEngine, EngineError
from firmware.tables import read_error_table
from installation.errors import FormatError, ToolMissing
from models import reference, weightimage

ARENA_BUDGET = 512 * 1024
READ_BYTES = 64 * 1024  # CAT_READ_BYTES
ALIGN = 64


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, weightimage.WeightImage]:
    img = weightimage.synthetic("demo", seed=31)
    path = tmp_path_factory.mktemp("err") / "demo.qcw"
    weightimage.save(img, path)
    return path, path.read_bytes(), weightimage.load(path)


def _latent(img: weightimage.WeightImage) -> np.ndarray:
    return reference.quantize_latent(np.random.default_rng(0).standard_normal(img.nz), img)


def _slice_offset(img: weightimage.WeightImage, data: bytes, layer: int, channel: int) -> int:
    header_bytes = struct.unpack_from("<H", data, 10)[0]
    offset = header_bytes
    for lay in img.layers[:layer]:
        offset += lay.c_out * lay.slice_bytes
    return offset + channel * img.layers[layer].slice_bytes


def _variant(tmp_path: Path, data: bytes, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _code_of(path: Path, latent: np.ndarray | None = None) -> int:
    with pytest.raises(EngineError) as info, CatEngine(path) as eng:
        eng.generate(latent if latent is not None else np.zeros(eng.nz, np.int8))
    return info.value.code


def test_corrupted_slice_stops_with_crc_error_and_no_image(demo, tmp_path: Path) -> None:
    path, data, img = demo
    bad = bytearray(data)
    at = _slice_offset(img, data, 2, 17) + 100  # a weight byte of layer 3, channel 17
    bad[at] ^= 0x01
    bad_path = _variant(tmp_path, bytes(bad), "crc.qcw")
    eng = CatEngine(bad_path)  # the header is intact: opening succeeds
    seen: list[int] = []
    with pytest.raises(EngineError) as info:
        eng.generate(_latent(img), progress=lambda d, t, n: seen.append(d))
    assert info.value.code == CODES["CAT_E_SLICE_CRC"]
    assert "CAT_E_SLICE_CRC" in info.value.message and isinstance(info.value, FormatError)
    # It stopped at the bad slice: layers 1 and 2, and channels 0..16 of layer 3, were computed.
    assert seen[-1] == img.layers[0].c_out + img.layers[1].c_out + 17
    # The same engine still renders the good file's image after being reopened on it.
    eng.close()
    good = CatEngine(path).generate(_latent(img))
    assert good.rgb.tobytes() == reference.to_rgb(reference.run(img, _latent(img))[-1]).tobytes()


def test_slice_in_the_wrong_place_is_an_index_error(demo, tmp_path: Path) -> None:
    """Two slices swapped: both CRCs are valid, but each names its own layer/channel."""
    path, data, img = demo
    a, b = _slice_offset(img, data, 3, 4), _slice_offset(img, data, 3, 5)
    size = img.layers[3].slice_bytes
    bad = bytearray(data)
    bad[a:a + size], bad[b:b + size] = data[b:b + size], data[a:a + size]
    assert _code_of(_variant(tmp_path, bytes(bad), "swap.qcw")) == CODES["CAT_E_SLICE_INDEX"]


def test_crc_error_in_the_last_slice_still_gives_no_image(demo, tmp_path: Path) -> None:
    path, data, img = demo
    bad = bytearray(data)
    bad[_slice_offset(img, data, 4, 2) + 3] ^= 0x80
    bad_path = _variant(tmp_path, bytes(bad), "last.qcw")
    assert _code_of(bad_path, _latent(img)) == CODES["CAT_E_SLICE_CRC"]


@pytest.mark.parametrize("damage, code", [
    (lambda d: b"XCWEIGHT" + d[8:], "CAT_E_MAGIC"),
    (lambda d: d[:8] + struct.pack("<H", 4) + d[10:], "CAT_E_VERSION"),
    (lambda d: d[:200] + bytes([d[200] ^ 1]) + d[201:], "CAT_E_HEADER_CRC"),
    (lambda d: d[:-512] + b"QCWTRAIX" + d[-504:], "CAT_E_TRAILER"),
    (lambda d: d[:-1000], "CAT_E_READ"),  # truncated: the trailer cannot be read
    (lambda d: d[:300], "CAT_E_READ"),
])
def test_damaged_files_are_refused_at_open(demo, tmp_path: Path, damage, code: str) -> None:
    _path, data, _img = demo
    bad = _variant(tmp_path, damage(data), "bad.qcw")
    with pytest.raises(EngineError) as info:
        CatEngine(bad)
    assert info.value.code == CODES[code], info.value.message


def test_engine_refuses_a_model_bigger_than_the_arena(tmp_path: Path) -> None:
    """A custom 6-layer model up to 128x128: its last activation alone exceeds 512 KB."""
    rng = np.random.default_rng(0)
    widths, layers, h, zp = [100, 8, 8, 8, 8, 8, 40], [], 1, 0
    for i in range(6):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        h_out = (h - 1) * stride - 2 * pad + 4
        act = weightimage.ACT_TANH if i == 5 else weightimage.ACT_RELU
        c_in, c_out = widths[i], widths[i + 1]
        layers.append(weightimage.Layer(
            c_in, c_out, h, h_out, 4, stride, pad, act, zp, -100 if act == 1 else 0, 0.1, 0.1,
            rng.integers(-127, 128, (c_out, 4, 4, c_in), dtype=np.int8),
            np.zeros(c_out, np.int32), np.full(c_out, 1 << 30, np.int32),
            np.full(c_out, -8, np.int32)))
        h, zp = h_out, -100
    img = weightimage.WeightImage("custom", 100, 8, 0.04, 0, layers,
                                  np.zeros(256, np.int8), {}, image_size=128, channels=40)
    path = tmp_path / "huge.qcw"
    weightimage.save(img, path)
    with pytest.raises(EngineError) as info:
        CatEngine(path)
    assert info.value.code == CODES["CAT_E_ARENA"]


def _planned_arena(img: weightimage.WeightImage) -> int:
    """The arena plan of cat_engine.c, recomputed independently: padded activations (one-pixel
    border) for a layer's input and output side by side, plus two read buffers."""
    def padded(c: int, h: int) -> int:
        return -(-((h + 2) ** 2 * c) // ALIGN) * ALIGN

    act = max(padded(lay.c_in, lay.h_in) + padded(lay.c_out, lay.h_out) for lay in img.layers)
    read = max(READ_BYTES, max(lay.slice_bytes for lay in img.layers))
    return act + 2 * -(-read // ALIGN) * ALIGN


def test_arena_fits_512k_for_full(tmp_path: Path) -> None:
    img = weightimage.synthetic("full", seed=1)
    path = tmp_path / "full.qcw"
    weightimage.save(img, path)
    with CatEngine(path) as eng:
        print(f"\narena for full: {eng.arena_bytes} bytes of {ARENA_BUDGET}")
        assert eng.arena_bytes == _planned_arena(img)
        # layer 4 (16x16x256 in, 32x32x128 out, both padded) + two 64 KB read buffers
        assert eng.arena_bytes == 361_984
        assert eng.arena_bytes <= ARENA_BUDGET
        assert cat_engine.arena_budget() == ARENA_BUDGET


def test_arena_for_demo(demo) -> None:
    path, _data, img = demo
    with CatEngine(path) as eng:
        assert eng.arena_bytes == _planned_arena(img) == 188_800


def test_c_crc32_is_zlibs() -> None:
    lib = cat_engine.load_library()
    fn = lib.qcw_crc32
    fn.restype, fn.argtypes = ctypes.c_uint32, [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    rng = np.random.default_rng(4)
    for n in (0, 1, 7, 8, 9, 63, 512, 4116, 16_896):
        data = rng.bytes(n)
        assert fn(0, data, n) == zlib.crc32(data), n
        # and as a running value over two pieces
        assert fn(fn(0, data[:n // 3], n // 3), data[n // 3:], n - n // 3) == zlib.crc32(data)


def test_error_table_matches_the_compiled_c() -> None:
    """The enum the C compiles (cat_errors.h) and the sentence its cat_strerror() returns are
    the table's, code by code; so is what the binding knows."""
    header = (cat_engine.CAT_SOURCES / "cat_errors.h").read_text()
    enum = {name: int(code) for name, code in re.findall(r"(CAT_E_[A-Z_]+)\s*=\s*(\d+)", header)}
    rows = [row for row in read_error_table() if row.code != 0]
    assert enum == {row.name: row.code for row in rows} == CODES
    lib = cat_engine.load_library()
    for row in rows:
        assert lib.cat_strerror(row.code).decode() == row.sentence == ERRORS[row.code].sentence
    assert lib.cat_strerror(0).decode() == "no error"
    assert lib.cat_strerror(99).decode() == "unknown engine error"
    assert set(cat_engine.BUG_CODES) == {CODES["CAT_E_ARGS"], CODES["CAT_E_NOT_OPEN"]}


def test_missing_compiler_is_toolmissing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("CC", "no-such-cc")
    monkeypatch.setenv(cat_engine.BUILD_DIR_ENV, str(tmp_path / "build"))
    with pytest.raises(ToolMissing) as info:
        cat_engine.build()
    assert "C compiler" in info.value.message
    assert "apt-get install gcc make" in (info.value.hint or "")


@pytest.mark.slow
def test_library_is_rebuilt_when_older_than_its_sources(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cat_engine.BUILD_DIR_ENV, str(tmp_path / "build"))
    lib = cat_engine.build()
    assert lib.parent == tmp_path / "build" and lib.exists()
    assert not cat_engine.is_stale(lib)
    newest = max(src.stat().st_mtime for src in cat_engine.sources())
    os.utime(lib, (newest - 10, newest - 10))
    assert cat_engine.is_stale(lib)
    before = lib.stat().st_mtime_ns
    assert cat_engine.build() == lib and lib.stat().st_mtime_ns > before
    assert not cat_engine.is_stale(lib)


def test_read_only_package_builds_into_a_cache(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed, read-only qcat builds its engine under the user's cache folder."""
    ro = tmp_path / "site-packages" / "firmware"
    ro.mkdir(parents=True)
    monkeypatch.delenv(cat_engine.BUILD_DIR_ENV, raising=False)
    monkeypatch.setattr(cat_engine, "FIRMWARE_DIR", ro)
    monkeypatch.setattr(cat_engine, "DEFAULT_BUILD_DIR", ro / "build")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cat_engine.build_dir() == ro / "build"  # writable: the package's own folder
    real_access = os.access
    # (chmod alone cannot make a folder read-only for root, who runs CI containers)
    monkeypatch.setattr(cat_engine.os, "access",
                        lambda p, mode: False if Path(p) == ro else real_access(p, mode))
    assert cat_engine.build_dir() == tmp_path / "cache" / "qcat" / "firmware-build"


@pytest.mark.parametrize("field, value", [
    ("shift", 5),               # a left shift
    ("shift", -32),
    ("multiplier", 1 << 29),    # not a normalized Q31 multiplier
    ("bias", 2**31 - 1),        # the accumulator could leave int32
    ("weight", -128),           # weights are symmetric
])
def test_slice_constants_outside_the_format_are_refused(demo, tmp_path: Path, field: str,
                                                        value: int) -> None:
    """Valid CRC, right place, but a constant the format excludes: refused mid-run
    (CAT_E_UNSUPPORTED), never computed with overflow."""
    _path, data, img = demo
    lay = img.layers[1]
    start = _slice_offset(img, data, 1, 3)
    tail = start + 16 * lay.c_in
    bad = bytearray(data)
    if field == "weight":
        bad[start + 7 * lay.c_in + 2] = value & 0xFF
    else:
        struct.pack_into("<i", bad, tail + {"bias": 0, "multiplier": 4, "shift": 8}[field], value)
    crc_at = start + lay.slice_bytes - 4
    struct.pack_into("<I", bad, crc_at, zlib.crc32(bytes(bad[start:crc_at])))
    assert _code_of(_variant(tmp_path, bytes(bad), "const.qcw")) == CODES["CAT_E_UNSUPPORTED"]


def test_wrong_activation_in_the_header_is_refused(demo, tmp_path: Path) -> None:
    """Tanh on a middle layer: the header (CRC recomputed) breaks the DCGAN's layout."""
    _path, data, _img = demo
    header_bytes = struct.unpack_from("<H", data, 10)[0]
    bad = bytearray(data)
    bad[128 + 2 * 64 + 11] = 2  # layer 3's (index 2) activation byte -> Tanh
    bad[12:16] = bytes(4)
    struct.pack_into("<I", bad, 12, zlib.crc32(bytes(bad[:header_bytes])))
    with pytest.raises(EngineError) as info:
        CatEngine(_variant(tmp_path, bytes(bad), "act.qcw"))
    assert info.value.code == CODES["CAT_E_UNSUPPORTED"]
