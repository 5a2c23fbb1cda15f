"""A plain progress bar on stderr for long work (training, builds, fetches, renders).

Library code never draws: it accepts a `progress(done, total, note)` callback, and the CLI hands
it a `ProgressBar`. No rich/textual here: the core must not import the UI toolkit. When stderr is
not a terminal (CI, pipes) the bar prints a line at most every few seconds instead of redrawing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressCallback = Callable[[int, int, str], None]

BAR_WIDTH = 30
# When stderr is not a terminal, print at most one line per this many seconds.
NON_TTY_INTERVAL_S = 5.0


class ProgressBar:
    """`with ProgressBar("training") as bar: lib_call(progress=bar)`."""

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_print = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not self.tty and not finished and now - self._last_print < NON_TTY_INTERVAL_S:
            return
        self._last_print = now
        frac = min(1.0, done / total) if total > 0 else 0.0
        filled = int(frac * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        elapsed = now - self.started
        eta = ""
        if 0 < frac < 1:
            eta = f" eta {elapsed / frac - elapsed:5.0f}s"
        line = f"{self.label} [{bar}] {done}/{total} {frac * 100:5.1f}%{eta} {note}".rstrip()
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
