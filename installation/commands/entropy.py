"""`qcat entropy`: placeholder until its feature lands (says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "entropy", "(not built yet)", not_built("qcat entropy", "a later issue"))
