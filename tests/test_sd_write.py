"""`qcat sd write`: promise R2, nothing destructive by accident.

The refusals are proven against a fake system (a /sys/block tree, a mount table, /proc/swaps and
/dev nodes that are plain files, all under tmp_path, handed to the CLI through QCAT_SYSROOT):
each is one sentence, exit 2, and the would-be target keeps every byte it had. The writes are
real: to an image file, to a folder, and to a real loop device where this machine has them; a
damaged read-back is named by its first differing offset, exit 1.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from firmware.cardfmt import CARD_FILES
from installation import sdwrite
from installation.errors import CheckFailed, InputError, UsageError

GB = 10**9
IMAGE_BYTES = 34 * 2**20  # the smallest FAT32 mkfs.fat makes with 512-byte clusters
DEVICE_PATTERN = b"\xa5" * 4096  # what a fake device holds before: must be there after a refusal
HAVE_FAT_TOOLS = all(shutil.which(t) for t in ("mkfs.fat", "mcopy", "mdir"))
needs_fat_tools = pytest.mark.skipif(not HAVE_FAT_TOOLS,
                                     reason="dosfstools and mtools are not installed")


@functools.cache
def _built_card(seed: int) -> tuple[tuple[str, bytes], ...]:
    """The five files of a real card, built once per seed (a small pool, the shipped demo
    weights, a synthetic clip bank): `sd write` checks what it wrote with `qcat sd verify`."""
    from installation.sdcard import build_card
    from models.weightimage import SHIPPED_DEMO
    from quantum.pool import EntropyPool
    from tests.gallery_support import write_clip_bank

    work = Path(tempfile.mkdtemp(prefix=f"qcat-sdwrite-card{seed}-"))
    clips = write_clip_bank(work / "clips.qcv")
    with EntropyPool(work / "entropy.sqlite") as pool:
        pool.store_batch(os.urandom(8192), "anu", {"source": "anu"})
        build_card(pool, SHIPPED_DEMO, clips, f"cat-{seed}", 3, work / "card")
    files = tuple((name, (work / "card" / name).read_bytes()) for name in CARD_FILES)
    shutil.rmtree(work)
    return files


def card_files(seed: int = 0) -> dict[str, bytes]:
    """The five files of a real card (distinct per seed)."""
    return dict(_built_card(seed))


def make_card_folder(folder: Path, files: dict[str, bytes] | None = None) -> Path:
    folder.mkdir(parents=True)
    for name, data in (files or card_files()).items():
        (folder / name).write_bytes(data)
    return folder


def make_card_image(path: Path, files: dict[str, bytes]) -> Path:
    """A FAT32 image made by the real tools, as `qcat sd build --out X.img` makes one."""
    with open(path, "wb") as fh:
        fh.truncate(IMAGE_BYTES)
    subprocess.run(["mkfs.fat", "-F", "32", "-s", "1", str(path)], check=True,
                   capture_output=True)
    src = path.parent / f"{path.stem}-files"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
        subprocess.run(["mcopy", "-i", str(path), str(src / name), f"::/{name}"], check=True,
                       capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    return path


@pytest.fixture(scope="module")
def card_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_FAT_TOOLS:
        pytest.skip("dosfstools and mtools are not installed")
    return make_card_image(tmp_path_factory.mktemp("card") / "card.img", card_files())


class FakeSystem:
    """A machine's disks as `sd write` reads them, under one folder: `sdwrite.SystemView.under`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.block = root / "sys" / "block"
        self.dev = root / "dev"
        self.block.mkdir(parents=True)
        self.dev.mkdir()
        (root / "proc" / "self").mkdir(parents=True)
        self.mountinfo: list[str] = []
        self.swaps: list[str] = []
        self._major = 8
        self._save()

    def disk(self, name: str, *, size: int = 32 * GB, removable: bool = True,
             partitions: int = 0, model: str = "Generic SD/MMC") -> Path:
        folder = self.block / name
        folder.mkdir()
        minor = len(list(self.block.iterdir())) * 16
        (folder / "dev").write_text(f"{self._major}:{minor}\n")
        (folder / "size").write_text(f"{size // 512}\n")
        (folder / "removable").write_text("1\n" if removable else "0\n")
        (folder / "device").mkdir()
        (folder / "device" / "model").write_text(model + "\n")
        (folder / "holders").mkdir()
        node = self.dev / name
        node.write_bytes(DEVICE_PATTERN)
        sep = "p" if name[-1].isdigit() else ""  # mmcblk0p1, sdb1: the kernel's names
        for i in range(1, partitions + 1):
            part = folder / f"{name}{sep}{i}"
            part.mkdir()
            (part / "partition").write_text(f"{i}\n")
            (part / "dev").write_text(f"{self._major}:{minor + i}\n")
            (part / "holders").mkdir()
            (self.dev / part.name).write_bytes(DEVICE_PATTERN)
        return node

    def majmin(self, name: str) -> str:
        hits = [self.block / name, *self.block.glob(f"*/{name}")]
        return next(h for h in hits if h.is_dir()).joinpath("dev").read_text().strip()

    def mount(self, name: str, mountpoint: str | Path, fstype: str = "ext4") -> None:
        n = len(self.mountinfo) + 20
        self.mountinfo.append(f"{n} 1 {self.majmin(name)} / {mountpoint} rw,relatime - {fstype} "
                              f"/dev/{name} rw")
        self._save()

    def swap(self, name: str) -> None:
        self.swaps.append(f"/dev/{name}                               partition\t1048572\t0\t-2")
        self._save()

    def _save(self) -> None:
        (self.root / "proc" / "self" / "mountinfo").write_text(
            "\n".join(["1 0 0:30 / / rw - overlay overlay rw", *self.mountinfo]) + "\n")
        (self.root / "proc" / "swaps").write_text(
            "\n".join(["Filename\tType\tSize\tUsed\tPriority", *self.swaps]) + "\n")

    def view(self) -> sdwrite.SystemView:
        return sdwrite.SystemView.under(self.root)


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    """A Raspberry Pi booted from its own SD card (mmcblk0, removable) with a card reader
    (sdb) plugged in; the CLI sees this system, not the real one."""
    fake = FakeSystem(tmp_path / "sysroot")
    fake.disk("mmcblk0", removable=True, partitions=2)
    fake.mount("mmcblk0p2", "/")
    fake.mount("mmcblk0p1", "/boot/firmware", "vfat")
    fake.disk("sdb")
    monkeypatch.setenv(sdwrite.SYSROOT_ENV, str(fake.root))
    return fake


