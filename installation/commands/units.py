"""`qcat units`: supervise the cat and die units over serial (not in this release yet; the command says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "units", "supervise the cat and die units over serial", not_built("the unit supervisor", "the issue that connects the units"),
            description="supervise the cat and die units over serial. Not part of this release yet: the command says so and exits 2.")
