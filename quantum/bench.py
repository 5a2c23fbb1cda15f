"""Entropy benchmark for `qcat bench`: what one ANU request yields, and how fast the pool draws.

(a) Usable bytes per request for every request kind in the client's plan, measured by really
    requesting each one through the fake ANU server on 127.0.0.1 (real HTTP, real validation),
    compared with a uint8 request of 1,024 bytes. Quotas count requests, so this ratio is how
    many more exhibits a month's budget buys.
(b) Draws per second from a pool on disk: 203-byte exhibit draws, each one a durable
    `BEGIN IMMEDIATE` transaction with synchronous=FULL (so this is mostly fsync speed).

Never touches the real service or the user's pool: everything happens in a temporary folder
and against the fake. Speeds are reported, never asserted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from installation.progress import ProgressCallback
from quantum.client import REQUEST_PLAN, UINT8, AnuClient
from quantum.fakeanu import FakeAnu
from quantum.latent import EXHIBIT_BYTES
from quantum.pool import EntropyPool

BENCH_KEY = "bench-key-not-a-secret"
REQUESTS_PER_KIND = 3
# The draw benchmark stops at whichever comes first.
DRAW_SECONDS = 2.0
DRAW_MAX = 5000
POOL_BATCHES = 8  # 8 x 20,480 bytes = 807 exhibits of room
MONTHLY_BUDGET = 100  # a free key's requests a month (for the "exhibits a month" column)


def run(progress: ProgressCallback | None = None, workdir: str | os.PathLike[str] | None = None
        ) -> dict[str, Any]:
    """Measure (a) and (b); returns a JSON-able dict that `lines()` formats."""
    total = len(REQUEST_PLAN) + 2
    step = 0

    def tick(note: str) -> None:
        nonlocal step
        step += 1
        if progress:
            progress(step, total, note)

    tmp = Path(tempfile.mkdtemp(prefix="qcat-bench-", dir=workdir))
    try:
        with FakeAnu(api_key=BENCH_KEY) as fake, requests.Session() as session:
            kinds = []
            for kind in REQUEST_PLAN:
                client = AnuClient(session, legacy=kind.api == "legacy", base_url=fake.url,
                                   api_key=BENCH_KEY, min_interval_s=0.0)
                sizes, wire, secs = [], [], []
                for _ in range(REQUESTS_PER_KIND):
                    reply = client.request(kind)
                    sizes.append(len(reply.data))
                    wire.append(reply.wire_bytes)
                    secs.append(reply.elapsed_s)
                usable = min(sizes)
                kinds.append({
                    "kind": kind.name, "api": kind.api, "type": kind.type,
                    "length": kind.length, "size": kind.size, "usable_bytes": usable,
                    "planned_bytes": kind.usable_bytes,
                    "vs_uint8": usable / UINT8.usable_bytes,
                    "wire_bytes": round(sum(wire) / len(wire)),
                    "exhibits_per_request": usable // EXHIBIT_BYTES,
                    "exhibits_per_month": usable * MONTHLY_BUDGET // EXHIBIT_BYTES,
                    "seconds_per_request": sum(secs) / len(secs),
                })
                tick(kind.name)
            pool_path = tmp / "entropy.sqlite"
            with EntropyPool(pool_path) as pool:
                keyed = AnuClient(session, base_url=fake.url, api_key=BENCH_KEY,
                                  min_interval_s=0.0)
                for _ in range(POOL_BATCHES):
                    reply = keyed.request()
                    pool.store_batch(reply.data, reply.source, reply.provenance())
                tick("pool stocked")
                n = 0
                start = time.perf_counter()
                while (n < DRAW_MAX and time.perf_counter() - start < DRAW_SECONDS
                       and pool.available_bytes() >= EXHIBIT_BYTES):
                    pool.draw(EXHIBIT_BYTES, "bench")
                    n += 1
                elapsed = time.perf_counter() - start
                audit_ok = pool.audit().ok
            tick("draws")
        return {
            "requests": kinds,
            "draws": {"draw_bytes": EXHIBIT_BYTES, "draws": n, "seconds": elapsed,
                      "draws_per_second": n / elapsed if elapsed else 0.0,
                      "ms_per_draw": 1000 * elapsed / n if n else 0.0,
                      "audit_ok": audit_ok, "pool_dir": str(tmp.parent)},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def lines(result: dict[str, Any]) -> list[str]:
    """The benchmark as text lines for `qcat bench`."""
    out = ["entropy: usable bytes per ANU request (fake server on 127.0.0.1, real HTTP)",
           f"  {'request':<24} {'bytes':>9} {'x uint8':>8} {'on wire':>10} "
           f"{'exhibits':>9} {'per 100 req':>12}"]
    for k in result["requests"]:
        out.append(f"  {k['kind']:<24} {k['usable_bytes']:>9,} {k['vs_uint8']:>7.0f}x "
                   f"{k['wire_bytes']:>10,} {k['exhibits_per_request']:>9,} "
                   f"{k['exhibits_per_month']:>12,}")
    d = result["draws"]
    out.append(f"entropy: {d['draws_per_second']:,.0f} draws/s of {d['draw_bytes']} bytes from a "
               f"pool on disk ({d['ms_per_draw']:.2f} ms each, durable, {d['draws']:,} draws, "
               f"audit {'ok' if d['audit_ok'] else 'FAILED'})")
    return out
