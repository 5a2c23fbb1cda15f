"""Keeping the entropy pool above its low-water mark while the ANU service answers.

The product is "a cache of ANU quantum bytes prepared while online and spent exactly once while
offline". The gallery is often offline, so the time to fetch is whenever the service answers,
and the amount to keep is measured in what the room spends: days of exhibits at the recent
rate. Three layers, each usable alone:

    recent_rate(pool, ...)  -> Rate          exhibit draws per day over the last window (SQL)
    plan_refill(...)        -> RefillPlan    pure: is a refill due, how many bytes, or why not
    refill(pool, client, plan, ...)          one `quantum.fetch.fill` within the monthly budget
                            -> RefillOutcome one sentence for the screen, and `as_dict()`
    Prefetcher                               what the kiosk and the dashboard call every few
                                             minutes: check, refill when due, remember the last
                                             outcome, retry a failed service only every N minutes
    fetch(workspace, ...)                    `qcat entropy fetch --bytes N | --until-days D`

Offline is an outcome, never an exception: a kiosk must keep running when the network is down.
A refill is safe in a worker thread while other threads draw: the pool is SQLite in WAL mode and
every thread opens its own `EntropyPool` (the `Prefetcher` opens one per run); budget and pacing
live in the pool's request log, so they hold across threads and processes alike.

Must never: print or read the config (the workspace resolves it, `PrefetchSettings` carries
it); put the API key into a plan, an outcome or a log line; retry without the fill's limits.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from installation.config import Config
from installation.errors import ConfigError
from installation.exhibit import PURPOSE_PREFIX
from installation.progress import ProgressCallback
from installation.words import plural
from quantum.latent import EXHIBIT_BYTES
from quantum.pool import BUDGET_API, utc_now

if TYPE_CHECKING:
    import requests

    from installation.workspace import Workspace
    from quantum.client import AnuClient
    from quantum.fetch import FetchIncomplete, FetchReport
    from quantum.pool import EntropyPool

log = logging.getLogger("qcat.prefetch")

SECONDS_PER_DAY = 86_400.0
# After the service's own quota refusal (429 "Limit Exceeded") the next try waits at least this
# long whatever entropy.refill_retry_minutes says: the plan's quota resets in hours, and every
# refused request still counts against the monthly budget.
QUOTA_RETRY_S = 6 * 3600.0
# Request outcome tags (quantum.client) that mean "this machine is not online": the request
# never left it, or a proxy stood where the service should be (a captive portal's TLS).
OFFLINE_OUTCOMES = frozenset({"dns", "connect", "connect-timeout", "tls"})


@dataclass(frozen=True)
class PrefetchSettings:
    """The entropy.* config keys a refill needs, resolved once (never the key itself)."""

    low_water_days: float
    refill_to_days: float
    rate_window_days: float
    assumed_exhibits_per_day: float
    retry_minutes: float
    budget: int
    max_retries: int
    legacy: bool
    has_key: bool
    request_bytes: int  # usable bytes one request of the chosen API brings

    @classmethod
    def from_config(cls, config: Config, *, legacy: bool | None = None) -> PrefetchSettings:
        from quantum.client import FETCH_KIND

        use_legacy = bool(config["entropy.legacy"] if legacy is None else legacy)
        return cls(
            low_water_days=config["entropy.low_water_days"],
            refill_to_days=config["entropy.refill_to_days"],
            rate_window_days=config["entropy.rate_window_days"],
            assumed_exhibits_per_day=config["entropy.assumed_exhibits_per_day"],
            retry_minutes=config["entropy.refill_retry_minutes"],
            budget=config["entropy.monthly_request_budget"],
            max_retries=config["entropy.max_retries"],
            legacy=use_legacy,
            has_key=use_legacy or bool(config["entropy.api_key"]),
            request_bytes=FETCH_KIND["legacy" if use_legacy else "keyed"].usable_bytes)


# -- the recent rate ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """Exhibits drawn per day: measured over the window, never planned below the assumed rate.

    Planning with max(measured, assumed) errs towards more bytes: a new installation or a quiet
    week must not leave a busy weekend without quantum bytes. Both figures are shown, so an
    operator sees when the assumption is the one in force."""

    exhibits: int  # exhibit draws in the window
    window_days: float
    assumed_per_day: float

    @property
    def measured_per_day(self) -> float:
        return self.exhibits / self.window_days

    @property
    def per_day(self) -> float:
        return max(self.measured_per_day, self.assumed_per_day)

    @property
    def assumed(self) -> bool:
        """True when the assumed rate, not the measured one, is planned with."""
        return self.assumed_per_day > self.measured_per_day

    def describe(self) -> str:
        measured = (f"{_num(self.measured_per_day)} exhibits/day over the last "
                    f"{_days(self.window_days)}")
        if self.assumed:
            return f"{measured}; planned at the assumed {_num(self.assumed_per_day)}/day"
        return measured

    def as_dict(self) -> dict[str, Any]:
        return {"exhibits_in_window": self.exhibits, "window_days": self.window_days,
                "measured_per_day": round(self.measured_per_day, 3),
                "assumed_per_day": self.assumed_per_day,
                "per_day": round(self.per_day, 3), "assumed": self.assumed}


def recent_rate(pool: EntropyPool, window_days: float, assumed_per_day: float,
                now: datetime | None = None) -> Rate:
    """The exhibit rate from the pool's draws table (purpose `exhibit:...`, os-fallback draws
    included: they met a demand the pool should have met)."""
    since = (now or utc_now()) - timedelta(days=window_days)
    return Rate(pool.draws_since(since, PURPOSE_PREFIX), window_days, assumed_per_day)


def days_left(available_bytes: int, per_day: float) -> float | None:
    """Days of exhibits `available_bytes` covers at `per_day`; None when nothing is spent."""
    if per_day <= 0:
        return None
    return available_bytes / (per_day * EXHIBIT_BYTES)


# -- the plan ----------------------------------------------------------------------------------

class PlanReason(StrEnum):
    """Why a refill is due or not (stored in `as_dict()` as its text)."""

    BELOW_MARK = "below-mark"  # due
    ASKED = "asked"  # due: a person asked for a number of bytes
    ABOVE_MARK = "above-mark"
    OFF = "off"  # entropy.low_water_days = 0
    BUDGET_SPENT = "budget-spent"
    NO_KEY = "no-key"


@dataclass(frozen=True)
class RefillPlan:
    """What a refill would do now, from the pool's numbers and the settings; pure."""

    reason: PlanReason
    want_bytes: int
    available_bytes: int
    rate: Rate
    mark_days: float
    target_days: float
    requests_needed: int
    requests_left: int | None  # None: the key-less legacy API has no monthly budget
    budget: int

    @property
    def needed(self) -> bool:
        return self.reason in (PlanReason.BELOW_MARK, PlanReason.ASKED)

    @property
    def days_left(self) -> float | None:
        return days_left(self.available_bytes, self.rate.per_day)

    def sentence(self) -> str:
        held = self.holding()
        if self.reason is PlanReason.ASKED:
            return (f"asked for {plural(self.want_bytes, 'byte')} "
                    f"(about {plural(self.requests_needed, 'request')}); {held}")
        if self.reason is PlanReason.OFF:
            return f"{held}; refilling is off (entropy.low_water_days = 0)"
        if self.reason is PlanReason.ABOVE_MARK:
            return f"{held}, at or above the mark of {_days(self.mark_days)}"
        below = f"{held}, below the mark of {_days(self.mark_days)}"
        if self.reason is PlanReason.NO_KEY:
            return f"{below}, but no ANU API key is set"
        if self.reason is PlanReason.BUDGET_SPENT:
            return f"{below}, but the monthly budget of {plural(self.budget, 'ANU request')} is spent"
        return (f"{below}: a refill to {_days(self.target_days)} wants "
                f"{plural(self.want_bytes, 'byte')} (about "
                f"{plural(self.requests_needed, 'request')})")

    def holding(self) -> str:
        """"the pool holds 2.5 days of exhibits at 200/day" (or why no days can be said)."""
        left = self.days_left
        if left is None:
            return (f"the pool holds {plural(self.available_bytes, 'byte')} and no exhibits "
                    "are being made")
        return (f"the pool holds {_days(left)} of exhibits at "
                f"{_num(self.rate.per_day)}/day")

    def as_dict(self) -> dict[str, Any]:
        left = self.days_left
        return {"needed": self.needed, "reason": str(self.reason), "sentence": self.sentence(),
                "want_bytes": self.want_bytes, "available_bytes": self.available_bytes,
                "days_left": None if left is None else round(left, 3),
                "mark_days": self.mark_days, "target_days": self.target_days,
                "requests_needed": self.requests_needed, "requests_left": self.requests_left,
                "rate": self.rate.as_dict()}


