"""The cat unit's card files as bytes: the entropy reserve, the consumption journal, the manifest.

docs/formats.md ("A unit's SD card") is the specification; this module is its Python codec, the
one every other part uses (the card builder and checker in `installation`, the simulator's board,
the tests that hold the C core to the same bytes). It knows bytes and CRCs only: whether a
record's latent follows from its raw bytes needs the weight image, so `installation.sdcard`
checks that.

Why one sector per record and per journal entry: striking a record is then one sector write, and a
power cut during a journal write can damage no entry but the one being written.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from installation.errors import FormatError

SECTOR = 512
VERSION = 1
RESERVE_MAGIC = b"QCRESERV"
JOURNAL_MAGIC = b"QCJOURNL"
RECORD_BYTES = SECTOR
ENTRY_BYTES = SECTOR
RAW_BYTES = 203
LATENT_LEN = 100
SERIAL_LEN = 16
ID_LEN = 16
IMAGE_SHA_LEN = 32
N_VERDICTS = 1 << 17
CRC_AT = SECTOR - 4  # every record and entry: CRC-32 of bytes [0, 508) in its last 4 bytes

# The card's files, 8.3 names (a unit's FAT driver needs no long names), in the order they are
# written onto a fresh card (so each lies in one run of clusters).
WEIGHTS = "WEIGHTS.QCW"
CLIPS = "CLIPS.QCV"
RESERVE = "RESERVE.QCR"
JOURNAL = "JOURNAL.QCJ"
MANIFEST = "MANIFEST.JSN"
CARD_FILES = (WEIGHTS, CLIPS, RESERVE, JOURNAL, MANIFEST)
FILE_FORMATS = {WEIGHTS: "qcw", CLIPS: "qcv", RESERVE: "qcr", JOURNAL: "qcj"}
MANIFEST_FORMAT = "qcat sd card"

_HEADER = struct.Struct("<8sHHI16s16s")  # magic, version, header_bytes, header_crc, lease, card
_RESERVE_TAIL = struct.Struct("<16sII32s")  # serial, records, record_bytes, weights_sha256
_JOURNAL_TAIL = struct.Struct("<I")  # capacity
_RECORD = struct.Struct(f"<II{RAW_BYTES}s{LATENT_LEN}s")
_ENTRY = struct.Struct(f"<II{IMAGE_SHA_LEN}sI")

REBUILD_HINT = "build the card again with `qcat sd build`"


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _seal(block: bytearray) -> bytes:
    """Put the CRC-32 of [0, 508) into a record's or entry's last 4 bytes."""
    struct.pack_into("<I", block, CRC_AT, crc32(bytes(block[:CRC_AT])))
    return bytes(block)


def _sealed(block: bytes) -> bool:
    return struct.unpack_from("<I", block, CRC_AT)[0] == crc32(block[:CRC_AT])


def _header(magic: bytes, lease_id: bytes, card_id: bytes, tail: bytes) -> bytes:
    block = bytearray(SECTOR)
    _HEADER.pack_into(block, 0, magic, VERSION, SECTOR, 0, lease_id, card_id)
    block[_HEADER.size:_HEADER.size + len(tail)] = tail
    struct.pack_into("<I", block, 12, crc32(bytes(block)))
    return bytes(block)


def _check_header(data: bytes, magic: bytes, what: str) -> tuple[bytes, bytes]:
    """(lease id, card id) of a good header; FormatError naming what is wrong otherwise."""
    if len(data) < SECTOR:
        raise FormatError(f"the {what} is {len(data)} bytes, shorter than its 512-byte header",
                          hint=REBUILD_HINT)
    got_magic, version, header_bytes, header_crc, lease_id, card_id = _HEADER.unpack_from(data)
    if got_magic != magic:
        raise FormatError(f"the {what} does not start with {magic.decode()}", hint=REBUILD_HINT)
    if version != VERSION:
        raise FormatError(f"the {what} is format version {version}; this qcat reads {VERSION}",
                          hint="use the qcat that built the card, or build it again")
    if header_bytes != SECTOR:
        raise FormatError(f"the {what} says its header is {header_bytes} bytes, not 512",
                          hint=REBUILD_HINT)
    zeroed = bytearray(data[:SECTOR])
    zeroed[12:16] = bytes(4)
    if crc32(bytes(zeroed)) != header_crc:
        raise FormatError(f"the {what}'s header CRC does not match: the header is damaged",
                          hint=REBUILD_HINT)
    return lease_id, card_id


# ------------------------------------------------------------------------------------------------
# The reserve


@dataclass(frozen=True)
class Record:
    index: int
    verdict: int
    raw: bytes       # 203 bytes, as drawn
    latent: bytes    # 100 int8 values as bytes

    def pack(self) -> bytes:
        if len(self.raw) != RAW_BYTES or len(self.latent) != LATENT_LEN:
            raise ValueError("a record holds 203 raw bytes and 100 latent bytes")
        if not 0 <= self.verdict < N_VERDICTS:
            raise ValueError(f"verdict code {self.verdict} is out of range")
        block = bytearray(RECORD_BYTES)
        _RECORD.pack_into(block, 0, self.index, self.verdict, self.raw, self.latent)
        return _seal(block)


STRUCK = bytes(RECORD_BYTES)


@dataclass(frozen=True)
class ReserveHeader:
    lease_id: bytes
    card_id: bytes
    serial: str
    records: int
    weights_sha256: bytes

    def pack(self) -> bytes:
        serial = self.serial.encode("ascii")
        if len(serial) > SERIAL_LEN:
            raise ValueError(f"unit serial {self.serial!r} is longer than 16 characters")
        tail = _RESERVE_TAIL.pack(serial.ljust(SERIAL_LEN, b"\0"), self.records, RECORD_BYTES,
                                  self.weights_sha256)
        return _header(RESERVE_MAGIC, self.lease_id, self.card_id, tail)


def pack_reserve(header: ReserveHeader, records: list[Record]) -> bytes:
    if len(records) != header.records or header.records < 1:
        raise ValueError("the header's record count must match the records (at least 1)")
    for i, rec in enumerate(records):
        if rec.index != i:
            raise ValueError(f"record {i} carries index {rec.index}")
    return header.pack() + b"".join(rec.pack() for rec in records)


def record_offset(index: int) -> int:
    return SECTOR + RECORD_BYTES * index


def read_reserve_header(data: bytes) -> ReserveHeader:
    """The header of a reserve (`data` its first 512 bytes or more); FormatError when bad."""
    lease_id, card_id = _check_header(data, RESERVE_MAGIC, "reserve")
    serial, records, record_bytes, weights_sha = _RESERVE_TAIL.unpack_from(data, _HEADER.size)
    if record_bytes != RECORD_BYTES:
        raise FormatError(f"the reserve's records are {record_bytes} bytes, not 512",
                          hint=REBUILD_HINT)
    if records < 1:
        raise FormatError("the reserve holds no records", hint=REBUILD_HINT)
    if any(data[_HEADER.size + _RESERVE_TAIL.size:SECTOR]):
        raise FormatError("the reserve's reserved header bytes are not zero", hint=REBUILD_HINT)
    return ReserveHeader(lease_id, card_id, serial.rstrip(b"\0").decode("ascii", "replace"),
                         records, weights_sha)


@dataclass(frozen=True)
class RecordState:
    """One record slot as found: `record` when good, else struck or damaged (`problem`)."""
    index: int
    record: Record | None
    struck: bool
    problem: str | None


def parse_record(block: bytes, index: int) -> RecordState:
    if len(block) != RECORD_BYTES:
        return RecordState(index, None, False, f"record {index} is cut short")
    if block == STRUCK:
        return RecordState(index, None, True, None)
    if not _sealed(block):
        return RecordState(index, None, False, f"record {index}'s CRC does not match")
    got_index, verdict, raw, latent = _RECORD.unpack_from(block)
    if got_index != index:
        return RecordState(index, None, False, f"record {index} carries index {got_index}")
    if verdict >= N_VERDICTS or any(block[_RECORD.size:CRC_AT]):
        return RecordState(index, None, False, f"record {index} has fields out of range")
    return RecordState(index, Record(index, verdict, raw, latent), False, None)


def read_reserve(data: bytes) -> tuple[ReserveHeader, list[RecordState]]:
    """A whole reserve file: its header and every record slot's state."""
    header = read_reserve_header(data)
    want = SECTOR + RECORD_BYTES * header.records
    if len(data) != want:
        raise FormatError(f"the reserve is {len(data):,} bytes; {header.records} records make "
                          f"{want:,}", hint=REBUILD_HINT)
    return header, [parse_record(data[record_offset(i):record_offset(i + 1)], i)
                    for i in range(header.records)]


