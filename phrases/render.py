"""Rendering the 128 fragments with espeak-ng and building the clip bank.

espeak-ng speaks each fragment to a 16-bit 22,050 Hz WAV; `phrases.audio.process_clip` turns it
into a DAC clip; `phrases.clipbank.write_clip_bank` writes the `.qcv`. The espeak-ng output is
cached under the cache folder, keyed by the SHA-256 of (spoken text, voice, speed, pitch,
espeak-ng version), so a rebuild runs espeak-ng only for fragments whose text or voice changed.
The DSP after it is cheap and always re-run, so changing the DAC rate or gap never re-synthesises.

Fragments that do not end a sentence are spoken with a trailing comma: espeak-ng then gives them
the rising "more to come" intonation of a clause inside a sentence instead of a final fall, which
is how they sound in the joined verdict.

Missing espeak-ng is a ToolMissing naming the Debian package. Never imports torch or the
appliance layer; paths (cache, output) are handed in by the caller.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from installation.errors import ExternalError, InputError, ToolMissing
from installation.files import atomic_path
from phrases import audio
from phrases.bank import SENTENCE_END, Bank, default_bank
from phrases.clipbank import write_clip_bank

if TYPE_CHECKING:
    from installation.progress import ProgressCallback

ESPEAK = "espeak-ng"
ESPEAK_PACKAGE = "espeak-ng"  # the Debian package that provides it
ESPEAK_RATE = 22050  # espeak-ng always writes 16-bit mono at this rate
ESPEAK_TIMEOUT_S = 60.0  # one fragment takes milliseconds; this only catches a hung process
CONTINUATION_MARK = ","  # appended to fragments that do not end a sentence (see module docstring)

DEFAULT_VOICE = "en-us"
DEFAULT_WPM = 160
DEFAULT_PITCH = 45
DEFAULT_RATE = 16000
DEFAULT_GAP_MS = 90
TOOL_NAME = "qcat phrases build"


@dataclass
class RenderStats:
    """What a build did: how many fragments espeak-ng rendered and how many came from the cache."""

    rendered: int = 0
    cached: int = 0
    espeak_version: str = ""
    seconds: float = 0.0
    clip_seconds: list[float] = field(default_factory=list)


def find_espeak(binary: str = ESPEAK) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ToolMissing(f"{binary} is not installed; it speaks the verdicts",
                          hint=f"install the Debian package: sudo apt-get install {ESPEAK_PACKAGE}")
    return path


def espeak_version(exe: str) -> str:
    """e.g. 'eSpeak NG text-to-speech: 1.51 ...' -> '1.51' (the whole line if unparsable)."""
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True,
                             timeout=ESPEAK_TIMEOUT_S, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExternalError(f"{exe} --version failed ({exc})") from exc
    for word in out.split():
        if word[:1].isdigit():
            return word
    return out.splitlines()[0] if out else "unknown"


def spoken_text(fragment: str) -> str:
    return fragment if fragment.endswith(SENTENCE_END) else fragment + CONTINUATION_MARK


def cache_key(text: str, voice: str, wpm: int, pitch: int, version: str) -> str:
    blob = json.dumps({"text": text, "voice": voice, "wpm": wpm, "pitch": pitch,
                       "espeak": version, "rate": ESPEAK_RATE}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def synthesize(exe: str, text: str, voice: str, wpm: int, pitch: int, out: Path) -> None:
    """espeak-ng text -> WAV at `out` (atomic). Text goes through stdin, never as an option."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        cmd = [exe, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-z", "-w", str(tmp), "--stdin"]
        try:
            proc = subprocess.run(cmd, input=text, capture_output=True, text=True,
                                  timeout=ESPEAK_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExternalError(f"espeak-ng failed on {text!r} ({exc})") from exc
        err = (proc.stderr or "").strip()
        if proc.returncode != 0 or "voice" in err.lower() or tmp.stat().st_size <= 44:
            if "voice" in err.lower():
                raise InputError(f"espeak-ng has no voice {voice!r} ({err.splitlines()[0]})",
                                 hint="list the voices with `espeak-ng --voices` and set "
                                      "phrases.voice")
            raise ExternalError(f"espeak-ng failed on {text!r} (exit {proc.returncode}: {err})")


def render_clips(cache_dir: Path, voice: str = DEFAULT_VOICE, words_per_minute: int = DEFAULT_WPM,
                 pitch: int = DEFAULT_PITCH, sample_rate: int = DEFAULT_RATE,
                 progress: ProgressCallback | None = None, bank: Bank | None = None,
                 espeak: str = ESPEAK) -> tuple[list[np.ndarray], RenderStats]:
    """The 128 DAC clips in clip-bank order, rendering only what the cache lacks."""
    bank = bank or default_bank()
    exe = find_espeak(espeak)
    stats = RenderStats(espeak_version=espeak_version(exe))
    started = time.monotonic()
    frags = list(bank.all_fragments())
    clips: list[np.ndarray] = []
    for n, (_mood, _slot, _i, text) in enumerate(frags):
        said = spoken_text(text)
        wav = Path(cache_dir) / f"{cache_key(said, voice, words_per_minute, pitch, stats.espeak_version)}.wav"
        if wav.exists():
            stats.cached += 1
        else:
            synthesize(exe, said, voice, words_per_minute, pitch, wav)
            stats.rendered += 1
        x, rate = audio.read_wav(wav)
        clip = audio.process_clip(x, rate, sample_rate)
        clips.append(clip)
        stats.clip_seconds.append(clip.size / sample_rate)
        if progress:
            progress(n + 1, len(frags), text[:40])
    stats.seconds = time.monotonic() - started
    return clips, stats


def build_bank(out_path: Path, cache_dir: Path, voice: str = DEFAULT_VOICE,
               words_per_minute: int = DEFAULT_WPM, pitch: int = DEFAULT_PITCH,
               sample_rate: int = DEFAULT_RATE, gap_ms: int = DEFAULT_GAP_MS,
               progress: ProgressCallback | None = None, bank: Bank | None = None,
               espeak: str = ESPEAK, stats: RenderStats | None = None) -> Path:
    """Render (or take from the cache) every fragment and write the clip bank to `out_path`.

    `stats`, when given, is filled in with what the build did (for the CLI and the tests).
    """
    from installation import __version__  # the version string only; the package __init__ is a leaf

    bank = bank or default_bank()
    clips, result = render_clips(cache_dir, voice, words_per_minute, pitch, sample_rate,
                                 progress, bank, espeak)
    gap = audio.gap_samples(gap_ms, sample_rate)
    provenance = {
        "tool": TOOL_NAME,
        "qcat_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "synthesizer": "espeak-ng",
        "espeak_ng_version": result.espeak_version,
        "voice": voice,
        "words_per_minute": words_per_minute,
        "pitch": pitch,
        "sample_rate": sample_rate,
        "gap_ms": gap_ms,
        "dsp": {"resampler": "kaiser-windowed sinc", "fade_ms": audio.FADE_MS,
                "target_active_rms_dbfs": audio.TARGET_ACTIVE_RMS_DBFS,
                "peak_ceiling_dbfs": audio.PEAK_CEILING_DBFS, "bits": audio.DAC_BITS},
        "bank_sha256": hashlib.sha256(bank.source_text.encode("utf-8")).hexdigest(),
        "fragments": [text for _m, _s, _i, text in bank.all_fragments()],
    }
    path = write_clip_bank(Path(out_path), clips, sample_rate, gap_ms, gap, provenance)
    if stats is not None:
        stats.__dict__.update(result.__dict__)
    return path
