"""Between jobs the supervisor is not blind: a paused worker, or one waiting for entropy, watches
its unit's heartbeats and sends the controller's own; a unit unplugged while nothing happens is
seen, reconnected and shown; `units()` is the table the dashboard draws. Real pseudo-terminals,
the unit's own C core behind them (`qcat sim cat`; the heartbeat watch and the late unit also
against its rv32 image under QEMU, `kind` "emulate").
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from installation import config as config_mod
from installation.paths import Home
from installation.units import protocol as qp
from installation.units.supervisor import Supervisor, UnitEvent
from installation.workspace import Workspace
from quantum.pool import EntropyPool
from tests.cat_sim_support import SIM_KINDS, cat_sim

WAIT_S = 30.0


def _until(predicate, timeout_s: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.05)


def _frames_sent(trace_lines: list[str]) -> list[int]:
    """Message types of the frames the controller sent, read back from its --trace dump."""
    decoder = qp.FrameDecoder()
    data = bytes.fromhex("".join(line[8:8 + 47].replace(" ", "") for line in trace_lines
                                 if line.startswith("->")))
    return [f.type for f in decoder.feed(data) if isinstance(f, qp.Frame)]


def _start(sup: Supervisor) -> threading.Thread:
    t = threading.Thread(target=sup.run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("kind", SIM_KINDS)
def test_a_paused_worker_watches_its_unit_and_resumes(qcat_home: Path, kind: str) -> None:
    trace: list[str] = []
    events: list[UnitEvent] = []
    with cat_sim(qcat_home, "--serial", "WATCH1", kind=kind) as sim:
        ws = Workspace.open(Home(qcat_home), config_mod.defaults())
        sup = Supervisor(ws, [sim.path], on_event=events.append, trace=trace.append)
        sup.pause()
        t = _start(sup)
        _until(lambda: sup.units()[0].state == "paused", what="the worker pauses")
        first = sup.units()[0].last_heard
        time.sleep(2.5)
        [st] = sup.units()
        assert st.state == "paused" and st.unit == "unit:cat:WATCH1" and st.made == 0
        assert st.last_heard is not None and first is not None and st.last_heard > first
        assert time.time() - st.last_heard < 1.5  # the unit's heartbeats are heard
        assert _frames_sent(trace).count(qp.MessageType["HEARTBEAT"]) >= 2  # and ours go out
        sup.resume()
        _until(lambda: sup.units()[0].made >= 1, what="an exhibit after resume")
        sup.stop()
        t.join(WAIT_S)
    assert not t.is_alive() and sup.failures == []
    assert sup.units()[0].state == "stopped"
    kinds = [e.kind for e in events]
    assert kinds[0] == "connected" and "exhibit" in kinds


def test_a_unit_unplugged_while_paused_is_seen_and_reconnected(qcat_home: Path,
                                                               tmp_path: Path) -> None:
    link = tmp_path / "cat-by-id"
    events: list[UnitEvent] = []
    # paused, the unit sends only heartbeats (and the HELLO): the cable goes after 4 frames
    with cat_sim(qcat_home, "--unplug-after", "4", "--link", str(link)):
        ws = Workspace.open(Home(qcat_home), config_mod.defaults())
        sup = Supervisor(ws, [str(link)], on_event=events.append, reconnect_for_s=None)
        sup.pause()
        t = _start(sup)
        _until(lambda: any(e.kind == "reconnected" for e in events), what="a reconnect")
        sup.stop()
        t.join(WAIT_S)
    lost = [e for e in events if e.kind == "lost"]
    assert lost and ("unplugged" in lost[0].text or "stopped answering" in lost[0].text), lost
    assert sup.units()[0].faults >= 1 and sup.failures == []
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        assert pool.draws() == []  # paused: nothing was drawn


def test_an_empty_pool_with_policy_wait_is_shown_and_work_resumes_when_bytes_come(
        qcat_home: Path) -> None:
    events: list[UnitEvent] = []
    cfg = qcat_home.parent / "qcat.toml"
    cfg.write_text('[entropy]\nwhen_empty = "wait"\n')
    with cat_sim(qcat_home) as sim:
        ws = Workspace.open(Home(qcat_home), config_mod.load(cfg))
        sup = Supervisor(ws, [sim.path], count=1, on_event=events.append)
        t = _start(sup)
        _until(lambda: sup.units()[0].state == "waiting for entropy", what="waiting")
        time.sleep(1.5)
        assert sup.units()[0].state == "waiting for entropy"  # still waiting, not failed
        with EntropyPool(qcat_home / "entropy.sqlite") as pool:
            assert pool.draws() == []
            pool.store_batch(os.urandom(4096), "import", {"note": "test bytes"})
        t.join(WAIT_S)
    assert not t.is_alive() and sup.failures == [] and len(sup.made) == 1
    assert sup.made[0].source == "import"
    waiting = [e for e in events if e.kind == "waiting"]
    assert len(waiting) == 1 and "waiting for bytes" in waiting[0].text


@pytest.mark.parametrize("kind", SIM_KINDS)
def test_a_unit_away_at_start_is_waited_for_when_the_supervisor_waits_forever(
        qcat_home: Path, tmp_path: Path, kind: str) -> None:
    """The kiosk starts before a unit is plugged in: the worker keeps trying its port."""
    link = tmp_path / "later"
    events: list[UnitEvent] = []
    ws = Workspace.open(Home(qcat_home), config_mod.defaults())
    sup = Supervisor(ws, [str(link)], count=1, on_event=events.append, reconnect_for_s=None)
    t = _start(sup)
    _until(lambda: sup.units()[0].last_fault != "", what="a first failed attempt")
    assert sup.units()[0].state == "connecting" and t.is_alive()
    with cat_sim(qcat_home, "--link", str(link), kind=kind):
        t.join(WAIT_S)
    assert not t.is_alive() and len(sup.made) == 1 and sup.failures == []