def untouched(*nodes: Path) -> bool:
    return all(node.read_bytes() == DEVICE_PATTERN for node in nodes)


def one_sentence(stderr: str) -> str:
    """The error line; asserts it is one line with a hint and no traceback."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("qcat: error: ")]
    assert len(errors) == 1, stderr
    assert "hint: " in stderr
    return errors[0]


# ------------------------------------------------------------------------------------------------
# Refusals: one sentence, exit 2, nothing written


@needs_fat_tools
@pytest.mark.parametrize("how", ["root", "swap", "encrypted root", "home"])
def test_the_system_disk_is_refused_even_with_yes(run_qcat, card_image: Path, tmp_path: Path,
                                                  qcat_home: Path, how: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSystem(tmp_path / "sysroot")
    sda = fake.disk("sda", removable=True, partitions=2)  # a USB stick the system boots from
    fake.disk("sdb")
    if how == "root":
        fake.mount("sda2", "/")
    elif how == "swap":
        fake.swap("sda1")
    elif how == "encrypted root":  # / on dm-0, which rests on sda2
        fake.disk("dm-0", removable=False)
        (fake.block / "dm-0" / "slaves").mkdir()
        (fake.block / "dm-0" / "slaves" / "sda2").mkdir()
        fake.mount("dm-0", "/")
    else:  # the qcat home's file system
        fake.mount("sda2", qcat_home.parent)
    monkeypatch.setenv(sdwrite.SYSROOT_ENV, str(fake.root))
    r = run_qcat("sd", "write", card_image, sda, "--yes", sda)
    assert r.code == 2
    assert "is the system disk" in one_sentence(r.err)
    assert untouched(sda, fake.dev / "sda1", fake.dev / "sda2")


@needs_fat_tools
def test_a_pi_booted_from_its_card_cannot_overwrite_that_card(run_qcat, system: FakeSystem,
                                                             card_image: Path) -> None:
    node = system.dev / "mmcblk0"
    r = run_qcat("sd", "write", card_image, node, "--yes", node)
    assert r.code == 2
    assert "is the system disk (it holds /)" in one_sentence(r.err)
    assert untouched(node)


@needs_fat_tools
def test_a_non_removable_disk_is_refused_unless_yes_names_it(run_qcat, system: FakeSystem,
                                                            card_image: Path) -> None:
    node = system.disk("sdc", removable=False, model="Samsung SSD 870")
    r = run_qcat("sd", "write", card_image, node)
    assert r.code == 2
    line = one_sentence(r.err)
    assert "not a removable disk" in line and "Samsung SSD 870" in line
    assert f"--yes {node}" in r.err  # the hint names the override
    assert untouched(node)
    # the override works, and only the exact device: the bytes land
    r = run_qcat("sd", "write", card_image, node, "--yes", node)
    assert r.code == 0, r.err
    assert node.read_bytes() == card_image.read_bytes()


@needs_fat_tools
def test_a_device_with_a_mounted_partition_is_refused_even_with_yes(
        run_qcat, system: FakeSystem, card_image: Path) -> None:
    node = system.disk("sdc", partitions=1)
    system.mount("sdc1", "/media/pi/OLDCARD", "vfat")
    r = run_qcat("sd", "write", card_image, node, "--yes", node)
    assert r.code == 2
    assert "sdc1 at /media/pi/OLDCARD" in one_sentence(r.err)
    assert "umount" in r.err
    assert untouched(node, system.dev / "sdc1")


@needs_fat_tools
def test_a_device_held_by_a_mapper_volume_is_refused(run_qcat, system: FakeSystem,
                                                    card_image: Path) -> None:
    node = system.disk("sdc", partitions=1)
    (system.block / "sdc" / "sdc1" / "holders" / "dm-3").mkdir()
    r = run_qcat("sd", "write", card_image, node, "--yes", node)
    assert r.code == 2
    assert "sdc1 by dm-3" in one_sentence(r.err)
    assert untouched(node)


@needs_fat_tools
def test_a_disk_larger_than_the_configured_maximum_is_refused_unless_yes(
        run_qcat, system: FakeSystem, card_image: Path, qcat_home: Path) -> None:
    node = system.disk("sdc", size=2000 * GB, model="WD Elements")
    r = run_qcat("sd", "write", card_image, node)
    assert r.code == 2
    assert "more than the 256.0 GB a card may be (sd.max_card_bytes)" in one_sentence(r.err)
    assert untouched(node)
    # the config key moves the limit: 64 GB refuses a 128 GB card
    small = system.disk("sdd", size=128 * GB)
    (qcat_home / "qcat.toml").write_text("[sd]\nmax_card_bytes = 64_000_000_000\n")
    r = run_qcat("sd", "write", card_image, small)
    assert r.code == 2 and "more than the 64.0 GB" in one_sentence(r.err)
    assert untouched(small)
    r = run_qcat("sd", "write", card_image, node, "--yes", node, "--json")
    assert r.code == 0, r.err


@needs_fat_tools
def test_a_partition_is_refused_with_the_whole_disk_named(run_qcat, system: FakeSystem,
                                                         card_image: Path) -> None:
    system.disk("sdc", partitions=1)
    part = system.dev / "sdc1"
    r = run_qcat("sd", "write", card_image, part, "--yes", part)
    assert r.code == 2
    assert "is a partition of sdc" in one_sentence(r.err)
    assert str(system.dev / "sdc") in r.err  # the hint names the disk to give instead
    assert untouched(part, system.dev / "sdc")


@needs_fat_tools
def test_what_is_not_a_device_is_refused(run_qcat, system: FakeSystem, card_image: Path) -> None:
    stray = system.dev / "sdz"  # a regular file where a device would be (`dd of=/dev/sdz` typo)
    stray.write_bytes(DEVICE_PATTERN)
    r = run_qcat("sd", "write", card_image, stray, "--yes", stray)
    assert r.code == 2 and "is not a block device" in one_sentence(r.err)
    assert untouched(stray)
    r = run_qcat("sd", "write", card_image, system.dev / "sdq")
    assert r.code == 2 and "does not exist" in one_sentence(r.err)
    assert not (system.dev / "sdq").exists()  # never created as a file


@needs_fat_tools
def test_yes_naming_another_device_overrides_nothing(run_qcat, system: FakeSystem,
                                                    card_image: Path) -> None:
    node = system.disk("sdc", removable=False)
    sdb = system.dev / "sdb"
    r = run_qcat("sd", "write", card_image, node, "--yes", sdb)
    assert r.code == 2
    assert f"--yes {sdb} does not name the target {node}" in one_sentence(r.err)
    assert untouched(node, sdb)
    # a link to the device is the device: --yes through a /dev/disk/by-id name counts
    link = system.dev / "disk-by-id-usb-ssd"
    link.symlink_to(node)
    r = run_qcat("sd", "write", card_image, node, "--yes", link)
    assert r.code == 0, r.err


@needs_fat_tools
def test_a_device_without_yes_and_no_terminal_is_refused(run_qcat, system: FakeSystem,
                                                        card_image: Path) -> None:
    sdb = system.dev / "sdb"
    r = run_qcat("sd", "write", card_image, sdb)
    assert r.code == 2
    assert "no one is at a terminal to confirm" in one_sentence(r.err)
    assert "everything on it will be overwritten" in r.out  # shown before refusing
    assert "Generic SD/MMC" in r.out and "32.0 GB" in r.out
    assert untouched(sdb)


@needs_fat_tools
def test_a_declined_confirmation_writes_nothing(system: FakeSystem, card_image: Path) -> None:
    sdb = system.dev / "sdb"
    shown: list[sdwrite.WritePlan] = []
    with pytest.raises(InputError, match="not confirmed"):
        sdwrite.write_card(card_image, sdb, view=system.view(), show=shown.append,
                           confirm=lambda plan: False)
    assert shown and shown[0].disk is not None and shown[0].disk.name == "sdb"
    assert "        everything on it will be overwritten" in shown[0].describe()
    assert untouched(sdb)
    # a "yes" at the terminal writes it (the control: the refusal above was the answer's doing)
    sdwrite.write_card(card_image, sdb, view=system.view(), confirm=lambda plan: True)
    assert sdb.read_bytes() == card_image.read_bytes()


def test_a_source_that_is_not_a_card_is_one_sentence(run_qcat, system: FakeSystem,
                                                     tmp_path: Path) -> None:
    files = card_files()
    del files["MANIFEST.JSN"]
    partial = make_card_folder(tmp_path / "partial", files)
    target = tmp_path / "out.img"
    r = run_qcat("sd", "write", partial, target)
    assert r.code == 2
    assert "is not a qcat card: it lacks MANIFEST.JSN" in one_sentence(r.err)
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + bytes(2000))
    r = run_qcat("sd", "write", photo, target)
    assert r.code == 2 and "it is not a FAT32 image" in one_sentence(r.err)
    assert not target.exists()


@needs_fat_tools
def test_an_image_without_the_card_files_is_not_a_card(run_qcat, system: FakeSystem,
                                                       tmp_path: Path) -> None:
    files = card_files()
    del files["RESERVE.QCR"], files["JOURNAL.QCJ"]
    image = make_card_image(tmp_path / "half.img", files)
    r = run_qcat("sd", "write", image, tmp_path / "out.img")
    assert r.code == 2
    assert "lacks RESERVE.QCR and JOURNAL.QCJ" in one_sentence(r.err)
    assert not (tmp_path / "out.img").exists()


def test_a_card_folder_cannot_go_onto_a_device(run_qcat, system: FakeSystem,
                                               tmp_path: Path) -> None:
    folder = make_card_folder(tmp_path / "card")
    sdb = system.dev / "sdb"
    r = run_qcat("sd", "write", folder, sdb, "--yes", sdb)
    assert r.code == 2
    assert "only an image can" in one_sentence(r.err) and "qcat sd build --out" in r.err
    assert untouched(sdb)


# ------------------------------------------------------------------------------------------------
# Folders


def test_a_folder_that_is_not_a_card_mount_needs_yes(run_qcat, system: FakeSystem,
                                                     tmp_path: Path) -> None:
    source = make_card_folder(tmp_path / "card")
    target = tmp_path / "Documents"
    target.mkdir()
    r = run_qcat("sd", "write", source, target)
    assert r.code == 2 and "is not the mount point of a card" in one_sentence(r.err)
    assert list(target.iterdir()) == []
    r = run_qcat("sd", "write", source, target, "--yes", target)
    assert r.code == 0, r.err
    for name in CARD_FILES:
        assert (target / name).read_bytes() == (source / name).read_bytes()
    assert sorted(p.name for p in target.iterdir()) == sorted(CARD_FILES)  # no temp left


def test_a_mounted_card_folder_is_written_and_its_other_files_named(
        run_qcat, system: FakeSystem, tmp_path: Path) -> None:
    source = make_card_folder(tmp_path / "card", card_files(seed=1))
    mnt = tmp_path / "media" / "CARD"
    mnt.mkdir(parents=True)
    system.disk("sdc", partitions=1)
    system.mount("sdc1", mnt, "vfat")
    (mnt / "holiday.jpg").write_bytes(b"precious")
    (mnt / "WEIGHTS.QCW").write_bytes(b"an older card")
    r = run_qcat("sd", "write", source, mnt)
    assert r.code == 2
    assert "holds 1 other file: holiday.jpg" in one_sentence(r.err)
    assert (mnt / "WEIGHTS.QCW").read_bytes() == b"an older card"  # nothing written
    (mnt / "holiday.jpg").unlink()
    r = run_qcat("sd", "write", source, mnt)  # the card's own mount point: no --yes needed
    assert r.code == 0, r.err
    assert "overwrites WEIGHTS.QCW" in r.out
    for name in CARD_FILES:
        assert (mnt / name).read_bytes() == (source / name).read_bytes()


def test_a_folder_on_a_fixed_disk_or_the_system_disk(run_qcat, system: FakeSystem,
                                                     tmp_path: Path) -> None:
    source = make_card_folder(tmp_path / "card")
    fixed = tmp_path / "data"
    fixed.mkdir()
    system.disk("sdc", removable=False, partitions=1)
    system.mount("sdc1", fixed)
    r = run_qcat("sd", "write", source, fixed)
    assert r.code == 2 and "not from a removable disk" in one_sentence(r.err)
    boot = tmp_path / "boot"
    boot.mkdir()
    system.mount("mmcblk0p1", boot, "vfat")  # the Pi's boot partition, mounted a second time
    r = run_qcat("sd", "write", source, boot, "--yes", boot)
    assert r.code == 2 and "on the system disk mmcblk0" in one_sentence(r.err)
    assert list(fixed.iterdir()) == [] and list(boot.iterdir()) == []


@needs_fat_tools
def test_an_image_is_unpacked_into_a_card_folder(run_qcat, system: FakeSystem, card_image: Path,
                                                 tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    r = run_qcat("sd", "write", card_image, target, "--yes", target, "--json")
    assert r.code == 0, r.err
    for name, data in card_files().items():
        assert (target / name).read_bytes() == data
    import json
    summary = json.loads(r.out)
    assert summary["verified"] is True
    assert summary["bytes_written"] == sum(len(d) for d in card_files().values())


# ------------------------------------------------------------------------------------------------
# Image files


@needs_fat_tools
def test_an_image_is_written_to_an_image_file(run_qcat, system: FakeSystem, card_image: Path,
                                              tmp_path: Path) -> None:
    target = tmp_path / "copy.img"
    r = run_qcat("sd", "write", card_image, target, "--json")
    assert r.code == 0, r.err
    assert target.read_bytes() == card_image.read_bytes()
    import json
    summary = json.loads(r.out)
    assert summary == {**summary, "target": str(target), "kind": "image file",
                       "bytes_written": IMAGE_BYTES, "verified": True}
    assert summary["seconds"] >= 0
    # a card image may be overwritten without --yes; anything else may not
    r = run_qcat("sd", "write", card_image, target)
    assert r.code == 0, r.err
    other = tmp_path / "thesis.img"
    other.write_bytes(b"my thesis, as a disk image")
    r = run_qcat("sd", "write", card_image, other)
    assert r.code == 2 and "is not a qcat card image" in one_sentence(r.err)
    assert other.read_bytes() == b"my thesis, as a disk image"
    r = run_qcat("sd", "write", card_image, other, "--yes", other)
    assert r.code == 0 and other.read_bytes() == card_image.read_bytes()


def test_a_target_that_is_no_kind_of_card_is_refused(run_qcat, system: FakeSystem,
                                                     tmp_path: Path) -> None:
    source = make_card_folder(tmp_path / "card")
    r = run_qcat("sd", "write", source, tmp_path / "notes.txt")
    assert r.code == 2
    assert "neither a card folder, a block device nor a .img file" in one_sentence(r.err)
    assert not (tmp_path / "notes.txt").exists()


# ------------------------------------------------------------------------------------------------
# A damaged read-back


class Damaging(io.RawIOBase):
    """The written target as the read-back sees it, with one byte flipped at `offset`:
    the fault a failing or fake-capacity card makes."""

    def __init__(self, path: Path, offset: int) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115  (closed in close())
        self.offset = offset

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        start = self.fh.tell()
        data = bytearray(self.fh.read(n))
        if start <= self.offset < start + len(data):
            data[self.offset - start] ^= 0x01
        return bytes(data)

    def close(self) -> None:
        self.fh.close()
        super().close()


def damaging_opener(offset: int, only: str | None = None):
    def opener(path: Path) -> BinaryIO:
        if only is not None and path.name != only:
            return sdwrite.open_uncached(path)
        return Damaging(path, offset)  # type: ignore[return-value]
    return opener


@needs_fat_tools
def test_a_damaged_read_back_names_the_first_bad_offset(system: FakeSystem, card_image: Path,
                                                        tmp_path: Path) -> None:
    offset = sdwrite.CHUNK_BYTES + 12_345  # in the second chunk: the chunk offset is counted
    for target in (system.dev / "sdb", tmp_path / "copy.img"):
        with pytest.raises(CheckFailed) as err:
            sdwrite.write_card(card_image, target, view=system.view(), yes=target,
                               opener=damaging_opener(offset))
        assert err.value.exit_code == 1
        assert f"differs at byte {offset:,} (0x{offset:x})" in err.value.message
        assert str(target) in err.value.message


def test_a_damaged_file_in_a_folder_is_named(system: FakeSystem, tmp_path: Path) -> None:
    source = make_card_folder(tmp_path / "card")
    target = tmp_path / "mnt"
    target.mkdir()
    with pytest.raises(CheckFailed) as err:
        sdwrite.write_card(source, target, view=system.view(), yes=target,
                           opener=damaging_opener(700, only="RESERVE.QCR"))
    assert err.value.exit_code == 1
    assert "RESERVE.QCR differs at byte 700" in err.value.message


def test_yes_must_name_the_target_in_the_library_too(system: FakeSystem, tmp_path: Path) -> None:
    source = make_card_folder(tmp_path / "card")
    with pytest.raises(UsageError):
        sdwrite.write_card(source, tmp_path / "a.img", view=system.view(),
                           yes=tmp_path / "b.img")
    assert not (tmp_path / "a.img").exists()


# ------------------------------------------------------------------------------------------------
# A real loop device


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    backing = tmp_path / "reader.bin"
    with open(backing, "wb") as fh:
        fh.truncate(IMAGE_BYTES + 2 * 2**20)
    tool = shutil.which("losetup")
    if tool is None:
        pytest.skip("losetup is not installed")
    proc = subprocess.run([tool, "-f", "--show", str(backing)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"this machine gives no loop device: {proc.stderr.strip()}")
    dev = Path(proc.stdout.strip())
    try:
        yield dev
    finally:
        subprocess.run([tool, "-d", str(dev)], capture_output=True)


@needs_fat_tools
def test_an_image_is_written_to_a_loop_device_and_read_back(card_image: Path,
                                                            loop_device: Path) -> None:
    view = sdwrite.SystemView.host()
    seen: list[str] = []
    result = sdwrite.write_card(card_image, loop_device, view=view, yes=loop_device,
                                progress=lambda done, total, note: seen.append(note))
    assert result.verified and result.bytes_written == IMAGE_BYTES
    assert {"writing", "reading back"} <= set(seen)
    with open(loop_device, "rb") as fh:
        assert fh.read(IMAGE_BYTES) == card_image.read_bytes()
    # no --yes and no terminal: refused, whatever the device holds
    with pytest.raises(InputError, match="no one is at a terminal"):
        sdwrite.write_card(card_image, loop_device, view=view)
