"""A cat unit's SD card: build one (`qcat sd build`) and check one (`qcat sd verify`).

A card (docs/formats.md, "A unit's SD card") carries the weight image, the clip bank, a reserve
of exhibits leased from the pool, an empty consumption journal and a manifest, so that the unit
can keep making exhibits while the controller is away. `build_card` writes one into a folder (a
mounted card) or a FAT32 image; `verify_card` checks a folder or an image without mounting it
(through `firmware.card`).

The order of `build_card` is what keeps E1 and R1: everything a user can get wrong is checked
first; the files that need no entropy are written to a staging folder beside the target; only
then are the exhibits leased (one pool transaction); then the reserve, journal and manifest are
written and the whole card is published with one rename. A failure after the lease leaves the
lease spent (lost bytes are acceptable, reused bytes are not) and says which lease it was.

Must never: print, read the config (the CLI resolves paths through the `Workspace`), or lease
before every input has been checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware import cardfmt
from firmware.card import ImageCard, open_card
from installation import __version__
from installation.errors import (
    EntropyExhausted,
    ExternalError,
    FormatError,
    InputError,
    QcatError,
    ToolMissing,
)
from installation.files import write_atomic
from installation.progress import ProgressCallback
from installation.words import plural
from quantum.latent import EXHIBIT_BYTES, split_exhibit

if TYPE_CHECKING:
    from installation.workspace import Workspace
    from models.weightimage import WeightImage
    from quantum.pool import EntropyPool, Lease

# The largest reserve one card takes (20.3 MB of quantum bytes, 51 MB of reserve file): a
# sanity bound against a typo, well beyond a week offline.
MAX_RESERVE = 100_000
IMAGE_SUFFIX = ".img"
# An image is at least this big (a FAT32 volume needs 65,525 clusters), and leaves this much
# room beyond its files (directory, FATs and slack).
MIN_IMAGE_BYTES = 64 * 1024 * 1024
IMAGE_SLACK = 0.10
IMAGE_OVERHEAD_BYTES = 8 * 1024 * 1024
IMAGE_ROUND = 1024 * 1024
VOLUME_LABEL = "QCAT"
# The external tools an image needs, and the Debian package of each.
TOOLS = {"mkfs.fat": ("dosfstools", "makes FAT32 card images"),
         "mcopy": ("mtools", "copies files into card images"),
         "fsck.fat": ("dosfstools", "checks card images")}
# mkfs.fat and fsck.fat live in sbin, which a user's PATH may lack.
SBIN_DIRS = ("/usr/sbin", "/sbin")
# mtools refuses images whose size is not a whole number of "tracks" unless told not to check.
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}
TOOL_TIMEOUT_S = 300
STAGING_PREFIX = ".qcat-card-"
# A card folder is the user's, not a secret: the usual modes (FAT ignores them anyway).
CARD_FOLDER_MODE = 0o755
CARD_FILE_MODE = 0o644
# A reserve with every record damaged would otherwise list thousands of sentences.
MAX_LISTED_RECORDS = 20


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------------------------------
# What goes on a card


def make_record(index: int, raw: bytes, image: WeightImage) -> cardfmt.Record:
    """Reserve record `index` from an exhibit's 203 raw bytes: the same latent and verdict the
    exhibit path (`installation.exhibit`) derives, so an exhibit made offline re-renders
    identically on the controller (F2)."""
    from models import reference

    z, code = split_exhibit(raw)
    latent = reference.quantize_latent(z, image).astype("int8").tobytes()
    return cardfmt.Record(index, code.code, raw, latent)


def record_problem(record: cardfmt.Record, image: WeightImage | None) -> str | None:
    """Why a good-CRC record does not follow from its raw bytes (None: it does). Without the
    weight image only the verdict is checked."""
    code = split_exhibit(record.raw)[1].code
    if record.verdict != code:
        return (f"record {record.index}'s verdict code is {record.verdict}, its raw bytes "
                f"give {code}")
    if image is not None and make_record(record.index, record.raw, image) != record:
        return (f"record {record.index}'s latent does not follow from its raw bytes with the "
                "card's weight image")
    return None


def manifest_files(sizes: dict[str, int], digests: dict[str, str],
                   weights_version: int | None = None) -> dict[str, Any]:
    """The manifest's file table; `weights_version` is the weight image's own format version
    (1, 2 or 3: the card carries whichever the image is)."""
    from models import weightimage
    from phrases import clipbank

    versions = {cardfmt.WEIGHTS: weights_version or weightimage.VERSION,
                cardfmt.CLIPS: clipbank.FORMAT_VERSION,
                cardfmt.RESERVE: cardfmt.VERSION, cardfmt.JOURNAL: cardfmt.VERSION}
    files: dict[str, Any] = {}
    for name, fmt in cardfmt.FILE_FORMATS.items():
        entry: dict[str, Any] = {"bytes": sizes[name], "format": fmt,
                                 "format_version": versions[name]}
        if name != cardfmt.JOURNAL:  # the unit rewrites it: its CRCs are its check
            entry["sha256"] = digests[name]
        files[name] = entry
    return files


# ------------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class BuiltCard:
    """What `build_card` wrote."""

    out: Path
    kind: str  # "folder" or "image"
    unit: str
    card_id: str
    lease_id: str
    records: int
    files: dict[str, int]  # name -> bytes, in CARD_FILES order
    image_bytes: int | None  # the .img file's size

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "kind": self.kind, "unit": self.unit,
                "card_id": self.card_id, "lease_id": self.lease_id, "records": self.records,
                "leased_bytes": self.records * EXHIBIT_BYTES, "files": self.files,
                "image_bytes": self.image_bytes}


def check_unit(unit: str) -> str:
    """A serial a card and HELLO can carry: 1 to 16 printable ASCII characters."""
    if not unit or len(unit) > cardfmt.SERIAL_LEN or not unit.isascii() or \
            not unit.isprintable():
        raise InputError(f"--unit {unit!r} cannot be a unit's serial number",
                         hint="give 1 to 16 printable ASCII characters, e.g. --unit cat-07")
    return unit


def check_reserve(reserve: int) -> int:
    if isinstance(reserve, bool) or not isinstance(reserve, int) or \
            not 1 <= reserve <= MAX_RESERVE:
        raise InputError(f"--reserve {reserve!r} is not a number of exhibits from 1 to "
                         f"{MAX_RESERVE:,}", hint="e.g. --reserve 500 for a few days offline")
    return reserve


def is_image(out: Path) -> bool:
    return out.suffix.lower() == IMAGE_SUFFIX


def check_out(out: Path) -> None:
    """`out` must be new (its folder existing) or an empty folder; an image must be new."""
    if is_image(out):
        if out.exists() or out.is_symlink():
            raise InputError(f"--out {out} already exists; a card image is never overwritten",
                             hint="choose a new file name, or remove the old image first")
    elif out.is_dir():
        if any(os.scandir(out)):
            raise InputError(f"--out {out} is a folder that is not empty; a card is built only "
                             "into a new or empty folder", hint="choose a new or empty folder")
        return
    elif out.exists() or out.is_symlink():
        raise InputError(f"--out {out} exists and is not a folder",
                         hint="give a new folder, or a new FILE.img for a card image")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise InputError(f"cannot write {out}: the folder {parent} does not exist",
                         hint="create the folder first")


def require_tools(*names: str) -> dict[str, str]:
    """The paths of external tools, or one sentence naming the Debian package to install."""
    found = {}
    for name in names:
        path = shutil.which(name) or next(
            (str(Path(d, name)) for d in SBIN_DIRS if Path(d, name).is_file()), None)
        if path is None:
            pkg, does = TOOLS[name]
            raise ToolMissing(f"{name}, which {does}, is not installed",
                              hint=f"install {pkg} (sudo apt-get install {pkg})")
        found[name] = path
    return found


def _check_inputs(weights: Path, clips: Path) -> tuple[bytes, WeightImage, bytes]:
    from models import weightimage
    from phrases.clipbank import ClipBank

    if not weights.is_file():
        raise InputError(f"weight image {weights} does not exist or is not a file",
                         hint="give a .qcw with --weights, or build one with `qcat sd weights "
                              "build`")
    report = weightimage.verify(weights)
    if not report.ok or report.image is None:
        raise FormatError(f"weight image {weights}: {report.error}", hint=report.hint)
    if not clips.is_file():
        raise InputError(f"clip bank {clips} does not exist or is not a file; a card without "
                         "a voice is not a card", hint="build it with `qcat phrases build`")
    clip_bytes = clips.read_bytes()
    ClipBank.from_bytes(clip_bytes, clips)
    return weights.read_bytes(), report.image, clip_bytes


def _staging(out: Path) -> Path:
    """A fresh folder for the card's files: beside `out`, or inside it when `out` is an
    existing (empty) folder, perhaps a mounted card, which a rename cannot replace."""
    where = out if out.is_dir() else out.absolute().parent
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=where))
    os.chmod(staging, CARD_FOLDER_MODE)  # mkdtemp's 0700 would stay on the published folder
    return staging


def build_card(pool: EntropyPool, weights: Path, clips: Path, unit: str, reserve: int, out: Path,
               progress: ProgressCallback | None = None) -> BuiltCard:
    """Build a unit's card into the folder or `.img` `out` (see the module docstring)."""
    step: ProgressCallback = progress or (lambda done, total, note: None)
    check_unit(unit)
    check_reserve(reserve)
    out = Path(out)
    check_out(out)
    tools = require_tools("mkfs.fat", "mcopy") if is_image(out) else {}
    weight_bytes, image, clip_bytes = _check_inputs(Path(weights), Path(clips))
    need = reserve * EXHIBIT_BYTES
    available = pool.available_bytes()
    if available < need:
        raise InputError(f"the entropy pool holds {available:,} usable bytes; a reserve of "
                         f"{plural(reserve, 'exhibit')} needs {need:,}; nothing was leased",
                         hint="build a smaller reserve, or run `qcat entropy fetch --bytes N` "
                              "while online first")
    card_id = uuid.uuid4().hex
    staging = _staging(out)
    try:
        write_atomic(staging / cardfmt.WEIGHTS, weight_bytes, mode=CARD_FILE_MODE)
        write_atomic(staging / cardfmt.CLIPS, clip_bytes, mode=CARD_FILE_MODE)
        step(0, reserve, "leasing")
        try:
            lease = pool.lease(reserve, unit, card_id)
        except EntropyExhausted as exc:  # another process drew meanwhile
            exc.message = f"{exc.message}; no card was built"
            raise
        try:
            built = _finish(lease, weight_bytes, image, clip_bytes, staging, out, tools, step)
        except (QcatError, OSError, subprocess.SubprocessError) as exc:
            raise _lease_lost(exc, lease.lease_id, reserve) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return built


