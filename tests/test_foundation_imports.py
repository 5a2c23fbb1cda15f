"""The dependency rule: the runtime path never imports torch, and the core never imports the UI.

The kiosk starts on a Raspberry Pi; torch takes seconds to import and hundreds of MB. Each check
imports the packages in a *fresh* interpreter and inspects sys.modules, so an `import torch`
anywhere in the import graph of a runtime package fails here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

RUNTIME = ["installation", "installation.cli", "installation.commands", "installation.config",
           "quantum", "quantum.latent", "phrases", "firmware", "models"]
OPTIONAL_RUNTIME = ["quantum.pool", "quantum.client", "models.reference", "models.weightimage",
                    "models.dice", "models.die_judge",
                    "phrases.clipbank", "firmware.cat_engine", "installation.engines",
                    "installation.exhibit", "installation.gallery"]
FORBIDDEN_EVERYWHERE = ["torch"]
FORBIDDEN_IN_CORE = ["torch", "textual", "rich"]


def loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    return set(json.loads(out))


def runtime_modules() -> list[str]:
    present = [m for m in OPTIONAL_RUNTIME if importlib.util.find_spec(m) is not None]
    return RUNTIME + present


def test_runtime_path_leaves_torch_textual_and_rich_out():
    loaded = loaded_after_import(runtime_modules())
    for name in FORBIDDEN_IN_CORE:
        assert name not in loaded, f"importing the runtime packages loaded {name!r}"


def test_the_check_would_catch_a_torch_import(tmp_path):
    """Prove the test can fail: a package that imports torch is caught by the same probe."""
    pytest.importorskip("torch")
    pkg = tmp_path / "leaky"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import torch\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import leaky, json; "
        "print(json.dumps('torch' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is True


def test_no_runtime_source_file_imports_torch():
    """A static check too, so a lazy top-level import in a rarely imported module is caught."""
    offenders = []
    for package in ("installation", "quantum", "phrases", "firmware", "tui"):
        for path in (REPO / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(("import torch", "from torch")) and not line.startswith(" "):
                    offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"top-level torch import on the runtime path: {offenders}"


def test_qcat_help_stays_light():
    """`qcat --help` (and so the start of every command) loads neither torch, textual nor numpy."""
    code = (
        "import sys, json, contextlib, io\n"
        "from installation.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print(json.dumps([m for m in ('torch', 'textual', 'numpy') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert json.loads(out) == []


@pytest.mark.parametrize("args", [["models", "quality"], ["models", "train", "judge"],
                                  ["engine", "run", "--engine", "torch", "--entropy-hex", "00" * 200,
                                   "--out", "x.png"]])
def test_commands_needing_torch_say_so_when_it_is_missing(args, tmp_path):
    """On a controller without the train extra, torch commands end in one sentence, exit 3."""
    code = (
        "import sys; sys.modules['torch'] = None  # as if torch were not installed\n"
        "from installation.cli import main\n"
        f"raise SystemExit(main({args!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "QCAT_HOME": str(tmp_path / "h"),
                               "PYTHONPATH": str(REPO)})
    assert proc.returncode == 3, proc.stderr
    assert "needs PyTorch, which is not installed" in proc.stderr
    assert "qcat[train]" in proc.stderr and "Traceback" not in proc.stderr
