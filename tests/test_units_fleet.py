"""The simulated fleet: real `qcat sim cat` children behind stable links, and none left behind.

What a plausible bug breaks here: a link that is not the unit (HELLO through it fails), a child
left running after `stop()` or after its parent was SIGKILLed (the PR_SET_PDEATHSIG path), a
stale link kept, a unit that never came up reported as anything but one sentence naming its log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from installation.errors import DeviceError, InputError
from installation.units.fleet import Fleet, SimSpec, specs
from tests.cat_sim_support import Controller

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptys and prctl")


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_two_units_answer_hello_through_their_links_and_stop_clean(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Fleet(home, specs(2, timing="fast")) as fleet:
        assert fleet.ports == [str(home / "run" / "sim-1"), str(home / "run" / "sim-2")]
        ptys = set()
        for n, (port, unit) in enumerate(zip(fleet.ports, fleet.units, strict=True), start=1):
            assert Path(port).is_symlink() and os.readlink(port) == unit.pty
            ptys.add(unit.pty)
            with Controller(port) as ctl:
                hello = ctl.hello()
            assert hello.serial.rstrip(b"\0") == f"SIM-{n}".encode()
        assert len(ptys) == 2, "two units, two ptys"
        pids = [u.pid for u in fleet.units]
    assert wait_gone(pids, 1.0) == []
    assert [u.proc.returncode for u in fleet.units] == [0, 0], "SIGTERM: exit 0, no traceback"
    assert not any(p.is_symlink() for p in (home / "run").iterdir()), "links removed"
    for n in (1, 2):  # stderr went to the log, not to our terminal
        assert (home / "logs" / f"sim-{n}.log").is_file()
        assert "Traceback" not in (home / "logs" / f"sim-{n}.log").read_text()


def test_a_stale_link_from_a_killed_fleet_is_replaced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    os.symlink("/dev/pts/does-not-exist", home / "run" / "sim-1")
    with Fleet(home, specs(1, timing="fast")) as fleet:
        assert os.readlink(fleet.ports[0]) == fleet.units[0].pty


def test_no_simulator_outlives_a_parent_killed_without_a_word(tmp_path: Path) -> None:
    """SIGKILL gives the parent no chance to stop its fleet: the kernel must (PDEATHSIG)."""
    home = tmp_path / "home"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from installation.units.fleet import Fleet, specs
        fleet = Fleet(Path({str(home)!r}), specs(2, timing="fast"))
        fleet.start()
        print(" ".join(str(u.pid) for u in fleet.units), flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(pids) == [], "simulators left running after their parent died"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_unit_that_cannot_start_is_one_sentence_and_stops_the_others(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = [SimSpec("SIM-1", "fast"), SimSpec("SIM-2", "fast", ("--drop-rate", "7"))]
    fleet = Fleet(home, bad)
    with pytest.raises(DeviceError) as err:
        fleet.start()
    assert "SIM-2 did not start: it ended (exit 2)" in err.value.message
    assert "not a probability" in err.value.message, "the log's last line says why"
    assert str(home / "logs" / "sim-2.log") in (err.value.hint or "")
    assert wait_gone([u.pid for u in fleet.units], 1.0) == [], "SIM-1 stopped too"


def test_counts_out_of_range_are_refused() -> None:
    with pytest.raises(InputError, match="between 1 and 16"):
        specs(0)
    with pytest.raises(InputError, match="timing"):
        specs(1, timing="slow")
    assert [s.serial for s in specs(3)] == ["SIM-1", "SIM-2", "SIM-3"]


def test_a_simulated_die_joins_the_fleet_and_its_visitor_rolls_it(tmp_path: Path) -> None:
    from installation import config as config_mod
    from installation.paths import Home
    from installation.units.supervisor import Supervisor
    from installation.workspace import Workspace

    home = tmp_path / "home"
    with Fleet(home, specs(1, timing="fast", dice=1, die_every_s=0.3)) as fleet:
        assert [s.kind for s in fleet.units_spec] == ["cat", "die"]
        with Controller(fleet.ports[1]) as ctl:
            hello = ctl.hello()
        assert hello.serial.rstrip(b"\0") == b"SIMDIE-1"
        ws = Workspace.open(Home(home), config_mod.defaults())
        sup = Supervisor(ws, [fleet.ports[1]], count=2)
        sup.run()
    assert len(sup.rolled) >= 2 and {r.serial for r in sup.rolled} == {"SIMDIE-1"}
    assert "Traceback" not in (home / "logs" / "sim-2.log").read_text()