def _lease_lost(exc: BaseException, lease_id: str, records: int) -> QcatError:
    """The error of a build that failed after its lease: the lease is spent, and says so."""
    lost = (f"; lease {lease_id} ({plural(records, 'exhibit')}) was spent on no card and its "
            "bytes are gone from the pool")
    if isinstance(exc, QcatError):
        exc.message += lost
        exc.args = (exc.message,)
        return exc
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ExternalError(f"building the card failed ({detail}){lost}",
                         hint="check the target's free space and permissions, then build again")


def _finish(lease: Lease, weight_bytes: bytes, image: WeightImage, clip_bytes: bytes,
            staging: Path, out: Path, tools: dict[str, str],
            step: ProgressCallback) -> BuiltCard:
    """After the lease: the reserve, the journal, the manifest; then publish."""
    lease_uuid, card_uuid = bytes.fromhex(lease.lease_id), bytes.fromhex(lease.card_id)
    header = cardfmt.ReserveHeader(lease_uuid, card_uuid, lease.unit, lease.records,
                                   hashlib.sha256(weight_bytes).digest())
    records = []
    for i in range(lease.records):
        records.append(make_record(i, lease.record_bytes(i), image))
        if i % 256 == 255:
            step(i + 1, lease.records, "records")
    step(lease.records, lease.records, "records")
    reserve_bytes = cardfmt.pack_reserve(header, records)
    journal_bytes = cardfmt.empty_journal(lease_uuid, card_uuid, lease.records)
    contents = {cardfmt.WEIGHTS: weight_bytes, cardfmt.CLIPS: clip_bytes,
                cardfmt.RESERVE: reserve_bytes, cardfmt.JOURNAL: journal_bytes}
    manifest = cardfmt.pack_manifest({
        "format": cardfmt.MANIFEST_FORMAT, "version": cardfmt.VERSION,
        "qcat_version": __version__, "created": _now(), "card_id": lease.card_id,
        "unit": lease.unit, "lease_id": lease.lease_id, "reserve_records": lease.records,
        "files": manifest_files({n: len(b) for n, b in contents.items()},
                                {n: hashlib.sha256(b).hexdigest() for n, b in contents.items()},
                                image.version),
    })
    write_atomic(staging / cardfmt.RESERVE, reserve_bytes, mode=CARD_FILE_MODE)
    write_atomic(staging / cardfmt.JOURNAL, journal_bytes, mode=CARD_FILE_MODE)
    write_atomic(staging / cardfmt.MANIFEST, manifest, mode=CARD_FILE_MODE)
    sizes = {name: (staging / name).stat().st_size for name in cardfmt.CARD_FILES}
    image_bytes = None
    if is_image(out):
        image_bytes = _publish_image(staging, out, lease.card_id, sizes, tools, step)
    else:
        _publish_folder(staging, out)
    return BuiltCard(out, "image" if image_bytes else "folder", lease.unit, lease.card_id,
                     lease.lease_id, lease.records, sizes, image_bytes)


