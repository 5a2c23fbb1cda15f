"""The RISC-V cross compiler the units' firmware is built with, for tests that build it.

Where it is missing the test is skipped with the command that installs it, except in CI, where the
project's own Makefile installs it: there a missing compiler fails the test instead of letting
every size and stack assertion quietly skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

RV_CC = "riscv64-unknown-elf-gcc"


def require_cross_compiler() -> None:
    """Skip (or, in CI, fail) unless the RISC-V cross compiler is installed."""
    if shutil.which(RV_CC) is not None:
        return
    reason = (f"{RV_CC} is not installed (apt-get install gcc-riscv64-unknown-elf "
              "picolibc-riscv64-unknown-elf)")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


QEMU = "qemu-system-riscv32"


def require_qemu() -> None:
    """Skip (or, in CI, fail) unless the cross compiler and QEMU's RISC-V system emulator are
    installed (the top Makefile's `make test` installs both)."""
    require_cross_compiler()
    if shutil.which(QEMU) is not None:
        return
    reason = f"{QEMU} is not installed (apt-get install qemu-system-misc)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
