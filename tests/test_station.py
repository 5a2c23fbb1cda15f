"""The station: the one service the dashboard and the kiosk are faces of, against a simulated cat
unit through a real pseudo-terminal (the unit's own C core behind it)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from installation import config as config_mod
from installation.errors import InputError
from installation.paths import Home
from installation.station import Station
from installation.workspace import Workspace
from tests.cat_sim_support import cat_sim

WAIT_S = 30.0


def _until(predicate, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.05)


def test_paused_station_makes_one_exhibit_on_request_with_its_trace(qcat_home: Path) -> None:
    ws = Workspace.open(Home(qcat_home), config_mod.defaults())
    with cat_sim(qcat_home, "--serial", "STATION") as sim:
        station = Station(ws, [sim.path], paused=True)
        seen = []
        station.subscribe(seen.append)
        station.start()
        _until(lambda: station.units()[0].state == "paused", "paused")
        assert station.latest() == []
        station.trace(sim.path, True)
        said = station.generate_now(sim.path)
        assert "one exhibit requested" in said
        _until(lambda: len(station.latest()) == 1 and station.units()[0].state == "paused",
               "one exhibit, then paused again")
        time.sleep(1.0)
        assert len(station.latest()) == 1  # one, not a loop
        [ex] = station.latest()
        assert ex.engine == "unit:cat:STATION"
        trace = station.trace_lines(sim.path)
        assert any(line.startswith("->") for line in trace)
        assert any(line.startswith("<-") for line in trace)
        station.trace(sim.path, False)
        station.stop()
    assert not station.running
    kinds = [line.kind for line in station.log()]
    assert "connected" in kinds and "exhibit" in kinds and "requested" in kinds
    assert "progress" not in kinds and any(e.kind == "progress" for e in seen)
    pool = station.pool()
    assert pool["os_fallback_draws"] == 1 and pool["when_empty"] == "os"
    assert pool["requests_left"] == ws.config["entropy.monthly_request_budget"]
    report = station.verify()
    assert report.ok and report.checked == 1
    with pytest.raises(InputError, match="no unit on /dev/nowhere"):
        station.generate_now("/dev/nowhere")


def test_a_station_without_units_says_so(qcat_home: Path) -> None:
    ws = Workspace.open(Home(qcat_home), config_mod.defaults())
    station = Station(ws, [])
    station.start()
    assert not station.running
    assert "no units" in station.log()[-1].text


def test_the_station_keeps_its_pool_above_the_mark_and_stops_at_the_budget(
        qcat_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the fake ANU service on loopback: below the low-water mark the station's background
    refill fetches, within the monthly budget; at the budget it stops and says so on the
    screen's figures, and asks nothing more."""
    from installation.prefetch import OutcomeKind
    from tests.fake_anu import KEY, running_fake

    monkeypatch.setenv("QCAT_ANU_API_KEY", KEY)
    qcat_home.mkdir(parents=True)
    with running_fake() as fake:
        cfg = qcat_home / "qcat.toml"
        cfg.write_text(f'[entropy]\napi_url = "{fake.url}"\nmax_retries = 0\n'
                       "monthly_request_budget = 3\nassumed_exhibits_per_day = 200.0\n")
        ws = Workspace.open(Home(qcat_home), config_mod.load(cfg))
        station = Station(ws, [], refill_every_s=0.2)
        before = station.pool()
        assert before["days_left"] == 0 and "below the mark of 3 days" in before["refill_plan"]
        station.start()
        _until(lambda: station.last_refill is not None, "a refill")
        time.sleep(1.0)  # further looks: the budget is spent, nothing more is asked
        station.stop()
        assert len(fake.seen) == 3
    assert station.last_refill is not None and station.last_refill.kind is OutcomeKind.BUDGET
    after = station.pool()
    assert after["available_bytes"] == 3 * 20_480 and after["requests_left"] == 0
    assert "stopped at the monthly budget of 3 ANU requests" in after["refill"]
    assert [line.kind for line in station.log()].count("refill") == 1
