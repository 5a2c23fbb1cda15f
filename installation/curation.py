"""Curating the gallery: verify, repair, list and export exhibits (the services behind
`qcat gallery ...` and the TUI's gallery view).

Plain functions over typed objects that return typed reports (each with `as_dict()` for
`--json`); they never print, read the config or know about argparse. What they need from the
outside is handed in: the open `Gallery`, the entropy pool (or None), a `find_model(sha256)`
callable, the clip bank's path, a `progress(done, total, note)` callback.

    verify   re-render each exhibit from its stored bytes with the numpy golden reference and
             check every file it owns: the 64-px PNG (hash and pixels), the 512-px PNG (pixels
             are the 8x nearest upscale of the re-render; hash when recorded), the WAV (hash);
             and that the row agrees with its bytes and the pool's draw. Pending exhibits (draws
             with no row yet) are reported, not failed.
    repair   re-create missing or damaged *files* from the stored bytes; never the bytes or the
             row's recorded facts. An exhibit whose row or bytes are themselves inconsistent is
             not repairable, and is said to be.
    list     newest first, filtered in SQL.
    export   static HTML pages of at most 100 exhibits that link to the gallery's files.

Must never: change an exhibit's entropy bytes or recorded facts (the one write to a row fills a
NULL `big_png_sha256` once the file's pixels are proven), or write a file whose bytes differ
from what the row records.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from installation import contact_sheet
from installation.errors import CheckFailed, InputError, QcatError
from installation.exhibit import (
    BIG_SCALE,
    FindModel,
    Rendered,
    pending_draw_ids,
    png_bytes,
    read_png_rgb,
    render,
)
from installation.files import write_atomic
from installation.gallery import MOODS, Exhibit, Gallery
from installation.progress import ProgressCallback
from installation.words import plural
from quantum.source import EntropySource

if TYPE_CHECKING:
    from installation.dice import DieModelRef
    from phrases.clipbank import ClipBank
    from quantum.pool import EntropyPool

log = logging.getLogger("qcat.curation")

SOURCES = ("quantum", EntropySource.OS_FALLBACK.value)  # what `gallery list --source` accepts
SHOWN_PENDING_IDS = 20  # draw ids named in the one-line summary; --json lists them all
_STALE_PAGE = re.compile(r"page-\d+\.html")


# ------------------------------------------------------------------------------------- models

# ------------------------------------------------------------------------------------- verify

class Part(StrEnum):
    """What a finding is about. Only the files can be re-created by `repair`."""

    DRAW = "draw"  # the archived bytes against the pool's record of the draw
    MODEL = "model"  # the weight image needed to re-render
    ROW = "row"  # the row's facts against what its bytes render to
    PNG = "png"  # the 64-px image file
    BIG_PNG = "big_png"  # the 512-px image file
    WAV = "wav"  # the spoken verdict


FILE_PARTS = frozenset({Part.PNG, Part.BIG_PNG, Part.WAV})


@dataclass(frozen=True)
class Finding:
    """One difference found in one exhibit."""

    exhibit_id: int
    part: Part
    message: str

    @property
    def repairable(self) -> bool:
        return self.part in FILE_PARTS

    @property
    def line(self) -> str:
        return f"exhibit {self.exhibit_id}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"exhibit": self.exhibit_id, "part": str(self.part), "message": self.message}


@dataclass
class VerifyReport:
    """What `verify` found; `ok` when every checked exhibit matched its re-render."""

    checked: int
    findings: list[Finding] = field(default_factory=list)
    pending_draw_ids: list[int] | None = None  # None: no entropy pool to ask
    rolls_checked: int = 0  # die rolls re-derived (with --all)
    roll_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.roll_problems

    @property
    def failed_ids(self) -> list[int]:
        return sorted({f.exhibit_id for f in self.findings})

    def lines(self) -> list[str]:
        return [f.line for f in self.findings] + self.roll_problems

    def summary(self) -> str:
        rolls = f", {plural(self.rolls_checked, 'die roll')}" if self.rolls_checked else ""
        problems = len(self.findings) + len(self.roll_problems)
        return f"{plural(self.checked, 'exhibit')}{rolls} checked, {plural(problems, 'problem')}"

    def pending_summary(self) -> str | None:
        """One sentence about exhibits left pending (not failures), or None when there are none."""
        return _pending_sentence(self.pending_draw_ids)

    def failure(self) -> CheckFailed | None:
        """The error the CLI exits with (1) when something differs, else None."""
        bad = self.failed_ids
        if not bad and self.roll_problems:
            return CheckFailed(f"{plural(len(self.roll_problems), 'die roll problem')} found: "
                               + self.roll_problems[0])
        if not bad:
            return None
        named = ", ".join(f"exhibit {i}" for i in bad)
        if self.checked == 1:
            sentence = f"{named} differs from its re-render"
        else:
            sentence = (f"{len(bad):,} of {self.checked:,} exhibits differ from their re-render: "
                        f"{named}")
        hint = ("`qcat gallery repair` re-creates damaged files from the stored bytes"
                if any(f.repairable for f in self.findings) else None)
        return CheckFailed(sentence, hint=hint)

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "ok": self.ok, "problems": self.lines(),
                "findings": [f.as_dict() for f in self.findings], "failed": self.failed_ids,
                "pending_draw_ids": self.pending_draw_ids, "rolls_checked": self.rolls_checked,
                "roll_problems": self.roll_problems}


def _pending_sentence(ids: list[int] | None) -> str | None:
    if not ids:
        return None
    shown = ", ".join(str(i) for i in ids[:SHOWN_PENDING_IDS])
    more = f" and {len(ids) - SHOWN_PENDING_IDS:,} more" if len(ids) > SHOWN_PENDING_IDS else ""
    word = "draw" if len(ids) == 1 else "draws"
    return (f"{plural(len(ids), 'exhibit')} pending (entropy {word} {shown}{more}): not a "
            "failure; `qcat generate` completes them with their own bytes")


def big_pixels(rgb: np.ndarray) -> np.ndarray:
    """The 512-px copy's pixels: (64, 64, 3) -> (512, 512, 3), nearest neighbour (as written)."""
    return np.repeat(np.repeat(rgb, BIG_SCALE, axis=0), BIG_SCALE, axis=1)


