"""The cat weight image (.qcw): layout as docs/formats.md writes it, exact round trips, and a
reader that catches every damaged byte and never crashes on garbage."""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from installation.errors import FormatError, InputError, UsageError
from models import weightimage as wi


@pytest.fixture(scope="module")
def demo() -> wi.WeightImage:
    return wi.synthetic("demo", seed=7)


@pytest.fixture(scope="module")
def demo_bytes(demo: wi.WeightImage) -> bytes:
    return wi.encode(demo)


def assert_same_image(a: wi.WeightImage, b: wi.WeightImage) -> None:
    for name in ("model_size", "nz", "ngf", "latent_zp", "provenance", "image_size", "channels"):
        assert getattr(a, name) == getattr(b, name), name
    assert np.float32(a.latent_scale) == np.float32(b.latent_scale)
    assert np.array_equal(a.tanh_table, b.tanh_table)
    assert len(a.layers) == len(b.layers)
    for i, (x, y) in enumerate(zip(a.layers, b.layers, strict=True)):
        for name in ("c_in", "c_out", "h_in", "h_out", "kernel", "stride", "padding",
                     "activation", "in_zp", "out_zp"):
            assert getattr(x, name) == getattr(y, name), (i, name)
        for name in ("weights", "bias", "multiplier", "shift"):
            assert np.array_equal(getattr(x, name), getattr(y, name)), (i, name)
        assert y.weights.dtype == np.int8 and y.bias.dtype == np.int32


def test_full_size_counts_and_bytes():
    # DESIGN §5: 12,654,592 conv weights; slices padded to 512 bytes add about 0.8 MiB.
    assert wi.conv_weight_count(100, 128) == 12_654_592
    shapes = wi.generator_layout(100, 128)
    assert [(s.c_in, s.c_out, s.h_in, s.h_out) for s in shapes] == [
        (100, 1024, 1, 4), (1024, 512, 4, 8), (512, 256, 8, 16), (256, 128, 16, 32),
        (128, 3, 32, 64)]
    assert [wi.slice_bytes_for(s.c_in) for s in shapes] == [2048, 16896, 8704, 4608, 2560]
    full = wi.synthetic("full", seed=1)
    assert full.conv_weights == 12_654_592
    data = wi.encode(full)
    slices = 1024 * 2048 + 512 * 16896 + 256 * 8704 + 128 * 4608 + 3 * 2560
    assert len(data) == full.header_bytes + slices + 512 == full.file_bytes
    assert 12.0 < full.conv_weights / 2**20 < 12.1 < len(data) / 2**20 < 13.0
    assert_same_image(full, wi.decode(data))


def test_header_fields_at_documented_offsets(demo, demo_bytes):
    d = demo_bytes
    assert d[:8] == b"QCWEIGHT"
    version, header_bytes, crc, file_bytes = struct.unpack_from("<HHIQ", d, 8)
    assert version == 1 and header_bytes % 512 == 0 and file_bytes == len(d)
    zeroed = bytearray(d[:header_bytes])
    zeroed[12:16] = bytes(4)
    assert crc == zlib.crc32(bytes(zeroed))
    assert d[24:40].rstrip(b"\0") == b"demo"
    assert struct.unpack_from("<HHHHH", d, 40) == (100, 32, 5, 64, 3)
    assert struct.unpack_from("<b", d, 50)[0] == demo.latent_zp
    assert struct.unpack_from("<f", d, 52)[0] == np.float32(demo.latent_scale)
    table, tanh, prov, prov_len, first = struct.unpack_from("<IIIII", d, 56)
    assert table == 128 and first == header_bytes
    assert d[tanh:tanh + 256] == demo.tanh_table.tobytes()
    assert d[prov:prov + prov_len].decode() .startswith("{")
    assert d[76:128] == bytes(52)
    # layer 2 (index 1): 256 -> 128, 4 -> 8, k4 s2 p1, ReLU
    entry = d[128 + 64:128 + 128]
    c_in, c_out, h_in, h_out, k, s, p, act = struct.unpack_from("<HHHHBBBB", entry, 0)
    assert (c_in, c_out, h_in, h_out, k, s, p, act) == (256, 128, 4, 8, 4, 2, 1, 1)
    slice_bytes, offset = struct.unpack_from("<IQ", entry, 24)
    assert slice_bytes == 4608 and offset == header_bytes + 256 * wi.slice_bytes_for(100)


