"""Checking a verdict bank as a whole: what `qcat phrases verify` reports.

Text checks walk all 131,072 verdicts (about a second): distinct texts, every fragment used, the
code <-> text round trip, length bounds. The duration check needs the clips' lengths (from a
render or a built clip bank): the longest verdict, the four longest fragments of a mood plus the
three gaps, must fit MAX_VERDICT_SECONDS. Data-file errors are found earlier, by
`bank.inspect_bank`, with file, mood, slot and line. Never imports torch or the appliance layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from phrases.bank import (
    FRAGMENTS_PER_SLOT,
    MAX_VERDICT_CHARS,
    MAX_VERDICT_WORDS,
    MOODS,
    SLOTS,
    Bank,
)
from quantum.latent import N_VERDICTS

MAX_VERDICT_SECONDS = 9.0  # "a few seconds": the longest verdict, gaps included
MIN_FRAGMENT_SECONDS = 0.25  # a shorter clip means espeak-ng (or trimming) lost the words


@dataclass
class VerifyReport:
    verdicts: int = 0
    distinct_texts: int = 0
    fragments_used: int = 0
    round_trip_ok: int = 0
    longest_chars: int = 0
    longest_words: int = 0
    longest_text: str = ""
    longest_seconds: float | None = None
    shortest_seconds: float | None = None
    longest_seconds_code: int | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def verify_text(bank: Bank) -> VerifyReport:
    report = VerifyReport()
    texts: set[str] = set()
    used: set[tuple[int, int, str]] = set()
    for v in bank.iter_verdicts():
        report.verdicts += 1
        texts.add(v.text)
        mood = MOODS.index(v.mood)
        for s, frag in enumerate(v.fragments):
            used.add((mood, s, frag))
        if bank.code_of(v.text) == v.code:
            report.round_trip_ok += 1
        elif len(report.failures) < 10:
            report.failures.append(f"code {v.code}: its text reads back as code "
                                   f"{bank.code_of(v.text)}")
        words = len(v.text.split())
        if len(v.text) > report.longest_chars:
            report.longest_chars, report.longest_text = len(v.text), v.text
        report.longest_words = max(report.longest_words, words)
    report.distinct_texts = len(texts)
    report.fragments_used = len(used)
    if report.verdicts != N_VERDICTS:
        report.failures.append(f"{report.verdicts} verdicts, expected {N_VERDICTS}")
    if report.distinct_texts != N_VERDICTS:
        report.failures.append(f"only {report.distinct_texts} distinct texts among "
                               f"{report.verdicts} verdicts")
    want_frags = len(MOODS) * len(SLOTS) * FRAGMENTS_PER_SLOT
    if report.fragments_used != want_frags:
        report.failures.append(f"{report.fragments_used} of {want_frags} fragments are used")
    if report.longest_chars > MAX_VERDICT_CHARS:
        report.failures.append(f"the longest verdict has {report.longest_chars} characters "
                               f"(most {MAX_VERDICT_CHARS}): {report.longest_text!r}")
    if report.longest_words > MAX_VERDICT_WORDS:
        report.failures.append(f"the longest verdict has {report.longest_words} words "
                               f"(most {MAX_VERDICT_WORDS})")
    return report


def verify_durations(bank: Bank, report: VerifyReport, clip_seconds: list[float],
                     gap_seconds: float) -> VerifyReport:
    """clip_seconds: the 128 clip durations in clip-bank order (mood, slot, fragment)."""
    per = FRAGMENTS_PER_SLOT
    longest, shortest = 0.0, float("inf")
    for m, mood in enumerate(MOODS):
        slots = [clip_seconds[(m * len(SLOTS) + s) * per:(m * len(SLOTS) + s + 1) * per]
                 for s in range(len(SLOTS))]
        top = [int(max(range(per), key=xs.__getitem__)) for xs in slots]
        hi = sum(xs[i] for xs, i in zip(slots, top, strict=True)) + 3 * gap_seconds
        lo = sum(min(xs) for xs in slots) + 3 * gap_seconds
        if hi > longest:
            longest = hi
            report.longest_seconds_code = m << 16 | top[0] << 12 | top[1] << 8 | top[2] << 4 | top[3]
        shortest = min(shortest, lo)
        for s, xs in enumerate(slots):
            for i, sec in enumerate(xs):
                if sec < MIN_FRAGMENT_SECONDS:
                    report.failures.append(f"{mood} {SLOTS[s]} {i} ({bank.fragments[m][s][i]!r}) "
                                           f"renders to only {sec:.2f} s")
    report.longest_seconds, report.shortest_seconds = round(longest, 3), round(shortest, 3)
    if longest > MAX_VERDICT_SECONDS:
        report.failures.append(f"the longest verdict (code {report.longest_seconds_code}) takes "
                               f"{longest:.2f} s to speak, the most is {MAX_VERDICT_SECONDS} s")
    return report
