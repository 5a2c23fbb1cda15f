"""The rough edges of the CLI: output files in folders that do not exist, a config file with many
problems, words a user reads (no "issue", no "release", no "1 exhibits"), the README's model
numbers against the code, and the API key kept out of `config check` and `config show --json`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import pytest

from installation import config as config_mod
from installation.cli import build_parser
from installation.errors import ConfigError, FormatError
from models import weightimage
from phrases.bank import BANK_FILE, MAX_FRAGMENT_CHARS, load_bank
from tests.conftest import REPO

# Words that speak of our plans and trackers, not of the program a person is running.
INTERNAL_WORDS = re.compile(r"\b(issues?|releases?|tickets?)\b", re.IGNORECASE)


# ----------------------------------------------------------------------------- output files

def test_say_wav_into_a_missing_folder_is_refused_and_nothing_is_written(run_qcat, qcat_home,
                                                                          tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    r = run_qcat("phrases", "say", "0", "--wav", missing / "x.wav")
    assert r.code == 2, r.err
    assert f"the folder {missing} does not exist" in r.err and "Traceback" not in r.err
    assert len([line for line in r.err.splitlines() if line.startswith("qcat: error:")]) == 1
    assert not (tmp_path / "no").exists()
    # refused before any work: no clip bank was built for a WAV that could not be written
    assert not (qcat_home / "builds" / "verdicts.qcv").exists()
    assert r.out == ""


def test_say_wav_refuses_a_folder_or_a_file_standing_where_the_folder_should_be(run_qcat,
                                                                                 tmp_path):
    r = run_qcat("phrases", "say", "--random", "--wav", tmp_path)
    assert r.code == 2 and "is a folder, not a file" in r.err
    assert f"--wav {tmp_path / 'verdict.wav'}" in r.err  # the hint shows a file name to use
    plain = tmp_path / "notes.txt"
    plain.write_text("keep me")
    r = run_qcat("phrases", "say", "0", "--wav", plain / "x.wav")
    assert r.code == 2 and f"the folder {plain} is not a folder" in r.err
    assert plain.read_text() == "keep me"


def test_build_out_into_a_missing_folder_is_refused_before_rendering(run_qcat, qcat_home,
                                                                     tmp_path):
    r = run_qcat("phrases", "build", "--out", tmp_path / "card" / "v.qcv")
    assert r.code == 2 and f"the folder {tmp_path / 'card'} does not exist" in r.err
    assert not (tmp_path / "card").exists()
    assert not (qcat_home / "builds" / "clip-cache").exists() or not any(
        (qcat_home / "builds" / "clip-cache").iterdir())


# ----------------------------------------------------------------------------- config problems

MANY_PROBLEMS = """\
[entropy]
when_emty = "os"
monthly_request_budget = "ten"
max_retries = 3
when_empty = "maybe"
request_timeout_s = 0.0

[engine]
default = "gpu"

