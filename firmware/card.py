"""A unit's SD card as its five files, given as a folder (a mounted card) or a FAT32 image.

The unit and the controller see a card the same way: a few files of fixed size (docs/formats.md,
"A unit's SD card"), read anywhere and rewritten in place, never grown. `open_card(path)` gives
that view of a folder or of a FAT32 image file (or a card's block device): `names()`, `size()`,
`read()`, `pread()`, `pwrite()`. For an image the FAT32 file system is parsed here in pure Python
(boot sector, FAT, the root directory's cluster chain, 8.3 entries), each file mapped to its
cluster runs and read or written through them with `os.pread`/`os.pwrite` on the image, so
`qcat sd verify`, `qcat sd reconcile` and the simulator's board reach an image without mounting
it (no root, no loop device).

What this module must never do: allocate a cluster, change the FAT or a directory entry, or
write outside a file's existing bytes: exactly what a unit's firmware may do, and no more.
"""

from __future__ import annotations

import os
import stat
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from installation.errors import FormatError, InputError

REBUILD_HINT = "build the card again with `qcat sd build`"
# FAT32 by definition has at least this many clusters (Microsoft's FAT specification).
FAT32_MIN_CLUSTERS = 65525
FAT_ENTRY_MASK = 0x0FFFFFFF
END_OF_CHAIN = 0x0FFFFFF8  # this value and above end a chain
BAD_CLUSTER = 0x0FFFFFF7
DIR_ENTRY = 32
ATTR_VOLUME = 0x08
ATTR_DIRECTORY = 0x10
ATTR_LFN = 0x0F
DELETED = 0xE5
# A name whose first byte really is 0xE5 is stored with 0x05 there.
KANJI_E5 = 0x05

# Boot sector fields (offsets in the BPB, little-endian), named as in the FAT specification.
_BPB = struct.Struct("<3s8sHBHBHHBHHHII")  # jump .. BPB_TotSec32
_BPB32 = struct.Struct("<IHHI")  # BPB_FATSz32, BPB_ExtFlags, BPB_FSVer, BPB_RootClus
_BPB32_AT = 36


class Card(ABC):
    """A card's files; `name` is an 8.3 name such as "JOURNAL.QCJ" (case does not matter)."""

    path: Path

    @abstractmethod
    def names(self) -> list[str]:
        """The files in the card's root, upper-case 8.3 names, sorted."""

    @abstractmethod
    def size(self, name: str) -> int: ...

    @abstractmethod
    def pread(self, name: str, offset: int, n: int) -> bytes:
        """`n` bytes from `offset` (fewer only at the end of the file)."""

    @abstractmethod
    def _write_at(self, name: str, offset: int, data: bytes) -> None: ...

    def read(self, name: str) -> bytes:
        return self.pread(name, 0, self.size(name))

    def has(self, name: str) -> bool:
        return name.upper() in self.names()

    def pwrite(self, name: str, offset: int, data: bytes) -> None:
        """Rewrite bytes of a file in place and flush them to the medium (fsync): within the
        file's existing size only, as a unit does; never allocates."""
        size = self.size(name)
        if offset < 0 or offset + len(data) > size:
            raise InputError(f"writing {len(data):,} bytes at offset {offset:,} of {name} would "
                             f"go outside its {size:,} bytes; a card's files never grow")
        if data:
            self._write_at(name, offset, data)

    def close(self) -> None:  # noqa: B027  (nothing to release: no descriptor outlives a call)
        """Nothing is held open between calls; kept for the context-manager shape."""

    def __enter__(self) -> Card:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _missing(self, name: str) -> FormatError:
        return FormatError(f"the card {self.path} has no {name.upper()}", hint=REBUILD_HINT)