def plan_refill(available_bytes: int, rate: Rate, settings: PrefetchSettings,
                requests_this_month: int) -> RefillPlan:
    """Is a refill due, and for how many bytes? Pure: numbers in, a plan out.

    Due when the pool holds fewer than `low_water_days` of exhibits at the rate; it then wants
    enough to hold `refill_to_days` (never less than the mark). Not due when refilling is off,
    the pool is at or above the mark, no key is set, or the month's budget is spent.
    """
    mark = settings.low_water_days
    target = max(settings.refill_to_days, mark)
    want = max(0, math.ceil(target * rate.per_day * EXHIBIT_BYTES) - available_bytes)
    left = None if settings.legacy else max(0, settings.budget - requests_this_month)
    held = days_left(available_bytes, rate.per_day)
    if mark <= 0:
        reason = PlanReason.OFF
    elif held is None or held >= mark or want == 0:
        reason = PlanReason.ABOVE_MARK
    elif not settings.has_key:
        reason = PlanReason.NO_KEY
    elif left == 0:
        reason = PlanReason.BUDGET_SPENT
    else:
        reason = PlanReason.BELOW_MARK
    return RefillPlan(reason, want if reason is PlanReason.BELOW_MARK else 0, available_bytes,
                      rate, mark, target, _requests_for(want, settings), left, settings.budget)


