"""`qcat tui`: open the operator dashboard (Textual TUI) (not built yet; the command says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "tui", "open the operator dashboard (Textual TUI)",
            not_built("open the operator dashboard", "meanwhile `qcat entropy status` and "
                      "`qcat gallery list` show the entropy pool and the exhibits"),
            description="open the operator dashboard (Textual TUI). Not built yet in this "
            "version of qcat: the command says so and exits 2.")