[entropi]
legacy = true
"""

EXPECTED_LINES = [
    "unknown key 'entropy.when_emty' (did you mean 'when_empty'?)",
    "entropy.monthly_request_budget = 'ten' must be an integer",
    "entropy.when_empty = 'maybe' is not one of \"os\", \"wait\", \"fail\"",
    "entropy.request_timeout_s = 0.0 is below the minimum 0.1",
    "engine.default = 'gpu' is not one of \"c\", \"numpy\"",
    "unknown section [entropi] (did you mean 'entropy'?)",
]


def test_config_check_lists_every_problem_one_line_each_then_exits_2(run_qcat, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MANY_PROBLEMS)
    r = run_qcat("config", "check", bad)
    assert r.code == 2 and "Traceback" not in r.err
    lines = r.err.splitlines()
    # one line per problem, in the order of the file, each naming the file
    problem_lines = [line for line in lines if line.startswith(f"{bad}: ")]
    assert len(problem_lines) == len(EXPECTED_LINES), r.err
    for line, needle in zip(problem_lines, EXPECTED_LINES, strict=True):
        assert needle in line, (line, needle)
    assert f"qcat: error: {bad} has 6 problems" in r.err
    assert f"qcat config check {bad}" in r.err
    assert r.out == ""  # "ok" is never printed for a bad file


def test_problems_returns_them_all_and_load_still_stops_at_the_first(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MANY_PROBLEMS)
    found = config_mod.problems(bad)
    assert [type(p) for p in found] == [ConfigError] * len(EXPECTED_LINES)
    assert all(n in p.message for p, n in zip(found, EXPECTED_LINES, strict=True))
    assert all(p.hint for p in found)  # each carries its own fix
    with pytest.raises(ConfigError) as exc:
        config_mod.load(bad)
    # the first problem's own sentence and hint, plus a pointer to the full list
    assert exc.value.message == found[0].message
    assert "keys of [entropy]:" in (exc.value.hint or "")
    assert f"`qcat config check {bad}` lists them all" in (exc.value.hint or "")


def test_problems_of_a_good_a_missing_and_an_unparsable_file(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[entropy]\nwhen_empty = "fail"\n[log]\nlevel = "DEBUG"\n')
    assert config_mod.problems(good) == []
    [missing] = config_mod.problems(tmp_path / "nope.toml")
    assert "does not exist" in missing.message and "qcat config init" in (missing.hint or "")
    broken = tmp_path / "broken.toml"
    broken.write_text('[entropy]\nwhen_empty = "os"\nwhen_emty = \n')
    [syntax] = config_mod.problems(broken)
    assert "is not valid TOML" in syntax.message


def test_a_single_problem_keeps_its_own_sentence_and_hint(run_qcat, tmp_path):
    bad = tmp_path / "one.toml"
    bad.write_text('[entropy]\nwhen_emty = "os"\n')
    r = run_qcat("config", "check", bad)
    assert r.code == 2
    assert r.err.splitlines()[0] == (f"qcat: error: {bad}: unknown key 'entropy.when_emty' "
                                     "(did you mean 'when_empty'?)")
    assert "hint: keys of [entropy]:" in r.err and "problems" not in r.err


def test_a_config_in_use_with_several_problems_names_the_first_and_points_at_check(run_qcat,
                                                                                   qcat_home):
    qcat_home.mkdir(parents=True)
    (qcat_home / "qcat.toml").write_text(MANY_PROBLEMS)
    r = run_qcat("config", "show")
    assert r.code == 2 and EXPECTED_LINES[0] in r.err and "qcat config check" in r.err
    assert EXPECTED_LINES[1] not in r.err  # other commands stay one sentence


# ----------------------------------------------------------------------------- S1: the key

SECRET = "Sx" * 20


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_config_check_never_shows_the_api_key(run_qcat, qcat_home, tmp_path, mode):
    bad = tmp_path / "keyed.toml"
    bad.write_text(f'[entropy]\napi_key = "{SECRET}"\nwhen_emty = "os"\napi_kye = "{SECRET}"\n'
                   f'[engine]\ndefault = "gpu"\n')
    os.chmod(bad, mode)
    r = run_qcat("config", "check", bad)
    assert r.code == 2
    assert SECRET not in r.out + r.err
    # the open mode is one of the problems
    assert ("other users can read it (mode 0644)" in r.err) == bool(mode & 0o077)
    assert f"{bad} has {4 if mode & 0o077 else 3} problems" in r.err
    assert SECRET not in (qcat_home / "logs" / "qcat.log").read_text()


def test_a_key_of_the_wrong_type_is_hidden_too(run_qcat, tmp_path):
    bad = tmp_path / "typed.toml"
    bad.write_text("[entropy]\napi_key = 123456789987654321\nlegacy = 3\n")
    os.chmod(bad, 0o600)
    r = run_qcat("config", "check", bad)
    assert r.code == 2 and "123456789987654321" not in r.err
    assert "entropy.api_key = <hidden> must be a string" in r.err


def test_config_show_json_hides_a_key_from_the_file(run_qcat, tmp_path):
    cfg = tmp_path / "keyed.toml"
    cfg.write_text(f'[entropy]\napi_key = "{SECRET}"\n')
    os.chmod(cfg, 0o600)
    r = run_qcat("--config", cfg, "config", "show", "--json")
    assert r.code == 0 and SECRET not in r.out + r.err
    assert json.loads(r.out)["config"]["entropy"]["api_key"] == "<hidden>"
    r = run_qcat("--config", cfg, "config", "check")
    assert r.code == 0 and SECRET not in r.out + r.err and r.out.strip() == f"{cfg}: ok"


# ----------------------------------------------------------------------------- words

def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every command line `qcat A B ...` that has its own parser (hence its own --help)."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*prefix, name))


ALL_COMMANDS = sorted(set(_command_paths(build_parser())))


def test_the_walk_found_every_command():
    assert len(ALL_COMMANDS) > 40
    assert ("config", "check") in ALL_COMMANDS and ("sd", "weights", "inspect") in ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "qcat")
def test_no_help_text_speaks_of_issues_or_releases(run_qcat, path):
    r = run_qcat(*path, "--help")
    assert r.code == 0 and "usage: qcat" in r.out
    assert not INTERNAL_WORDS.search(r.out), INTERNAL_WORDS.search(r.out)


def test_a_command_not_built_yet_says_so_plainly(run_qcat, monkeypatch):
    """Every command is built in this version; one that is not yet (a stand-in registered
    through the same helper) says so plainly."""
    from installation.commands import not_built, sim

    monkeypatch.setattr(sim, "_die", not_built("simulate a die unit",
                                               "meanwhile `qcat sim cat` simulates a cat unit"))
    r = run_qcat("sim", "die")
    assert r.code == 2 and "Traceback" not in r.err
    first = r.err.splitlines()[0]
    assert first.startswith("qcat: error: qcat cannot ")
    assert first.endswith(" yet: it is not built in this version of qcat")
    assert "hint: meanwhile `qcat " in r.err  # something a person can do today
    assert not INTERNAL_WORDS.search(r.err), r.err


def test_plural_agrees_with_its_number():
    from installation.words import plural

    assert plural(1, "problem") == "1 problem"
    assert plural(0, "problem") == "0 problems"
    assert plural(2048, "byte") == "2,048 bytes"
    assert plural(1, "batch", "batches") == "1 batch" and plural(3, "batch", "batches") == "3 batches"


def _long_fragment_bank(tmp_path: Path) -> Path:
    """The shipped bank with one long fragment per slot of one mood: the longest verdict is then
    over MAX_VERDICT_CHARS, and that is the only check it fails."""
    text = BANK_FILE.read_text(encoding="utf-8")
    n = MAX_FRAGMENT_CHARS - 2
    for old, new in (('"The quantum vacuum"', f'"Q{"q" * n}"'),
                     ('"has wagered everything on"', f'"w{"w" * n}"'),
                     ('"your sheer audacity."', f'"your {"a" * (n - 6)}."'),
                     ('"And the math checks out."', f'"M{"m" * (n - 1)}."')):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "long.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_verdict_bank_failing_one_check_says_1_check(run_qcat, tmp_path):
    r = run_qcat("phrases", "verify", "--bank", _long_fragment_bank(tmp_path), "--text-only")
    assert r.code == 1, r.err
    assert "FAIL the longest verdict has" in r.out
    assert "qcat: error: the verdict bank fails 1 check\n" in r.err and "check(s)" not in r.err


def test_a_data_file_with_two_problems_says_1_more_problem(tmp_path):
    text = BANK_FILE.read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('"Carry on."', '"carry on"', 1), encoding="utf-8")
    with pytest.raises(FormatError) as exc:
        load_bank(bad)
    assert exc.value.message.endswith("(and 1 more problem)"), exc.value.message


# ----------------------------------------------------------------------------- README numbers

def test_readme_tells_the_full_model_from_the_shipped_demo():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    full = weightimage.conv_weight_count(ngf=weightimage.SIZES["full"])
    demo = weightimage.load(weightimage.SHIPPED_DEMO)
    demo_weights = sum(lay.weights.size for lay in demo.layers)
    assert (full, demo_weights) == (12_654_592, 1_099_264)
    assert f"| conv weights | {full:,} " in readme and f"| {demo_weights:,} " in readme
    assert (weightimage.SIZES["full"], demo.ngf) == (128, 32)
    assert "| width (ngf) | 128 | 32 |" in readme
    full_mb = len(weightimage.encode(weightimage.synthetic("full"))) / 1e6
    assert f"about {full_mb:.1f} MB" in readme
    assert f"{weightimage.SHIPPED_DEMO.stat().st_size / 1e6:.1f} MB" in readme
    assert "procedural cartoon cats" in readme


def test_a_reader_that_goes_away_ends_qcat_quietly(tmp_path):
    """`qcat demo | head -3`: the pipe closes while qcat still prints; no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "QCAT_HOME": str(tmp_path / "home")}
    proc = subprocess.run(f"{sys.executable} -m installation.cli demo --count 0 --no-speech "
                          "| head -1", shell=True, capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout.startswith("qcat demo")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
