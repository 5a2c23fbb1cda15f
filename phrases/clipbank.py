"""The verdict clip bank (`.qcv`): the 128 DAC clips as the cat unit reads them from its SD card.

Layout (docs/formats.md, "Verdict clip bank"): a header sector group with an index of 128 entries
(mood x slot x fragment -> offset, block size, sample count, CRC-32) and a JSON provenance, then one
sector-aligned block per clip (a 16-byte clip header naming its mood/slot/fragment, the 12-bit
samples as little-endian uint16, zero padding, a CRC-32 in the block's last 4 bytes), then a
512-byte trailer with the SHA-256 of everything before it.

`write_clip_bank` writes atomically; `ClipBank.load` checks, most specific first, the magic,
version, header CRC, sizes, every clip's CRC and identity, then the SHA-256 of the whole, and
refuses any mismatch with a FormatError naming the clip and the command that rebuilds the file.
Never imports torch or the appliance layer.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from installation.errors import FormatError
from installation.files import write_atomic
from installation.reading import read_input
from phrases.audio import DAC_BITS, DAC_MID, join_clips, wav_bytes_from_12bit
from phrases.bank import FRAGMENTS_PER_SLOT, MOODS, SLOTS
from quantum.latent import split_code

MAGIC = b"QCVOICE1"
TRAILER_MAGIC = b"QCVTRAIL"
CLIP_MAGIC = b"QCVC"
FORMAT_VERSION = 1
SECTOR = 512
N_MOODS = len(MOODS)
N_SLOTS = len(SLOTS)
N_CLIPS = N_MOODS * N_SLOTS * FRAGMENTS_PER_SLOT  # 128
INDEX_OFFSET = 128
INDEX_ENTRY = struct.Struct("<IIII")  # offset, block_bytes, n_samples, block CRC-32
# magic, version, header_bytes, header_crc, file_bytes, sample_rate, bits, align, sample_bytes,
# moods, slots, fragments, gap_ms, gap_samples, idle, max_block_bytes, index_offset, n_entries,
# provenance offset, provenance length, first block offset
HEADER = struct.Struct("<8sHHIQIBBBBBBHIHxxIIIIII")
CLIP_HEADER = struct.Struct("<4sBBBBI")  # magic, mood, slot, fragment, reserved, n_samples
CLIP_CRC_BYTES = 4
TRAILER = struct.Struct("<8sQ32s")
ALIGN_RIGHT = 0  # 12-bit right-aligned in 16 bits (the CH32H417 DAC's DHR12R mode)
REBUILD_HINT = "rebuild it with `qcat phrases build`"


def clip_index(mood: int, slot: int, fragment: int) -> int:
    """Position of a clip in the index and on the card: mood-major, then slot, then fragment."""
    return (mood * N_SLOTS + slot) * FRAGMENTS_PER_SLOT + fragment


def _align(n: int) -> int:
    return -(-n // SECTOR) * SECTOR


def _crc(data: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclass(frozen=True)
class ClipEntry:
    offset: int
    block_bytes: int
    n_samples: int
    crc: int


def write_clip_bank(path: Path, clips: list[np.ndarray], sample_rate: int, gap_ms: int,
                    gap_samples: int, provenance: dict[str, Any]) -> Path:
    """Write the bank. clips: 128 uint16 arrays in clip_index order (values 0..4095)."""
    if len(clips) != N_CLIPS:
        raise ValueError(f"a clip bank holds {N_CLIPS} clips, got {len(clips)}")
    prov = json.dumps(provenance, sort_keys=True, ensure_ascii=False).encode("utf-8")
    prov_offset = INDEX_OFFSET + N_CLIPS * INDEX_ENTRY.size
    header_bytes = _align(prov_offset + len(prov))
    blocks: list[bytes] = []
    entries: list[ClipEntry] = []
    offset = header_bytes
    for i, clip in enumerate(clips):
        mood, rest = divmod(i, N_SLOTS * FRAGMENTS_PER_SLOT)
        slot, frag = divmod(rest, FRAGMENTS_PER_SLOT)
        samples = np.asarray(clip, dtype="<u2")
        if samples.size and int(samples.max()) >= 1 << DAC_BITS:
            raise ValueError(f"clip {i} holds a sample above {(1 << DAC_BITS) - 1}")
        body = CLIP_HEADER.pack(CLIP_MAGIC, mood, slot, frag, 0, samples.size) + samples.tobytes()
        size = _align(len(body) + CLIP_CRC_BYTES)
        block = bytearray(size)
        block[:len(body)] = body
        crc = _crc(block[:-CLIP_CRC_BYTES])
        block[-CLIP_CRC_BYTES:] = struct.pack("<I", crc)
        blocks.append(bytes(block))
        entries.append(ClipEntry(offset, size, samples.size, crc))
        offset += size
    file_bytes = offset + SECTOR
    header = bytearray(header_bytes)
    HEADER.pack_into(header, 0, MAGIC, FORMAT_VERSION, header_bytes, 0, file_bytes, sample_rate,
                     DAC_BITS, ALIGN_RIGHT, 2, N_MOODS, N_SLOTS, FRAGMENTS_PER_SLOT, gap_ms,
                     gap_samples, DAC_MID, max(e.block_bytes for e in entries), INDEX_OFFSET,
                     N_CLIPS, prov_offset, len(prov), header_bytes)
    for i, e in enumerate(entries):
        INDEX_ENTRY.pack_into(header, INDEX_OFFSET + i * INDEX_ENTRY.size, e.offset,
                              e.block_bytes, e.n_samples, e.crc)
    header[prov_offset:prov_offset + len(prov)] = prov
    struct.pack_into("<I", header, 12, _crc(header))
    body = bytes(header) + b"".join(blocks)
    trailer = bytearray(SECTOR)
    TRAILER.pack_into(trailer, 0, TRAILER_MAGIC, file_bytes, hashlib.sha256(body).digest())
    write_atomic(Path(path), body + bytes(trailer))
    return Path(path)


class ClipBank:
    """A verified clip bank in memory. `verdict_samples(code)` is what the unit plays."""

    def __init__(self, path: Path, sample_rate: int, gap_ms: int, gap_samples: int,
                 clips: list[np.ndarray], provenance: dict[str, Any], sha256: str) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.gap_ms = gap_ms
        self.gap_samples = gap_samples
        self.clips = clips
        self.provenance = provenance
        self.sha256 = sha256

    @classmethod
    def load(cls, path: str | Path) -> ClipBank:
        path = Path(path)
        data = read_input(path, "clip bank", hint="build it with `qcat phrases build`")
        return cls.from_bytes(data, path)

    @classmethod
    def from_bytes(cls, data: bytes, path: Path) -> ClipBank:
        def bad(what: str) -> FormatError:
            return FormatError(f"{path} is not a usable verdict clip bank: {what}",
                               hint=REBUILD_HINT)

        if len(data) < HEADER.size or data[:8] != MAGIC:
            raise bad(f"wrong magic {data[:8]!r} (expected {MAGIC!r})")
        (_, version, header_bytes, header_crc, file_bytes, rate, bits, align, sample_bytes,
         moods, slots, frags, gap_ms, gap_samples, idle, _max_block, index_offset, n_entries,
         prov_offset, prov_len, first_block) = HEADER.unpack_from(data, 0)
        if version != FORMAT_VERSION:
            raise bad(f"format version {version}, this qcat reads version {FORMAT_VERSION}")
        if header_bytes % SECTOR or header_bytes > len(data):
            raise bad(f"header size {header_bytes} is not a whole number of sectors in the file")
        header = bytearray(data[:header_bytes])
        header[12:16] = b"\0\0\0\0"
        if _crc(header) != header_crc:
            raise bad("the header CRC does not match (the header is corrupted)")
        if file_bytes != len(data):
            raise bad(f"the file is {len(data)} bytes, its header says {file_bytes} "
                      "(truncated or padded)")
        if (bits, align, sample_bytes, idle) != (DAC_BITS, ALIGN_RIGHT, 2, DAC_MID):
            raise bad(f"unsupported sample layout ({bits} bits, alignment {align})")
        if (moods, slots, frags, n_entries) != (N_MOODS, N_SLOTS, FRAGMENTS_PER_SLOT, N_CLIPS):
            raise bad(f"shape {moods}x{slots}x{frags} ({n_entries} clips), expected "
                      f"{N_MOODS}x{N_SLOTS}x{FRAGMENTS_PER_SLOT}")
        try:
            provenance = json.loads(data[prov_offset:prov_offset + prov_len].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(f"the provenance is not JSON ({exc})") from None
        trailer_at = len(data) - SECTOR
        clips: list[np.ndarray] = []
        expect_offset = first_block
        for i in range(N_CLIPS):
            e = ClipEntry(*INDEX_ENTRY.unpack_from(data, index_offset + i * INDEX_ENTRY.size))
            name = _clip_name(i)
            if (e.offset != expect_offset or e.block_bytes % SECTOR
                    or e.offset + e.block_bytes > trailer_at):
                raise bad(f"the index entry of {name} points outside the clip area")
            block = memoryview(data)[e.offset:e.offset + e.block_bytes]
            stored = struct.unpack_from("<I", block, e.block_bytes - CLIP_CRC_BYTES)[0]
            actual = _crc(block[:-CLIP_CRC_BYTES])
            if actual != stored or stored != e.crc:
                raise bad(f"clip {name} fails its CRC-32 (stored {stored:08x}, index {e.crc:08x}, "
                          f"computed {actual:08x}): the clip is corrupted")
            magic, m, s, f, _, n = CLIP_HEADER.unpack_from(block, 0)
            if magic != CLIP_MAGIC or clip_index(m, s, f) != i or n != e.n_samples:
                raise bad(f"the block at offset {e.offset} is not clip {name}")
            start = CLIP_HEADER.size
            clips.append(np.frombuffer(block[start:start + 2 * n], dtype="<u2").astype(np.uint16))
            expect_offset += e.block_bytes
        if expect_offset != trailer_at:
            raise bad("the clips do not end where the trailer begins")
        magic, t_bytes, digest = TRAILER.unpack_from(data, trailer_at)
        if magic != TRAILER_MAGIC or t_bytes != file_bytes:
            raise bad("the trailer is missing or wrong (truncated file?)")
        actual_digest = hashlib.sha256(memoryview(data)[:trailer_at]).digest()
        if actual_digest != digest:
            raise bad("the SHA-256 of the file does not match its trailer")
        return cls(path, rate, gap_ms, gap_samples, clips, provenance,
                   hashlib.sha256(data).hexdigest())

    def clip(self, mood: int, slot: int, fragment: int) -> np.ndarray:
        return self.clips[clip_index(mood, slot, fragment)]

    def verdict_clips(self, code: int) -> list[np.ndarray]:
        vc = split_code(code)
        return [self.clip(int(vc.motivated), s, f) for s, f in enumerate(vc.slots)]

    def verdict_samples(self, code: int) -> np.ndarray:
        """uint16 12-bit right-aligned: the four clips joined exactly as the unit does."""
        return join_clips(self.verdict_clips(code), self.gap_samples)

    def verdict_wav(self, code: int) -> bytes:
        """The verdict as a WAV file a person can play (16-bit PCM of the DAC samples)."""
        return wav_bytes_from_12bit(self.verdict_samples(code), self.sample_rate)

    def verdict_seconds(self, code: int) -> float:
        n = sum(c.size for c in self.verdict_clips(code)) + 3 * self.gap_samples
        return n / self.sample_rate

    def fragment_texts(self) -> list[str]:
        """The fragment texts recorded at build time, in clip order (from the provenance)."""
        return list(self.provenance.get("fragments", []))


def _clip_name(i: int) -> str:
    mood, rest = divmod(i, N_SLOTS * FRAGMENTS_PER_SLOT)
    slot, frag = divmod(rest, FRAGMENTS_PER_SLOT)
    return f"#{i} ({MOODS[mood]} {SLOTS[slot]} {frag})"
