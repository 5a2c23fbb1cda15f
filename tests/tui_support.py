"""Helpers for tests/test_tui_*.py (not a test module itself): a home with a fixed gallery.

`fixed_workspace(home, n)` imports a deterministic batch of bytes into the pool (source "import",
so no network) and makes `n` real exhibits with the numpy engine: the same cats, moods and verdicts
on every run, which is what the snapshot tests need. `FROZEN_NOW` is the wall clock the app and the
station are given so that no time on the screen moves. `add_rolls(ws, n)` archives `n` honest rolls
of a die, made and checked as the controller takes in a die unit's.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from installation import config as config_mod
from installation.gallery import Roll
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


def add_rolls(ws: Workspace, n: int, serial: str = "D-1") -> list[Roll]:
    """`n` rolls of die `serial` archived in `ws`'s gallery, oldest first: its bytes drawn from the
    pool as the controller tops a die up (purpose die:<serial>), each roll made by the reference
    from its stretch of the die's stream (the shipped decoder) and taken in through `check_roll`,
    as a die unit's report is."""
    from installation.dice import DieStream, check_roll
    from models import die_reference

    ref = ws.die_ref()
    made: list[Roll] = []
    with ws.open_pool() as pool, ws.open_gallery() as gallery:
        stream = DieStream(pool, serial)
        last = gallery.rolls(serial, limit=1)
        offset = last[0].stream_offset + last[0].used if last else 0
        while len(made) < n:
            data, _, _ = stream.slice(offset, stream.end - offset)
            recipe = die_reference.roll_from_bytes(data)
            if recipe is None:  # the die's reserve ran out: the controller tops it up
                stream.topup(die_reference.ROLL_BYTES * (n - len(made)))
                continue
            face = die_reference.roll_face(ref.model, recipe)
            made.append(gallery.add_roll(check_roll(ref, stream, pips=recipe.pips, face=face,
                                                    offset=offset, used=recipe.used)))
            offset += recipe.used
    return made


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test with asyncio.run (no async pytest plugin is installed)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper
