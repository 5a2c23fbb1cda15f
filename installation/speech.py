"""The verdicts' voice on the controller: is the clip bank there and current, build it when it can
be built, and say plainly when it cannot.

Exhibits speak from the clip bank (HOME/builds/verdicts.qcv, `phrases.clipbank`), rendered once
with espeak-ng from the 128 fragments. A fresh home has no bank yet; `generate`, `demo`, `phrases
say` and the dashboard all call `ensure_clip_bank` here, which builds it when espeak-ng is
installed and otherwise returns why there is no speech, so the exhibits are made silent and the
operator is told how to add their voices later (`qcat gallery speak`).

Must never: fail an exhibit because speech is unavailable (the cat and its verdict text are the
exhibit; the WAV is its voice, and can be added afterwards).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.errors import FormatError, ToolMissing
from installation.files import write_atomic
from installation.progress import ProgressCallback
from installation.words import plural

if TYPE_CHECKING:
    from installation.gallery import Gallery
    from installation.workspace import SpeechSettings, Workspace
    from phrases.clipbank import ClipBank

ESPEAK = "espeak-ng"
INSTALL_HINT = "install espeak-ng (sudo apt-get install espeak-ng)"


@dataclass(frozen=True)
class SpeechStatus:
    """What `ensure_clip_bank` found or did: the bank to speak from, or why there is none."""

    bank: ClipBank | None
    built: bool  # rendered now (False: it was there and current)
    reason: str  # why it was (re)built, or why there is no speech

    @property
    def available(self) -> bool:
        return self.bank is not None


def is_current(bank: ClipBank, settings: SpeechSettings) -> bool:
    """Was this clip bank built from the shipped verdict text with these settings?"""
    import phrases

    prov = bank.provenance
    text_sha = hashlib.sha256(phrases.default_bank().source_text.encode("utf-8")).hexdigest()
    return prov.get("bank_sha256") == text_sha and all(
        prov.get(k) == v for k, v in settings.as_kwargs().items())


def ensure_clip_bank(workspace: Workspace, progress: ProgressCallback | None = None,
                     *, build: bool = True) -> SpeechStatus:
    """The workspace's clip bank, (re)built first when it is missing, damaged or stale and
    espeak-ng can build it. Never raises for missing speech: the status says why."""
    from phrases.clipbank import ClipBank

    path = workspace.clip_bank_path
    settings = workspace.speech
    reason = "there is no clip bank yet"
    if path.exists():
        try:
            bank = ClipBank.load(path)
        except FormatError:
            reason = "the clip bank is damaged"
        else:
            if is_current(bank, settings):
                return SpeechStatus(bank, built=False, reason="the clip bank is current")
            reason = "the verdict text or the phrases.* settings changed"
            if not build or workspace.read_only or shutil.which(ESPEAK) is None:
                # an older bank still speaks every verdict correctly: better than silence
                return SpeechStatus(bank, built=False, reason=f"{reason}; using the old bank")
    if not build:
        return SpeechStatus(None, built=False, reason=reason)
    if shutil.which(ESPEAK) is None:
        return SpeechStatus(None, built=False,
                            reason=f"{reason} and espeak-ng, which renders it, is not installed")
    if workspace.read_only:
        return SpeechStatus(None, built=False, reason=f"{reason} and the home is read-only")
    from phrases.render import build_bank

    build_bank(path, workspace.home.clip_cache_dir, progress=progress, **settings.as_kwargs())
    return SpeechStatus(ClipBank.load(path), built=True, reason=reason)


@dataclass
class SpeakReport:
    """What `give_voices` did: the exhibits that got their WAV, and those that had one."""

    voiced: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)

    def summary(self) -> str:
        if not self.voiced and not self.already:
            return "no exhibits to give a voice to"
        parts = [f"gave {plural(len(self.voiced), 'exhibit')} a voice"]
        if self.already:
            parts.append(f"{plural(len(self.already), 'exhibit')} already had one")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"voiced": self.voiced, "already_spoken": self.already}


def give_voices(workspace: Workspace, gallery: Gallery, *, exhibit_id: int | None = None,
                progress: ProgressCallback | None = None) -> SpeakReport:
    """Write the verdict WAV of silent exhibits (one, or every one) and record it in the archive.

    For exhibits made while espeak-ng was missing: the verdict is in the row already; its voice is
    the clip bank's rendering of that code, the same bytes `generate` would have written then.
    Never touches an exhibit that already speaks (a changed WAV is `gallery repair`'s business)."""
    workspace.require_writable("`qcat gallery speak`")
    status = ensure_clip_bank(workspace, progress)
    if status.bank is None:
        raise ToolMissing(f"cannot give the exhibits their voices: {status.reason}",
                          hint=INSTALL_HINT)
    ids = [exhibit_id] if exhibit_id is not None else gallery.silent_ids()
    report = SpeakReport()
    for done, number in enumerate(ids, 1):
        ex = gallery.get(number)
        if ex.wav_path:
            report.already.append(ex.id)
            continue
        name = Path(ex.png_path).stem + ".wav"
        digest = write_atomic(gallery.path(name), status.bank.verdict_wav(ex.verdict_code))
        if gallery.record_speech(ex.id, name, digest):
            report.voiced.append(ex.id)
        else:  # another process gave it a voice meanwhile
            report.already.append(ex.id)
        if progress:
            progress(done, len(ids), f"exhibit {ex.id}")
    return report
