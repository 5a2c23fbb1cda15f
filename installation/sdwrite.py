"""`qcat sd write SOURCE TARGET`: put a built card onto a unit's microSD card, safely (R2).

SOURCE is a card as `qcat sd build` makes it: a folder holding the five files of
`firmware.cardfmt.CARD_FILES`, or a FAT32 image of them (`.img`). TARGET is one of

- a block device (`/dev/sdX`, `/dev/mmcblkN`, `/dev/loopN`): the image, written whole in
  `CHUNK_BYTES` pieces (no partition table: a card is a FAT32 "superfloppy"), fsynced, then read
  back from the device itself and compared byte for byte;
- a folder (a mounted card): the five files, each written atomically (temporary name, fsync,
  rename), the manifest last, so a card pulled out half-way never shows a manifest that describes
  files it does not hold; then every file read back and compared;
- a `.img` file: the image, as for a device, written atomically.

Why so many refusals: this command overwrites whatever TARGET names, and a one-letter typo in
`/dev/sdX` can name the disk the controller runs from. Every check is decided *before* a byte is
written, from a `SystemView` (where /sys/block, the mount table and /proc/swaps are, and how to
tell a block device): the system disk and mounted filesystems are refused always; a
non-removable or unusually large disk, or a folder that is not a card's mount point or holds
other files, only unless `--yes` names exactly that TARGET. A device is never written without
`--yes` or a person's "yes" at a terminal (the `confirm` callback).

Why the read-back bypasses the page cache (`posix_fadvise(DONTNEED)` after fsync): otherwise it
would compare the kernel's copy of what we wrote, not what the card holds; a fake-capacity card
that silently wraps writes around is exactly what this must catch.

A library: it takes paths and callbacks, never prints, never reads the config; the CLI
(`installation/commands/sd.py`) passes the maximum card size, the prompt and the progress bar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from firmware.cardfmt import CARD_FILES
from installation.errors import CheckFailed, InputError, QcatError, ToolMissing, UsageError
from installation.files import atomic_path, write_atomic
from installation.progress import ProgressCallback
from installation.words import plural

if TYPE_CHECKING:
    from firmware.card import Card

CHUNK_BYTES = 4 * 2**20  # a device is written and read back in pieces of this size
SECTOR = 512  # /sys/block/X/size counts 512-byte sectors whatever the device's own sector size
DEFAULT_MAX_CARD_BYTES = 256 * 10**9  # the `sd.max_card_bytes` default: a card, not a backup disk
FAT32_LABEL_AT = 82  # a FAT32 boot sector's file-system type, b"FAT32   ", at this offset
FAT32_LABEL = b"FAT32   "
BOOT_SIGNATURE_AT = 510
BOOT_SIGNATURE = b"\x55\xaa"
SYSTEM_MOUNTS = ("/", "/boot", "/boot/firmware", "/boot/efi", "/usr", "/var")
TOOL_TIMEOUT_S = 10.0  # blkid and mtools on a card: seconds before we give up on them
SHOWN_OTHER_FILES = 8  # a refused folder names at most this many of the files it holds

SYSROOT_ENV = "QCAT_SYSROOT"  # the CLI reads a fake system tree from here (tests, chroots)


class TargetKind(StrEnum):
    DEVICE = "device"
    FOLDER = "folder"
    IMAGE = "image file"


class SourceKind(StrEnum):
    FOLDER = "folder"
    IMAGE = "image"


# ------------------------------------------------------------------------------------------------
# The system as this command sees it


@dataclass(frozen=True)
class Mount:
    source: str        # "/dev/sdb1", "overlay", "tmpfs"
    mountpoint: str
    majmin: str | None  # "8:17" (mountinfo only; /proc/mounts has no device numbers)


@dataclass(frozen=True)
class Disk:
    """A whole disk in /sys/block: what the refusals and the confirmation need of it."""

    name: str
    path: Path  # its /sys/block folder
    majmin: str | None
    removable: bool
    size_bytes: int
    model: str
    partitions: tuple[tuple[str, str | None], ...]  # (name, "maj:min")

    @property
    def loop(self) -> bool:
        return self.name.startswith("loop")


def _is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(path.stat().st_mode)
    except OSError:
        return False


def _blkid(path: Path) -> str | None:
    """What a device holds now, as blkid sees it ("vfat, label QCAT"), or None where it cannot say."""
    tool = shutil.which("blkid")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "-o", "export", str(path)], capture_output=True, text=True,
                             timeout=TOOL_TIMEOUT_S, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    tags = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if not tags:
        return "no file system blkid recognises"
    parts = [tags.get("TYPE") or tags.get("PTTYPE", "unknown")]
    if "PTTYPE" in tags and "TYPE" in tags:
        parts.append(f"{tags['PTTYPE']} partition table")
    if tags.get("LABEL"):
        parts.append(f"label {tags['LABEL']}")
    return ", ".join(parts)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _unescape(field_: str) -> str:
    r"""Mount tables escape spaces and friends as octal (`\040`)."""
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and field_[i + 1:i + 4].isdigit():
            out.append(chr(int(field_[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class SystemView:
    """Where this command looks to decide what a TARGET is and whether it may be written.

    `SystemView.host()` is the machine itself; `SystemView.under(root)` reads a fake tree
    (`root/sys/block`, `root/proc/self/mountinfo`, `root/proc/swaps`, `root/dev`) in which a
    device node is any file whose name /sys/block knows, so the refusals can be proven without
    a real disk. `home` is the qcat home: the disk that holds it is a system disk too.
    """

    sys_block: Path = Path("/sys/block")
    mounts: Path = Path("/proc/self/mountinfo")
    swaps: Path = Path("/proc/swaps")
    dev: Path = Path("/dev")
    home: Path | None = None
    is_block_device: Callable[[Path], bool] = _is_block_device
    contents: Callable[[Path], str | None] = _blkid  # what is on a device now, for the prompt

    @classmethod
    def host(cls, home: Path | None = None) -> SystemView:
        mounts = Path("/proc/self/mountinfo")
        return cls(mounts=mounts if mounts.exists() else Path("/proc/mounts"), home=home)

    @classmethod
    def under(cls, root: Path, home: Path | None = None) -> SystemView:
        sys_block = root / "sys" / "block"

        def known(path: Path) -> bool:
            return path.is_file() and (
                (sys_block / path.name).is_dir() or any(sys_block.glob(f"*/{path.name}/partition")))

        return cls(sys_block=sys_block, mounts=root / "proc" / "self" / "mountinfo",
                   swaps=root / "proc" / "swaps", dev=root / "dev", home=home,
                   is_block_device=known, contents=lambda path: None)

    # -- reading the tables --------------------------------------------------------------------

    def mount_table(self) -> list[Mount]:
        """Every mount, from mountinfo (with device numbers) or /proc/mounts (without)."""
        try:
            lines = self.mounts.read_text().splitlines()
        except OSError:
            return []
        table = []
        for line in lines:
            fields = line.split()
            if " - " in line:  # mountinfo: id parent maj:min root mountpoint ... - type source ...
                post = line.split(" - ", 1)[1].split()
                if len(fields) >= 5 and len(post) >= 2:
                    table.append(Mount(_unescape(post[1]), _unescape(fields[4]), fields[2]))
            elif len(fields) >= 2:  # /proc/mounts: source mountpoint type options ...
                table.append(Mount(_unescape(fields[0]), _unescape(fields[1]), None))
        return table

    def swap_devices(self) -> list[str]:
        try:
            lines = self.swaps.read_text().splitlines()[1:]  # the first line is a heading
        except OSError:
            return []
        return [line.split()[0] for line in lines if line.split()]

    def disk(self, name: str) -> Disk | None:
        folder = self.sys_block / name
        if not folder.is_dir():
            return None
        try:
            sectors = int(_read(folder / "size") or 0)
        except ValueError:
            sectors = 0
        parts = tuple(sorted((p.name, _read(p / "dev") or None) for p in folder.iterdir()
                             if (p / "partition").is_file()))
        model = " ".join(x for x in (_read(folder / "device" / "vendor"),
                                     _read(folder / "device" / "model"),
                                     _read(folder / "device" / "name")) if x)
        return Disk(name=name, path=folder, majmin=_read(folder / "dev") or None,
                    removable=_read(folder / "removable") == "1", size_bytes=sectors * SECTOR,
                    model=model, partitions=parts)

    def disks(self) -> list[Disk]:
        try:
            names = sorted(p.name for p in self.sys_block.iterdir())
        except OSError:
            return []
        return [d for d in map(self.disk, names) if d is not None]

    def parent_disk(self, name: str) -> str | None:
        """The disk a partition `name` belongs to ("sdb1" -> "sdb"), None if it is not one."""
        for hit in self.sys_block.glob(f"*/{name}/partition"):
            return hit.parent.parent.name
        return None

    # -- what a node is ------------------------------------------------------------------------

    def node_of(self, source: str, majmin: str | None) -> str | None:
        """The /sys/block name (disk or partition) a mount or swap source lives on."""
        nodes: dict[str, str] = {}
        for d in self.disks():
            if d.majmin:
                nodes[d.majmin] = d.name
            for pname, pdev in d.partitions:
                if pdev:
                    nodes[pdev] = pname
        if majmin and majmin in nodes:
            return nodes[majmin]
        if not source.startswith("/"):
            return None  # overlay, tmpfs, proc: no disk under them
        name = Path(source).name
        real = Path(os.path.realpath(source)).name  # /dev/disk/by-uuid/... and /dev/mapper/x
        for candidate in (real, name):
            if (self.sys_block / candidate).is_dir() or self.parent_disk(candidate):
                return candidate
        return None

    def disks_under(self, node: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """The physical disks a node rests on: a partition's disk, and through `slaves/` the
        disks under a device-mapper or RAID volume (an encrypted root is on the system disk)."""
        if node in seen:
            return set()
        disk = self.parent_disk(node) or node
        slaves_dir = self.sys_block / disk / "slaves"
        slaves = list(slaves_dir.iterdir()) if slaves_dir.is_dir() else []
        if not slaves:
            return {disk} if (self.sys_block / disk).is_dir() else set()
        found: set[str] = set()
        for s in slaves:
            found |= self.disks_under(s.name, seen | {node})
        return found

    def system_disks(self) -> dict[str, str]:
        """{disk name: why it is a system disk}: the disks under /, /boot, /usr, ..., the qcat
        home and every swap area."""
        table = self.mount_table()
        wanted: dict[str, str] = {m: m for m in SYSTEM_MOUNTS}
        if self.home is not None:
            home = str(self.home)
            best = max((m.mountpoint for m in table
                        if home == m.mountpoint or home.startswith(m.mountpoint.rstrip("/") + "/")),
                       key=len, default=None)
            if best is not None:
                wanted.setdefault(best, f"the qcat home {home}")
        found: dict[str, str] = {}
        for m in table:
            if m.mountpoint in wanted:
                node = self.node_of(m.source, m.majmin)
                for d in self.disks_under(node) if node else ():
                    found.setdefault(d, f"it holds {wanted[m.mountpoint]}")
        for swap in self.swap_devices():
            node = self.node_of(swap, None)
            for d in self.disks_under(node) if node else ():
                found.setdefault(d, f"it holds the swap area {swap}")
        return found

    def uses_of(self, disk: Disk) -> list[str]:
        """Where the disk or any partition of it is in use: mounted ("sdb1 at /media/x"), or
        held by a device-mapper/RAID volume ("sdb1 by dm-0"), which may be mounted itself."""
        names = {disk.name} | {p for p, _ in disk.partitions}
        uses = []
        holders: set[str] = set()
        for n in sorted(names):
            folder = self.sys_block / disk.name / n if n != disk.name else self.sys_block / n
            hdir = folder / "holders"
            for h in sorted(hdir.iterdir()) if hdir.is_dir() else []:
                holders.add(h.name)
                uses.append(f"{n} by {h.name}")
        for m in self.mount_table():
            node = self.node_of(m.source, m.majmin)
            if node in names or node in holders:
                uses.append(f"{node} at {m.mountpoint}")
        return uses


# ------------------------------------------------------------------------------------------------
# The source card


def open_image(path: Path) -> Card:
    """The files of a card image (`firmware.card`'s pure-Python FAT32 reader)."""
    from firmware.card import open_card

    return open_card(path)


@dataclass(frozen=True)
class SourceCard:
    path: Path
    kind: SourceKind
    size: int  # the image's bytes, or the five files' bytes added up

    def files(self) -> Iterator[tuple[str, bytes]]:
        """(name, bytes) of the five files in `CARD_FILES` order, the manifest last."""
        if self.kind is SourceKind.FOLDER:
            for name in CARD_FILES:
                yield name, (self.path / name).read_bytes()
            return
        image = open_image(self.path)
        try:
            for name in CARD_FILES:
                yield name, image.read(name)
        finally:
            image.close()


def _looks_fat32(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            boot = fh.read(SECTOR)
    except OSError:
        return False
    return (len(boot) == SECTOR and boot[BOOT_SIGNATURE_AT:] == BOOT_SIGNATURE
            and boot[FAT32_LABEL_AT:FAT32_LABEL_AT + len(FAT32_LABEL)] == FAT32_LABEL)


def _missing_in_image(path: Path) -> list[str]:
    """The card files a FAT32 image lacks (names compared as FAT compares them, ignoring case)."""
    image = open_image(path)
    try:
        present = {str(n).upper() for n in image.names()}
    finally:
        image.close()
    return [n for n in CARD_FILES if n not in present]


def is_card_image(path: Path) -> bool:
    """A FAT32 image holding the five card files: what `sd write` may overwrite without --yes."""
    if not _looks_fat32(path):
        return False
    try:
        return not _missing_in_image(path)
    except (InputError, ToolMissing):
        return False


NOT_A_CARD_HINT = (f"a card is the folder or .img that `qcat sd build` writes, holding "
                   f"{', '.join(CARD_FILES)}")


def load_source(path: Path) -> SourceCard:
    """SOURCE checked to be a card (by its file names only: the files' contents are
    `qcat sd verify`'s business); InputError in one sentence otherwise."""
    if not path.exists():
        raise InputError(f"card {path} does not exist", hint=NOT_A_CARD_HINT)
    if path.is_dir():
        missing = [n for n in CARD_FILES if not (path / n).is_file()]
        if missing:
            raise InputError(f"{path} is not a qcat card: it lacks {_listed(missing)}",
                             hint=NOT_A_CARD_HINT)
        return SourceCard(path, SourceKind.FOLDER, sum((path / n).stat().st_size
                                                       for n in CARD_FILES))
    if not path.is_file():
        raise InputError(f"card {path} is neither a folder nor an image file", hint=NOT_A_CARD_HINT)
    if not _looks_fat32(path):
        raise InputError(f"{path} is not a qcat card image: it is not a FAT32 image",
                         hint=NOT_A_CARD_HINT)
    missing = _missing_in_image(path)
    if missing:
        raise InputError(f"{path} is not a qcat card image: it lacks {_listed(missing)}",
                         hint=NOT_A_CARD_HINT)
    return SourceCard(path, SourceKind.IMAGE, path.stat().st_size)


def _listed(names: list[str], limit: int | None = None) -> str:
    """"A, B and C", or "A, B and 3 more" past `limit`."""
    shown = names if limit is None else names[:limit]
    if len(names) > len(shown):
        return ", ".join(shown) + f" and {len(names) - len(shown)} more"
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]


# ------------------------------------------------------------------------------------------------
# The plan: every check, nothing written


@dataclass(frozen=True)
class WritePlan:
    """What `write_card` is about to do, shown to the person before a byte is written."""

    source: SourceCard
    target: Path
    kind: TargetKind
    disk: Disk | None = None          # a device target
    contents: str | None = None       # what a device holds now (blkid), where known
    overwritten: tuple[str, ...] = ()  # a folder's card files that will be replaced
    kept: tuple[str, ...] = ()         # a folder's other files (--yes given), left alone
    replaces_file: bool = False       # an image target that exists
    needs_confirmation: bool = False  # a device written without --yes
    unreconciled: UnreconciledCard | None = None  # the card there now (--yes given)

    def describe(self) -> list[str]:
        """Lines for a person: what will be overwritten."""
        src = f"{self.source.path} ({self.source.kind}, {plural(self.source.size, 'byte')})"
        lines = [f"source  {src}"]
        if self.kind is TargetKind.DEVICE and self.disk is not None:
            lines.append(f"target  {self.target}: {self.disk.model or 'unknown model'}, "
                         f"{_size(self.disk.size_bytes)}"
                         f"{', removable' if self.disk.removable else ''}")
            if self.contents:
                lines.append(f"        holds now: {self.contents}")
            lines.append("        everything on it will be overwritten")
        elif self.kind is TargetKind.FOLDER:
            lines.append(f"target  folder {self.target}")
            if self.overwritten:
                lines.append(f"        overwrites {_listed(list(self.overwritten))}")
            if self.kept:
                lines.append(f"        leaves alone {_listed(list(self.kept), SHOWN_OTHER_FILES)}")
        else:
            verb = "overwrites" if self.replaces_file else "creates"
            lines.append(f"target  {verb} image file {self.target}")
        if self.unreconciled is not None:
            u = self.unreconciled
            lines.append(f"        loses unit {u.unit}'s {plural(u.spent, 'offline exhibit')}, "
                         f"never reconciled (lease {u.lease_id})")
        return lines


def _size(n: int) -> str:
    """Cards are sold in decimal GB; images are counted in MiB."""
    return f"{n / 10**9:.1f} GB" if n >= 10**9 else f"{n / 2**20:.1f} MiB"


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


@dataclass(frozen=True)
class UnreconciledCard:
    """A card on the target whose journal holds offline exhibits the pool has not taken in."""

    unit: str
    lease_id: str
    spent: int


# (lease id, records its journal spent) -> has `qcat sd reconcile` taken them in?
Reconciled = Callable[[str, int], bool]


def unreconciled_card(target: Path, reconciled: Reconciled) -> UnreconciledCard | None:
    """The card TARGET holds now, if its journal spent records that `reconciled` does not
    know: overwriting it would lose those exhibits and keep the unused records from ever
    going back to the pool. A target that holds no readable card is None."""
    from firmware import cardfmt
    from firmware.card import open_card

    try:
        with open_card(target) as card:
            header = cardfmt.read_reserve_header(card.pread(cardfmt.RESERVE, 0, cardfmt.SECTOR))
            journal = cardfmt.read_journal(card.read(cardfmt.JOURNAL), header)
    except (QcatError, OSError):
        return None  # no card there, or one too damaged to be reconciled anyway
    if journal.spent == 0 or reconciled(header.lease_id.hex(), journal.spent):
        return None
    return UnreconciledCard(header.serial, header.lease_id.hex(), journal.spent)


def plan_write(source: Path, target: Path, *, view: SystemView, yes: Path | None = None,
               max_card_bytes: int = DEFAULT_MAX_CARD_BYTES,
               reconciled: Reconciled | None = None) -> WritePlan:
    """Decide whether SOURCE may be written to TARGET: a `WritePlan`, or the one refusal
    (InputError/UsageError, exit 2). Reads the system view and the source; writes nothing.
    With `reconciled`, a target holding a card whose offline exhibits were not reconciled is
    refused unless `yes` names it."""
    plan = _plan(source, target, view=view, yes=yes, max_card_bytes=max_card_bytes)
    if reconciled is not None:
        pending = unreconciled_card(Path(os.path.realpath(target)), reconciled)
        if pending is not None and yes is None:
            raise InputError(f"{target} holds the card of unit {pending.unit} with "
                             f"{plural(pending.spent, 'offline exhibit')} not yet reconciled "
                             f"(lease {pending.lease_id})",
                             hint=f"run `qcat sd reconcile {target}` first, or add --yes {target} "
                                  "to throw them away")
        plan = dataclasses.replace(plan, unreconciled=pending)
    return plan


def _plan(source: Path, target: Path, *, view: SystemView, yes: Path | None,
          max_card_bytes: int) -> WritePlan:
    if yes is not None and not _same(yes, target):
        raise UsageError(f"--yes {yes} does not name the target {target}",
                         hint=f"--yes must name the target itself: --yes {target}")
    card = load_source(source)
    if _same(source, target):
        raise UsageError(f"the source and the target are the same file, {target}",
                         hint="name the card (or image file) to write as TARGET")
    real = Path(os.path.realpath(target))
    under_dev = str(target).startswith("/dev/") or real.is_relative_to(view.dev)
    if under_dev or (real.exists() and view.is_block_device(real)):
        return _plan_device(card, target, real, view, yes is not None, max_card_bytes)
    if real.is_dir():
        return _plan_folder(card, target, real, view, yes is not None)
    if target.suffix.lower() == ".img":
        return _plan_image(card, target, real, yes is not None)
    raise InputError(f"{target} is neither a card folder, a block device nor a .img file",
                     hint="name the card's device (e.g. /dev/sdb; `lsblk` lists them), the folder "
                          "it is mounted at, or an image file ending in .img")


def _needs_image(card: SourceCard, target: Path, what: str) -> None:
    if card.kind is not SourceKind.IMAGE:
        raise InputError(f"a card folder cannot be written to {what} {target}: only an image can",
                         hint="build an image with `qcat sd build --out CARD.img` and write that, "
                              "or give the mounted card's folder as TARGET")


def _plan_device(card: SourceCard, target: Path, real: Path, view: SystemView, yes: bool,
                 max_card_bytes: int) -> WritePlan:
    if not real.exists():
        raise InputError(f"device {target} does not exist",
                         hint="plug the card in and find its name with `lsblk`")
    if not view.is_block_device(real):
        raise InputError(f"{target} is not a block device",
                         hint="name the card's device (e.g. /dev/sdb; `lsblk` lists them)")
    name = real.name
    parent = view.parent_disk(name)
    if parent is not None:
        raise InputError(f"{target} is a partition of {parent}, not a whole card",
                         hint=f"give the whole disk: {view.dev / parent} (the image holds its own "
                              "file system, with no partition table)")
    disk = view.disk(name)
    if disk is None:
        raise InputError(f"{target} is a block device that {view.sys_block} does not list",
                         hint="name the card's device as `lsblk` shows it")
    _needs_image(card, target, "the device")
    system = view.system_disks()
    if disk.name in system:
        raise InputError(f"{target} is the system disk ({system[disk.name]}); qcat never writes it",
                         hint="name the card's device: `lsblk` shows which disk is the card")
    uses = view.uses_of(disk)
    if uses:
        raise InputError(f"{target} is in use: {'; '.join(uses)}",
                         hint=f"unmount it first (`umount {view.dev / disk.name}*`), then write")
    if disk.size_bytes == 0:
        raise InputError(f"{target} holds no medium (0 bytes)",
                         hint="put the card in the reader (or attach the loop device's file)")
    if card.size > disk.size_bytes:
        raise InputError(f"the image ({_size(card.size)}) is larger than {target} "
                         f"({_size(disk.size_bytes)})", hint="use a larger card")
    if not disk.removable and not disk.loop and not yes:  # a loop device is a file: no disk
        raise InputError(f"{target} is not a removable disk ({disk.model or 'unknown model'}, "
                         f"{_size(disk.size_bytes)})",
                         hint=f"if it really is the card (some built-in readers say so), add "
                              f"--yes {target}")
    if disk.size_bytes > max_card_bytes and not yes:
        raise InputError(f"{target} is {_size(disk.size_bytes)}, more than the "
                         f"{_size(max_card_bytes)} a card may be (sd.max_card_bytes)",
                         hint=f"if it really is the card, add --yes {target}, or raise "
                              "sd.max_card_bytes in the config")
    return WritePlan(card, target, TargetKind.DEVICE, disk=disk, contents=view.contents(real),
                     needs_confirmation=not yes)


def _plan_folder(card: SourceCard, target: Path, real: Path, view: SystemView,
                 yes: bool) -> WritePlan:
    mount = next((m for m in view.mount_table() if m.mountpoint == str(real)), None)
    node = view.node_of(mount.source, mount.majmin) if mount else None
    disks = view.disks_under(node) if node else set()
    system = view.system_disks()
    for d in sorted(disks):
        if d in system:
            raise InputError(f"{target} is on the system disk {d} ({system[d]}); qcat never "
                             "writes a card there", hint="name the folder where the card is mounted")
    if not yes:
        if mount is None:
            raise InputError(f"{target} is not the mount point of a card",
                             hint=f"mount the card and give its folder, or add --yes {target} to "
                                  "write into this folder anyway")
        fixed = [d for d in sorted(disks) if (info := view.disk(d)) and not info.removable
                 and not info.loop]
        if fixed or not disks:
            raise InputError(f"{target} is mounted from {mount.source}, not from a removable disk",
                             hint=f"if it really is the card, add --yes {target}")
    entries = sorted(p.name for p in real.iterdir())
    card_names = {n.upper() for n in CARD_FILES}
    others = [e for e in entries if e.upper() not in card_names]
    if others and not yes:
        raise InputError(f"{target} holds {plural(len(others), 'other file')}: "
                         f"{_listed(others, SHOWN_OTHER_FILES)}",
                         hint=f"use an empty card, or add --yes {target} to write beside them")
    ours = tuple(e for e in entries if e.upper() in card_names)
    return WritePlan(card, target, TargetKind.FOLDER, overwritten=ours, kept=tuple(others))


def _plan_image(card: SourceCard, target: Path, real: Path, yes: bool) -> WritePlan:
    _needs_image(card, target, "the image file")
    exists = real.exists()
    if exists and not real.is_file():
        raise InputError(f"{target} exists and is not a regular file",
                         hint="name a new .img file, or the card's device")
    if exists and not yes and not is_card_image(real):
        raise InputError(f"{target} exists and is not a qcat card image",
                         hint=f"name a new .img file, or add --yes {target} to overwrite it")
    if not real.parent.is_dir():
        raise InputError(f"cannot write {target}: the folder {real.parent} does not exist",
                         hint="create the folder first, or name a file in an existing one")
    return WritePlan(card, target, TargetKind.IMAGE, replaces_file=exists)


# ------------------------------------------------------------------------------------------------
# Writing and reading back


Opener = Callable[[Path], BinaryIO]


def open_uncached(path: Path) -> BinaryIO:
    """`path` opened for reading with its cached pages dropped first, so the bytes come from
    the card, not from the kernel's memory of what we wrote."""
    fh = open(path, "rb")  # noqa: SIM115  (the caller closes it)
    with contextlib.suppress(OSError):  # cannot drop its pages: the comparison still runs
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return fh


@dataclass(frozen=True)
class WriteResult:
    target: Path
    kind: TargetKind
    bytes_written: int
    verified: bool
    seconds: float
    card_check: str | None = None  # what `qcat sd verify`'s check said of the written card

    def as_dict(self) -> dict[str, Any]:
        return {"target": str(self.target), "kind": str(self.kind),
                "bytes_written": self.bytes_written, "verified": self.verified,
                "seconds": round(self.seconds, 3), "card_check": self.card_check}


def _first_difference(wrote: bytes, read: bytes) -> int:
    for i, (a, b) in enumerate(zip(wrote, read, strict=False)):
        if a != b:
            return i
    return min(len(wrote), len(read))


def _mismatch(what: str, offset: int, wrote: bytes, read: bytes, base: int) -> CheckFailed:
    at = offset - base
    got = f"0x{read[at]:02x}" if at < len(read) else "nothing (it ended)"
    return CheckFailed(f"read-back of {what} differs at byte {offset:,} (0x{offset:x}): wrote "
                       f"0x{wrote[at]:02x}, read {got}",
                       hint="the card may be failing or not as large as it claims: write it "
                            "again, or use another card")


def _write_stream(src: BinaryIO, fd: int, total: int, progress: ProgressCallback) -> None:
    done = 0
    progress(0, total, "writing")
    while done < total:
        chunk = src.read(min(CHUNK_BYTES, total - done))
        if not chunk:
            raise InputError(f"the image ended after {plural(done, 'byte')} of {total:,}",
                             hint="it changed while being written: write it again")
        view = memoryview(chunk)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        done += len(chunk)
        progress(done, total, "writing")
    os.fsync(fd)
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _read_back(source: Path, target: Path, total: int, opener: Opener,
               progress: ProgressCallback) -> None:
    done = 0
    progress(0, total, "reading back")
    with open(source, "rb") as want, opener(target) as got:
        while done < total:
            a = want.read(min(CHUNK_BYTES, total - done))
            b = got.read(len(a))
            if a != b:
                raise _mismatch(str(target), done + _first_difference(a, b), a, b, done)
            done += len(a)
            progress(done, total, "reading back")


def _write_image_to(plan: WritePlan, progress: ProgressCallback, opener: Opener) -> int:
    total = plan.source.size
    if plan.kind is TargetKind.DEVICE:
        # O_EXCL on a block device: the kernel refuses it while anything (a mount) holds it
        flags = os.O_WRONLY | os.O_CLOEXEC
        if stat.S_ISBLK(os.stat(plan.target).st_mode):
            flags |= os.O_EXCL
        fd = os.open(plan.target, flags)
        try:
            with open(plan.source.path, "rb") as src:
                _write_stream(src, fd, total, progress)
        finally:
            os.close(fd)
    else:
        with atomic_path(plan.target) as tmp, open(plan.source.path, "rb") as src:
            fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            try:
                _write_stream(src, fd, total, progress)
            finally:
                os.close(fd)
    _read_back(plan.source.path, plan.target, total, opener, progress)
    return total


def _write_folder(plan: WritePlan, progress: ProgressCallback, opener: Opener) -> int:
    files = list(plan.source.files())
    total = sum(len(data) for _, data in files)
    done = 0
    progress(0, total, "writing")
    for name, data in files:  # CARD_FILES order: the manifest last
        write_atomic(plan.target / name, data)
        done += len(data)
        progress(done, total, f"writing {name}")
    done = 0
    for name, data in files:
        with opener(plan.target / name) as fh:
            got = fh.read(len(data) + 1)
        if got != data:
            raise _mismatch(f"{plan.target / name}", _first_difference(data, got), data, got, 0)
        done += len(data)
        progress(done, total, f"reading back {name}")
    return total


CardCheck = Callable[[Path], str | None]
"""Checks a written card as `qcat sd verify` does: returns a line to report, raises CheckFailed."""


def write_card(source: Path, target: Path, *, view: SystemView, yes: Path | None = None,
               max_card_bytes: int = DEFAULT_MAX_CARD_BYTES,
               show: Callable[[WritePlan], None] = lambda plan: None,
               confirm: Callable[[WritePlan], bool] | None = None,
               progress: ProgressCallback = lambda done, total, note: None,
               opener: Opener = open_uncached,
               check_card: CardCheck | None = None,
               reconciled: Reconciled | None = None) -> WriteResult:
    """Write the card SOURCE to TARGET and prove it by reading it back.

    Every refusal comes before anything is written (`plan_write`). `show` gets the plan before
    writing; a device target without `yes` is written only if `confirm(plan)` says so (None, as
    when no one is at a terminal, refuses). `opener` opens the written target for the read-back
    (tests hand in one that damages a byte). A difference is CheckFailed naming its first
    offset, exit 1.
    """
    plan = plan_write(source, target, view=view, yes=yes, max_card_bytes=max_card_bytes,
                      reconciled=reconciled)
    show(plan)
    if plan.needs_confirmation:
        if confirm is None:
            raise InputError(f"writing {target} would overwrite everything on it, and no one is at "
                             "a terminal to confirm", hint=f"add --yes {target} to write it")
        if not confirm(plan):
            raise InputError(f"nothing was written to {target}: not confirmed",
                             hint="run the command again and answer yes to write the card")
    started = time.monotonic()
    if plan.kind is TargetKind.FOLDER:
        written = _write_folder(plan, progress, opener)
    else:
        written = _write_image_to(plan, progress, opener)
    checked = check_card(target) if check_card is not None else None
    return WriteResult(target, plan.kind, written, True, time.monotonic() - started,
                       card_check=checked)


def installed_card_check() -> CardCheck:
    """`installation.sdcard.verify_card` as a `CardCheck`: what was written must be a good card."""
    from installation.sdcard import verify_card

    def check(path: Path) -> str | None:
        report = verify_card(path)
        if not report.ok:
            raise CheckFailed(f"{path} was written and read back, but `qcat sd verify` finds it "
                              "bad", hint=f"run `qcat sd verify {path}` for the details")
        return "qcat sd verify: ok"

    return check
