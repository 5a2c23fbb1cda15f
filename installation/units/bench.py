"""The supervisor's cost, measured: what making an exhibit through a unit adds to making it here.

In one run, in a scratch home (the real gallery is never touched): exhibits made by the
controller alone (`Generator.generate`: draw, C render checked against the reference, files,
archive) and exhibits made through a simulated cat unit on a real pty with `--timing fast` (the same
plus the job's frames both ways, the unit's own C engine, the golden compare and speaking). The
difference per exhibit is the supervisor's overhead; the frames a unit sends per second through
the pty are counted on a bare `UnitSession`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from installation import config as config_mod
from installation.errors import DeviceError
from installation.paths import Home
from installation.progress import ProgressCallback
from installation.workspace import Workspace

JOBS = 30
START_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def run(weights: Path, jobs: int = JOBS, progress: ProgressCallback | None = None
        ) -> dict[str, Any]:
    from installation.engines import weight_image
    from installation.units.link import Link
    from installation.units.session import UnitSession
    from installation.units.supervisor import Supervisor
    from models import reference
    from quantum.latent import split_exhibit

    with tempfile.TemporaryDirectory(prefix="qcat-units-bench-") as scratch:
        home = Home(Path(scratch) / "home")
        ws = Workspace.open(home, config_mod.defaults())
        gen = ws.open_generator(engine="c", weights=weights)
        gen.clip_bank_path = None
        try:
            start = time.perf_counter()
            gen.generate(jobs)
            local_ms = (time.perf_counter() - start) * 1000 / jobs
        finally:
            gen.pool.close()
            gen.gallery.close()
        if progress:
            progress(1, 3, "local")
        proc, port = _start_sim(home.root, weights)
        try:
            sup = Supervisor(ws, [port], count=jobs, engine="c")
            start = time.perf_counter()
            sup.run()
            unit_ms = (time.perf_counter() - start) * 1000 / jobs
            if progress:
                progress(2, 3, "through a unit")
            with Link.open(port) as link:
                session = UnitSession(link)
                session.handshake(bytes.fromhex(sup.made[0].model_sha256))
                job = sup.made[0]
                z, code = split_exhibit(bytes.fromhex(job.entropy_hex))
                latent = reference.quantize_latent(z, weight_image(weights))
                frames = 0
                start = time.perf_counter()
                for i in range(jobs):
                    session.generate(1_000_000 + i, latent, code.code)
                    frames += session.frames_in
                    session.frames_in = 0
                frames_s = frames / (time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(10)
    if progress:
        progress(3, 3, "frames")
    return {"jobs": jobs, "local_ms_per_exhibit": round(local_ms, 2),
            "unit_ms_per_exhibit": round(unit_ms, 2),
            "overhead_ms_per_exhibit": round(unit_ms - local_ms, 2),
            "unit_over_local": round(unit_ms / local_ms, 2),
            "frames_per_s": round(frames_s)}


def lines(result: dict[str, Any]) -> list[str]:
    return [f"units: {result['jobs']} exhibits each way, a simulated cat unit on a pty "
            "(--timing fast: the unit's own time is its C engine's)",
            f"  on the controller alone      {result['local_ms_per_exhibit']:8.2f} ms per exhibit",
            f"  through a unit (supervisor)  {result['unit_ms_per_exhibit']:8.2f} ms per exhibit "
            f"({result['unit_over_local']:.2f}x; overhead {result['overhead_ms_per_exhibit']:.2f} "
            "ms)",
            f"  frames from the unit         {result['frames_per_s']:8,} per second through the pty"]


def _start_sim(home: Path, weights: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "QCAT_HOME": str(home)}
    env.pop("QCAT_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "installation.cli", "sim", "cat", "--timing",
                             "fast", "--weights", str(weights)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=REPO_ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    line = b""
    while not line.endswith(b"\n"):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise DeviceError("the simulated unit for the benchmark did not start")
        line += proc.stdout.read(1)
    return proc, line.decode().strip()