@dataclass
class _Inspection:
    findings: list[Finding]
    rendered: Rendered | None  # None when the exhibit could not be re-rendered
    big_png_sha256: str | None = None  # the 512-px file's hash when its pixels are proven


def _inspect(ex: Exhibit, gallery: Gallery, find_model: FindModel, pool: EntropyPool | None) -> _Inspection:
    """Every check of one exhibit (see the module docstring)."""
    from models.weightimage import sha256_of

    found: list[Finding] = []

    def say(part: Part, message: str) -> None:
        found.append(Finding(ex.id, part, message))

    if pool is not None:
        try:
            drawn = pool.get_draw(ex.draw_id).data
        except InputError:
            say(Part.DRAW, f"the entropy pool has no record of its draw {ex.draw_id}")
        else:
            if drawn.hex() != ex.entropy_hex:
                say(Part.DRAW, "archived entropy differs from the bytes the pool handed out in "
                    f"draw {ex.draw_id}")
    model = find_model(ex.model_sha256)
    if model is None:
        say(Part.MODEL, f"model {ex.model_sha256[:16]}… is not available to re-render it")
        return _Inspection(found, None)
    try:
        rendered = render(ex.entropy, model, "numpy")
    except (ValueError, InputError) as exc:
        say(Part.ROW, f"its stored entropy cannot be rendered ({exc})")
        return _Inspection(found, None)
    if hashlib.sha256(rendered.rgb.tobytes()).hexdigest() != ex.image_sha256:
        say(Part.ROW, "re-rendered image differs from the archived image hash")
    if rendered.code.code != ex.verdict_code or rendered.code.mood != ex.mood:
        say(Part.ROW, f"verdict code {ex.verdict_code} ({ex.mood}) does not follow from its bytes "
            f"(expected {rendered.code.code}, {rendered.code.mood})")
    if rendered.text != ex.verdict_text:
        say(Part.ROW, f"verdict text differs from the phrase bank's text for code "
            f"{rendered.code.code}")

    png = gallery.path(ex.png_path)
    if not png.is_file():
        say(Part.PNG, f"image file {png} is missing")
    else:
        if sha256_of(png) != ex.png_sha256:
            say(Part.PNG, f"image file {png.name} was modified (hash differs)")
        _check_pixels(png, rendered.rgb, "image file", Part.PNG, say)

    big = gallery.path(ex.big_png_path)
    big_sha = None
    if not big.is_file():
        say(Part.BIG_PNG, f"512-px image file {big} is missing")
    else:
        big_sha = sha256_of(big)
        if ex.big_png_sha256 is not None and big_sha != ex.big_png_sha256:
            say(Part.BIG_PNG, f"512-px image file {big.name} was modified (hash differs)")
        if not _check_pixels(big, big_pixels(rendered.rgb), "512-px image file", Part.BIG_PNG, say):
            big_sha = None

    if ex.wav_path:
        wav = gallery.path(ex.wav_path)
        if not wav.is_file():
            say(Part.WAV, f"verdict audio {ex.wav_path} is missing")
        elif sha256_of(wav) != ex.wav_sha256:
            say(Part.WAV, f"verdict audio {ex.wav_path} was modified (hash differs)")
    return _Inspection(found, rendered, big_sha)


