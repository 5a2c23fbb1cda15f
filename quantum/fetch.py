"""Filling the pool from the ANU service: pacing, the monthly budget, backoff, reporting.

`fill(pool, client, want_bytes)` asks for the largest block the API allows until `want_bytes`
more usable bytes are stored, the monthly request budget is spent, or the service fails. Every
request is recorded in the pool *before* it is sent (a paid plan bills attempts, and a crash
mid-request must still count), and every batch is stored, health-checked and committed before
the next request, so an interrupted fetch keeps all it reported and simply resumes next time.

What the budget counts: keyed requests that may have reached the service. One that provably
never left this machine (DNS failure, refused connection, TLS handshake, no key) is marked so
afterwards and given back; a timeout after sending is not (the service may have served it).
Legacy requests are free and key-less: they never count against the keyed budget.

Pacing holds across processes: the gap since the last request of that API that may have
reached the service is read from the pool, not from memory. Backoff doubles from
`BACKOFF_BASE_S` on a throttling 429, a 5xx, a timeout or a malformed reply, at most
`max_retries` times in a row; a Retry-After is honoured up to `BACKOFF_MAX_S`. A quota 429
("Limit Exceeded"), a refused key or a wrong URL stop at once. A `cancel` event (a worker
thread's stop button) is looked at before each request, never in the middle of one.

What this module must never do: store a byte of a reply the client rejected; sleep or retry
without a limit; put the API key anywhere (it never sees it: the client holds it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from installation.errors import ServiceError
from installation.progress import ProgressCallback  # a ground module, like errors
from installation.words import plural
from quantum.client import AnuClient, AnuError
from quantum.pool import BUDGET_API, EntropyPool

DEFAULT_BUDGET = 100
DEFAULT_MAX_RETRIES = 4
BACKOFF_BASE_S = 2.0
# The longest single wait, whatever the service's Retry-After says (86400 has been seen): past
# this it is cheaper to ask again (still at most `max_retries` times) than to hang for a day.
BACKOFF_MAX_S = 120.0
# A run of batches failing the health tests means the source (or a proxy) is broken: stop
# rather than burn the month's budget on it.
MAX_CONSECUTIVE_QUARANTINES = 3
# Why a fill stopped short when no request error did it (`FetchIncomplete.stopped_by`; when a
# request error did, it is that error's outcome tag, as in the pool's request log).
STOPPED_BY_BUDGET = "budget"
STOPPED_BY_QUARANTINE = "quarantine"
STOPPED_BY_CANCEL = "cancelled"


@dataclass
class FetchReport:
    """What a fill did; `lines()` is the status the CLI prints."""

    want_bytes: int
    stored_bytes: int = 0
    stored_batches: int = 0
    quarantined: list[str] = field(default_factory=list)
    requests: int = 0
    unreached: int = 0  # requests that never left this machine (not counted in the budget)
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    budget_left: int = 0
    legacy: bool = False  # free requests: the budget is not theirs

    def lines(self) -> list[str]:
        left = ("the key-less legacy API is not counted against the monthly budget"
                if self.legacy else f"{plural(self.budget_left, 'request')} left this month")
        out = [f"stored {plural(self.stored_bytes, 'usable byte')} in "
               f"{plural(self.stored_batches, 'batch', 'batches')} with "
               f"{plural(self.requests, 'request')}{self._unreached_note()}; {left}"]
        out += [f"quarantined a batch: {r}" for r in self.quarantined]
        out += [f"retried after: {f}" for f in self.failures]
        return out

    def _unreached_note(self) -> str:
        if not self.unreached:
            return ""
        return f" ({self.unreached} never reached the service and do not count)"


class FetchIncomplete(ServiceError):
    """The target was not reached; `report` says what was stored before it stopped.

    `stopped_by` says why, for callers that act on it (the kiosk's refill tells "offline" from
    "quota" from "budget"): one of the STOPPED_BY_* tags, or the outcome tag of the request
    error in `error` (then `error.reached_service` is False when it never left this machine).
    """

    def __init__(self, message: str, report: FetchReport, hint: str | None = None, *,
                 stopped_by: str = "", error: AnuError | None = None) -> None:
        super().__init__(message, hint)
        self.report = report
        self.stopped_by = stopped_by or (error.outcome if error else "")
        self.error = error


def fill(pool: EntropyPool, client: AnuClient, want_bytes: int, *,
         budget: int = DEFAULT_BUDGET, max_retries: int = DEFAULT_MAX_RETRIES,
         progress: ProgressCallback | None = None,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.time,
         cancel: threading.Event | None = None) -> FetchReport:
    """Store `want_bytes` more usable bytes, or raise FetchIncomplete saying how far it got.

    A `cancel` that is set stops the fill before its next request (a `sleep` that waits on the
    same event makes a backoff end early too)."""
    rep = FetchReport(want_bytes, legacy=client.api != BUDGET_API)
    kind = client.fetch_kind
    retries_in_a_row = 0
    quarantined_in_a_row = 0

    def note() -> None:
        rep.budget_left = max(0, budget - pool.requests_this_month())
        if progress:
            progress(min(rep.stored_bytes, want_bytes), want_bytes,
                     f"{rep.requests} req, {rep.stored_bytes:,} B, quota left {rep.budget_left}")

    def stop(why: str, hint: str | None = None, *, stopped_by: str = "",
             error: AnuError | None = None) -> FetchIncomplete:
        note()
        return FetchIncomplete(f"{why}; stored {rep.stored_bytes:,} of {want_bytes:,} bytes "
                               f"({plural(rep.stored_batches, 'batch', 'batches')}) before stopping", rep, hint,
                               stopped_by=stopped_by, error=error)

    note()
    while rep.stored_bytes < want_bytes:
        if not rep.legacy and pool.requests_this_month() >= budget:
            raise stop(f"the monthly budget of {budget} ANU requests is spent",
                       hint="raise entropy.monthly_request_budget if your plan allows it, "
                            "or import a pack", stopped_by=STOPPED_BY_BUDGET)
        last = pool.last_request_epoch(client.api)
        if last is not None:
            # Capped at the interval: a clock set back must not turn this into a long sleep.
            gap = min(last + client.min_interval_s - clock(), client.min_interval_s)
            if gap > 0:
                sleep(gap)
        if cancel is not None and cancel.is_set():
            raise stop("cancelled", stopped_by=STOPPED_BY_CANCEL)
        request_id = pool.begin_request(client.api, client.base_url, kind.name)
        rep.requests += 1
        try:
            reply = client.request(kind)
        except AnuError as exc:
            pool.finish_request(request_id, exc.outcome, exc.http_status, exc.message,
                                reached=exc.reached_service)
            if not exc.reached_service:
                rep.unreached += 1
            if not exc.retryable:
                raise stop(exc.message, exc.hint, error=exc) from None
            if retries_in_a_row >= max_retries:
                raise stop(f"{exc.message} (gave up after {plural(max_retries, 'retry', 'retries')})",
                           exc.hint, error=exc) from None
            retries_in_a_row += 1
            rep.retries += 1
            rep.failures.append(exc.message)
            wait = max(BACKOFF_BASE_S * 2 ** (retries_in_a_row - 1), exc.retry_after_s or 0.0)
            sleep(min(wait, BACKOFF_MAX_S))
            note()
            continue
        retries_in_a_row = 0
        stored = pool.store_batch(reply.data, reply.source, reply.provenance(),
                                  request_id=request_id)
        if stored.usable:
            quarantined_in_a_row = 0
            rep.stored_bytes += stored.size
            rep.stored_batches += 1
        else:
            quarantined_in_a_row += 1
            rep.quarantined.append(f"batch {stored.id}: {'; '.join(stored.reasons)}")
            if quarantined_in_a_row >= MAX_CONSECUTIVE_QUARANTINES:
                raise stop(f"{quarantined_in_a_row} batches in a row failed the health tests "
                           "and were quarantined", hint="see `qcat entropy quarantine`",
                           stopped_by=STOPPED_BY_QUARANTINE)
        note()
    return rep
