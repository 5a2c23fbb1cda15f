"""The kiosk under faults for two minutes (QCAT_KIOSK_SOAK_S): it keeps going and loses nothing.

The real kiosk app (`QcatApp(mode="kiosk")` over `Station(kiosk=True)`, headless through
`App.run_test`) over a simulated fleet with faults: SIM-1 unplugs itself every few hundred frames
and comes back on a new pty behind its stable link, SIM-2 returns wrong images (only the golden
compare catches them). The pool starts with bytes for a few cats under policy `wait`, runs dry
(the units wait, the status line says so), and is refilled half way (as `qcat entropy import`
would). Throughout, the units' states and the kiosk's status line are sampled: every state the
run must pass through is seen. At the end: the gallery verifies, the pool's audit passes, and
every draw has its exhibit (jobs a fault left pending are completed with their own bytes).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installation import config as config_mod
from installation.paths import Home
from installation.station import Station
from installation.units.fleet import Fleet, SimSpec
from installation.workspace import Workspace
from quantum.pool import EntropyPool

REPO = Path(__file__).resolve().parent.parent
SOAK_S = float(os.environ.get("QCAT_KIOSK_SOAK_S", "120"))
EXHIBIT_BYTES = 203
FIRST_BYTES = EXHIBIT_BYTES * 6  # a few cats, then the pool is dry
REFILL_BYTES = 20_480  # one keyed ANU request's worth
SAMPLE_S = 0.25
FLEET = [SimSpec("SIM-1", "fast", ("--unplug-after", "300", "--seed", "1")),
         SimSpec("SIM-2", "fast", ("--wrong-image-rate", "0.25", "--seed", "2"))]


def qcat(home: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installation.cli", "--home", str(home),
                           "--config", str(config), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


@pytest.mark.slow
def test_kiosk_under_faults_keeps_going_shows_each_state_and_loses_nothing(
        tmp_path: Path) -> None:
    from textual.widgets import Static

    from tui.app import QcatApp

    home = tmp_path / "home"
    config = tmp_path / "qcat.toml"
    config.write_text('[entropy]\nwhen_empty = "wait"\nwait_timeout_s = 3600\n')
    ws = Workspace.open(Home(home), config_mod.load(config))
    with EntropyPool(home / "entropy.sqlite") as pool:
        pool.store_batch(os.urandom(FIRST_BYTES), "import", {"note": "soak: the first bytes"})

    states: set[str] = set()
    lines: set[str] = set()
    refilled_at = time.monotonic() + SOAK_S / 2

    async def soak(station: Station) -> None:
        nonlocal refilled_at
        app = QcatApp(station, mode="kiosk")
        async with app.run_test(size=(160, 50)) as pilot:
            end = time.monotonic() + SOAK_S
            refilled = False
            while time.monotonic() < end:
                await pilot.pause(SAMPLE_S)
                states.update(u.state for u in station.units())
                lines.add(str(app.screen.query_one("#status", Static).render()))
                if not refilled and time.monotonic() >= refilled_at:
                    with EntropyPool(home / "entropy.sqlite") as pool:
                        pool.store_batch(os.urandom(REFILL_BYTES), "import",
                                         {"note": "soak: refilled"})
                    refilled, refilled_at = True, time.monotonic()
            assert app.is_running, "the kiosk ended by itself"
            made_by_now = len(station.latest(10_000))
        assert made_by_now > 0

    with Fleet(home, FLEET, config=config) as fleet:
        station = Station(ws, fleet.ports, kiosk=True)
        try:
            asyncio.run(soak(station))
        finally:
            station.stop()
        replugs = fleet.units[0].plugs - 1
        units = {u.port: u for u in station.units()}

    text = " | ".join(sorted(lines))
    assert replugs >= 1, "SIM-1 never unplugged: the soak did not exercise reconnecting"
    assert "lost" in states or any(u.faults for u in units.values()), states
    assert units[fleet.ports[1]].faults >= 1, "SIM-2's wrong images were never caught"
    assert "waiting for entropy" in states, f"the dry pool was never shown: {states}"
    assert "waiting for quantum bytes" in text, text
    assert "working" in states or "speaking" in states, states
    assert "quantum bytes for" in text, f"the refilled pool was never shown: {text}"
    made = {u.port: u.made for u in units.values()}
    assert all(n > 0 for n in made.values()), f"a unit made nothing: {made}"

    # Nothing lost: jobs a fault left pending complete with their own bytes, then every draw
    # has exactly its exhibit, every file verifies, and the pool's invariants hold.
    gen = ws.open_generator()
    try:
        gen.complete_pending()
    finally:
        gen.pool.close()
        gen.gallery.close()
    with EntropyPool(home / "entropy.sqlite") as pool:
        draws = {i for i, _purpose in pool.draw_purposes("exhibit:")}
    listed = qcat(home, config, "gallery", "list", "--json")
    archived = {e["draw_id"] for e in json.loads(listed.stdout)}
    assert draws == archived, f"draws without an exhibit: {sorted(draws - archived)}"
    r = qcat(home, config, "gallery", "verify", "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    r = qcat(home, config, "entropy", "audit")
    assert r.returncode == 0, r.stdout + r.stderr