def _check_pixels(path: Path, expected: np.ndarray, what: str, part: Part,
                  say: Callable[[Part, str], None]) -> bool:
    try:
        pixels = read_png_rgb(path)
    except (OSError, ValueError) as exc:
        say(part, f"{what} {path.name} is unreadable ({exc})")
        return False
    if not np.array_equal(pixels, expected):
        say(part, f"{what} {path.name} does not show the re-rendered cat")
        return False
    return True


def _selected(gallery: Gallery, exhibit_id: int | None) -> tuple[Iterable[Exhibit], int]:
    """One exhibit (an unknown id is the user's mistake), or every exhibit lazily, oldest first."""
    if exhibit_id is not None:
        return [gallery.get(exhibit_id)], 1
    return gallery.all(), gallery.count()


def verify(gallery: Gallery, find_model: FindModel, *, exhibit_id: int | None = None,
           pool: EntropyPool | None = None, progress: ProgressCallback | None = None,
           die_ref: DieModelRef | None = None) -> VerifyReport:
    """Re-render one exhibit (`exhibit_id`) or all of them and check everything they own; with
    all of them and a `die_ref`, every die roll is re-derived from its bytes too.

    `pool`: the entropy pool (quantum.pool.EntropyPool) or None; with it, the archived bytes are
    compared with the pool's record of the draw and pending exhibits are reported."""
    from installation.dice import reverify

    exhibits, total = _selected(gallery, exhibit_id)
    rolls = gallery.rolls() if exhibit_id is None and die_ref is not None else []
    total += len(rolls)
    report = VerifyReport(checked=0)
    for ex in exhibits:
        report.findings += _inspect(ex, gallery, find_model, pool).findings
        report.checked += 1
        if progress:
            progress(report.checked, total, f"exhibit {ex.id}")
    for roll in reversed(rolls):
        assert die_ref is not None
        report.roll_problems += [f"die roll {roll.id} ({roll.serial}): {p}"
                                 for p in reverify(roll, die_ref, pool)]
        report.rolls_checked += 1
        if progress:
            progress(report.checked + report.rolls_checked, total, f"die roll {roll.id}")
    if pool is not None:
        report.pending_draw_ids = pending_draw_ids(gallery, pool)
    return report


# ------------------------------------------------------------------------------------- repair

