"""`firmware.card`: a card's files in a folder or a FAT32 image, read and rewritten in place.

Images are made by the real tools (`mkfs.fat`, `mcopy`) and checked afterwards by the real tools
(`mtype`, `fsck.fat -n`): the pure-Python FAT32 reader must agree with them byte for byte, and
an in-place write must leave a file system they still accept.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from firmware.card import FolderCard, ImageCard, open_card
from installation.errors import FormatError, InputError

TOOLS = ("mkfs.fat", "mcopy", "mtype", "mdel", "fsck.fat")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None and not Path("/usr/sbin", t).exists() for t in TOOLS),
    reason="dosfstools and mtools are not installed (make test-deps installs them)")
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
MiB = 1024 * 1024


def tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def sh(*argv: str) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([tool(argv[0]), *argv[1:]], capture_output=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def make_image(tmp_path: Path, files: dict[str, bytes], *, fat: str = "32",
               size: int = 64 * MiB, fragment: bool = False) -> Path:
    img = tmp_path / "card.img"
    with open(img, "wb") as fh:
        fh.truncate(size)
    sh("mkfs.fat", "-F", fat, img.as_posix())
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    if fragment:  # a small file, then a hole, so the next file's chain is split in two runs
        (src / "GAP.BIN").write_bytes(os.urandom(3000))
        (src / "KEEP.BIN").write_bytes(os.urandom(600))
        sh("mcopy", "-i", img.as_posix(), (src / "GAP.BIN").as_posix(),
           (src / "KEEP.BIN").as_posix(), "::/")
        sh("mdel", "-i", img.as_posix(), "::GAP.BIN")
        # FSInfo's next-free hint back to cluster 2, so mcopy fills the hole first
        fsinfo = struct.unpack_from("<H", img.read_bytes()[:512], 48)[0] * 512
        _poke(img, fsinfo + 492, struct.pack("<I", 2))
        files = {"KEEP.BIN": (src / "KEEP.BIN").read_bytes(), **files}
    for name, data in files.items():
        (src / name).write_bytes(data)
        if name != "KEEP.BIN":
            sh("mcopy", "-i", img.as_posix(), (src / name).as_posix(), "::/")
    return img


def test_every_file_of_an_image_reads_as_its_source(tmp_path):
    files = {"WEIGHTS.QCW": os.urandom(300_000), "CLIPS.QCV": os.urandom(70_000),
             "JOURNAL.QCJ": os.urandom(5120)}
    img = make_image(tmp_path, files, fragment=True)
    card = open_card(img)
    assert isinstance(card, ImageCard)
    assert card.names() == sorted([*files, "KEEP.BIN"])
    # the hole left by GAP.BIN (6 clusters) takes the start of WEIGHTS.QCW: two runs
    assert len(card.extents("WEIGHTS.QCW")) == 2
    for name, data in files.items():
        assert card.size(name) == len(data)
        assert card.read(name) == data
        assert card.read(name.lower()) == data  # names match without regard to case
    w = files["WEIGHTS.QCW"]
    for offset, n in ((0, 1), (3000, 200), (3070, 10), (511, 2), (299_990, 100)):
        assert card.pread("WEIGHTS.QCW", offset, n) == w[offset:offset + n]


def test_pwrite_rewrites_in_place_and_the_tools_agree(tmp_path):
    files = {"WEIGHTS.QCW": os.urandom(300_000), "JOURNAL.QCJ": bytes(5120)}
    img = make_image(tmp_path, files, fragment=True)
    size_before = img.stat().st_size
    card = open_card(img)
    new = os.urandom(700)
    card.pwrite("JOURNAL.QCJ", 1000, new)  # spans a cluster boundary (1024)
    card.pwrite("WEIGHTS.QCW", 3000, b"\xaa" * 200)  # spans the two runs
    want_j = bytearray(files["JOURNAL.QCJ"])
    want_j[1000:1700] = new
    want_w = bytearray(files["WEIGHTS.QCW"])
    want_w[3000:3200] = b"\xaa" * 200
    assert sh("mtype", "-i", img.as_posix(), "::JOURNAL.QCJ").stdout == want_j
    assert sh("mcopy", "-i", img.as_posix(), "::WEIGHTS.QCW", "-").stdout == want_w
    assert open_card(img).read("JOURNAL.QCJ") == want_j
    sh("fsck.fat", "-n", img.as_posix())  # still a clean file system
    assert img.stat().st_size == size_before


def test_a_write_past_the_end_of_a_file_is_refused(tmp_path):
    img = make_image(tmp_path, {"JOURNAL.QCJ": bytes(1024)})
    card = open_card(img)
    before = img.read_bytes()
    with pytest.raises(InputError) as err:
        card.pwrite("JOURNAL.QCJ", 1000, bytes(25))
    assert "would go outside its 1,024 bytes" in err.value.message
    assert img.read_bytes() == before


def test_a_folder_card_reads_and_writes_in_place(tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    (folder / "journal.qcj").write_bytes(bytes(2048))  # as a vfat mount may show it
    (folder / "WEIGHTS.QCW").write_bytes(b"w" * 100)
    with open_card(folder) as card:
        assert isinstance(card, FolderCard)
        assert card.names() == ["JOURNAL.QCJ", "WEIGHTS.QCW"]
        inode = (folder / "journal.qcj").stat().st_ino
        card.pwrite("JOURNAL.QCJ", 512, b"entry")
        assert card.read("JOURNAL.QCJ")[512:517] == b"entry"
        assert (folder / "journal.qcj").stat().st_ino == inode  # the same file, rewritten
        assert card.size("JOURNAL.QCJ") == 2048
        with pytest.raises(InputError):
            card.pwrite("WEIGHTS.QCW", 99, b"xx")
        with pytest.raises(FormatError) as err:
            card.read("RESERVE.QCR")
        assert err.value.message == f"the card {folder} has no RESERVE.QCR"


def _fat_entry_at(img: Path, cluster: int) -> int:
    boot = img.read_bytes()[:512]
    sector, = struct.unpack_from("<H", boot, 11)
    reserved, = struct.unpack_from("<H", boot, 14)
    return reserved * sector + 4 * cluster


def _first_cluster(img: Path, name: str) -> int:
    ext = open_card(img).extents(name)[0]
    g = open_card(img).geometry  # type: ignore[attr-defined]
    return (ext.image_at - g.data_at) // g.cluster + 2


def _poke(img: Path, offset: int, data: bytes) -> None:
    with open(img, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


@pytest.mark.parametrize("damage, phrase", [
    ("cut", "WEIGHTS.QCW on {img}: its cluster chain is cut after cluster"),
    ("loop", "WEIGHTS.QCW on {img}: its cluster chain loops back to cluster"),
    ("outside", "its cluster chain is cut after cluster"),
])
def test_a_broken_cluster_chain_is_one_sentence(tmp_path, damage, phrase):
    img = make_image(tmp_path, {"WEIGHTS.QCW": os.urandom(20_000)})
    first = _first_cluster(img, "WEIGHTS.QCW")
    value = {"cut": 0, "loop": first, "outside": 0x0FFFFFF0}[damage]
    _poke(img, _fat_entry_at(img, first + 3), struct.pack("<I", value))
    with pytest.raises(FormatError) as err:
        open_card(img)
    assert phrase.format(img=img) in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("make, phrase", [
    (lambda p: p.write_bytes(b""), "shorter than a boot sector"),
    (lambda p: p.write_bytes(os.urandom(4096)), "has no boot signature"),
    (lambda p: p.write_bytes(b"\x00" * 510 + b"\x55\xaa"), "does not describe a FAT file system"),
])
def test_garbage_is_not_a_card_image(tmp_path, make, phrase):
    img = tmp_path / "card.img"
    make(img)
    with pytest.raises(FormatError) as err:
        open_card(img)
    assert err.value.message.startswith(f"{img} is not a FAT32 card image: ")
    assert phrase in err.value.message


def test_a_truncated_or_fat16_image_is_one_sentence(tmp_path):
    img = make_image(tmp_path, {"WEIGHTS.QCW": os.urandom(1000)})
    with open(img, "r+b") as fh:
        fh.truncate(32 * MiB)
    with pytest.raises(FormatError) as err:
        open_card(img)
    assert "(the image is cut short)" in err.value.message
    other = tmp_path / "fat16"
    other.mkdir()
    fat16 = make_image(other, {"A.BIN": b"a"}, fat="16", size=32 * MiB)
    with pytest.raises(FormatError) as err:
        open_card(fat16)
    assert "FAT12 or FAT16 file system" in err.value.message


def test_what_is_neither_folder_nor_image_is_refused(tmp_path):
    with pytest.raises(InputError) as err:
        open_card(tmp_path / "nowhere.img")
    assert err.value.message == f"card {tmp_path / 'nowhere.img'} does not exist"
