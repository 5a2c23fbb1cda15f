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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from installation.errors import FormatError
from installation.progress import ProgressCallback

if TYPE_CHECKING:
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
