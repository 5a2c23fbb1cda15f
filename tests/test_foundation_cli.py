"""The `qcat` command line: help, version, exit codes, the home folder and the config commands."""

from __future__ import annotations

import json
import os
import stat

import pytest

from installation import __version__
from installation.commands import GROUP_MODULES

GROUPS = ["config", "entropy", "models", "sd", "engine", "phrases", "generate", "gallery",
          "demo", "bench", "units", "sim", "tui", "kiosk"]


def test_version(run_qcat):
    r = run_qcat("--version")
    assert r.code == 0 and r.out.strip() == f"qcat {__version__}"


def test_help_lists_every_group_and_the_exit_codes(run_qcat):
    r = run_qcat("--help")
    assert r.code == 0
    for group in GROUPS:
        assert f"    {group} " in r.out, group
    assert "exit codes: 0 ok, 1 a check failed, 2 bad usage" in r.out


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_real_help(run_qcat, group):
    r = run_qcat(group, "--help")
    assert r.code == 0
    assert f"usage: qcat {group}" in r.out
    assert len(r.out.splitlines()) >= 3


def test_registered_groups_match_the_documented_list():
    assert len(GROUP_MODULES) == len(GROUPS)


def test_unknown_command_is_usage_error(run_qcat):
    r = run_qcat("frobnicate")
    assert r.code == 2 and "invalid choice" in r.err


def test_features_not_built_yet_say_so_and_exit_2():
    """Every command is built now; the helper a feature still to come would use says so."""
    from installation.commands import not_built
    from installation.errors import NotBuiltYet

    handler = not_built("roll two dice at once", "meanwhile `qcat sim die` rolls one")
    with pytest.raises(NotBuiltYet) as err:
        handler(None, None)
    assert err.value.exit_code == 2
    assert err.value.message == ("qcat cannot roll two dice at once yet: it is not built in this "
                                 "version of qcat")


def test_home_isolates_all_state(run_qcat, qcat_home, tmp_path):
    other = tmp_path / "elsewhere"
    r = run_qcat("--home", other, "config", "init")
    assert r.code == 0
    assert (other / "qcat.toml").exists() and (other / "logs" / "qcat.log").exists()
    assert not (qcat_home / "qcat.toml").exists()


def test_config_init_writes_private_commented_defaults(run_qcat, qcat_home):
    r = run_qcat("config", "init")
    assert r.code == 0
    path = qcat_home / "qcat.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "[entropy]" in text and "# when_empty = \"os\"" in text
    # a second init refuses to overwrite
    r = run_qcat("config", "init")
    assert r.code == 2 and "--force" in r.err
    assert run_qcat("config", "check").code == 0


def test_config_show_json_reports_file_values(run_qcat, qcat_home):
    qcat_home.mkdir(parents=True)
    (qcat_home / "qcat.toml").write_text('[entropy]\nwhen_empty = "fail"\n')
    r = run_qcat("config", "show", "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["config"]["entropy"]["when_empty"] == "fail"
    assert doc["config"]["engine"]["default"] == "c"


def test_config_show_hides_the_api_key(run_qcat, qcat_home, monkeypatch):
    secret = "k" * 40
    monkeypatch.setenv("QCAT_ANU_API_KEY", secret)
    for args in (("config", "show"), ("config", "show", "--json")):
        r = run_qcat(*args)
        assert r.code == 0 and secret not in r.out and "<hidden>" in r.out
    log = (qcat_home / "logs" / "qcat.log").read_text()
    assert secret not in log


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[entropy]\nmonthly_request_budget = "ten"\n', "entropy.monthly_request_budget = 'ten' must be an integer"),
        ("[entropy]\nmonthly_request_budget = true\n", "must be an integer"),
        ('[entropy]\nwhen_emty = "os"\n', "unknown key 'entropy.when_emty' (did you mean 'when_empty'?)"),
        ('[entropi]\nlegacy = true\n', "unknown section [entropi] (did you mean 'entropy'?)"),
        ('[entropy]\nwhen_empty = "maybe"\n', "is not one of \"os\", \"wait\", \"fail\""),
        ("[entropy]\nmonthly_request_budget = -1\n", "below the minimum 0"),
        ("[entropy\n", "is not valid TOML"),
        ('entropy = 3\n', "must be a [entropy] table"),
    ],
)
def test_bad_config_is_one_sentence_exit_2(run_qcat, tmp_path, text, needle):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    r = run_qcat("config", "check", bad)
    assert r.code == 2
    assert needle in r.err, r.err
    assert "Traceback" not in r.err
    assert str(bad) in r.err or "TOML" in r.err


def test_a_bad_config_in_use_stops_other_commands_too(run_qcat, qcat_home):
    qcat_home.mkdir(parents=True)
    (qcat_home / "qcat.toml").write_text('[engine]\ndefault = "gpu"\n')
    r = run_qcat("config", "show")
    assert r.code == 2 and "engine.default = 'gpu'" in r.err


def test_config_file_with_key_must_be_private(run_qcat, tmp_path):
    cfg = tmp_path / "keyed.toml"
    cfg.write_text('[entropy]\napi_key = "' + "s" * 32 + '"\n')
    os.chmod(cfg, 0o644)
    r = run_qcat("--config", cfg, "config", "show")
    assert r.code == 2 and "chmod 600" in r.err and "s" * 32 not in r.err
    os.chmod(cfg, 0o600)
    r = run_qcat("--config", cfg, "config", "show")
    assert r.code == 0 and "s" * 32 not in r.out


def test_missing_config_file_to_check(run_qcat, tmp_path):
    r = run_qcat("config", "check", tmp_path / "nope.toml")
    assert r.code == 2 and "does not exist" in r.err and "qcat config init" in r.err


def test_console_script_runs_in_a_subprocess(qcat_subprocess):
    r = qcat_subprocess("--version")
    assert r.code == 0 and __version__ in r.out


def test_a_closed_pipe_is_not_a_traceback(qcat_home):
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run(
        f"{sys.executable} -m installation.cli phrases list | head -1",
        shell=True, capture_output=True, text=True, cwd=REPO)
    assert proc.stdout.count("\n") == 1 and "\t" in proc.stdout
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_a_config_file_named_explicitly_must_exist(run_qcat, tmp_path, monkeypatch):
    missing = tmp_path / "typo.toml"
    r = run_qcat("--config", missing, "config", "show")
    assert r.code == 2 and "does not exist" in r.err and "qcat config init" in r.err
    monkeypatch.setenv("QCAT_CONFIG", str(missing))
    assert run_qcat("config", "show").code == 2
    # the default location may be absent: then the defaults apply
    monkeypatch.delenv("QCAT_CONFIG")
    assert run_qcat("config", "show").code == 0
