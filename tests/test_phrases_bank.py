"""The verdict text: 131,072 distinct verdicts, code <-> text for every code, the data file's
own errors located by file, mood, slot and line, and the package's import hygiene."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

import phrases
from installation.errors import FormatError, InputError
from phrases.bank import BANK_FILE, MAX_VERDICT_CHARS, MAX_VERDICT_WORDS, inspect_bank, load_bank
from phrases.verify import MAX_VERDICT_SECONDS, verify_durations, verify_text
from quantum.latent import N_VERDICTS, split_code, verdict_code

SEED_DEMOTIVATED = "A tired photon lasted longer than your attention span. The math is brutal."
SEED_MOTIVATED = ("The quantum vacuum has wagered everything on your sheer audacity. "
                  "And the math checks out.")


def test_every_code_round_trips_and_all_texts_are_distinct() -> None:
    bank = phrases.default_bank()
    texts: dict[str, int] = {}
    for code in range(N_VERDICTS):
        v = phrases.verdict(code)
        assert v.code == code
        vc = split_code(code)
        assert v.mood == vc.mood
        assert v.slots == vc.slots
        mood = int(vc.motivated)
        assert v.fragments == tuple(bank.fragments[mood][s][i] for s, i in enumerate(vc.slots))
        assert v.text == " ".join(v.fragments)
        back = phrases.code_of(v.text)
        assert back == code, f"code {code} reads back as {back}: {v.text!r}"
        if v.text in texts:
            pytest.fail(f"codes {texts[v.text]} and {code} share the text {v.text!r}")
        texts[v.text] = code
    assert len(texts) == N_VERDICTS == 131_072


def test_the_seed_verdicts_are_in_the_bank_at_the_expected_codes() -> None:
    assert phrases.code_of(SEED_DEMOTIVATED) == 0
    assert phrases.code_of(SEED_MOTIVATED) == 1 << 16
    # The exhibit's bytes 200..202 decide the verdict; the slots read high nibble first.
    vc = verdict_code(bytes([0x01, 0x00, 0x00]))
    assert phrases.verdict(vc.code).text == SEED_MOTIVATED


def test_verdict_text_and_shape_rules_hold_for_all_verdicts() -> None:
    report = verify_text(phrases.default_bank())
    assert report.ok, report.failures
    assert report.verdicts == report.distinct_texts == N_VERDICTS
    assert report.fragments_used == 128
    assert report.round_trip_ok == N_VERDICTS
    assert report.longest_chars <= MAX_VERDICT_CHARS
    assert report.longest_words <= MAX_VERDICT_WORDS
    for v in (phrases.verdict(c) for c in (0, 1 << 16, 0x0FFFF, 0x1FFFF)):
        assert v.fragments[2].startswith("your ") and v.text.endswith(".")


def test_code_of_tolerates_spacing_but_refuses_unknown_text() -> None:
    assert phrases.code_of("  A tired photon  lasted longer than your attention span.\n"
                           "The math is brutal. ") == 0
    for bad in ("", "A tired photon", SEED_DEMOTIVATED[:-1], SEED_DEMOTIVATED + " Meow.",
                # fragments of different moods do not mix
                "A tired photon has wagered everything on your sheer audacity. The math is brutal."):
        with pytest.raises(InputError, match="not a verdict"):
            phrases.code_of(bad)


def test_out_of_range_code_is_an_input_error() -> None:
    for bad in (-1, N_VERDICTS, 1 << 20):
        with pytest.raises(InputError, match="outside 0..131071"):
            phrases.verdict(bad)


def test_duration_bound_reports_the_longest_verdict() -> None:
    bank = phrases.default_bank()
    text_report = verify_text(bank)
    seconds = [1.0] * 128
    seconds[64 + 16 + 5] = 7.0  # motivated verb 5 is very slow to say
    report = verify_durations(bank, copy.deepcopy(text_report), seconds, gap_seconds=0.1)
    assert report.longest_seconds == pytest.approx(10.3)
    assert report.longest_seconds_code is not None
    assert split_code(report.longest_seconds_code).slots[1] == 5
    assert any("takes 10.30 s" in f for f in report.failures)
    ok = verify_durations(bank, text_report, [1.5] * 128, gap_seconds=0.09)
    assert ok.ok and ok.longest_seconds < MAX_VERDICT_SECONDS


# ----------------------------------------------------------------------------- data file errors

def _edited(tmp_path: Path, old: str, new: str) -> Path:
    """The shipped file with the first *data* occurrence of `old` replaced (comments quote
    fragments too, so the replacement starts at the [bank] table)."""
    text = BANK_FILE.read_text(encoding="utf-8")
    start = text.index("[bank]")
    assert old in text[start:], old
    path = tmp_path / "bank.toml"
    path.write_text(text[:start] + text[start:].replace(old, new, 1), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str, nth: int = 1) -> int:
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1)
            if needle in line and not line.lstrip().startswith("#")]
    return hits[nth - 1]


def test_the_shipped_file_has_no_issues() -> None:
    issues, bank = inspect_bank(BANK_FILE)
    assert issues == [] and bank is not None


def test_a_missing_fragment_is_reported_with_mood_slot_and_line(tmp_path: Path) -> None:
    path = _edited(tmp_path, '    "yawned at",\n', "")
    issues, bank = inspect_bank(path)
    assert bank is None
    (issue,) = issues
    assert (issue.mood, issue.slot) == ("demotivated", "verb")
    assert "15 fragments, needs exactly 16" in issue.message
    # the line of `verb = [` inside [demotivated], not the one inside [motivated]
    assert issue.line == _line_of(path, "verb = [", nth=2)
    assert str(issue).startswith(f"{path}:{issue.line}: demotivated verb:")


def test_a_duplicate_fragment_names_both_lines(tmp_path: Path) -> None:
    path = _edited(tmp_path, '"your big comeback."', '"your attention span."')
    issues, _ = inspect_bank(path)
    (issue,) = issues
    assert (issue.mood, issue.slot) == ("demotivated", "object")
    assert issue.line == _line_of(path, '"your attention span."', nth=2)
    assert f"first on line {_line_of(path, 'your attention span.')}" in issue.message


@pytest.mark.parametrize(("old", "new", "mood", "slot", "says", "at"), [
    ('"The math is brutal."', '"The math is brutal"', "demotivated", "closing", "end a sentence", None),
    ('"A sleepy tabby"', '"A sleepy tabby."', "motivated", "subject", "not end in punctuation", None),
    ('"your inner tabby."', '"the inner tabby."', "motivated", "object", "must start with 'your'", None),
    ('"Carry on."', '"carry on."', "motivated", "closing", "capital letter", None),
    ('"yawned at"', '"yawned  at"', "demotivated", "verb", "doubled spaces", None),
    ('"yawned at"', '"lasted longer than your"', "demotivated", "verb", "prefix",
     "lasted longer than"),
    ('"Carry on."', '"' + "Carry on and on " * 4 + '."', "motivated", "closing", "characters", None),
])
def test_fragment_rules(tmp_path: Path, old: str, new: str, mood: str, slot: str,
                        says: str, at: str | None) -> None:
    path = _edited(tmp_path, old, new)
    issues, _ = inspect_bank(path)
    assert issues, "the broken file passed"
    hit = [i for i in issues if says in i.message]
    assert hit, [str(i) for i in issues]
    assert (hit[0].mood, hit[0].slot) == (mood, slot)
    assert hit[0].line == _line_of(path, at or new)


def test_toml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = _edited(tmp_path, '"A bored electron",', '"A bored electron"')  # missing comma
    (issue,) = inspect_bank(path)[0]
    assert "not valid TOML" in issue.message
    assert issue.line is not None and abs(issue.line - _line_of(path, "A bored electron")) <= 1


def test_missing_table_and_unknown_slot(tmp_path: Path) -> None:
    path = _edited(tmp_path, "[motivated]", "[motivated_typo]")
    messages = [str(i) for i in inspect_bank(path)[0]]
    assert any("[motivated] is missing" in m for m in messages)
    path = _edited(tmp_path, "closing = [", "closer = [")
    issues = inspect_bank(path)[0]
    assert any("unknown slot 'closer'" in i.message and i.mood == "motivated" for i in issues)
    assert any(i.slot == "closing" and "missing" in i.message for i in issues)


def test_load_bank_raises_format_error_naming_the_first_problem(tmp_path: Path) -> None:
    path = _edited(tmp_path, '"The math is brutal."', '"The math is brutal"')
    with pytest.raises(FormatError, match=r"bank\.toml:\d+: demotivated closing:") as exc:
        load_bank(path)
    assert "qcat phrases verify" in (exc.value.hint or "")
    with pytest.raises(FormatError, match="does not exist"):
        load_bank(tmp_path / "absent.toml")


def test_a_custom_bank_file_drives_verdicts(tmp_path: Path) -> None:
    path = _edited(tmp_path, '"A tired photon"', '"A weary photon"')
    bank = load_bank(path)
    assert bank.verdict(0).text.startswith("A weary photon lasted longer")
    assert bank.code_of(bank.verdict(12345).text) == 12345


def test_the_runtime_package_imports_no_torch_textual_or_appliance() -> None:
    code = ("import sys, phrases, phrases.audio, phrases.render, phrases.clipbank, "
            "phrases.verify\n"
            "from installation import GROUND_MODULES\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'textual', 'rich') "
            "or (m.startswith('installation.') and m not in GROUND_MODULES)]\n"
            "print(','.join(sorted(bad)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"phrases pulled in: {out}"