def plan_bytes(want_bytes: int, available_bytes: int, rate: Rate, settings: PrefetchSettings,
               requests_this_month: int) -> RefillPlan:
    """A plan for exactly `want_bytes` (a person asked): the budget is the fill's to enforce."""
    left = None if settings.legacy else max(0, settings.budget - requests_this_month)
    return RefillPlan(PlanReason.ASKED, want_bytes, available_bytes, rate,
                      settings.low_water_days, max(settings.refill_to_days,
                                                   settings.low_water_days),
                      _requests_for(want_bytes, settings), left, settings.budget)


def check(pool: EntropyPool, settings: PrefetchSettings,
          now: datetime | None = None) -> RefillPlan:
    """The plan for this pool now (reads the pool; writes nothing)."""
    rate = recent_rate(pool, settings.rate_window_days, settings.assumed_exhibits_per_day, now)
    return plan_refill(pool.available_bytes(), rate, settings,
                       pool.requests_this_month(now=now, api=BUDGET_API))


def _requests_for(want_bytes: int, settings: PrefetchSettings) -> int:
    return math.ceil(want_bytes / settings.request_bytes) if want_bytes > 0 else 0


# -- the refill --------------------------------------------------------------------------------

class OutcomeKind(StrEnum):
    """How a refill ended (stored in `as_dict()` as its text)."""

    FILLED = "filled"  # the plan's bytes are stored
    SKIPPED = "skipped"  # not due: the plan says why
    OFFLINE = "offline"  # the service could not be reached; nothing counted
    QUOTA = "quota"  # the service's own plan quota is used up (429 Limit Exceeded)
    BUDGET = "budget"  # this installation's monthly budget stopped it
    FAILED = "failed"  # the service failed otherwise (after the retries), or refused the key
    CANCELLED = "cancelled"
    WAITING = "waiting"  # the last attempt failed; the next one waits for the retry interval
    BUSY = "busy"  # another refill of this Prefetcher is running


# The outcomes after which the Prefetcher waits before it tries again.
RETRY_LATER = frozenset({OutcomeKind.OFFLINE, OutcomeKind.QUOTA, OutcomeKind.FAILED})


