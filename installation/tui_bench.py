"""The dashboard's cold start and memory, measured beside a bare Textual app (`qcat bench`).

In one run, in a scratch home: two simulated cat units are started (a `Fleet`, not timed), then
a fresh interpreter starts the dashboard over them headless (`installation.commands.tui_probe`)
and reports when its first frame was drawn and its resident memory once both units are attached;
the same is measured for a Textual hello-world, the peer. Reported, not asserted: the numbers
depend on the machine; the ratio to the peer is what says whether qcat's part is heavy.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from installation.errors import DeviceError
from installation.progress import ProgressCallback

RUNS = 3  # each side, interleaved; the median is reported
SIM_UNITS = 2
PROBE_TIMEOUT_S = 120.0


def probe(args: list[str]) -> dict[str, Any]:
    """One fresh interpreter running the probe; its JSON plus `cold_start_ms`."""
    from installation.units.fleet import child_env

    started = time.perf_counter()  # CLOCK_MONOTONIC on Linux, as the child's perf_counter
    proc = subprocess.run([sys.executable, "-m", "installation.commands.tui_probe", *args],
                          capture_output=True, text=True, env=child_env(),
                          timeout=PROBE_TIMEOUT_S)
    if proc.returncode != 0 or not proc.stdout.strip():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"the TUI benchmark's probe failed (exit {proc.returncode}): {last}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["cold_start_ms"] = (result["first_frame_at"] - started) * 1000
    return result


def run(runs: int = RUNS, progress: ProgressCallback | None = None) -> dict[str, Any]:
    from installation.units.fleet import Fleet, specs

    qcat: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="qcat-tui-bench-") as scratch:
        home = Path(scratch) / "home"
        with Fleet(home, specs(SIM_UNITS, timing="fast")) as fleet:
            ports = [a for p in fleet.ports for a in ("--port", p)]
            for i in range(runs):
                peer.append(probe(["--peer"]))
                qcat.append(probe(["--home", str(home), *ports]))
                if progress:
                    progress(i + 1, runs, "tui")

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    q_ms, p_ms = median(qcat, "cold_start_ms"), median(peer, "cold_start_ms")
    q_mib, p_mib = median(qcat, "rss_kib") / 1024, median(peer, "rss_kib") / 1024
    return {"runs": runs, "units": SIM_UNITS,
            "qcat_first_frame_ms": round(q_ms, 1), "peer_first_frame_ms": round(p_ms, 1),
            "first_frame_ratio": round(q_ms / p_ms, 2),
            "qcat_rss_mib": round(q_mib, 1), "peer_rss_mib": round(p_mib, 1),
            "rss_ratio": round(q_mib / p_mib, 2),
            "units_attached": all(r.get("attached") for r in qcat),
            "torch_imported": any(r["torch_imported"] for r in qcat)}


def lines(r: dict[str, Any]) -> list[str]:
    return [f"tui: cold start to first frame and resident memory, median of {r['runs']} fresh "
            f"interpreters each (dashboard headless, {r['units']} simulated units attached)",
            f"  qcat dashboard      {r['qcat_first_frame_ms']:8.1f} ms  {r['qcat_rss_mib']:7.1f} MiB",
            f"  textual hello-world {r['peer_first_frame_ms']:8.1f} ms  {r['peer_rss_mib']:7.1f} MiB",
            f"  ratio               {r['first_frame_ratio']:7.2f}x    {r['rss_ratio']:6.2f}x"
            + ("" if r["units_attached"] else "  (units not attached in time)")]
