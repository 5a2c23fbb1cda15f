"""The verdict text: loading `bank.toml`, code <-> verdict, and checking the data file.

A verdict is four fragments, one per slot (subject, verb, object, closing), of one mood, joined
with single spaces. The 17-bit code that picks them is `quantum.latent`'s layout (DESIGN §4); this
module reuses `split_code` and never re-derives the bit positions.

`verdict(code)` is O(1) (two tuple look-ups). `code_of(text)` parses the text back by fragment
prefixes (at most 4 x 16 comparisons per mood), so no 131,072-entry table is ever built.

This module must never import numpy-heavy audio code, torch or the appliance layer: the kiosk and
the gallery look verdicts up through it on every exhibit.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from installation.errors import FormatError, InputError
from installation.reading import read_text_input
from installation.words import plural
from quantum.latent import N_VERDICTS, split_code

BANK_FILE = Path(__file__).with_name("bank.toml")
BANK_FORMAT_VERSION = 1
MOODS = ("demotivated", "motivated")  # index = the mood bit of the code
SLOTS = ("subject", "verb", "object", "closing")
FRAGMENTS_PER_SLOT = 16
SEPARATOR = " "
# Length bounds that keep a verdict speakable in a few seconds (checked by `qcat phrases verify`).
MAX_FRAGMENT_CHARS = 48
MAX_VERDICT_CHARS = 150
MAX_VERDICT_WORDS = 24
# Slots whose fragments end a sentence; the others must not end in sentence punctuation.
SENTENCE_END_SLOTS = ("object", "closing")
SENTENCE_END = (".", "!", "?")
OBJECT_PREFIX = "your "
_BAD_SPACING = re.compile(r"^\s|\s$|\s\s")


@dataclass(frozen=True)
class Verdict:
    """One spoken verdict: its code, mood, the four fragments and the joined text."""

    code: int
    mood: str
    fragments: tuple[str, str, str, str]
    text: str

    @property
    def slots(self) -> tuple[int, int, int, int]:
        return split_code(self.code).slots


@dataclass(frozen=True)
class BankIssue:
    """A problem in the data file, located as precisely as the file allows."""

    path: Path
    message: str
    mood: str | None = None
    slot: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}" + (f":{self.line}" if self.line else "")
        ctx = " ".join(x for x in (self.mood, self.slot) if x)
        return f"{where}: {ctx + ': ' if ctx else ''}{self.message}"


@dataclass(frozen=True)
class Bank:
    """The 2 x 4 x 16 fragments; `fragments[mood_bit][slot][index]`."""

    path: Path
    fragments: tuple[tuple[tuple[str, ...], ...], ...]
    lines: tuple[tuple[tuple[int, ...], ...], ...]  # 1-based line of each fragment in the file
    source_text: str

    def verdict(self, code: int) -> Verdict:
        vc = split_code(code)
        mood = int(vc.motivated)
        frags = tuple(self.fragments[mood][i][s] for i, s in enumerate(vc.slots))
        return Verdict(code, MOODS[mood], frags, SEPARATOR.join(frags))  # type: ignore[arg-type]

    def code_of(self, text: str) -> int:
        """The code whose verdict is `text` (whitespace runs count as one space)."""
        want = " ".join(text.split())
        for mood in (1, 0):
            found = _parse(want, self.fragments[mood], 0)
            if found is not None:
                s0, s1, s2, s3 = found
                return mood << 16 | s0 << 12 | s1 << 8 | s2 << 4 | s3
        shown = want if len(want) <= 60 else want[:57] + "..."
        raise InputError(f"{shown!r} is not a verdict of this bank",
                         hint="`qcat phrases list` prints every verdict with its code")

    def iter_verdicts(self, mood: str | None = None) -> Iterator[Verdict]:
        """Every verdict in code order (all 131,072, or the 65,536 of one mood)."""
        moods = range(2) if mood is None else (MOODS.index(mood),)
        for m in moods:
            for low in range(1 << 16):
                yield self.verdict(m << 16 | low)

    def all_fragments(self) -> Iterator[tuple[str, str, int, str]]:
        """(mood, slot, index, text) for all 128 fragments, in clip-bank index order."""
        for m, mood in enumerate(MOODS):
            for s, slot in enumerate(SLOTS):
                for i, text in enumerate(self.fragments[m][s]):
                    yield mood, slot, i, text

    def line_of(self, mood: str, slot: str, index: int) -> int:
        return self.lines[MOODS.index(mood)][SLOTS.index(slot)][index]


def _parse(text: str, slots: tuple[tuple[str, ...], ...], depth: int) -> list[int] | None:
    """Match the slot fragments as prefixes, backtracking if two fragments share a prefix."""
    for i, frag in enumerate(slots[depth]):
        if depth == len(slots) - 1:
            if text == frag:
                return [i]
            continue
        head = frag + SEPARATOR
        if text.startswith(head):
            rest = _parse(text[len(head):], slots, depth + 1)
            if rest is not None:
                return [i, *rest]
    return None


def load_bank(path: Path | None = None) -> Bank:
    """Read and check a bank file; any error raises FormatError naming file, mood, slot, line."""
    path = Path(path) if path is not None else BANK_FILE
    issues, bank = inspect_bank(path)
    if issues:
        first = issues[0]
        n_more = len(issues) - 1
        more = f" (and {plural(n_more, 'more problem')})" if n_more else ""
        raise FormatError(f"{first}{more}",
                          hint="fix the data file; `qcat phrases verify --bank FILE` lists all problems")
    assert bank is not None
    return bank


def inspect_bank(path: Path) -> tuple[list[BankIssue], Bank | None]:
    """Every problem of the data file (an empty list means the bank is usable) and the bank."""
    try:
        source = read_text_input(path, "verdict bank file")
    except InputError as exc:
        return [BankIssue(path, exc.message)], None
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        return [BankIssue(path, f"not valid TOML: {exc}", line=line)], None
    lines = source.splitlines()
    issues: list[BankIssue] = []
    version = data.get("bank", {}).get("version") if isinstance(data.get("bank"), dict) else None
    if version != BANK_FORMAT_VERSION:
        issues.append(BankIssue(path, f"[bank] version must be {BANK_FORMAT_VERSION}, got {version!r}",
                                line=_find_line(lines, "version", 0)))
    all_frags: list[list[tuple[str, ...]]] = []
    all_lines: list[list[tuple[int, ...]]] = []
    for mood in MOODS:
        table = data.get(mood)
        table_line = _find_line(lines, f"[{mood}]", 0)
        if not isinstance(table, dict):
            issues.append(BankIssue(path, f"the table [{mood}] is missing", mood=mood))
            all_frags.append([()] * len(SLOTS))
            all_lines.append([()] * len(SLOTS))
            continue
        for key in table:
            if key not in SLOTS:
                issues.append(BankIssue(path, f"unknown slot {key!r} (slots are {', '.join(SLOTS)})",
                                        mood=mood, line=_find_key_line(lines, table_line, key)))
        mood_frags: list[tuple[str, ...]] = []
        mood_lines: list[tuple[int, ...]] = []
        for slot in SLOTS:
            key_line = _find_key_line(lines, table_line, slot)
            frags, frag_lines = _check_slot(path, lines, mood, slot, table.get(slot), key_line,
                                            issues)
            mood_frags.append(frags)
            mood_lines.append(frag_lines)
        all_frags.append(mood_frags)
        all_lines.append(mood_lines)
        if not issues:
            _check_unambiguous(path, mood, mood_frags, mood_lines, issues)
    if issues:
        return issues, None
    bank = Bank(path, tuple(tuple(m) for m in all_frags), tuple(tuple(m) for m in all_lines), source)
    return issues, bank


def _check_slot(path: Path, lines: list[str], mood: str, slot: str, value: object,
                key_line: int | None, issues: list[BankIssue]) -> tuple[tuple[str, ...],
                                                                        tuple[int, ...]]:
    def issue(message: str, line: int | None) -> None:
        issues.append(BankIssue(path, message, mood=mood, slot=slot, line=line))

    if value is None:
        issue("the slot is missing", None)
        return (), ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        issue("the slot must be a list of strings", key_line)
        return (), ()
    frags: tuple[str, ...] = tuple(value)
    frag_lines = _fragment_lines(lines, key_line, frags)
    if len(frags) != FRAGMENTS_PER_SLOT:
        issue(f"has {len(frags)} fragments, needs exactly {FRAGMENTS_PER_SLOT}", key_line)
    seen: dict[str, int] = {}
    for frag, line in zip(frags, frag_lines, strict=True):
        if frag in seen:
            issue(f"{frag!r} appears twice (first on line {seen[frag]})", line)
        seen.setdefault(frag, line)
        if not frag.strip():
            issue("a fragment is empty", line)
            continue
        if _BAD_SPACING.search(frag):
            issue(f"{frag!r} has leading, trailing or doubled spaces", line)
        if len(frag) > MAX_FRAGMENT_CHARS:
            issue(f"{frag!r} is {len(frag)} characters, the most is {MAX_FRAGMENT_CHARS}", line)
        ends_sentence = frag.endswith(SENTENCE_END)
        if slot in SENTENCE_END_SLOTS and not ends_sentence:
            issue(f"{frag!r} must end a sentence (with . ! or ?)", line)
        if slot not in SENTENCE_END_SLOTS and (ends_sentence or frag.endswith((",", ";", ":"))):
            issue(f"{frag!r} must not end in punctuation (the sentence goes on)", line)
        if slot == "object" and not frag.startswith(OBJECT_PREFIX):
            issue(f"{frag!r} must start with {OBJECT_PREFIX.strip()!r}", line)
        if slot in ("subject", "closing") and not frag[0].isupper():
            issue(f"{frag!r} must start with a capital letter", line)
    return frags, frag_lines


def _check_unambiguous(path: Path, mood: str, frags: list[tuple[str, ...]],
                       lines: list[tuple[int, ...]], issues: list[BankIssue]) -> None:
    """Two fragments of a slot where one plus a space prefixes the other could make two codes
    read the same; the exhaustive test proves distinctness, this names the culprit early."""
    for s, slot in enumerate(SLOTS[:-1]):
        for i, a in enumerate(frags[s]):
            for b in frags[s]:
                if a != b and b.startswith(a + SEPARATOR):
                    issues.append(BankIssue(
                        path, f"{a!r} is a prefix of {b!r}: verdicts may read alike",
                        mood=mood, slot=slot, line=lines[s][i]))


def _find_line(lines: list[str], needle: str, start: int) -> int | None:
    for n in range(start, len(lines)):
        if lines[n].strip().startswith(needle):
            return n + 1
    return None


def _find_key_line(lines: list[str], table_line: int | None, key: str) -> int | None:
    if table_line is None:
        return None
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for n in range(table_line, len(lines)):
        if lines[n].lstrip().startswith("[") and n + 1 != table_line:
            break
        if pattern.match(lines[n]):
            return n + 1
    return None


def _fragment_lines(lines: list[str], key_line: int | None, frags: tuple[str, ...]
                    ) -> tuple[int, ...]:
    """The line of each fragment, searching onwards from the previous one (so a duplicate is
    placed on its own line, not on its twin's); the key's line when a fragment is not found
    verbatim (e.g. written with TOML escapes)."""
    if key_line is None:
        return tuple(0 for _ in frags)
    text = "\n".join(lines)
    pos = sum(len(line) + 1 for line in lines[:key_line - 1])
    found: list[int] = []
    for frag in frags:
        hits = [(i, q) for q in (f'"{frag}"', f"'{frag}'") if (i := text.find(q, pos)) >= 0]
        if not hits:
            found.append(key_line)
            continue
        i, q = min(hits)
        found.append(text.count("\n", 0, i) + 1)
        pos = i + len(q)
    return tuple(found)


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


@lru_cache(maxsize=1)
def default_bank() -> Bank:
    """The bank shipped with qcat (phrases/bank.toml), loaded once per process."""
    return load_bank(BANK_FILE)


def verdict(code: int) -> Verdict:
    """The verdict of a code 0..131071 from the shipped bank, in O(1)."""
    return default_bank().verdict(code)


def code_of(text: str) -> int:
    """The code of a verdict text of the shipped bank; InputError for an unknown text."""
    return default_bank().code_of(text)


if len(MOODS) * FRAGMENTS_PER_SLOT ** len(SLOTS) != N_VERDICTS:  # the layout of quantum.latent
    raise RuntimeError("phrases.bank's shape disagrees with quantum.latent.N_VERDICTS")
