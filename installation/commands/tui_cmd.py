"""`qcat tui`: open the operator dashboard (Textual TUI) (not in this release yet; the command says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "tui", "open the operator dashboard (Textual TUI)", not_built("the operator dashboard", "the TUI issue"),
            description="open the operator dashboard (Textual TUI). Not part of this release yet: the command says so and exits 2.")