def _publish_folder(staging: Path, out: Path) -> None:
    if out.is_dir():  # an empty folder (a mounted card): move the files up, in card order
        for name in cardfmt.CARD_FILES:
            os.replace(staging / name, out / name)
        _fsync_dir(out)
        staging.rmdir()
    else:
        os.rename(staging, out)
        _fsync_dir(out.absolute().parent)


def image_size(sizes: dict[str, int]) -> int:
    """A sparse image big enough for the files, FAT32's minimum, and 10 % to spare."""
    want = int(sum(sizes.values()) * (1 + IMAGE_SLACK)) + IMAGE_OVERHEAD_BYTES
    return max(MIN_IMAGE_BYTES, -(-want // IMAGE_ROUND) * IMAGE_ROUND)


def _publish_image(staging: Path, out: Path, card_id: str, sizes: dict[str, int],
                   tools: dict[str, str], step: ProgressCallback) -> int:
    size = image_size(sizes)
    tmp = staging / "card.img"
    with open(tmp, "wb") as fh:
        fh.truncate(size)  # sparse: only what mkfs and mcopy write takes disk space
    step(0, 2, "formatting FAT32")
    # the volume id from the card id: the same card always gets the same id
    _run([tools["mkfs.fat"], "-F", "32", "-n", VOLUME_LABEL, "-i", card_id[:8], str(tmp)],
         "mkfs.fat")
    step(1, 2, "copying the files")
    # one mcopy, the files in card order: each lies in one run of clusters
    _run([tools["mcopy"], "-i", str(tmp), *(str(staging / n) for n in cardfmt.CARD_FILES),
          "::/"], "mcopy")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.rename(tmp, out)
    _fsync_dir(out.absolute().parent)
    step(2, 2, "done")
    return size


def _run(argv: list[str], what: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                              env={**os.environ, **MTOOLS_ENV})
    except subprocess.TimeoutExpired:
        raise ExternalError(f"{what} did not finish in {TOOL_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise ExternalError(f"{what} failed (exit {proc.returncode}): "
                            f"{said[-1] if said else 'no message'}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def resolve_clip_bank(workspace: Workspace, override: str | os.PathLike[str] | None,
                      progress: ProgressCallback | None = None) -> Path:
    """The clip bank a card gets: `override` (--clips), else the home's (built first with
    espeak-ng when it is missing or stale, as exhibits do); refused in one sentence when there
    is none, because a card without a voice is not a card."""
    if override is not None:
        return Path(override).expanduser()
    from installation.speech import INSTALL_HINT, ensure_clip_bank

    status = ensure_clip_bank(workspace, progress)
    if status.bank is None:
        raise InputError(f"there is no clip bank to put on the card: {status.reason}",
                         hint=f"{INSTALL_HINT}, or give one with --clips FILE")
    return status.bank.path


def build_card_for(workspace: Workspace, unit: str, reserve: int, out: Path, *,
                   weights: str | os.PathLike[str] | None = None,
                   clips: str | os.PathLike[str] | None = None,
                   progress: ProgressCallback | None = None) -> BuiltCard:
    """`qcat sd build`: the workspace's weight image (--weights, config, shipped demo) and clip
    bank (--clips, else the home's, built if need be), this home's pool. The cheap checks run
    before the clip bank is rendered, so a typo costs nothing."""
    check_unit(unit)
    check_reserve(reserve)
    check_out(Path(out))
    workspace.require_writable("building a card (it leases exhibits from the pool)")
    weight_path = workspace.weights_path(weights)
    clip_path = resolve_clip_bank(workspace, clips, progress)
    with workspace.open_pool() as pool:
        return build_card(pool, weight_path, clip_path, unit, reserve, Path(out), progress)


# ------------------------------------------------------------------------------------------------
# Verifying


@dataclass
class FileCheck:
    """One card file as found: its size and hash, and what is wrong with it (nothing: ok)."""

    name: str
    present: bool = False
    bytes: int | None = None
    sha256: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.present and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"present": self.present, "bytes": self.bytes, "sha256": self.sha256,
                "ok": self.ok, "problems": self.problems}


@dataclass
class CardReport:
    """What `verify_card` found. `ok` only when every file and the file system are good."""

    path: str
    kind: str  # "folder" or "image"
    files: dict[str, FileCheck] = field(default_factory=dict)
    card_problems: list[str] = field(default_factory=list)  # the image itself, fsck
    card_id: str | None = None
    unit: str | None = None
    lease_id: str | None = None
    records: int | None = None
    struck: list[int] = field(default_factory=list)
    damaged: list[int] = field(default_factory=list)
    journal_state: str | None = None  # clean, torn, tampered
    spent: int | None = None
    fsck: str | None = None  # "ok", "not run: ...", or what it said

    @property
    def ok(self) -> bool:
        return not self.card_problems and all(f.ok for f in self.files.values())

    @property
    def bad_files(self) -> list[str]:
        return [n for n, f in self.files.items() if not f.ok]

    def problems(self) -> list[str]:
        """Every finding, each one sentence naming its file."""
        out = list(self.card_problems)
        for name, f in self.files.items():
            if not f.present:
                out.append(f"{name} is missing")
            out += [f"{name}: {p}" for p in f.problems]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "ok": self.ok, "card_id": self.card_id,
                "unit": self.unit, "lease_id": self.lease_id, "records": self.records,
                "struck": self.struck, "damaged": self.damaged,
                "journal": {"state": self.journal_state, "spent": self.spent},
                "fsck": self.fsck, "bad_files": self.bad_files, "problems": self.problems(),
                "files": {n: f.as_dict() for n, f in self.files.items()}}