class Outcome(StrEnum):
    INTACT = "intact"  # nothing was wrong (a NULL 512-px hash may have been recorded)
    REPAIRED = "repaired"  # files were re-created and the exhibit now verifies
    NOT_REPAIRABLE = "not-repairable"  # its row or bytes are inconsistent, or a file cannot be made


@dataclass
class ExhibitRepair:
    exhibit_id: int
    outcome: Outcome
    rebuilt: list[str] = field(default_factory=list)  # files re-created (relative to the gallery)
    recorded_big_png_hash: bool = False
    reasons: list[str] = field(default_factory=list)  # why not repairable (one sentence each)

    def lines(self) -> list[str]:
        where = f"exhibit {self.exhibit_id}"
        out = [f"{where}: re-created {name}" for name in self.rebuilt]
        if self.recorded_big_png_hash:
            out.append(f"{where}: recorded the 512-px image's hash (its pixels are proven)")
        out += [f"{where}: cannot be repaired: {reason}" for reason in self.reasons]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"exhibit": self.exhibit_id, "outcome": str(self.outcome), "rebuilt": self.rebuilt,
                "recorded_big_png_hash": self.recorded_big_png_hash, "reasons": self.reasons}


@dataclass
class RepairReport:
    """What `repair` did. Intact exhibits are only counted (there may be thousands)."""

    checked: int = 0
    intact: int = 0
    results: list[ExhibitRepair] = field(default_factory=list)  # every exhibit not left as it was

    @property
    def repaired(self) -> list[int]:
        return [r.exhibit_id for r in self.results if r.outcome is Outcome.REPAIRED]

    @property
    def not_repairable(self) -> list[int]:
        return [r.exhibit_id for r in self.results if r.outcome is Outcome.NOT_REPAIRABLE]

    @property
    def ok(self) -> bool:
        return not self.not_repairable

    def lines(self) -> list[str]:
        return [line for r in self.results for line in r.lines()]

    def summary(self) -> str:
        return (f"{plural(self.checked, 'exhibit')} checked: {len(self.repaired):,} repaired, "
                f"{self.intact:,} intact, {len(self.not_repairable):,} not repairable")

    def failure(self) -> CheckFailed | None:
        bad = self.not_repairable
        if not bad:
            return None
        named = ", ".join(f"exhibit {i}" for i in bad)
        verb = "is" if len(bad) == 1 else "are"
        return CheckFailed(f"{named} {verb} not repairable from the stored bytes",
                           hint="the reasons are above; repair never changes an exhibit's bytes "
                           "or its recorded facts")

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "intact": self.intact, "repaired": self.repaired,
                "not_repairable": self.not_repairable, "ok": self.ok,
                "exhibits": [r.as_dict() for r in self.results]}


