"""The verdicts' voice on the controller: is the clip bank there and current, build it when it can
be built, and say plainly when it cannot.

Exhibits speak from the clip bank (HOME/builds/verdicts.qcv, `phrases.clipbank`), rendered once
from the 128 fragments with the configured voice (`phrases.voice`, ENGINE:VOICE). A fresh home has
no bank yet; `generate`, `demo`, `phrases say` and the dashboard all call `ensure_clip_bank` here,
which builds it when the voice's engine is installed and otherwise returns why there is no
speech, so the exhibits are made silent and the operator is told how to add their voices later
(`qcat gallery speak`).

When the configured voice cannot speak here (its engine or its voice package is missing), the
bank is built with espeak-ng's en-us instead, and one sentence says so in the log: a gallery
with a plainer voice is better than a silent one.

Must never: fail an exhibit because speech is unavailable (the cat and its verdict text are the
exhibit; the WAV is its voice, and can be added afterwards).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.errors import FormatError, InputError, ToolMissing
from installation.files import write_atomic
from installation.progress import ProgressCallback
from installation.words import plural

if TYPE_CHECKING:
    from installation.gallery import Gallery
    from installation.workspace import SpeechSettings, Workspace
    from phrases.clipbank import ClipBank

INSTALL_HINT = ("install the default voice (sudo apt-get install flite) or at least espeak-ng "
                "(sudo apt-get install espeak-ng)")
log = logging.getLogger("qcat.speech")


@dataclass(frozen=True)
class SpeechStatus:
    """What `ensure_clip_bank` found or did: the bank to speak from, or why there is none."""

    bank: ClipBank | None
    built: bool  # rendered now (False: it was there and current)
    reason: str  # why it was (re)built, or why there is no speech
    fallback: str = ""  # when not the configured voice but espeak-ng speaks: why (one sentence)

    @property
    def available(self) -> bool:
        return self.bank is not None


def is_current(bank: ClipBank, settings: SpeechSettings) -> bool:
    """Was this clip bank built from the shipped verdict text with these settings?"""
    import phrases
    from phrases.voices import canonical

    prov = bank.provenance
    text_sha = hashlib.sha256(phrases.default_bank().source_text.encode("utf-8")).hexdigest()
    want = settings.as_kwargs()
    try:  # 'en-us' (a bank built before engines were named) is 'espeak-ng:en-us'
        same_voice = canonical(str(prov.get("voice"))) == canonical(want.pop("voice"))
    except InputError:
        return False
    return prov.get("bank_sha256") == text_sha and same_voice and all(
        prov.get(k) == v for k, v in want.items())


def speaking_settings(settings: SpeechSettings) -> tuple[SpeechSettings, str]:
    """The settings to render with: the configured ones when their voice can speak here, else
    the same with espeak-ng's voice, and the sentence that says why (empty when no fallback)."""
    from phrases.voices import FALLBACK_VOICE, parse_voice, unavailable

    voice = parse_voice(settings.voice)
    why = unavailable(voice)
    if why is None or voice == FALLBACK_VOICE:
        return settings, ""
    return (dataclasses.replace(settings, voice=str(FALLBACK_VOICE)),
            f"the voice {voice} cannot speak here ({why}); the verdicts use {FALLBACK_VOICE} "
            f"instead")


def ensure_clip_bank(workspace: Workspace, progress: ProgressCallback | None = None,
                     *, build: bool = True) -> SpeechStatus:
    """The workspace's clip bank, (re)built first when it is missing, damaged or stale and
    its voice (or espeak-ng, see the module docstring) can build it. Never raises for missing
    speech: the status says why."""
    from phrases.clipbank import ClipBank
    from phrases.voices import engine_of, parse_voice

    path = workspace.clip_bank_path
    configured = workspace.speech
    reason = "there is no clip bank yet"
    bank: ClipBank | None = None
    if path.exists():
        try:
            bank = ClipBank.load(path)
        except FormatError:
            reason = "the clip bank is damaged"
        else:
            if is_current(bank, configured):
                return SpeechStatus(bank, built=False, reason="the clip bank is current")
    settings, fallback = speaking_settings(configured)
    if fallback:
        log.warning("%s", fallback)
    if bank is not None:
        if fallback and is_current(bank, settings):
            return SpeechStatus(bank, built=False, reason="the clip bank is current",
                                fallback=fallback)
        reason = "the verdict text or the phrases.* settings changed"
    engine = engine_of(parse_voice(settings.voice))
    missing = engine.find() is None
    if bank is not None and (not build or workspace.read_only or missing):
        # an older bank still speaks every verdict correctly: better than silence
        return SpeechStatus(bank, built=False, reason=f"{reason}; using the old bank",
                            fallback=fallback)
    if not build:
        return SpeechStatus(None, built=False, reason=reason, fallback=fallback)
    if missing:
        return SpeechStatus(None, built=False, fallback=fallback,
                            reason=f"{reason} and {engine.binary}, which renders it, is not "
                                   f"installed")
    if workspace.read_only:
        return SpeechStatus(None, built=False, reason=f"{reason} and the home is read-only",
                            fallback=fallback)
    from phrases.render import build_bank

    build_bank(path, workspace.home.clip_cache_dir, progress=progress, **settings.as_kwargs())
    return SpeechStatus(ClipBank.load(path), built=True, reason=reason, fallback=fallback)


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

    For exhibits made while no voice could speak: the verdict is in the row already; its voice is
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
