"""How well a voice can be understood: word recall of an offline recogniser on the DAC clips.

A listener in a gallery hears the unit's 12-bit DAC at 16 kHz, not the synthesizer's WAV. So the
recogniser (pocketsphinx 5 with the US English model inside its wheel) is fed exactly what the
unit plays: the processed clip of each fragment, and whole verdicts joined as the unit joins them
(`phrases.audio.join_clips`), converted to 16 kHz 16-bit PCM.

Word recall = (length of the longest common subsequence of the reference words and the
recognised words) / (number of reference words). Words are compared after normalising both
texts the same way (lower case, accents folded, punctuation other than in-word apostrophes
dropped). The LCS keeps the order: a hypothesis that has the right words in a scrambled order,
or words of another fragment, does not score. A figure over many clips is the sum of matched
words over the sum of reference words (longer texts weigh more, as they do for a listener).

pocketsphinx's general language model is a harsh judge (it has no idea which 128 fragments to
expect), which is the point: it ranks voices the way a first-time listener would, and a voice
that scores better here is clearly easier to follow. The figures are for comparing voices, not
a promise about people.

Must never: print or read the config (paths, the progress callback and the recogniser are
handed in); import pocketsphinx before a measurement needs it (it is a test/extra dependency).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from installation.errors import ToolMissing
from phrases import audio, voices
from phrases.bank import Bank, default_bank

if TYPE_CHECKING:
    from installation.progress import ProgressCallback

RECOGNISER_RATE = 16000  # pocketsphinx's en-us acoustic model is trained on 16 kHz speech
DEFAULT_VERDICTS = 50  # whole verdicts measured per voice, besides the 128 fragments
DEFAULT_SEED = 1  # the seed of the verdict codes, so two runs measure the same verdicts
POCKETSPHINX_HINT = ("install the recogniser: pip install 'pocketsphinx>=5' (it comes with "
                     "`make test`, in the dev extra)")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


# ----------------------------------------------------------------------------- scoring

def words(text: str) -> list[str]:
    """'Schrödinger's cat, twice!' -> ["schrodinger's", 'cat', 'twice']."""
    folded = voices.ascii_text(text.replace("\u2019", "'")).lower()
    return _WORD.findall(folded)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (one row of the dynamic programme at a time)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    return prev[-1]


def matched_words(reference: str, hypothesis: str) -> tuple[int, int]:
    """(reference words found in order in the hypothesis, reference words)."""
    ref = words(reference)
    return lcs_length(ref, words(hypothesis)), len(ref)


def word_recall(reference: str, hypothesis: str) -> float:
    """The fraction of the reference words the hypothesis has, in order (0.0 .. 1.0)."""
    hit, total = matched_words(reference, hypothesis)
    return hit / total if total else 0.0


# ----------------------------------------------------------------------------- the recogniser

class Recogniser(Protocol):
    """Anything that turns 12-bit DAC samples into text (pocketsphinx here; a test may hand in
    another)."""

    def transcribe(self, samples12: np.ndarray, rate: int) -> str: ...


class PocketSphinx:
    """pocketsphinx 5's Decoder with its bundled en-us model and general language model."""

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise ToolMissing("pocketsphinx, the recogniser that measures the voices, is not "
                              "installed", hint=POCKETSPHINX_HINT) from exc
        self._decoder: Any = Decoder(samprate=RECOGNISER_RATE, logfn="/dev/null")

    def transcribe(self, samples12: np.ndarray, rate: int) -> str:
        """The recogniser's best hypothesis for one clip as the unit plays it."""
        x = audio.to_float(samples12)
        if rate != RECOGNISER_RATE:
            x = audio.resample(x, rate, RECOGNISER_RATE)
        # the WAV writer's conversion: 12-bit codes -> int16 ((s - 2048) << 4)
        pcm = np.clip(np.rint(x * audio.DAC_HALF_SCALE) * 16, -32768, 32767).astype("<i2")
        dec = self._decoder
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        return hyp.hypstr if hyp is not None else ""


# ----------------------------------------------------------------------------- measuring

class _Recall:
    """What the recogniser got of one clip's words: `matched` of `words`."""

    matched: int
    words: int

    @property
    def recall(self) -> float:
        return self.matched / self.words if self.words else 0.0


@dataclass
class FragmentScore(_Recall):
    mood: str
    slot: str
    index: int
    text: str
    heard: str
    matched: int
    words: int

    def as_dict(self) -> dict[str, Any]:
        return {"mood": self.mood, "slot": self.slot, "index": self.index, "text": self.text,
                "heard": self.heard, "recall": round(self.recall, 4)}


@dataclass
class VerdictScore(_Recall):
    code: int
    text: str
    heard: str
    matched: int
    words: int

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "text": self.text, "heard": self.heard,
                "recall": round(self.recall, 4)}


