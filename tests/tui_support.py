"""Helpers for tests/test_tui_*.py (not a test module itself): a home with a fixed gallery.

`fixed_workspace(home, n)` imports a deterministic batch of bytes into the pool (source "import",
so no network) and makes `n` real exhibits with the numpy engine: the same cats, moods and verdicts
on every run, which is what the snapshot tests need. `FROZEN_NOW` is the wall clock the app and the
station are given so that no time on the screen moves.
"""

from __future__ import annotations

import random
from pathlib import Path

from installation import config as config_mod
from installation.paths import Home
from installation.workspace import Workspace

FROZEN_NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
BATCH_BYTES = 20_480


def fixed_workspace(home: Path, exhibits: int, *, batch_bytes: int = BATCH_BYTES,
                    **config: object) -> Workspace:
    cfg = config_mod.defaults()
    for key, value in config.items():
        cfg[key.replace("__", ".")] = value
    ws = Workspace.open(Home(home), cfg)
    if batch_bytes:
        with ws.open_pool() as pool:
            pool.store_batch(random.Random(2026).randbytes(batch_bytes), "import",
                             {"test": "fixed bytes for the TUI snapshots"})
    if exhibits:
        gen = ws.open_generator(engine="numpy")
        try:
            gen.generate(exhibits)
        finally:
            gen.pool.close()
            gen.gallery.close()
    return ws