@dataclass(frozen=True)
class RefillOutcome:
    """What a refill did, as one sentence for the screen (`sentence`) and `as_dict()`."""

    kind: OutcomeKind
    plan: RefillPlan
    stored_bytes: int = 0
    requests: int = 0
    budget_left: int | None = None  # None: the legacy API has no monthly budget
    available_bytes: int | None = None  # in the pool after the refill
    days_left: float | None = None  # after the refill, at the plan's rate
    detail: str = ""  # the fill's own sentence when it stopped short
    hint: str | None = None
    report: FetchReport | None = None
    finished: str = ""  # ISO-8601 UTC
    retry_in_s: float | None = None  # WAITING: seconds until the next attempt

    @property
    def ok(self) -> bool:
        """Nothing went wrong: the bytes are in, or none were due."""
        return self.kind in (OutcomeKind.FILLED, OutcomeKind.SKIPPED)

    def sentence(self) -> str:
        kind = self.kind
        if kind is OutcomeKind.SKIPPED:
            return self.plan.sentence()
        if kind is OutcomeKind.BUSY:
            return "a refill is already running"
        if kind is OutcomeKind.WAITING:
            minutes = math.ceil((self.retry_in_s or 0) / 60)
            return f"{self.detail}; next try in {plural(minutes, 'minute')}"
        added = (f"added {plural(self.stored_bytes, 'quantum byte')} with "
                 f"{plural(self.requests, 'request')}")
        after = self._after()
        if kind is OutcomeKind.FILLED:
            return f"{added}; {after}"
        if kind is OutcomeKind.OFFLINE:
            first = "" if not self.stored_bytes else f" ({added} first)"
            return (f"offline: the ANU service cannot be reached{first}; nothing was counted "
                    "against the monthly budget")
        if kind is OutcomeKind.QUOTA:
            return f"the ANU service says its request quota is used up; {added}; {after}"
        if kind is OutcomeKind.BUDGET:
            return (f"stopped at the monthly budget of {plural(self.plan.budget, 'ANU request')}; "
                    f"{added}; {after}")
        if kind is OutcomeKind.CANCELLED:
            return f"cancelled; {added}; {after}"
        return f"the refill stopped: {self.detail}"

    def _after(self) -> str:
        left = ("" if self.budget_left is None
                else f"; {plural(self.budget_left, 'request')} left this month")
        days = ("no exhibits are being made" if self.days_left is None
                else f"the pool holds {_days(self.days_left)} of exhibits")
        return days + left

    def as_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "ok": self.ok, "sentence": self.sentence(),
                "stored_bytes": self.stored_bytes, "requests": self.requests,
                "budget_left": self.budget_left, "available_bytes": self.available_bytes,
                "days_left": None if self.days_left is None else round(self.days_left, 3),
                "detail": self.detail or None, "hint": self.hint, "finished": self.finished,
                "retry_in_s": self.retry_in_s, "plan": self.plan.as_dict(),
                "report": self.report.lines() if self.report else None}


def skipped(plan: RefillPlan) -> RefillOutcome:
    return RefillOutcome(OutcomeKind.SKIPPED, plan, budget_left=plan.requests_left,
                         available_bytes=plan.available_bytes, days_left=plan.days_left,
                         finished=_now_iso())


def refill(pool: EntropyPool, client: AnuClient, plan: RefillPlan, settings: PrefetchSettings,
           *, progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
           sleep: Callable[[float], None] | None = None) -> RefillOutcome:
    """Fetch the plan's bytes into `pool` through `client`, within the monthly budget.

    Never raises for what the service or the network does: offline, quota, budget, a failing
    service and a cancel are outcomes with a sentence. `cancel` stops it before the next
    request (a backoff wait ends at once); `sleep` replaces the waiting (tests record it).
    """
    from quantum import fetch

    if not plan.needed:
        return skipped(plan)
    wait = sleep if sleep is not None else _waiter(cancel)
    kind = OutcomeKind.FILLED
    detail, hint = "", None
    try:
        report = fetch.fill(pool, client, plan.want_bytes, budget=settings.budget,
                            max_retries=settings.max_retries, progress=progress, sleep=wait,
                            cancel=cancel)
    except fetch.FetchIncomplete as exc:
        report = exc.report
        kind = _stop_kind(exc)
        detail, hint = exc.message, exc.hint
        log.info("refill stopped (%s): %s", kind, exc.message)
    available = pool.available_bytes()
    budget_left = None if settings.legacy else max(
        0, settings.budget - pool.requests_this_month(api=BUDGET_API))
    return RefillOutcome(kind, plan, stored_bytes=report.stored_bytes,
                         requests=report.requests - report.unreached,
                         budget_left=budget_left, available_bytes=available,
                         days_left=days_left(available, plan.rate.per_day),
                         detail=detail, hint=hint, report=report, finished=_now_iso())


