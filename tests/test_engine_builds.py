"""The engine's C builds: the host library warning-free with -Wall -Wextra, and the cat unit's
RISC-V image (rv32imafc, -Os, picolibc) compiled, linked and measured: text/data/bss and the
worst stack depth are printed (run pytest with -s to see them) and bounded.

Without the cross compiler the rv32 test fails when CI is set (CI must install
gcc-riscv64-unknown-elf and picolibc-riscv64-unknown-elf; `make test` does as root) and skips
with the reason otherwise.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from firmware import cat_engine
from tests.cross_support import require_cross_compiler

# Bounds a plausible regression would cross: the engine is about 6 KB of code; the arena is
# 512 KB of .bss; the deepest call chain needs well under 1 KB of stack.
MAX_TEXT_BYTES = 16 * 1024
MIN_BSS_BYTES = 512 * 1024
MAX_STACK_BYTES = 2048


def _make(target: str, build: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-B", "-C", str(cat_engine.FIRMWARE_DIR),
                           target, f"BUILD={build}"], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_host_build_is_warning_free(tmp_path: Path) -> None:
    if cat_engine.find_compiler() is None:
        pytest.skip("no C compiler")
    proc = _make("host", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    assert (tmp_path / "libcatengine.so").exists() and (tmp_path / "cat_run").exists()


def test_rv32_build_compiles_and_reports_sizes(tmp_path: Path) -> None:
    require_cross_compiler()
    proc = _make("rv32", tmp_path)
    print("\n" + proc.stdout)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "warning" not in proc.stderr, proc.stderr
    sizes = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+[0-9a-f]+\s+\S*cat_unit\.elf", proc.stdout,
                      re.M)
    assert sizes, proc.stdout
    text, data, bss = (int(v) for v in sizes.groups())
    assert 0 < text <= MAX_TEXT_BYTES
    assert bss >= MIN_BSS_BYTES  # the static arena lives in .bss
    stack = re.search(r"worst stack depth: (\d+) bytes \((.+)\)", proc.stdout)
    assert stack, proc.stdout
    assert 0 < int(stack.group(1)) <= MAX_STACK_BYTES
    # The deepest path runs through the engine (under the unit core's poll since it links).
    assert stack.group(2).startswith("main -> ") and "cat_generate" in stack.group(2).split(" -> ")
    # It really is a 32-bit RISC-V hard-float executable.
    elf = (tmp_path / "rv32" / "cat_unit.elf").read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 1  # ELFCLASS32
    assert int.from_bytes(elf[18:20], "little") == 243  # EM_RISCV
    assert int.from_bytes(elf[36:40], "little") & 0x2  # EF_RISCV_FLOAT_ABI_SINGLE
