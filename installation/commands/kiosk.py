"""`qcat kiosk`: run the unattended kiosk mode that starts on boot (not in this release yet; the command says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "kiosk", "run the unattended kiosk mode that starts on boot", not_built("kiosk mode", "the TUI issue"),
            description="run the unattended kiosk mode that starts on boot. Not part of this release yet: the command says so and exits 2.")