def verify_card(path: str | os.PathLike[str],
                progress: ProgressCallback | None = None) -> CardReport:
    """Check a card folder or image completely (docs/formats.md, "A unit's SD card"); never
    raises for anything a card can contain or lack, only for a path that is not there."""
    step: ProgressCallback = progress or (lambda done, total, note: None)
    p = Path(path)
    report = CardReport(str(p), "image" if p.is_file() or p.is_block_device() else "folder")
    try:
        card = open_card(p)
    except FormatError as exc:
        report.card_problems.append(exc.message)
        return report
    with card:
        report.files = {n: FileCheck(n) for n in cardfmt.CARD_FILES}
        contents: dict[str, bytes] = {}
        for name in cardfmt.CARD_FILES:
            check = report.files[name]
            try:
                data = card.read(name)
            except FormatError as exc:
                if card.has(name):
                    check.present = True
                    check.problems.append(exc.message)
                continue
            check.present, check.bytes = True, len(data)
            check.sha256 = hashlib.sha256(data).hexdigest()
            contents[name] = data
        step(1, 4, "files read")
        manifest = _check_manifest(report, contents)
        image = _check_weights(report, contents)
        _check_clips(report, contents)
        step(2, 4, "weights and clips")
        header, states = _check_reserve(report, contents, manifest, image)
        step(3, 4, "reserve")
        _check_journal(report, contents, header, states)
        if isinstance(card, ImageCard):
            _fsck(report, p)
        step(4, 4, "done")
    return report


