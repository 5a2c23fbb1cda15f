"""`qcat sim`: run simulated cat and die units on a pseudo-terminal (not in this release yet; the command says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "sim", "run simulated cat and die units on a pseudo-terminal", not_built("the unit simulators", "the issue that connects the units"),
            description="run simulated cat and die units on a pseudo-terminal. Not part of this release yet: the command says so and exits 2.")