class _ClipBankOnce:
    """The clip bank, loaded on first need; `reason` says why the audio cannot be rebuilt."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._bank: ClipBank | None = None
        self.reason: str | None = None
        self._tried = False

    def get(self) -> Any:
        if not self._tried:
            self._tried = True
            if self.path is None or not self.path.is_file():
                self.reason = (f"its verdict audio cannot be rebuilt: there is no clip bank"
                               f"{f' at {self.path}' if self.path else ''} (build it with "
                               "`qcat phrases build`, then run the repair again)")
            else:
                from phrases.clipbank import ClipBank

                try:
                    self._bank = ClipBank.load(self.path)
                except QcatError as exc:
                    self.reason = (f"its verdict audio cannot be rebuilt: {exc} (rebuild the "
                                   "bank with `qcat phrases build`)")
        return self._bank


def repair(gallery: Gallery, find_model: FindModel, *, exhibit_id: int | None = None,
           pool: EntropyPool | None = None, clip_bank: Path | None = None,
           progress: ProgressCallback | None = None) -> RepairReport:
    """Re-create the missing or damaged files of one exhibit or all, then re-verify them.

    A file is written only when its new bytes hash to what the row records (for a 512-px copy
    from before schema 2, when its pixels are the re-render's); otherwise the exhibit is reported
    as not repairable and the damaged file is left as it was for a person to look at."""
    exhibits, total = _selected(gallery, exhibit_id)
    bank = _ClipBankOnce(clip_bank)
    report = RepairReport()
    for ex in exhibits:
        result = _repair_one(ex, gallery, find_model, pool, bank)
        report.checked += 1
        if result.outcome is Outcome.INTACT:
            report.intact += 1
        if result.outcome is not Outcome.INTACT or result.recorded_big_png_hash:
            report.results.append(result)
        if progress:
            progress(report.checked, total, f"exhibit {ex.id}")
    return report


def _repair_one(ex: Exhibit, gallery: Gallery, find_model: FindModel, pool: EntropyPool | None,
                bank: _ClipBankOnce) -> ExhibitRepair:
    first = _inspect(ex, gallery, find_model, pool)
    result = ExhibitRepair(ex.id, Outcome.INTACT)
    if not first.findings:
        if ex.big_png_sha256 is None and first.big_png_sha256 is not None:
            result.recorded_big_png_hash = gallery.record_big_png_hash(ex.id, first.big_png_sha256)
        return result
    blockers = [f for f in first.findings if not f.repairable]
    if blockers or first.rendered is None:
        result.outcome = Outcome.NOT_REPAIRABLE
        result.reasons = [f.message for f in blockers]
        return result
    rgb = first.rendered.rgb
    damaged = {f.part for f in first.findings}
    if Part.PNG in damaged:
        _rewrite(gallery, ex.png_path, png_bytes(rgb), ex.png_sha256, "64-px image", result)
    if Part.BIG_PNG in damaged:
        data = png_bytes(rgb, BIG_SCALE)
        if _rewrite(gallery, ex.big_png_path, data, ex.big_png_sha256, "512-px image", result) \
                and ex.big_png_sha256 is None:
            result.recorded_big_png_hash = gallery.record_big_png_hash(
                ex.id, hashlib.sha256(data).hexdigest())
    if Part.WAV in damaged and ex.wav_path:
        clips = bank.get()
        if clips is None:
            result.reasons.append(bank.reason or "its verdict audio cannot be rebuilt")
        else:
            from phrases.audio import wav_bytes_from_12bit

            data = wav_bytes_from_12bit(clips.verdict_samples(ex.verdict_code), clips.sample_rate)
            _rewrite(gallery, ex.wav_path, data, ex.wav_sha256, "verdict audio", result)
    if not result.reasons:
        # Re-verify from the files on disk: the repair is proven, not assumed.
        result.reasons = [f.message for f in _inspect(ex, gallery, find_model, pool).findings]
    result.outcome = Outcome.NOT_REPAIRABLE if result.reasons else Outcome.REPAIRED
    return result


def _rewrite(gallery: Gallery, relative: str, data: bytes, recorded: str | None, what: str,
             result: ExhibitRepair) -> bool:
    """Write `data` over a damaged file, but only when it is byte for byte the recorded file."""
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        result.reasons.append(
            f"the re-created {what} does not hash to the recorded {relative} (this qcat encodes "
            "it differently from the one that archived it); the damaged file is left as it was")
        return False
    write_atomic(gallery.path(relative), data)
    result.rebuilt.append(relative)
    return True


# --------------------------------------------------------------------------------------- list

@dataclass(frozen=True)
class ListQuery:
    """Which exhibits `list_exhibits` returns (newest first); None means no filter."""

    limit: int | None = None
    since: datetime | None = None
    mood: str | None = None  # one of MOODS
    source: str | None = None  # one of SOURCES


def parse_since(text: str) -> datetime:
    """An ISO date (2025-03-01) or date and time (2025-03-01T18:30, 2025-03-01 18:30:00+01:00);
    without a zone it is UTC, as the archive is."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"--since takes an ISO date or date and time such as 2025-03-01 or "
                         f"2025-03-01T18:30, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_exhibits(gallery: Gallery, query: ListQuery) -> list[Exhibit]:
    """The exhibits that match `query`, newest first; the filtering is done by SQLite."""
    if query.limit is not None and query.limit < 1:
        raise InputError(f"--limit must be 1 or more, not {query.limit}")
    if query.mood is not None and query.mood not in MOODS:
        raise InputError(f"--mood must be one of {', '.join(MOODS)}, not {query.mood!r}")
    if query.source is not None and query.source not in SOURCES:
        raise InputError(f"--source must be one of {', '.join(SOURCES)}, not {query.source!r}")
    since = None
    if query.since is not None:
        # The archive stores UTC times as isoformat(timespec="milliseconds"): compare in kind.
        since = query.since.astimezone(UTC).isoformat(timespec="milliseconds")
    quantum = None if query.source is None else query.source == "quantum"
    return gallery.query(since=since, mood=query.mood, quantum=quantum, limit=query.limit)


# ------------------------------------------------------------------------------------- export

@dataclass
class ExportReport:
    index: Path
    pages: list[Path]
    exhibits: int
    removed_stale: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return (f"wrote {self.index} ({plural(self.exhibits, 'exhibit')} on "
                f"{plural(len(self.pages), 'page')}; open it in a browser)")

    def as_dict(self) -> dict[str, Any]:
        return {"index": str(self.index), "pages": [str(p) for p in self.pages],
                "exhibits": self.exhibits, "removed_stale": [str(p) for p in self.removed_stale]}


def export_sheet(gallery: Gallery, out_dir: Path, *, exhibit_ids: list[int] | None = None,
                 page_size: int = contact_sheet.PAGE_SIZE,
                 progress: ProgressCallback | None = None) -> ExportReport:
    """Write the contact sheet into `out_dir`: index.html (newest) and page-N.html, style.css.

    Images and audio are *linked* with paths relative to `out_dir` (they work wherever the
    gallery lies, on this disk or another); nothing is copied. `exhibit_ids` limits the sheet to
    those exhibits (the demo shows what it made). Pages left from a longer earlier export are
    removed so the folder never links to a stale page."""
    out_dir = out_dir.absolute()
    _prepare_folder(out_dir)
    prefix = Path(os.path.relpath(gallery.files_dir.absolute(), out_dir)).as_posix()

    def link(relative: str) -> str | None:
        if not gallery.path(relative).is_file():
            return None
        return urllib.parse.quote(f"{prefix}/{relative}")

    total = gallery.count(ids=exhibit_ids)
    pages = max(1, -(-total // page_size))
    exported = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    written = [out_dir / contact_sheet.STYLESHEET]
    _write(written[0], contact_sheet.STYLE)
    report = ExportReport(index=out_dir / contact_sheet.INDEX, pages=[], exhibits=total)
    for number in range(1, pages + 1):
        exhibits = gallery.query(ids=exhibit_ids, limit=page_size, offset=(number - 1) * page_size)
        page = out_dir / contact_sheet.page_name(number)
        _write(page, contact_sheet.render_page(exhibits, number, pages, total, exported, link))
        report.pages.append(page)
        if progress:
            progress(number, pages, page.name)
    for old in sorted(out_dir.glob("page-*.html")):
        if _STALE_PAGE.fullmatch(old.name) and old not in report.pages:
            old.unlink()
            report.removed_stale.append(old)
    return report


def _prepare_folder(out_dir: Path) -> None:
    """The output folder may exist or be new, but its parent must exist (a typo is not silently
    turned into a tree of folders) and it must not be a file."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file, not a folder",
                         hint="name a new or existing folder for the contact sheet")
    if not out_dir.parent.is_dir():
        raise InputError(f"cannot write the contact sheet into {out_dir}: the folder "
                         f"{out_dir.parent} does not exist", hint="create it first, or name a "
                         "folder inside an existing one")
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {out_dir} ({exc.strerror})") from None


def _write(path: Path, text: str) -> None:
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot write {path} ({exc.strerror})",
                         hint="choose a folder you can write to") from None