def open_card(path: str | os.PathLike[str]) -> Card:
    """A folder (a mounted card), or a FAT32 image file or block device; one sentence else."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"card {p} does not exist",
                         hint="give a card's folder or a .img made by `qcat sd build`") from None
    except OSError as exc:
        raise InputError(f"cannot look at card {p}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        return FolderCard(p)
    if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
        return ImageCard(p)
    raise InputError(f"card {p} is neither a folder nor a card image",
                     hint="give a card's folder or a .img made by `qcat sd build`")


class FolderCard(Card):
    """A mounted card (or the folder `qcat sd build --out DIR` wrote): its regular files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _files(self) -> dict[str, Path]:
        # a vfat mount may show 8.3 names in lower case: match them without regard to case
        try:
            return {e.name.upper(): Path(e.path) for e in os.scandir(self.path)
                    if e.is_file(follow_symlinks=False)}
        except OSError as exc:
            raise InputError(f"cannot read the card folder {self.path}: {exc.strerror}") \
                from None

    def _file(self, name: str) -> Path:
        found = self._files().get(name.upper())
        if found is None:
            raise self._missing(name)
        return found

    def names(self) -> list[str]:
        return sorted(self._files())

    def size(self, name: str) -> int:
        return self._file(name).stat().st_size

    def pread(self, name: str, offset: int, n: int) -> bytes:
        fd = os.open(self._file(name), os.O_RDONLY)
        try:
            return _pread_all(fd, n, offset)
        finally:
            os.close(fd)

    def _write_at(self, name: str, offset: int, data: bytes) -> None:
        path = self._file(name)
        try:
            fd = os.open(path, os.O_WRONLY)  # no O_CREAT, no O_TRUNC: in place only
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror}") from None
        try:
            _pwrite_all(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Geometry:
    """What the boot sector says, in bytes from the start of the image."""

    sector: int  # bytes per sector
    cluster: int  # bytes per cluster
    fat_at: int  # the first FAT
    data_at: int  # cluster 2
    clusters: int  # data clusters (numbered 2 .. clusters + 1)
    root_cluster: int


@dataclass(frozen=True)
class Extent:
    """A file's bytes [file_at, file_at + length) lie at image offset `image_at`."""

    file_at: int
    image_at: int
    length: int


class ImageCard(Card):
    """A FAT32 image: parsed once at open; reads and writes go through each file's extents."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise InputError(f"cannot read card image {path}: {exc.strerror}") from None
        try:
            self.geometry = self._geometry(_pread_all(fd, 512, 0), os.fstat(fd).st_size
                                           if stat.S_ISREG(os.fstat(fd).st_mode) else None)
            self._fat = self._read_fat(fd)
            self._files: dict[str, tuple[int, list[Extent]]] = {}
            self._read_root(fd)
        finally:
            os.close(fd)

    def _bad(self, what: str) -> FormatError:
        return FormatError(f"{self.path} is not a FAT32 card image: {what}", hint=REBUILD_HINT)

    def _geometry(self, boot: bytes, file_size: int | None) -> Geometry:
        if len(boot) < 512:
            raise self._bad(f"it is {len(boot)} bytes, shorter than a boot sector")
        if boot[510:512] != b"\x55\xaa":
            raise self._bad("its first sector has no boot signature (55 AA)")
        (_, _, sector, per_cluster, reserved, n_fats, root_entries, total16, _, fat16, _, _, _,
         total32) = _BPB.unpack_from(boot)
        fat32, _, _, root_cluster = _BPB32.unpack_from(boot, _BPB32_AT)
        if sector not in (512, 1024, 2048, 4096) or per_cluster == 0 or \
                per_cluster & (per_cluster - 1) or reserved == 0 or n_fats == 0:
            raise self._bad("its boot sector does not describe a FAT file system")
        if fat16 != 0 or root_entries != 0 or fat32 == 0:
            raise self._bad("it is a FAT12 or FAT16 file system (a unit reads FAT32 only)")
        total = total32 or total16
        data_sectors = total - reserved - n_fats * fat32
        clusters = data_sectors // per_cluster if data_sectors > 0 else 0
        if clusters < FAT32_MIN_CLUSTERS:
            raise self._bad(f"it has {clusters:,} clusters, too few for FAT32")
        if file_size is not None and file_size < total * sector:
            raise self._bad(f"it is {file_size:,} bytes, but its file system needs "
                            f"{total * sector:,} (the image is cut short)")
        if not 2 <= root_cluster < clusters + 2:
            raise self._bad(f"its root directory starts at cluster {root_cluster}, outside "
                            "the volume")
        return Geometry(sector, sector * per_cluster, reserved * sector,
                        (reserved + n_fats * fat32) * sector, clusters, root_cluster)

    def _read_fat(self, fd: int) -> list[int]:
        g = self.geometry
        raw = _pread_all(fd, 4 * (g.clusters + 2), g.fat_at)
        return [e & FAT_ENTRY_MASK for e in struct.unpack(f"<{g.clusters + 2}I", raw)]

    def _chain(self, first: int, what: str) -> list[int]:
        """The clusters of a chain, in order; FormatError if it is cut or loops."""
        g = self.geometry
        chain: list[int] = []
        seen: set[int] = set()
        cluster = first
        while True:
            if not 2 <= cluster < g.clusters + 2:
                at = f" after cluster {chain[-1]}" if chain else ""
                raise FormatError(f"{what} on {self.path}: its cluster chain is cut{at} (it "
                                  f"points at cluster {cluster}, outside the volume)",
                                  hint=REBUILD_HINT)
            if cluster in seen:
                raise FormatError(f"{what} on {self.path}: its cluster chain loops back to "
                                  f"cluster {cluster}", hint=REBUILD_HINT)
            seen.add(cluster)
            chain.append(cluster)
            nxt = self._fat[cluster]
            if nxt >= END_OF_CHAIN:
                return chain
            if nxt in (0, BAD_CLUSTER):
                state = "free" if nxt == 0 else "bad"
                raise FormatError(f"{what} on {self.path}: its cluster chain is cut after "
                                  f"cluster {cluster} (the FAT marks the next one {state})",
                                  hint=REBUILD_HINT)
            cluster = nxt

    def _extents(self, chain: list[int], size: int) -> list[Extent]:
        g = self.geometry
        extents: list[Extent] = []
        for i, cluster in enumerate(chain):
            file_at = i * g.cluster
            length = min(g.cluster, size - file_at)
            if length <= 0:
                break
            image_at = g.data_at + (cluster - 2) * g.cluster
            last = extents[-1] if extents else None
            if last and last.image_at + last.length == image_at:  # contiguous: one run
                extents[-1] = Extent(last.file_at, last.image_at, last.length + length)
            else:
                extents.append(Extent(file_at, image_at, length))
        return extents

    def _read_root(self, fd: int) -> None:
        g = self.geometry
        root = self._chain(g.root_cluster, "the root directory")
        for cluster in root:
            block = _pread_all(fd, g.cluster, g.data_at + (cluster - 2) * g.cluster)
            for at in range(0, len(block), DIR_ENTRY):
                entry = block[at:at + DIR_ENTRY]
                if entry[0] == 0:
                    return  # end of directory
                attr = entry[11]
                if entry[0] == DELETED or attr & ATTR_LFN == ATTR_LFN or \
                        attr & (ATTR_VOLUME | ATTR_DIRECTORY):
                    continue
                name = _short_name(entry)
                hi, lo, size = struct.unpack_from("<H4xHI", entry, 20)
                first = hi << 16 | lo
                if size == 0:
                    self._files[name] = (0, [])
                    continue
                chain = self._chain(first, name)
                if len(chain) * g.cluster < size:
                    raise FormatError(f"{name} on {self.path}: its cluster chain holds "
                                      f"{len(chain) * g.cluster:,} bytes, the file says "
                                      f"{size:,} (the chain is cut)", hint=REBUILD_HINT)
                if (len(chain) - 1) * g.cluster >= size:
                    raise FormatError(f"{name} on {self.path}: its cluster chain is longer "
                                      f"than its {size:,} bytes", hint=REBUILD_HINT)
                self._files[name] = (size, self._extents(chain, size))

    def _entry(self, name: str) -> tuple[int, list[Extent]]:
        found = self._files.get(name.upper())
        if found is None:
            raise self._missing(name)
        return found

    def names(self) -> list[str]:
        return sorted(self._files)

    def size(self, name: str) -> int:
        return self._entry(name)[0]

    def extents(self, name: str) -> list[Extent]:
        """Where a file's bytes lie in the image (one per contiguous run of clusters)."""
        return list(self._entry(name)[1])

    def _pieces(self, name: str, offset: int, n: int) -> list[tuple[int, int, int]]:
        """(image offset, length, offset in the request) of file bytes [offset, offset + n)."""
        out = []
        stop = offset + n
        for e in self._entry(name)[1]:
            lo, hi = max(offset, e.file_at), min(stop, e.file_at + e.length)
            if lo < hi:
                out.append((e.image_at + lo - e.file_at, hi - lo, lo - offset))
        return out

    def pread(self, name: str, offset: int, n: int) -> bytes:
        size = self.size(name)
        n = max(0, min(n, size - offset))
        buf = bytearray(n)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for image_at, length, at in self._pieces(name, offset, n):
                buf[at:at + length] = _pread_all(fd, length, image_at)
        finally:
            os.close(fd)
        return bytes(buf)

    def _write_at(self, name: str, offset: int, data: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError as exc:
            raise InputError(f"cannot write card image {self.path}: {exc.strerror}") from None
        try:
            for image_at, length, at in self._pieces(name, offset, len(data)):
                _pwrite_all(fd, data[at:at + length], image_at)
            os.fsync(fd)
        finally:
            os.close(fd)


def _short_name(entry: bytes) -> str:
    """ "JOURNAL QCJ" -> "JOURNAL.QCJ" (a leading 0x05 stands for 0xE5)."""
    raw = bytearray(entry[:11])
    if raw[0] == KANJI_E5:
        raw[0] = DELETED
    base = raw[:8].decode("latin-1").rstrip()
    ext = raw[8:11].decode("latin-1").rstrip()
    return f"{base}.{ext}" if ext else base


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    parts = []
    while n > 0:
        chunk = os.pread(fd, n, offset)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view = view[done:]
        offset += done