def test_slice_layout_channel_17_of_layer_2(demo, demo_bytes):
    lay = demo.layers[2]
    entry = demo_bytes[128 + 2 * 64:128 + 3 * 64]
    sb, off = struct.unpack_from("<IQ", entry, 24)
    s = demo_bytes[off + 17 * sb:off + 18 * sb]
    nw = 16 * lay.c_in
    w = np.frombuffer(s[:nw], dtype=np.int8).reshape(4, 4, lay.c_in)
    assert np.array_equal(w, lay.weights[17])
    bias, mult, shift, li, ci = struct.unpack_from("<iiiHH", s, nw)
    assert (bias, mult, shift, li, ci) == (lay.bias[17], lay.multiplier[17], lay.shift[17], 2, 17)
    assert s[nw + 16:sb - 4] == bytes(sb - 4 - nw - 16)
    assert struct.unpack_from("<I", s, sb - 4)[0] == zlib.crc32(s[:sb - 4])


def test_trailer_is_sha256_of_everything_before(demo_bytes):
    t = demo_bytes[-512:]
    assert t[:8] == b"QCWTRAIL"
    assert struct.unpack_from("<Q", t, 8)[0] == len(demo_bytes)
    assert t[16:48] == hashlib.sha256(demo_bytes[:-512]).digest()
    assert t[48:] == bytes(464)


def test_round_trip_is_exact(demo, demo_bytes, tmp_path):
    assert_same_image(demo, wi.decode(demo_bytes))
    path = tmp_path / "m.qcw"
    digest = wi.save(demo, path)
    assert digest == hashlib.sha256(demo_bytes).hexdigest() == wi.sha256_of(path)
    assert_same_image(demo, wi.load(path))
    assert wi.encode(wi.load(path)) == demo_bytes  # re-encoding is byte-identical
    assert not list(tmp_path.glob("*.tmp"))


def test_synthetic_is_deterministic_and_varied():
    a, b, c = (wi.encode(wi.synthetic("demo", s)) for s in (3, 3, 4))
    assert a == b and a != c


def _slice_of(img: wi.WeightImage, pos: int) -> tuple[int, int] | None:
    off = img.header_bytes
    for i, lay in enumerate(img.layers):
        end = off + lay.c_out * lay.slice_bytes
        if off <= pos < end:
            return i, (pos - off) // lay.slice_bytes
        off = end
    return None


def test_every_flipped_bit_is_caught_and_the_slice_named(demo, demo_bytes, tmp_path):
    rng = np.random.default_rng(0)
    n = len(demo_bytes)
    # every region: header, each layer's slices (weights, tail, padding, CRC), the trailer
    positions = set(rng.integers(0, n, 300).tolist())
    positions |= {0, 7, 8, 12, 15, 16, 60, 127, 200, demo.header_bytes - 1, demo.header_bytes,
                  n - 512, n - 480, n - 1}
    for pos in sorted(positions):
        bad = bytearray(demo_bytes)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(FormatError) as exc:
            wi.decode(bytes(bad))
        where = _slice_of(demo, pos)
        if where:
            assert exc.value.message == f"layer {where[0] + 1}, channel {where[1]}: CRC mismatch"
        assert exc.value.hint == "re-run `qcat sd weights build`"
    # and through the file-level API, which never raises
    bad = bytearray(demo_bytes)
    bad[demo.header_bytes + 3 * demo.layers[0].slice_bytes + 10] ^= 0x80
    path = tmp_path / "bad.qcw"
    path.write_bytes(bytes(bad))
    report = wi.verify(path)
    assert not report.ok and report.error.endswith("layer 1, channel 3: CRC mismatch")


def test_a_slice_in_the_wrong_place_is_caught(demo, demo_bytes):
    sb = demo.layers[1].slice_bytes
    off = demo.header_bytes + demo.layers[0].c_out * demo.layers[0].slice_bytes
    bad = bytearray(demo_bytes)
    bad[off + 5 * sb:off + 6 * sb] = demo_bytes[off + 4 * sb:off + 5 * sb]  # valid CRC, wrong spot
    with pytest.raises(FormatError, match="layer 2, channel 5: the slice there belongs to "
                                          "layer 2, channel 4"):
        wi.decode(bytes(bad))


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 100, 128, 511, 512, 2000, -513, -512, -1])
def test_truncated_files_get_one_sentence(demo_bytes, cut, tmp_path):
    data = demo_bytes[:cut]
    path = tmp_path / "t.qcw"
    path.write_bytes(data)
    report = wi.verify(path)
    assert not report.ok
    assert ("truncated" in report.error or "empty" in report.error)
    with pytest.raises(FormatError):
        wi.load(path)