# ------------------------------------------------------------------------------------------------
# The journal


@dataclass(frozen=True)
class Entry:
    index: int
    verdict: int
    image_sha256: bytes
    uptime_ms: int = 0

    def pack(self) -> bytes:
        block = bytearray(ENTRY_BYTES)
        _ENTRY.pack_into(block, 0, self.index, self.verdict, self.image_sha256,
                         self.uptime_ms & 0xFFFFFFFF)
        return _seal(block)


EMPTY_SLOT = bytes(ENTRY_BYTES)


def pack_journal_header(lease_id: bytes, card_id: bytes, capacity: int) -> bytes:
    return _header(JOURNAL_MAGIC, lease_id, card_id, _JOURNAL_TAIL.pack(capacity))


def empty_journal(lease_id: bytes, card_id: bytes, capacity: int) -> bytes:
    """A new card's journal: the header and `capacity` empty slots."""
    return pack_journal_header(lease_id, card_id, capacity) + EMPTY_SLOT * capacity


def entry_offset(slot: int) -> int:
    return SECTOR + ENTRY_BYTES * slot


@dataclass(frozen=True)
class Journal:
    """What a journal proves. `state` is "clean" or "torn" (tampered journals raise)."""
    lease_id: bytes
    card_id: bytes
    capacity: int
    entries: list[Entry]
    state: str

    @property
    def spent(self) -> int:
        """Records 0..spent-1 count as spent (a torn slot's record included)."""
        return len(self.entries) + (1 if self.state == "torn" else 0)

    @property
    def proves_unused(self) -> bool:
        """Only a clean journal proves that the records after its entries were never shown."""
        return self.state == "clean"