def _stop_kind(exc: FetchIncomplete) -> OutcomeKind:
    from quantum import fetch
    from quantum.client import QuotaExceeded

    if exc.stopped_by == fetch.STOPPED_BY_CANCEL:
        return OutcomeKind.CANCELLED
    if exc.stopped_by == fetch.STOPPED_BY_BUDGET:
        return OutcomeKind.BUDGET
    if isinstance(exc.error, QuotaExceeded):
        return OutcomeKind.QUOTA
    if exc.error is not None and exc.stopped_by in OFFLINE_OUTCOMES:
        return OutcomeKind.OFFLINE
    return OutcomeKind.FAILED


def _waiter(cancel: threading.Event | None) -> Callable[[float], None]:
    """A sleep that a cancel cuts short (the fill then stops before its next request)."""
    if cancel is None:
        return time.sleep

    def wait(seconds: float) -> None:
        cancel.wait(seconds)

    return wait


# -- the clients -------------------------------------------------------------------------------

def make_client(config: Config, session: requests.Session, *, legacy: bool | None = None,
                api_url: str | None = None) -> AnuClient:
    """The ANU client the config describes (`legacy` and `api_url` override it); a keyed API
    without a key is one sentence (the kiosk's plan says "no API key" instead of calling this)."""
    from quantum.client import AnuClient

    use_legacy = bool(config["entropy.legacy"] if legacy is None else legacy)
    base = api_url or config["entropy.legacy_api_url" if use_legacy else "entropy.api_url"]
    key = "" if use_legacy else config["entropy.api_key"]
    if not use_legacy and not key:
        raise ConfigError("no ANU API key is set, and the keyed API needs one",
                          hint="export QCAT_ANU_API_KEY=<key> (or put entropy.api_key in a "
                               "0600 config file), or fetch from the legacy API with --legacy")
    return AnuClient(session, legacy=use_legacy, base_url=base, api_key=key,
                     timeout_s=config["entropy.request_timeout_s"])


ClientFactory = Callable[["requests.Session"], "AnuClient"]


# -- the kiosk's and the dashboard's refiller ---------------------------------------------------

