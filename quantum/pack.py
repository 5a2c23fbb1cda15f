"""Entropy packs: bytes moved out of one pool to be imported, once, into another (offline prep).

A pack is self-verifying (docs/formats.md, "Entropy pack"):

    header (64 bytes)   magic QCATPACK, version, header CRC, pack id, data and provenance sizes
    provenance          UTF-8 JSON: pack id, creation time, source pool, the batches the bytes
                        came from (source, base URL, request time, server date; never a key)
    data                the entropy bytes
    trailer (32 bytes)  SHA-256 of every byte before it

This module only encodes and decodes; the pool decides what goes into a pack (export *moves*
bytes: the pool records them as spent in the same transaction) and refuses a pack it has seen.
A reader must refuse a damaged pack with one sentence and never hand back partial data.
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installation import files
from installation.errors import FormatError
from installation.reading import read_input

MAGIC = b"QCATPACK"
VERSION = 1
HEADER_BYTES = 64
TRAILER_BYTES = 32
# magic, version, header_bytes, header_crc, pack id, data_bytes, provenance_bytes
_HEADER = struct.Struct("<8sHHI16sQI")
_CRC_OFFSET = 12
# A pack is read whole into memory; refuse anything beyond what a pool could sensibly move.
MAX_PACK_BYTES = 1 << 31
MAX_PROVENANCE_BYTES = 16 * 1024 * 1024
FIX_HINT = "ask for a fresh pack: run `qcat entropy export --bytes N FILE` where the bytes are"


@dataclass(frozen=True)
class Pack:
    pack_id: str  # 32 lowercase hex digits
    data: bytes
    provenance: dict[str, Any]

    @property
    def data_sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def new_pack_id() -> str:
    return uuid.uuid4().hex


def encode(pack: Pack) -> bytes:
    """The pack file's bytes."""
    prov = json.dumps(pack.provenance, sort_keys=True, separators=(",", ":")).encode("utf-8")
    header = bytearray(_HEADER.pack(MAGIC, VERSION, HEADER_BYTES, 0, bytes.fromhex(pack.pack_id),
                                    len(pack.data), len(prov)))
    header += bytes(HEADER_BYTES - len(header))
    struct.pack_into("<I", header, _CRC_OFFSET, zlib.crc32(header))
    body = bytes(header) + prov + pack.data
    return body + hashlib.sha256(body).digest()


def decode(blob: bytes, where: str) -> Pack:
    """Check everything and return the pack; `FormatError` names the first fault."""
    def bad(what: str) -> FormatError:
        return FormatError(f"{where} is not a valid entropy pack: {what}", hint=FIX_HINT)

    if len(blob) < HEADER_BYTES + TRAILER_BYTES:
        raise bad(f"it is only {len(blob)} bytes long")
    magic, version, header_bytes, crc, raw_id, data_bytes, prov_bytes = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise bad("wrong magic (not a qcat pack)")
    if version != VERSION:
        raise bad(f"format version {version}, this qcat reads version {VERSION}")
    if header_bytes != HEADER_BYTES:
        raise bad(f"header size {header_bytes}, expected {HEADER_BYTES}")
    header = bytearray(blob[:HEADER_BYTES])
    struct.pack_into("<I", header, _CRC_OFFSET, 0)
    if zlib.crc32(header) != crc:
        raise bad("the header CRC does not match (the header is damaged)")
    if any(header[_HEADER.size:]):
        raise bad("reserved header bytes are not zero")
    want = HEADER_BYTES + prov_bytes + data_bytes + TRAILER_BYTES
    if len(blob) != want:
        raise bad(f"it is {len(blob)} bytes long, the header says {want} (truncated or padded)")
    if hashlib.sha256(blob[:-TRAILER_BYTES]).digest() != blob[-TRAILER_BYTES:]:
        raise bad("the SHA-256 does not match (the contents are damaged)")
    try:
        prov = json.loads(blob[HEADER_BYTES:HEADER_BYTES + prov_bytes].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("the provenance is not UTF-8 JSON") from None
    pack_id = raw_id.hex()
    if not isinstance(prov, dict) or prov.get("pack_id") != pack_id:
        raise bad("the provenance does not name the pack's id")
    data = blob[HEADER_BYTES + prov_bytes:-TRAILER_BYTES]
    if data_bytes == 0:
        raise bad("it holds no entropy bytes")
    if prov.get("data_sha256") != hashlib.sha256(data).hexdigest():
        raise bad("the provenance's data SHA-256 does not match the data")
    return Pack(pack_id, data, prov)


def read(path: Path) -> Pack:
    blob = read_input(path, "entropy pack", max_bytes=MAX_PACK_BYTES)
    return decode(blob, str(path))


def write_temp(path: Path, blob: bytes) -> Path:
    """Write `blob` beside `path` under a temporary name, fsynced, readable by the owner alone
    (the bytes are someone's exhibits to come); the caller publishes it with `publish`."""
    return files.write_temp(path, blob, mode=0o600)


publish = files.publish