class TamperedJournal(FormatError):
    """A journal that is neither clean nor torn: nothing in it is believed."""


def _entry_of(block: bytes, slot: int) -> Entry | None:
    if block == EMPTY_SLOT or not _sealed(block):
        return None
    index, verdict, sha, uptime = _ENTRY.unpack_from(block)
    if any(block[_ENTRY.size:CRC_AT]):
        return None
    return Entry(index, verdict, sha, uptime)


def read_journal(data: bytes, reserve: ReserveHeader | None = None,
                 records: list[RecordState] | None = None) -> Journal:
    """The journal's verdict (docs/formats.md): clean, torn, or TamperedJournal. With the card's
    reserve, the header must name its lease and card and each entry must speak its record's
    verdict."""
    try:
        lease_id, card_id = _check_header(data, JOURNAL_MAGIC, "journal")
    except FormatError as exc:
        raise TamperedJournal(exc.message, hint=exc.hint) from None
    (capacity,) = _JOURNAL_TAIL.unpack_from(data, _HEADER.size)
    if any(data[_HEADER.size + _JOURNAL_TAIL.size:SECTOR]):
        raise TamperedJournal("the journal's reserved header bytes are not zero",
                              hint=REBUILD_HINT)
    if len(data) != entry_offset(capacity):
        raise TamperedJournal(f"the journal is {len(data):,} bytes; {capacity} slots make "
                              f"{entry_offset(capacity):,}", hint=REBUILD_HINT)
    if reserve is not None:
        if (lease_id, card_id) != (reserve.lease_id, reserve.card_id):
            raise TamperedJournal("the journal names another lease or card than the reserve",
                                  hint="the journal belongs with another card's reserve")
        if capacity != reserve.records:
            raise TamperedJournal(f"the journal has {capacity} slots for "
                                  f"{reserve.records} records", hint=REBUILD_HINT)
    entries: list[Entry] = []
    state = "clean"
    for slot in range(capacity):
        block = data[entry_offset(slot):entry_offset(slot + 1)]
        entry = _entry_of(block, slot)
        if state != "clean":
            if block != EMPTY_SLOT:
                raise TamperedJournal(f"journal slot {slot} holds data after the end of the "
                                      "journal (an empty or damaged slot before it)",
                                      hint="the card was written by something other than a unit")
            continue
        if entry is None:
            state = "end" if block == EMPTY_SLOT else "torn"
            continue
        if entry.index != slot:
            raise TamperedJournal(f"journal slot {slot} names record {entry.index}",
                                  hint="records are spent in order: the journal was altered")
        if records is not None and slot < len(records):
            rec = records[slot].record
            if rec is not None and rec.verdict != entry.verdict:
                raise TamperedJournal(f"journal entry {slot} speaks verdict {entry.verdict}; its "
                                      f"record holds {rec.verdict}",
                                      hint="the journal was altered")
        entries.append(entry)
    return Journal(lease_id, card_id, capacity, entries, "torn" if state == "torn" else "clean")


# ------------------------------------------------------------------------------------------------
# The manifest


def manifest_digest(obj: dict[str, Any]) -> str:
    body = {k: v for k, v in obj.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode("ascii")).hexdigest()


def pack_manifest(obj: dict[str, Any]) -> bytes:
    """The manifest's bytes, its own hash added, padded with spaces (still the same JSON) to
    whole sectors as every card file is: `sd reconcile` can rewrite it in place, never growing
    it, when only a hash in it changes."""
    body = {k: v for k, v in obj.items() if k != "sha256"}
    body["sha256"] = manifest_digest(body)
    text = json.dumps(body, sort_keys=True, indent=2).encode("ascii")
    total = -(-(len(text) + 1) // SECTOR) * SECTOR
    return text + b" " * (total - len(text) - 1) + b"\n"


def read_manifest(data: bytes) -> dict[str, Any]:
    """The manifest object, its format, version and own hash checked; FormatError otherwise."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"the manifest is not JSON ({exc})", hint=REBUILD_HINT) from None
    if not isinstance(obj, dict) or obj.get("format") != MANIFEST_FORMAT:
        raise FormatError("the manifest is not a qcat card manifest", hint=REBUILD_HINT)
    if obj.get("version") != VERSION:
        raise FormatError(f"the manifest is version {obj.get('version')!r}; this qcat reads "
                          f"{VERSION}", hint="use the qcat that built the card")
    if obj.get("sha256") != manifest_digest(obj):
        raise FormatError("the manifest's own SHA-256 does not match: it was altered or damaged",
                          hint=REBUILD_HINT)
    if not isinstance(obj.get("files"), dict):
        raise FormatError("the manifest lists no files", hint=REBUILD_HINT)
    return obj
