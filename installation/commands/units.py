"""`qcat units`: supervise the cat and die units over serial (not built yet; the command says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "units", "supervise the cat and die units over serial",
            not_built("supervise units", "meanwhile `qcat generate` renders exhibits on this "
                      "machine with the same C engine the cat unit runs"),
            description="supervise the cat and die units over serial. Not built yet in this "
            "version of qcat: the command says so and exits 2.")
