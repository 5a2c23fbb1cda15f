"""Promise E1 under fire: SIGKILL at random instants, and two processes drawing at once.

A child process draws in a loop and prints `id hex` for each draw *after* draw() returned (an
acknowledged draw). The parent kills it with SIGKILL at random moments (during start-up,
migrations, transactions, fsyncs, prints), many times, then proves from the database:

- every acknowledged draw is recorded, with exactly the bytes the child saw;
- no byte was handed out twice: all draws, in id order, concatenated, equal the pool's spent
  bytes (every batch's [0, consumed), in batch order) exactly once, with nothing missing;
- `qcat entropy audit` passes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quantum.pool import EntropyPool
from tests.conftest import REPO

BATCH = 20480
# Enough stock that a fast machine (tmpfs fsyncs) keeps drawing until the last kill.
STOCK_BATCHES = 120
# The child: random draw sizes (1..300 bytes, spanning batch boundaries now and then).
CHILD = r"""
import random, sys
from quantum.pool import EntropyPool
pool = EntropyPool(sys.argv[1])
rng = random.Random(int(sys.argv[2]))
out = sys.stdout
out.write("ready\n")
out.flush()
from installation.errors import EntropyExhausted
while True:
    try:
        d = pool.draw(rng.randint(1, 300), sys.argv[3], when_empty="fail")
    except EntropyExhausted:
        # A fast machine can drain the stock before the kill comes: wait for it instead of
        # exiting, so the parent's SIGKILL still lands on a live process.
        import time
        time.sleep(3600)
    out.write(f"{d.id} {d.data.hex()}\n")
    out.flush()
"""
KILLS = 16
# Kill after this long (seconds, uniform): from inside interpreter start-up to mid-loop.
KILL_AFTER_S = (0.02, 0.45)


def _stock(pool_path: Path, batches: int) -> None:
    with EntropyPool(pool_path) as pool:
        for _ in range(batches):
            assert pool.store_batch(os.urandom(BATCH), "anu", {"source": "anu"}).usable


def _spawn(pool_path: Path, seed: int, purpose: str) -> subprocess.Popen[str]:
    """Start a drawing child; its stdout goes to a file (a pipe would fill and stall it)."""
    out = pool_path.parent / f"child-{purpose}-{seed}.out"
    with open(out, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(pool_path), str(seed), purpose],
                                stdout=f, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    proc.out_path = out  # type: ignore[attr-defined]
    return proc


def _wait_ready(*procs: subprocess.Popen[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        while not proc.out_path.read_text().startswith("ready\n"):  # type: ignore[attr-defined]
            assert proc.poll() is None, proc.out_path.read_text()  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "child did not start"
            time.sleep(0.01)


def _acknowledged(stdout: str) -> dict[int, str]:
    """Draws the child printed in full (a line cut by the kill is not an acknowledgement)."""
    acked = {}
    for line in stdout.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        if line == "ready\n":
            continue
        assert len(line.split()) == 2, repr(line)
        draw_id, hexdata = line.split()
        acked[int(draw_id)] = hexdata
    return acked


def _kill(proc: subprocess.Popen[str]) -> str:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert proc.returncode == -signal.SIGKILL, f"child ended on its own: {out[-2000:]}"
    return out


def _prove_exactly_once(pool_path: Path, acked: dict[int, str]) -> int:
    with EntropyPool(pool_path) as pool:
        for draw_id, hexdata in acked.items():
            d = pool.get_draw(draw_id)
            assert d.data.hex() == hexdata, f"acknowledged draw {draw_id} changed"
        draws = pool.draws()
        served = b"".join(d.data for d in draws)
        spent = b"".join(pool.batch_data(b)[:c] for b, c in pool._db.execute(
            "SELECT id, consumed FROM batches ORDER BY id"))
        assert len(served) == len(spent), (
            f"{len(served)} bytes were handed out but the cursors spent {len(spent)}")
        if served != spent:
            i = next(i for i, (a, b) in enumerate(zip(served, spent, strict=True)) if a != b)
            pytest.fail(f"draws diverge from the pool's byte order at byte {i}")
        report = pool.audit()
        assert report.ok, report.violations
        assert {d.source for d in draws} == {"anu"}
        return len(draws)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_replays_or_loses_a_draw(qcat_home, run_qcat):
    pool_path = qcat_home / "entropy.sqlite"
    _stock(pool_path, STOCK_BATCHES)
    rng = random.Random(20240601)
    acked: dict[int, str] = {}
    for k in range(KILLS):
        proc = _spawn(pool_path, k, "exhibit")
        if k % 2:  # every other kill counts from the open pool: a busy machine's slow start-up
            _wait_ready(proc)  # must not leave every kill inside the interpreter's imports
        time.sleep(rng.uniform(*KILL_AFTER_S))
        got = _acknowledged(_kill(proc))
        assert not set(got) & set(acked), "a draw id was handed out twice"
        acked.update(got)
    n_draws = _prove_exactly_once(pool_path, acked)
    assert len(acked) > 50, "the children barely drew: the test proved little"
    assert n_draws >= len(acked)  # a draw may commit and die before its print: spent, not lost
    result = run_qcat("entropy", "audit")
    assert result.code == 0, result.out + result.err
    assert "audit passed" in result.out


@pytest.mark.slow
def test_two_processes_drawing_at_once_never_share_a_byte(qcat_home, run_qcat):
    pool_path = qcat_home / "entropy.sqlite"
    _stock(pool_path, STOCK_BATCHES)
    rng = random.Random(7)
    acked: dict[int, str] = {}
    both_drew = 0
    for k in range(5):
        a = _spawn(pool_path, 100 + k, "exhibit-a")
        b = _spawn(pool_path, 200 + k, "exhibit-b")
        # Start the clock once both have opened the pool (start-up is slow on a busy machine).
        _wait_ready(a, b)
        time.sleep(rng.uniform(0.3, 0.6))
        got_a = _acknowledged(_kill(a))
        got_b = _acknowledged(_kill(b))
        assert not set(got_a) & set(got_b), "both processes acknowledged the same draw"
        both_drew += bool(got_a) and bool(got_b)
        acked.update(got_a)
        acked.update(got_b)
    assert both_drew >= 3, "the two children rarely drew at the same time"
    # Bytes, not only ids: no 32-byte window of one process's draws appears in the other's.
    with EntropyPool(pool_path) as pool:
        a_bytes = b"".join(d.data for d in pool.draws("exhibit-a"))
        b_bytes = b"".join(d.data for d in pool.draws("exhibit-b"))
    windows = {a_bytes[i:i + 32] for i in range(0, len(a_bytes) - 32, 8)}
    assert not any(b_bytes[i:i + 32] in windows for i in range(len(b_bytes) - 32))
    _prove_exactly_once(pool_path, acked)
    result = run_qcat("entropy", "audit")
    assert result.code == 0, result.out + result.err


FETCH_CHILD = r"""
import sys
import requests
from quantum import fetch
from quantum.client import AnuClient
from quantum.pool import EntropyPool
pool = EntropyPool(sys.argv[1])
client = AnuClient(requests.Session(), base_url=sys.argv[2], api_key=sys.argv[3],
                   min_interval_s=0.0, timeout_s=5)
