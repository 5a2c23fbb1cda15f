"""Named crash points, so tests can prove crash safety at the exact instants that matter.

Setting ``QCAT_CRASH_AT=<name>`` makes the process SIGKILL itself when it reaches `point(name)`:
no cleanup, no finally blocks, no flushed buffers, exactly as a power cut or `kill -9` would. The
points sit between steps whose order the promises depend on (e.g. after an exhibit's entropy draw
and before its archive row). Unset, a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "QCAT_CRASH_AT"


def point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