def _check_manifest(report: CardReport, contents: dict[str, bytes]) -> dict[str, Any] | None:
    data = contents.get(cardfmt.MANIFEST)
    if data is None:
        return None
    mcheck = report.files[cardfmt.MANIFEST]
    try:
        manifest = cardfmt.read_manifest(data)
    except FormatError as exc:
        mcheck.problems.append(exc.message)
        return None
    report.card_id, report.unit = manifest.get("card_id"), manifest.get("unit")
    report.lease_id, report.records = manifest.get("lease_id"), manifest.get("reserve_records")
    listed = manifest["files"]
    for name in cardfmt.FILE_FORMATS:
        check = report.files[name]
        entry = listed.get(name)
        if not isinstance(entry, dict):
            mcheck.problems.append(f"it does not list {name}")
            continue
        if not check.present or name not in contents:
            continue
        if entry.get("bytes") != check.bytes:
            check.problems.append(f"it is {check.bytes:,} bytes; the manifest says "
                                  f"{entry.get('bytes')!r}")
        elif name != cardfmt.JOURNAL and entry.get("sha256") != check.sha256:
            check.problems.append("its SHA-256 does not match the manifest's")
    return manifest


def _check_weights(report: CardReport, contents: dict[str, bytes]) -> WeightImage | None:
    from models import weightimage

    data = contents.get(cardfmt.WEIGHTS)
    if data is None:
        return None
    try:
        return weightimage.decode(data)
    except (FormatError, InputError) as exc:
        report.files[cardfmt.WEIGHTS].problems.append(exc.message)
        return None


