"""`qcat kiosk`: run the unattended kiosk mode that starts on boot (not built yet; the command says so plainly)."""

from __future__ import annotations

from typing import Any

from installation.commands import command, not_built


def register(sub: Any) -> None:
    command(sub, "kiosk", "run the unattended kiosk mode that starts on boot",
            not_built("run the kiosk", "meanwhile `qcat demo` makes a few exhibits and shows "
                      "them in the terminal"),
            description="run the unattended kiosk mode that starts on boot. Not built yet in "
            "this version of qcat: the command says so and exits 2.")
