"""The supervisor against simulated cat units through real pseudo-terminals.

The units are `qcat sim cat` processes (the unit's own C core behind a pty); the controller is the
real CLI and the real supervisor. What must hold, whatever the faults: every exhibit archived from
a unit equals the golden render (it verifies), no entropy is drawn twice (the audit passes), and no
draw is left without its exhibit once the units are done.

The job flow and the refusal of other weights run against both builds of the unit (`kind`: the
host-built core, and the unit's own rv32 image under QEMU, `qcat sim cat --emulate`); the fault
tests need the host simulator's faults.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from installation import config as config_mod
from installation.paths import Home
from installation.units.supervisor import Supervisor, UnitEvent
from installation.workspace import Workspace
from models import weightimage
from quantum.pool import EntropyPool
from tests.cat_sim_support import SIM_KINDS, cat_sim

SOAK_S = float(os.environ.get("QCAT_SOAK_S", "120"))
# The soak runs the units at their modelled speed (about 3 s a cat, then the verdict's length):
# a few hundred exhibits in two minutes, each then verified.
REAL = "realistic"


@pytest.fixture(params=SIM_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _archive(run_qcat) -> list[dict]:
    return json.loads(run_qcat("gallery", "list", "--json").out)


def _all_verify(run_qcat) -> None:
    r = run_qcat("gallery", "verify", "--all")
    assert r.code == 0, r.out + r.err
    audit = run_qcat("entropy", "audit")
    assert audit.code == 0, audit.out + audit.err


def _no_draw_without_exhibit(home: Path) -> None:
    with EntropyPool(home / "entropy.sqlite") as pool:
        draws = {i for i, purpose in pool.draw_purposes("exhibit:")}
    archived = {e["draw_id"] for e in json.loads(_list_json(home))}
    assert draws == archived, f"draws without an exhibit: {sorted(draws - archived)}"


def _list_json(home: Path) -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "installation.cli", "--home", str(home),
                           "gallery", "list", "--json"], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parent.parent).stdout


def test_a_generation_with_progress_archived_as_made_by_the_unit(run_qcat, qcat_home,
                                                                  kind: str) -> None:
    with cat_sim(qcat_home, "--serial", "C0FFEE", kind=kind) as sim:
        r = run_qcat("units", "generate", sim.path, "--count", "2", "--json")
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        events: list[UnitEvent] = []
        ws = Workspace.open(Home(qcat_home), config_mod.defaults())
        sup = Supervisor(ws, [sim.path], count=1, on_event=events.append)
        made = sup.run()
    assert [e["engine"] for e in doc["archived"]] == ["unit:cat:C0FFEE"] * 2
    assert len(made) == 1 and made[0].engine == "unit:cat:C0FFEE"
    kinds = [e.kind for e in events]
    assert kinds[0] == "connected" and "exhibit" in kinds and "spoken" in kinds
    progress = [e.data for e in events if e.kind == "progress"]
    assert progress and progress[-1]["slice"] == progress[-1]["slices"]
    assert [p["layer"] for p in progress] == sorted(p["layer"] for p in progress)
    _all_verify(run_qcat)
    _no_draw_without_exhibit(qcat_home)


def test_unplugged_mid_generation_the_job_completes_with_the_same_bytes(
        run_qcat, qcat_home, tmp_path) -> None:
    link = tmp_path / "by-id-qcat-cat"
    # a job is about 22 frames and its re-send about 16 (+ the handshake): pulled after 20
    # frames on each port, the cable goes in the middle of the first job and the re-send fits
    with cat_sim(qcat_home, "--unplug-after", "20", "--link", str(link)) as sim:
        r = run_qcat("units", "generate", str(link), "--count", "2")
        assert r.code == 0, r.out + r.err
        assert sim.next_path() != sim.path  # a new /dev/pts node after the re-plug
    assert "failed while reading: the device is gone (unplugged?)" in r.out, r.out
    assert "reconnected: unit:cat:" in r.out
    archived = _archive(run_qcat)
    assert len(archived) == 2
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        assert len(pool.draws()) == 2  # no job was drawn twice
    _all_verify(run_qcat)  # the archived images equal the golden render
    assert not link.exists()  # the simulator removed its link on the way out


def test_a_wrong_image_is_caught_reported_and_not_archived(run_qcat, qcat_home) -> None:
    with cat_sim(qcat_home, "--wrong-image-rate", "1.0") as sim:
        r = run_qcat("units", "generate", sim.path)
    assert r.code == 3, r.out + r.err
    assert "returned a wrong image for exhibit" in r.out and "not archived" in r.out
    assert "taken out of service" in r.err
    assert _archive(run_qcat) == []
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        pending = pool.draws()
    assert len(pending) == 1  # the job is pending with its bytes
    with cat_sim(qcat_home) as sim:  # a good unit completes that same job: no new draw
        assert run_qcat("units", "generate", sim.path).code == 0
    archived = _archive(run_qcat)
    assert [e["draw_id"] for e in archived] == [pending[0].id]
    _all_verify(run_qcat)


def test_a_unit_that_loses_the_line_on_every_job_is_taken_out_of_service(
        run_qcat, qcat_home, tmp_path) -> None:
    link = tmp_path / "flaky"
    with cat_sim(qcat_home, "--unplug-after", "8", "--link", str(link)):
        r = run_qcat("units", "generate", str(link))
    assert r.code == 3 and "taken out of service" in r.err, r.out + r.err
    assert _archive(run_qcat) == []
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        assert len(pool.draws()) == 1  # one job, pending with its bytes, not drawn again


def test_a_unit_with_other_weights_is_refused(run_qcat, qcat_home, tmp_path, kind: str) -> None:
    other = tmp_path / "other.qcw"
    weightimage.save(weightimage.synthetic("demo", seed=5), other)
    with cat_sim(qcat_home, "--weights", str(other), kind=kind) as sim:
        r = run_qcat("units", "generate", sim.path)
        ping = run_qcat("units", "ping", sim.path, "--json")
    assert r.code == 3 and "Traceback" not in r.err
    assert "is not used: its weight image is" in r.err
    assert json.loads(ping.out)["weights_match"] is False
    with EntropyPool(qcat_home / "entropy.sqlite") as pool:
        assert pool.draws() == []  # nothing drawn for a unit that is not used


@pytest.mark.slow
def test_four_faulty_units_for_two_minutes_lose_nothing(run_qcat, qcat_home, tmp_path) -> None:
    faults = [
        ("--drop-rate", "0.02", "--seed", "1"),
        ("--corrupt-rate", "0.02", "--seed", "2"),
        ("--unplug-after", "60", "--seed", "3"),
        ("--wrong-image-rate", "0.1", "--drop-rate", "0.01", "--seed", "4"),
    ]
    links = [tmp_path / f"unit-{i}" for i in range(4)]
    events: list[UnitEvent] = []
    with cat_sim(qcat_home, *faults[0], "--link", str(links[0]), timing=REAL), \
            cat_sim(qcat_home, *faults[1], "--link", str(links[1]), timing=REAL), \
            cat_sim(qcat_home, *faults[2], "--link", str(links[2]), timing=REAL), \
            cat_sim(qcat_home, *faults[3], "--link", str(links[3]), timing=REAL):
        ws = Workspace.open(Home(qcat_home), config_mod.defaults())
        sup = Supervisor(ws, [str(p) for p in links], on_event=events.append,
                         reconnect_for_s=20)
        threading.Timer(SOAK_S, sup.stop).start()
        made = sup.run()
    kinds = {e.kind for e in events}
    assert {"lost", "reconnected", "fault", "exhibit"} <= kinds, kinds
    assert sup.failures == [], sup.failures
    assert len(made) >= 4 * SOAK_S / 30, len(made)
    assert {e.engine for e in made} == {e.unit for e in events if e.kind == "connected"}
    _all_verify(run_qcat)
    _no_draw_without_exhibit(qcat_home)