def _check_clips(report: CardReport, contents: dict[str, bytes]) -> None:
    from phrases.clipbank import ClipBank

    data = contents.get(cardfmt.CLIPS)
    if data is None:
        return
    try:
        ClipBank.from_bytes(data, Path(cardfmt.CLIPS))
    except FormatError as exc:
        report.files[cardfmt.CLIPS].problems.append(exc.message)


def _check_reserve(report: CardReport, contents: dict[str, bytes],
                   manifest: dict[str, Any] | None, image: WeightImage | None
                   ) -> tuple[cardfmt.ReserveHeader | None, list[cardfmt.RecordState] | None]:
    data = contents.get(cardfmt.RESERVE)
    if data is None:
        return None, None
    problems = report.files[cardfmt.RESERVE].problems
    try:
        header, states = cardfmt.read_reserve(data)
    except FormatError as exc:
        problems.append(exc.message)
        return None, None
    # The weight image the card was built with is the manifest's (a damaged WEIGHTS.QCW is
    # named under its own name, not here); without a manifest, the file's.
    weights = contents.get(cardfmt.WEIGHTS)
    actual = hashlib.sha256(weights).hexdigest() if weights is not None else None
    listed = ((manifest or {}).get("files", {}).get(cardfmt.WEIGHTS) or {}).get("sha256")
    built_with = listed if isinstance(listed, str) else actual
    if built_with is not None and header.weights_sha256.hex() != built_with:
        problems.append("its latents were made for another weight image than the card's")
    if actual != header.weights_sha256.hex():
        image = None  # the latents cannot be checked against other weights
    if manifest is not None:
        said = (manifest.get("lease_id"), manifest.get("card_id"), manifest.get("unit"),
                manifest.get("reserve_records"))
        if said != (header.lease_id.hex(), header.card_id.hex(), header.serial, header.records):
            problems.append("its header names another lease, card, unit or record count than "
                            "the manifest")
    for st in states:
        if st.struck:
            report.struck.append(st.index)
        elif st.record is None:
            report.damaged.append(st.index)
            problems.append(st.problem or f"record {st.index} is damaged")
        else:
            wrong = record_problem(st.record, image)
            if wrong:
                report.damaged.append(st.index)
                problems.append(wrong)
    if len(problems) > MAX_LISTED_RECORDS:
        more = len(problems) - MAX_LISTED_RECORDS
        del problems[MAX_LISTED_RECORDS:]
        problems.append(f"and {plural(more, 'more problem')}")
    return header, states


def _check_journal(report: CardReport, contents: dict[str, bytes],
                   header: cardfmt.ReserveHeader | None,
                   states: list[cardfmt.RecordState] | None) -> None:
    data = contents.get(cardfmt.JOURNAL)
    if data is None:
        return
    problems = report.files[cardfmt.JOURNAL].problems
    try:
        journal = cardfmt.read_journal(data, header, states)
    except cardfmt.TamperedJournal as exc:
        report.journal_state = "tampered"
        problems.append(exc.message)
        return
    report.journal_state, report.spent = journal.state, journal.spent
    if journal.state == "torn":
        # a torn entry stops the unit's offline work: the card needs the controller
        problems.append(f"slot {len(journal.entries)} is torn (a write cut off by a power "
                        f"loss): the unit stops offline work there; `qcat sd reconcile` "
                        f"counts record {len(journal.entries)} as spent")


def _fsck(report: CardReport, path: Path) -> None:
    try:
        tool = require_tools("fsck.fat")["fsck.fat"]
    except ToolMissing:
        report.fsck = f"not run: {TOOLS['fsck.fat'][0]} is not installed"
        return
    proc = subprocess.run([tool, "-n", str(path)], capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    if proc.returncode == 0:
        report.fsck = "ok"
        return
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    report.fsck = said[-1] if said else f"exit {proc.returncode}"
    report.card_problems.append(f"fsck.fat -n finds the file system damaged: {report.fsck}")