def test_foreign_and_odd_files(tmp_path, demo_bytes):
    png = tmp_path / "cat.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(600))
    assert "not a qcat weight image" in wi.verify(png).error
    assert wi.verify(tmp_path).error.endswith("is a folder, not a weight image")
    assert "does not exist" in wi.verify(tmp_path / "nope.qcw").error
    assert "not a regular file" in wi.verify(Path("/dev/zero")).error
    with pytest.raises(InputError):
        wi.load(tmp_path / "nope.qcw")
    extra = tmp_path / "extra.qcw"
    extra.write_bytes(demo_bytes + b"\0")
    assert "1 unexpected bytes after its end" in wi.verify(extra).error
    for version in (4, 0, 0xFFFF):  # a newer writer, and garbage
        newer = bytearray(demo_bytes)
        struct.pack_into("<H", newer, 8, version)
        with pytest.raises(FormatError, match=f"format version {version}; this qcat reads "
                                              "versions 1, 2 and 3"):
            wi.decode(bytes(newer))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_garbage_never_crashes_the_reader(blob):
    for data in (blob, b"QCWEIGHT" + blob, b"QCWEIGHT\x01\x00\x00\x02" + blob):
        with pytest.raises(FormatError):
            wi.decode(data)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.binary(min_size=1, max_size=8))
def test_overwritten_bytes_never_crash_and_are_caught(pos, junk):
    data = bytearray(_DEMO_BYTES)
    pos %= len(data)
    old = bytes(data[pos:pos + len(junk)])
    data[pos:pos + len(junk)] = junk
    if bytes(data[pos:pos + len(junk)]) == old:
        return
    with pytest.raises(FormatError):
        wi.decode(bytes(data[:len(_DEMO_BYTES)]))


_DEMO_BYTES = wi.encode(wi.synthetic("demo", seed=7))


def test_encode_refuses_constants_an_int32_engine_cannot_run(demo):
    import copy

    img = copy.deepcopy(demo)
    img.layers[3].shift = img.layers[3].shift.copy()
    img.layers[3].shift[9] = 1
    with pytest.raises(ValueError, match="layer 4, channel 9: shift outside -31..0"):
        wi.encode(img)
    img = copy.deepcopy(demo)
    img.layers[0].weights = img.layers[0].weights.copy()
    img.layers[0].weights[2, 0, 0, 0] = -128
    with pytest.raises(ValueError, match="layer 1, channel 2: weight -128"):
        wi.encode(img)


def test_describe_reports_what_inspect_prints(demo, demo_bytes):
    d = wi.describe(wi.decode(demo_bytes), len(demo_bytes), "ab")
    # 100*256 + 256*128 + 128*64 + 64*32 + 32*3, times 16 taps
    assert d["conv_weights"] == demo.conv_weights == 16 * 68_704 == 1_099_264
    assert d["bytes"] == len(demo_bytes) and d["model_size"] == "demo"
    assert [lay["c_out"] for lay in d["layers"]] == [256, 128, 64, 32, 3]
    assert d["provenance"]["seed"] == 7


def test_shipped_demo_constant_points_inside_the_package():
    assert wi.SHIPPED_DEMO.parent.parent.name == "models"
    assert wi.SHIPPED_DEMO.suffix == ".qcw"


# --------------------------------------------------------------------------------------------
# Versions 2 and 3: packed slices, Huffman, 4-bit


def test_huffman_lengths_are_limited_optimal_and_prefix_free():
    # a geometric distribution wants codes far longer than 12 bits; the limit holds them
    counts = np.zeros(256, np.int64)
    counts[1:40] = [2**k for k in range(39, 0, -1)]
    lengths = wi.code_lengths(counts)
    assert lengths.max() == wi.HUFF_MAX_BITS and lengths[0] == 0 and lengths[40:].max() == 0
    assert int(np.sum(2.0 ** -lengths[lengths > 0].astype(float))) == 1  # a complete code
    codes = wi.canonical_codes(lengths)
    words = {format(int(codes[s]), f"0{int(lengths[s])}b") for s in np.flatnonzero(lengths)}
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    # unlimited Huffman of 2^k counts gives 1, 2, 3, ... bits: the limit only touches the tail
    assert list(lengths[1:6]) == [1, 2, 3, 4, 5]
    # one symbol gets one bit; none gets nothing
    one = np.zeros(256, np.int64)
    one[128] = 9
    assert wi.code_lengths(one)[128] == 1 and wi.code_lengths(np.zeros(256)).max() == 0


