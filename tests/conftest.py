"""Shared fixtures: an isolated qcat home per test and a way to run the real CLI.

`run_qcat` calls `installation.cli.main` in-process (fast, and what a script calling the library
does); `qcat_subprocess` runs the installed console script in a child process (what a user does).
Both point QCAT_HOME at a temporary folder so no test touches the user's real state.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def qcat_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("QCAT_HOME", str(home))
    monkeypatch.delenv("QCAT_CONFIG", raising=False)
    monkeypatch.delenv("QCAT_ANU_API_KEY", raising=False)
    return home


@pytest.fixture
def run_qcat(qcat_home: Path, capsys: pytest.CaptureFixture[str]):
    """Run `qcat ARGS...` in-process; returns Result(code, stdout, stderr)."""
    from installation.cli import main

    def run(*args: str) -> Result:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors and --help/--version
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def qcat_subprocess(qcat_home: Path):
    """Run the real `qcat` console entry point in a child process."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "installation.cli", *map(str, args)],
                              capture_output=True, text=True, env=full_env, timeout=timeout,
                              cwd=REPO)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