@dataclass
class VoiceScore:
    """One voice's measurement: every fragment, the sampled verdicts, and how long it took."""

    voice: str
    engine_version: str
    fragments: list[FragmentScore] = field(default_factory=list)
    verdicts: list[VerdictScore] = field(default_factory=list)
    rendered: int = 0  # fragments the synthesizer rendered (the rest came from the cache)
    seconds: float = 0.0
    speech_seconds: float = 0.0  # total length of the 128 fragment clips

    @property
    def fragment_recall(self) -> float:
        return _pooled(self.fragments)

    @property
    def verdict_recall(self) -> float:
        return _pooled(self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        return {"voice": self.voice, "engine_version": self.engine_version,
                "fragment_recall": round(self.fragment_recall, 4),
                "verdict_recall": round(self.verdict_recall, 4),
                "seconds": round(self.seconds, 1), "rendered": self.rendered,
                "speech_seconds": round(self.speech_seconds, 1),
                "fragments": [f.as_dict() for f in self.fragments],
                "verdicts": [v.as_dict() for v in self.verdicts]}


def _pooled(scores: Sequence[FragmentScore | VerdictScore]) -> float:
    total = sum(s.words for s in scores)
    return sum(s.matched for s in scores) / total if total else 0.0


def verdict_codes(count: int, seed: int = DEFAULT_SEED) -> list[int]:
    """`count` distinct verdict codes drawn with a seeded generator (the same for every voice,
    so the voices are compared on the same sentences)."""
    from quantum.latent import N_VERDICTS

    return random.Random(seed).sample(range(N_VERDICTS), count)


def fragment_sample(count: int | None, total: int = 128) -> list[int]:
    """Clip indices of `count` fragments spread evenly over the bank (all of them for None):
    a quick measurement still hears both moods and every slot."""
    if count is None or count >= total:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, max(count, 0)).round()})


def measure_voice(voice: str, cache_dir: Path, recogniser: Recogniser, *,
                  codes: Sequence[int] = (), fragments: Sequence[int] | None = None,
                  bank: Bank | None = None,
                  sample_rate: int = 16000, gap_ms: int = 90, words_per_minute: int = 160,
                  pitch: int = 45, tempo: float = 1.0,
                  progress: ProgressCallback | None = None, label: str = "") -> VoiceScore:
    """Render the 128 fragments with `voice` (through the render cache), then transcribe the
    fragment clips (all, or the clip indices in `fragments`) and each verdict in `codes` joined
    as the unit joins it."""
    from phrases.clipbank import clip_index
    from phrases.render import render_clips
    from quantum.latent import split_code

    bank = bank or default_bank()
    started = time.monotonic()
    frags = list(bank.all_fragments())
    heard_ones = list(range(len(frags))) if fragments is None else list(fragments)
    total = len(frags) + len(heard_ones) + len(codes)  # render all, hear some, hear verdicts
    tell = (lambda done, what: progress(done, total, f"{label}{what}")) if progress else None
    clips, stats = render_clips(cache_dir, voice, words_per_minute, pitch, sample_rate,
                                (lambda d, _t, n: tell(d, n)) if tell else None, bank, tempo)
    score = VoiceScore(stats.voice, stats.engine_version, rendered=stats.rendered,
                       speech_seconds=sum(stats.clip_seconds))
    for n, i in enumerate(heard_ones):
        mood, slot, index, text = frags[i]
        heard = recogniser.transcribe(clips[i], sample_rate)
        hit, count = matched_words(text, heard)
        score.fragments.append(FragmentScore(mood, slot, index, text, heard, hit, count))
        if tell:
            tell(len(frags) + n + 1, text[:40])
    gap = audio.gap_samples(gap_ms, sample_rate)
    for n, code in enumerate(codes):
        v, vc = bank.verdict(code), split_code(code)
        samples = audio.join_clips([clips[clip_index(int(vc.motivated), slot, frag)]
                                    for slot, frag in enumerate(vc.slots)], gap)
        heard = recogniser.transcribe(samples, sample_rate)
        hit, count = matched_words(v.text, heard)
        score.verdicts.append(VerdictScore(code, v.text, heard, hit, count))
        if tell:
            tell(len(frags) + len(heard_ones) + n + 1, f"verdict {code}")
    score.seconds = time.monotonic() - started
    return score


def measure_voices(specs: Sequence[str], cache_dir: Path, recogniser: Recogniser, *,
                   verdicts: int = DEFAULT_VERDICTS, seed: int = DEFAULT_SEED,
                   fragments: int | None = None, progress: ProgressCallback | None = None,
                   **settings: Any) -> list[VoiceScore]:
    """Measure each voice on the same fragments (all 128, or `fragments` spread over the bank)
    and the same seeded verdicts, in the order given. `settings` are render settings
    (sample_rate, gap_ms, words_per_minute, pitch, tempo)."""
    codes = verdict_codes(verdicts, seed)
    sample = fragment_sample(fragments)
    return [measure_voice(spec, cache_dir, recogniser, codes=codes, fragments=sample,
                          progress=progress, label=f"{spec}: ", **settings) for spec in specs]


# ----------------------------------------------------------------------------- reporting

def table_rows(scores: Sequence[VoiceScore]) -> list[tuple[str, str, str, str, str]]:
    """(voice, engine version, fragments recall, verdicts recall, seconds), best first."""
    ranked = sorted(scores, key=lambda s: (-s.fragment_recall - s.verdict_recall, s.voice))
    return [(s.voice, s.engine_version, f"{100 * s.fragment_recall:.1f} %",
             f"{100 * s.verdict_recall:.1f} %" if s.verdicts else "-", f"{s.seconds:.0f}")
            for s in ranked]


TABLE_HEADER = ("voice", "engine version", "fragments recall", "verdicts recall", "seconds")


def markdown_table(scores: Sequence[VoiceScore]) -> str:
    """The measurement as a Markdown table (for docs/voices.md), best voice first."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |",
             "|---|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(scores)]
    return "\n".join(lines) + "\n"
