"""Rendering the 128 fragments with a speech synthesizer and building the clip bank.

The voice (`phrases.voices`: `ENGINE:VOICE`, e.g. flite:rms, the default) speaks each
fragment to a 16-bit WAV; `phrases.audio.process_clip` turns it into a DAC clip whatever the
engine; `phrases.clipbank.write_clip_bank` writes the `.qcv`. The synthesizer's output is cached
under the cache folder, keyed by the SHA-256 of (spoken text, engine, engine version, voice, speed,
pitch), so a rebuild runs the synthesizer only for fragments whose text or voice changed. The DSP
after it is cheap and always re-run, so changing the DAC rate or gap never re-synthesises.

Fragments that do not end a sentence are spoken with a trailing comma: the synthesizers then give
them the rising "more to come" intonation of a clause inside a sentence instead of a final fall,
which is how they sound in the joined verdict.

A missing engine is a ToolMissing naming the Debian package. Never imports torch or the
appliance layer; paths (cache, output) are handed in by the caller.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from phrases import audio, voices
from phrases.bank import SENTENCE_END, Bank, default_bank
from phrases.clipbank import write_clip_bank

if TYPE_CHECKING:
    from installation.progress import ProgressCallback

CONTINUATION_MARK = ","  # appended to fragments that do not end a sentence (see module docstring)

# The voice a fresh install speaks with: the best word recall (docs/voices.md) among the voices
# the Makefile's DEB_PACKAGES install. espeak-ng (voices.FALLBACK_VOICE) speaks when its engine is
# missing (installation.speech).
DEFAULT_VOICE = "flite:rms"
DEFAULT_WPM = 160  # espeak-ng voices only (the other engines speak at their own pace)
DEFAULT_PITCH = 45  # espeak-ng voices only
DEFAULT_TEMPO = 1.18  # festival and flite voices: flite:rms says the longest verdict in 8.8 s
# (verify.py allows 9; at its own pace it takes 10.3 s)
DEFAULT_RATE = 16000
DEFAULT_GAP_MS = 90
TOOL_NAME = "qcat phrases build"
RENDER_BATCH = 16  # fragments per synthesizer run: one festival start per 16, progress between


@dataclass
class RenderStats:
    """What a build did: how many fragments the synthesizer rendered, how many came from the
    cache, and which engine (and version) spoke them."""

    rendered: int = 0
    cached: int = 0
    voice: str = ""  # the full ENGINE:VOICE name
    engine: str = ""
    engine_version: str = ""
    seconds: float = 0.0
    clip_seconds: list[float] = field(default_factory=list)


def spoken_text(fragment: str) -> str:
    return fragment if fragment.endswith(SENTENCE_END) else fragment + CONTINUATION_MARK


def cache_key(text: str, voice: voices.Voice, prosody: voices.Prosody, version: str) -> str:
    """Only the prosody settings the engine uses are part of the key (a tempo change does not
    re-render espeak-ng's clips)."""
    blob = json.dumps({"text": text, "engine": voice.engine, "engine_version": version,
                       "voice": voice.name, **voices.engine_of(voice).prosody_key(prosody)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def render_clips(cache_dir: Path, voice: str = DEFAULT_VOICE, words_per_minute: int = DEFAULT_WPM,
                 pitch: int = DEFAULT_PITCH, sample_rate: int = DEFAULT_RATE,
                 progress: ProgressCallback | None = None, bank: Bank | None = None,
                 tempo: float = DEFAULT_TEMPO) -> tuple[list[np.ndarray], RenderStats]:
    """The 128 DAC clips in clip-bank order, rendering only what the cache lacks.

    `voice` is `ENGINE:VOICE` or a plain espeak-ng voice name."""
    bank = bank or default_bank()
    spec = voices.parse_voice(voice)
    engine = voices.engine_of(spec)
    exe = engine.require()
    stats = RenderStats(voice=str(spec), engine=spec.engine, engine_version=engine.version(exe))
    started = time.monotonic()
    prosody = voices.Prosody(words_per_minute, pitch, tempo)
    frags = [text for *_, text in bank.all_fragments()]
    wavs = [Path(cache_dir) / f"{cache_key(spoken_text(t), spec, prosody, stats.engine_version)}.wav"
            for t in frags]
    clips: list[np.ndarray] = []
    for start in range(0, len(frags), RENDER_BATCH):
        todo = [(spoken_text(frags[i]), wavs[i])
                for i in range(start, min(start + RENDER_BATCH, len(frags)))
                if not wavs[i].exists()]
        if todo:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            engine.synthesize_all(exe, todo, spec.name, prosody)
        stats.rendered += len(todo)
        for n in range(start, min(start + RENDER_BATCH, len(frags))):
            x, rate = audio.read_wav(wavs[n])
            clip = audio.process_clip(x, rate, sample_rate)
            clips.append(clip)
            stats.clip_seconds.append(clip.size / sample_rate)
            if progress:
                progress(n + 1, len(frags), frags[n][:40])
    stats.cached = len(frags) - stats.rendered
    stats.seconds = time.monotonic() - started
    return clips, stats


def build_bank(out_path: Path, cache_dir: Path, voice: str = DEFAULT_VOICE,
               words_per_minute: int = DEFAULT_WPM, pitch: int = DEFAULT_PITCH,
               sample_rate: int = DEFAULT_RATE, gap_ms: int = DEFAULT_GAP_MS,
               progress: ProgressCallback | None = None, bank: Bank | None = None,
               stats: RenderStats | None = None, tempo: float = DEFAULT_TEMPO) -> Path:
    """Render (or take from the cache) every fragment and write the clip bank to `out_path`.

    `stats`, when given, is filled in with what the build did (for the CLI and the tests).
    """
    from installation import __version__  # the version string only; the package __init__ is a leaf

    bank = bank or default_bank()
    clips, result = render_clips(cache_dir, voice, words_per_minute, pitch, sample_rate,
                                 progress, bank, tempo)
    gap = audio.gap_samples(gap_ms, sample_rate)
    provenance = {
        "tool": TOOL_NAME,
        "qcat_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "synthesizer": result.engine,
        "synthesizer_version": result.engine_version,
        "voice": result.voice,  # the full ENGINE:VOICE name
        "words_per_minute": words_per_minute,
        "pitch": pitch,
        "tempo": tempo,
        "sample_rate": sample_rate,
        "gap_ms": gap_ms,
        "dsp": {"resampler": "kaiser-windowed sinc", "fade_ms": audio.FADE_MS,
                "target_active_rms_dbfs": audio.TARGET_ACTIVE_RMS_DBFS,
                "loudness_active_weight": audio.LOUDNESS_ACTIVE_WEIGHT,
                "peak_ceiling_dbfs": audio.PEAK_CEILING_DBFS, "bits": audio.DAC_BITS},
        "bank_sha256": hashlib.sha256(bank.source_text.encode("utf-8")).hexdigest(),
        "fragments": [text for _m, _s, _i, text in bank.all_fragments()],
    }
    path = write_clip_bank(Path(out_path), clips, sample_rate, gap_ms, gap, provenance)
    if stats is not None:
        stats.__dict__.update(result.__dict__)
    return path