class Prefetcher:
    """Keeps one pool above its low-water mark; call `run_once()` every few minutes from a
    worker thread (it opens its own pool each time, so it never shares a connection).

    It remembers the last attempt: after an offline or failed one it waits
    `settings.retry_minutes` (a quota refusal at least QUOTA_RETRY_S) before asking the service
    again, answering WAITING meanwhile; a pool above the mark never costs a request.
    """

    def __init__(self, open_pool: Callable[[], EntropyPool], settings: PrefetchSettings,
                 client_factory: ClientFactory, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None) -> None:
        self._open_pool = open_pool
        self.settings = settings
        self._client_factory = client_factory
        self._clock = clock
        self._sleep = sleep
        self._busy = threading.Lock()
        self.last_outcome: RefillOutcome | None = None  # the last refill that asked the service
        self.last_attempt: float | None = None  # when it began, on `clock`

    @classmethod
    def for_workspace(cls, workspace: Workspace, **kwargs: Any) -> Prefetcher:
        """The Prefetcher of this home and config (the kiosk's and the dashboard's)."""
        config = workspace.config

        def client(session: requests.Session) -> AnuClient:
            return make_client(config, session)

        return cls(workspace.open_pool, PrefetchSettings.from_config(config), client, **kwargs)

    def check(self) -> RefillPlan:
        """The plan now (reads the pool, asks nothing of the service)."""
        with self._open_pool() as pool:
            return check(pool, self.settings)

    def retry_in(self) -> float:
        """Seconds before the service may be asked again (0: now)."""
        last = self.last_outcome
        if last is None or self.last_attempt is None or last.kind not in RETRY_LATER:
            return 0.0
        interval = self.settings.retry_minutes * 60
        if last.kind is OutcomeKind.QUOTA:
            interval = max(interval, QUOTA_RETRY_S)
        return max(0.0, self.last_attempt + interval - self._clock())

    def run_once(self, *, progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> RefillOutcome:
        """Check, and refill when due and the retry interval allows; never raises for the
        service's or the network's doing."""
        import requests

        if not self._busy.acquire(blocking=False):
            return RefillOutcome(OutcomeKind.BUSY, self.check(), finished=_now_iso())
        try:
            with self._open_pool() as pool:
                plan = check(pool, self.settings)
                if not plan.needed:
                    return skipped(plan)
                wait = self.retry_in()
                if wait > 0 and self.last_outcome is not None:
                    return replace(self.last_outcome, kind=OutcomeKind.WAITING, plan=plan,
                                   detail=self.last_outcome.sentence(), retry_in_s=wait)
                self.last_attempt = self._clock()
                with requests.Session() as session:
                    outcome = refill(pool, self._client_factory(session), plan, self.settings,
                                     progress=progress, cancel=cancel, sleep=self._sleep)
                self.last_outcome = outcome
                log.info("refill: %s", outcome.sentence())
                return outcome
        finally:
            self._busy.release()

    def as_dict(self) -> dict[str, Any]:
        return {"last_outcome": self.last_outcome.as_dict() if self.last_outcome else None,
                "retry_in_s": round(self.retry_in(), 1)}


# -- `qcat entropy fetch` ------------------------------------------------------------------------

def fetch(workspace: Workspace, *, want_bytes: int | None = None,
          until_days: float | None = None, legacy: bool | None = None,
          api_url: str | None = None, progress: ProgressCallback | None = None,
          cancel: threading.Event | None = None) -> RefillOutcome:
    """Fetch `want_bytes` more bytes, or until the pool holds `until_days` of exhibits at the
    recent rate (SKIPPED when it already does): the kiosk's refill, by hand or from a timer.

    A keyed API without a key is a ConfigError before anything is asked; everything the service
    or the network does is in the outcome (`ok` False when it stopped short).
    """
    import requests

    if (want_bytes is None) == (until_days is None):
        raise ValueError("give want_bytes or until_days, one of them")  # a bug in the caller
    workspace.require_writable("fetching entropy")
    settings = PrefetchSettings.from_config(workspace.config, legacy=legacy)
    if until_days is not None:
        # The mark and the target are both the days asked for: fetch up to them, or nothing.
        settings = replace(settings, low_water_days=until_days, refill_to_days=until_days,
                           has_key=True)
    with workspace.open_pool() as pool:
        if want_bytes is not None:
            rate = recent_rate(pool, settings.rate_window_days,
                               settings.assumed_exhibits_per_day)
            plan = plan_bytes(want_bytes, pool.available_bytes(), rate, settings,
                              pool.requests_this_month(api=BUDGET_API))
        else:
            plan = check(pool, settings)
            if plan.reason is PlanReason.OFF:  # --until-days 0: nothing is ever below 0 days
                plan = replace(plan, reason=PlanReason.ABOVE_MARK)
        if not plan.needed and plan.reason is not PlanReason.BUDGET_SPENT:
            return skipped(plan)
        with requests.Session() as session:
            client = make_client(workspace.config, session, legacy=legacy, api_url=api_url)
            if plan.reason is PlanReason.BUDGET_SPENT:
                return RefillOutcome(
                    OutcomeKind.BUDGET, plan, budget_left=0,
                    available_bytes=plan.available_bytes, days_left=plan.days_left,
                    detail=f"the monthly budget of {plural(settings.budget, 'ANU request')} is spent; "
                           f"{plan.holding()}, {_days(plan.target_days)} were asked",
                    hint="raise entropy.monthly_request_budget if your plan allows it, or "
                         "import a pack", finished=_now_iso())
            log.info("fetch: %s", plan.sentence())
            return refill(pool, client, plan, settings, progress=progress, cancel=cancel)


# -- words -------------------------------------------------------------------------------------

def _num(value: float) -> str:
    """A rate for people: 200, 12.5, 0.14."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 1 else f"{value:.1f}".removesuffix(".0")


def _days(value: float) -> str:
    shown = f"{value:,.1f}".removesuffix(".0")
    return f"{shown} day" if shown == "1" else f"{shown} days"


def _now_iso() -> str:
    return utc_now().isoformat(timespec="seconds")