def test_version_2_layout_at_documented_offsets(demo):
    img = wi.with_format(demo, 2, "huffman")
    d = wi.encode(img)
    version, header_bytes = struct.unpack_from("<HH", d, 8)
    dir_off, entries = struct.unpack_from("<II", d, 76)
    assert version == 2 and entries == sum(lay.c_out for lay in demo.layers) + 1
    offsets = np.frombuffer(d, "<u4", entries, dir_off)
    assert offsets[0] == header_bytes and len(d) == -(-int(offsets[-1]) // 512) * 512 + 512
    entry = d[128 + 2 * 64:128 + 3 * 64]  # layer 3
    slice_max, first = struct.unpack_from("<IQ", entry, 24)
    enc, bits, _, table, stored = struct.unpack_from("<BBHIQ", entry, 36)
    first_index = demo.layers[0].c_out + demo.layers[1].c_out
    assert (enc, bits) == (wi.ENC_HUFFMAN, 8) and first == offsets[first_index]
    assert stored == offsets[first_index + demo.layers[2].c_out] - first
    lengths = np.frombuffer(d, np.uint8, 256, table)
    # channel 17 of layer 3: its stream decodes (MSB first) to its weights; tail; CRC
    a, b = int(offsets[first_index + 17]), int(offsets[first_index + 18])
    assert b - a <= slice_max
    s = d[a:b]
    assert struct.unpack_from("<I", s, len(s) - 4)[0] == zlib.crc32(s[:-4])
    assert struct.unpack_from("<HH", s, len(s) - 8) == (2, 17)
    bits_str = "".join(format(x, "08b") for x in s[:-20])
    codes = wi.canonical_codes(lengths)
    table_of = {format(int(codes[v]), f"0{int(lengths[v])}b"): v - 128
                for v in np.flatnonzero(lengths)}
    out, word = [], ""
    for bit in bits_str:
        word += bit
        if word in table_of:
            out.append(table_of[word])
            word = ""
    assert out == demo.layers[2].weights[17].ravel().tolist() and set(word) <= {"0"}


def test_every_flipped_bit_of_a_packed_image_is_caught(demo):
    img = wi.with_format(demo, 2, "huffman")
    d = wi.encode(img)
    offsets = np.concatenate([o[:-1] for o in wi.slice_offsets(img)] + [[wi.slice_offsets(img)[-1][-1]]])
    rng = np.random.default_rng(1)
    for pos in rng.integers(0, len(d), 120).tolist() + [len(d) - 1, img.header_bytes]:
        bad = bytearray(d)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(FormatError) as exc:
            wi.decode(bytes(bad))
        k = int(np.searchsorted(offsets, pos, side="right")) - 1
        if img.header_bytes <= pos < offsets[-1]:
            layer = next(i for i, o in enumerate(wi.slice_offsets(img)) if o[0] <= pos < o[-1])
            channel = k - sum(lay.c_out for lay in demo.layers[:layer])
            assert exc.value.message == f"layer {layer + 1}, channel {channel}: CRC mismatch"


def test_version_3_holds_4_bit_layers_only(demo):
    four = wi.with_format(demo, 2, "huffman")
    with pytest.raises(ValueError, match="format version 3 needs a 4-bit layer"):
        wi.encode(dataclasses_replace(four, version=3))
    lay = demo.layers[1]
    squeezed = np.clip(lay.weights // 16, -7, 7).astype(np.int8)
    layers = list(demo.layers)
    layers[1] = dataclasses_replace(lay, weights=squeezed, weight_bits=4, stored=None)
    img = dataclasses_replace(demo, layers=layers)
    with pytest.raises(UsageError, match="version 2 cannot hold"):
        wi.choose_version(img, 2)
    v3 = wi.with_format(img, wi.choose_version(img, None), "huffman")
    back = wi.decode(wi.encode(v3))
    assert back.version == 3 and back.layers[1].weight_bits == 4
    assert np.array_equal(back.layers[1].weights, squeezed)
    assert back.layers[1].encoding in ("huffman", "packed4")
    assert back.layers[1].stored_bytes <= lay.c_out * (lay.weights_per_slice // 2 + 20)
    # a value outside -7..7 in a 4-bit layer is a writer bug
    layers[1] = dataclasses_replace(lay, weight_bits=4, encoding="packed4", stored=None)
    with pytest.raises(ValueError, match="outside -7..7"):
        wi.encode(dataclasses_replace(demo, layers=layers, version=3))


def test_read_units_span_at_most_the_read_size(demo):
    for version, enc in ((1, "raw"), (2, "raw"), (2, "huffman")):
        img = wi.with_format(demo, version, enc)
        units = wi.read_units(img)
        assert sum(u.count for u in units) == sum(lay.c_out for lay in img.layers)
        offs = wi.slice_offsets(img)
        for u in units:
            span = int(offs[u.layer][u.first + u.count] - offs[u.layer][u.first])
            assert span <= wi.READ_BYTES
            if u.first + u.count < img.layers[u.layer].c_out:  # greedy: one more would not fit
                assert int(offs[u.layer][u.first + u.count + 1] - offs[u.layer][u.first]) \
                    > wi.READ_BYTES
