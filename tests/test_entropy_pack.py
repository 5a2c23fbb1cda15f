"""Entropy packs: export moves bytes (never copies), import takes a pack once, and a damaged
pack is refused with one sentence and nothing written."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from installation.errors import FormatError, InputError
from quantum import pack as packfmt
from quantum.pool import EntropyPool


@pytest.fixture
def pools(tmp_path):
    a = EntropyPool(tmp_path / "a" / "entropy.sqlite")
    b = EntropyPool(tmp_path / "b" / "entropy.sqlite")
    for _ in range(2):
        assert a.store_batch(os.urandom(20480), "anu",
                             {"source": "anu", "base_url": "https://api.example"}).usable
    yield a, b
    a.close()
    b.close()


def test_export_moves_bytes_and_import_serves_them_once(pools, tmp_path):
    a, b = pools
    first = a.draw(100, "before")
    path = tmp_path / "x.qcatpack"
    res = a.export_pack(30000, path)
    assert res.size == 30000 and path.exists()
    assert res.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # Moved: this pool continues *after* the exported bytes and can never serve them.
    rest = a.draw(a.available_bytes(), "rest").data
    p = packfmt.read(path)
    assert p.data not in rest and p.data[-64:] not in rest
    assert a.status()["exported_bytes"] == 30000
    assert a.audit().ok
    stored = b.import_pack(path)
    assert stored.usable and stored.source == "import"
    d = b.draw(30000, "exhibit")
    assert d.data == p.data and d.source == "import"
    assert d.provenance["segments"][0]["pack_id"] == p.pack_id
    # Provenance travels: which batches of which service the bytes came from.
    origin = p.provenance["segments"]
    assert origin[0]["base_url"] == "https://api.example" and origin[0]["offset"] == 100
    assert first.data not in d.data


def test_a_pack_is_accepted_once_and_never_back_home(pools, tmp_path):
    a, b = pools
    path = tmp_path / "x.qcatpack"
    a.export_pack(1000, path)
    with pytest.raises(InputError, match="already exported from this pool"):
        a.import_pack(path)
    b.import_pack(path)
    with pytest.raises(InputError, match="already imported into this pool"):
        b.import_pack(path)
    assert b.available_bytes() == 1000


def test_export_refuses_to_overwrite_or_overdraw(pools, tmp_path):
    a, _ = pools
    existing = tmp_path / "exists.qcatpack"
    existing.write_bytes(b"precious")
    with pytest.raises(InputError, match="never overwritten"):
        a.export_pack(10, existing)
    assert existing.read_bytes() == b"precious"
    with pytest.raises(InputError, match="holds 40,960|holds 40960"):
        a.export_pack(10**6, tmp_path / "big.qcatpack")
    assert not (tmp_path / "big.qcatpack").exists()
    assert a.available_bytes() == 40960 and a.audit().ok


def test_pack_layout_matches_the_documented_header(pools, tmp_path):
    a, _ = pools
    path = tmp_path / "x.qcatpack"
    a.export_pack(500, path)
    blob = path.read_bytes()
    magic, version, header_bytes, _crc, raw_id, data_bytes, prov_bytes = \
        struct.unpack_from("<8sHHI16sQI", blob)
    assert (magic, version, header_bytes, data_bytes) == (b"QCATPACK", 1, 64, 500)
    assert len(blob) == 64 + prov_bytes + 500 + 32
    assert hashlib.sha256(blob[:-32]).digest() == blob[-32:]
    assert packfmt.read(path).pack_id == raw_id.hex()


def _corrupt(blob: bytes, offset: int) -> bytes:
    return blob[:offset] + bytes([blob[offset] ^ 0x01]) + blob[offset + 1:]


@pytest.mark.parametrize(("damage", "phrase"), [
    (lambda b: b"NOTAPACK" + b[8:], "wrong magic"),
    (lambda b: b[:8] + struct.pack("<H", 2) + b[10:], "format version 2"),
    (lambda b: _corrupt(b, 20), "header CRC"),
    (lambda b: b[:-1], "truncated or padded"),
    (lambda b: b + b"\0", "truncated or padded"),
    (lambda b: _corrupt(b, len(b) - 100), "SHA-256 does not match"),
    (lambda b: b[:50], "only 50 bytes long"),
])
def test_a_damaged_pack_is_refused_and_imports_nothing(pools, tmp_path, damage, phrase):
    a, b = pools
    good = tmp_path / "good.qcatpack"
    a.export_pack(2000, good)
    bad = tmp_path / "bad.qcatpack"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(FormatError, match=phrase) as info:
        b.import_pack(bad)
    assert "qcat entropy export" in info.value.hint and "\n" not in info.value.message
    assert b.available_bytes() == 0 and b.status()["batches"] == 0


def test_a_pack_of_bad_bytes_is_quarantined_not_served(tmp_path):
    data = b"\x07" * 4096
    prov = {"pack_id": "ab" * 16, "data_sha256": hashlib.sha256(data).hexdigest()}
    path = tmp_path / "stuck.qcatpack"
    path.write_bytes(packfmt.encode(packfmt.Pack("ab" * 16, data, prov)))
    with EntropyPool(tmp_path / "entropy.sqlite") as pool:
        stored = pool.import_pack(path)
        assert not stored.usable and pool.available_bytes() == 0
        with pytest.raises(InputError, match="already imported"):
            pool.import_pack(path)  # even a quarantined pack is taken once
