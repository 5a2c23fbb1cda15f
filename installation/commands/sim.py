"""`qcat sim`: run simulated cat and die units on a pseudo-terminal (not built yet; the command says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "sim", "run simulated cat and die units on a pseudo-terminal",
            not_built("simulate units", "meanwhile `qcat engine run` runs the cat unit's C "
                      "engine on this machine"),
            description="run simulated cat and die units on a pseudo-terminal. Not built yet in "
            "this version of qcat: the command says so and exits 2.")