def progress(done, total, note):
    print(done, flush=True)   # after each batch is committed: an acknowledged fetch
fetch.fill(pool, client, 10**9, budget=10**6, progress=progress)
"""


@pytest.mark.slow
def test_sigkill_during_fetch_keeps_every_acknowledged_batch(qcat_home):
    from tests.fake_anu import KEY, running_fake

    pool_path = qcat_home / "entropy.sqlite"
    qcat_home.mkdir(parents=True)
    rng = random.Random(3)
    total_acked = 0
    with running_fake() as fake:
        for k in range(4):
            out_path = qcat_home / f"fetch-{k}.out"
            with open(out_path, "w") as f:
                proc = subprocess.Popen([sys.executable, "-c", FETCH_CHILD, str(pool_path),
                                         fake.url, KEY], stdout=f, stderr=subprocess.STDOUT,
                                        text=True, cwd=REPO)
            proc.out_path = out_path  # type: ignore[attr-defined]
            if k % 2:  # every other kill counts from the first stored batch (a busy machine's
                deadline = time.monotonic() + 60  # start-up must not take every kill)
                while not out_path.read_text().strip() and time.monotonic() < deadline:
                    assert proc.poll() is None, out_path.read_text()
                    time.sleep(0.01)
            time.sleep(rng.uniform(0.3, 0.9))
            out = _kill(proc)
            lines = [ln for ln in out.splitlines(keepends=True)
                     if ln.endswith("\n") and ln.strip().isdigit()]
            total_acked += int(lines[-1]) if lines else 0
            with EntropyPool(pool_path) as pool:
                st = pool.status()
                # Nothing draws here: every acknowledged byte must still be in the pool.
                assert st["available_bytes"] >= total_acked
                assert st["quarantined_batches"] == 0  # no batch was stored twice
                assert pool.audit().ok
    assert total_acked > 0, "no child got as far as storing a batch"
