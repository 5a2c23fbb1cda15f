"""The low-water mark: the pool is refilled from the (fake) ANU service over real HTTP when it
holds fewer days of exhibits than the mark, within the monthly budget; offline, quota and budget
are outcomes with a sentence, never exceptions; the recent rate comes from the draws table."""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from installation.prefetch import (
    QUOTA_RETRY_S,
    OutcomeKind,
    PlanReason,
    Prefetcher,
    PrefetchSettings,
    Rate,
    days_left,
    plan_refill,
    recent_rate,
    refill,
)
from quantum.latent import EXHIBIT_BYTES
from quantum.pool import EntropyPool
from tests.fake_anu import KEY, Sleeps, client_for, running_fake

REQUEST_BYTES = 20_480  # one keyed hex16 size-10 request

SETTINGS = PrefetchSettings(low_water_days=3.0, refill_to_days=7.0, rate_window_days=7.0,
                            assumed_exhibits_per_day=20.0, retry_minutes=10.0, budget=100,
                            max_retries=0, legacy=False, has_key=True,
                            request_bytes=REQUEST_BYTES)


@pytest.fixture
def fake():
    with running_fake() as f:
        yield f


@pytest.fixture
def pool_path(tmp_path):
    return tmp_path / "entropy.sqlite"


def stock(pool: EntropyPool, n_bytes: int) -> None:
    """Put `n_bytes` (whole requests' worth) into the pool without the network."""
    for _ in range(math.ceil(n_bytes / REQUEST_BYTES)):
        assert pool.store_batch(os.urandom(REQUEST_BYTES), "anu", {"test": True}).usable


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def prefetcher(pool_path, fake_or_url, settings=SETTINGS, **kwargs) -> Prefetcher:
    if isinstance(fake_or_url, str):
        from quantum.client import AnuClient

        def factory(session):
            return AnuClient(session, base_url=fake_or_url, api_key=KEY, timeout_s=0.5,
                             min_interval_s=0.0)
    else:
        def factory(session):
            return client_for(fake_or_url, session=session)
    return Prefetcher(lambda: EntropyPool(pool_path), settings, factory, sleep=Sleeps(),
                      **kwargs)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: every connection is refused (offline)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- the pure plan

def test_below_the_mark_wants_exactly_enough_for_the_target_days():
    rate = Rate(exhibits=1400, window_days=7, assumed_per_day=20)  # 200/day measured
    available = 200 * EXHIBIT_BYTES  # one day
    plan = plan_refill(available, rate, SETTINGS, requests_this_month=3)
    assert plan.needed and plan.reason is PlanReason.BELOW_MARK
    assert plan.days_left == pytest.approx(1.0)
    assert plan.want_bytes == 7 * 200 * EXHIBIT_BYTES - available == 243_600
    assert plan.requests_needed == 12 and plan.requests_left == 97
    assert "below the mark of 3 days" in plan.sentence() and "243,600 bytes" in plan.sentence()


@pytest.mark.parametrize(("change", "month", "reason"), [
    ({"low_water_days": 0.0}, 0, PlanReason.OFF),
    ({"has_key": False}, 0, PlanReason.NO_KEY),
    ({}, 100, PlanReason.BUDGET_SPENT),
    ({"legacy": True, "has_key": True}, 100, PlanReason.BELOW_MARK),  # no budget for legacy
])
def test_why_a_refill_is_not_due(change, month, reason):
    plan = plan_refill(0, Rate(0, 7, 20), replace(SETTINGS, **change), month)
    assert plan.reason is reason
    assert plan.needed == (reason is PlanReason.BELOW_MARK)
    assert plan.want_bytes == (7 * 20 * EXHIBIT_BYTES if plan.needed else 0)
    if reason is PlanReason.BUDGET_SPENT:
        assert "the monthly budget of 100 ANU requests is spent" in plan.sentence()
    if reason is PlanReason.NO_KEY:
        assert "no ANU API key" in plan.sentence()


def test_at_the_mark_nothing_is_due_and_a_target_below_the_mark_is_raised_to_it():
    rate = Rate(0, 7, 20)
    at_mark = 3 * 20 * EXHIBIT_BYTES
    assert plan_refill(at_mark, rate, SETTINGS, 0).reason is PlanReason.ABOVE_MARK
    low_target = replace(SETTINGS, refill_to_days=1.0)
    plan = plan_refill(at_mark - 1, rate, low_target, 0)
    assert plan.needed and plan.target_days == 3.0 and plan.want_bytes == 1


def test_no_exhibits_and_no_assumed_rate_means_no_days_to_count():
    assert days_left(10_000, 0.0) is None
    plan = plan_refill(0, Rate(0, 7, 0), SETTINGS, 0)
    assert plan.reason is PlanReason.ABOVE_MARK and plan.days_left is None
    assert "no exhibits are being made" in plan.sentence()


# ----------------------------------------------------------------------------- the recent rate

def test_rate_counts_exhibit_draws_inside_the_window_only(pool_path):
    t0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    moment = [t0 - timedelta(days=10)]
    with EntropyPool(pool_path, clock=lambda: moment[0]) as pool:
        stock(pool, 30 * EXHIBIT_BYTES)
        pool.draw(EXHIBIT_BYTES, "exhibit:old")  # 10 days ago: outside a 7-day window
        moment[0] = t0 - timedelta(days=7)  # exactly at the window's start: inside
        pool.draw(EXHIBIT_BYTES, "exhibit:edge")
        for hour in range(13):
            moment[0] = t0 - timedelta(hours=hour * 5 + 1)
            pool.draw(EXHIBIT_BYTES, "exhibit:abc")
        pool.draw(16, "script")  # not an exhibit
        moment[0] = t0 - timedelta(hours=2)
        pool.draw(EXHIBIT_BYTES, "exhibit:os", when_empty="os")  # still served from the pool
        pool.draw(10**6, "exhibit:fallback", when_empty="os")  # os-fallback: counts too
        rate = recent_rate(pool, 7.0, 1.0, now=t0)
        assert rate.exhibits == 1 + 13 + 1 + 1
        assert rate.measured_per_day == pytest.approx(16 / 7) and not rate.assumed
        available = pool.available_bytes()
        assert days_left(available, rate.per_day) == pytest.approx(
            available / (16 / 7 * EXHIBIT_BYTES))
        # a window of 1 day holds only the draws of the last 24 hours
        assert recent_rate(pool, 1.0, 0.0, now=t0).exhibits == 5 + 2
        # a busier assumption wins, and says so
        busy = recent_rate(pool, 7.0, 200.0, now=t0)
        assert busy.per_day == 200.0 and busy.assumed and "assumed 200/day" in busy.describe()


# ----------------------------------------------------------------------------- refills over HTTP

def test_a_pool_below_the_mark_is_refilled_to_the_target(fake, pool_path):
    with EntropyPool(pool_path) as pool:
        stock(pool, REQUEST_BYTES)  # 20,480 bytes: 5.04 days at 20/day, above a mark of 3...
    pf = prefetcher(pool_path, fake, replace(SETTINGS, low_water_days=6.0, refill_to_days=12.0))
    plan = pf.check()
    assert plan.needed and plan.want_bytes == 12 * 20 * EXHIBIT_BYTES - REQUEST_BYTES
    outcome = pf.run_once()
    assert outcome.kind is OutcomeKind.FILLED and outcome.ok
    assert len(fake.seen) == 2 and all(s.headers["x-api-key"] == KEY for s in fake.seen)
    assert outcome.stored_bytes == 2 * REQUEST_BYTES and outcome.requests == 2
    assert outcome.available_bytes == 3 * REQUEST_BYTES
    assert outcome.days_left == pytest.approx(3 * REQUEST_BYTES / (20 * EXHIBIT_BYTES))
    assert outcome.days_left >= 12 and outcome.budget_left == 98
    assert outcome.sentence().startswith("added 40,960 quantum bytes with 2 requests; "
                                         "the pool holds 15.1 days of exhibits")
    doc = json.loads(json.dumps(outcome.as_dict()))
    assert doc["kind"] == "filled" and doc["plan"]["reason"] == "below-mark"
    assert KEY not in json.dumps(doc) and KEY not in repr(pf.settings)
    # now above the mark: the next check costs no request at all
    again = pf.run_once()
    assert again.kind is OutcomeKind.SKIPPED and len(fake.seen) == 2
    with EntropyPool(pool_path) as pool:
        assert pool.audit().ok


def test_above_the_mark_no_request_is_made(fake, pool_path):
    with EntropyPool(pool_path) as pool:
        stock(pool, 4 * REQUEST_BYTES)  # 20 days at 20/day
    outcome = prefetcher(pool_path, fake).run_once()
    assert outcome.kind is OutcomeKind.SKIPPED and outcome.ok
    assert fake.seen == []
    assert "at or above the mark of 3 days" in outcome.sentence()


def test_the_monthly_budget_stops_a_refill_and_says_so(fake, pool_path):
    pf = prefetcher(pool_path, fake, replace(SETTINGS, budget=2))  # 7 days at 20/day: 2 requests...
    pf.settings = replace(pf.settings, refill_to_days=15.0)  # ...15 days: 3 requests
    outcome = pf.run_once()
    assert outcome.kind is OutcomeKind.BUDGET and not outcome.ok
    assert len(fake.seen) == 2  # the fake counted exactly the budget
    assert outcome.stored_bytes == 2 * REQUEST_BYTES and outcome.budget_left == 0
    assert outcome.sentence().startswith("stopped at the monthly budget of 2 ANU requests; "
                                         "added 40,960 quantum bytes with 2 requests")
    assert "spent" in outcome.detail and outcome.hint
    # the pool is now above the mark (10 days of 3): nothing more is asked this month
    assert pf.run_once().kind is OutcomeKind.SKIPPED and len(fake.seen) == 2


def test_a_spent_budget_is_not_even_tried(fake, pool_path):
    pf = prefetcher(pool_path, fake, replace(SETTINGS, budget=0))
    outcome = pf.run_once()
    assert outcome.kind is OutcomeKind.SKIPPED and outcome.plan.reason is PlanReason.BUDGET_SPENT
    assert fake.seen == [] and "budget of 0 ANU requests is spent" in outcome.sentence()


def test_offline_is_an_outcome_spends_no_budget_and_is_retried_only_after_the_interval(
        pool_path):
    clock = Clock()
    url = closed_port_url()
    pf = prefetcher(pool_path, url, replace(SETTINGS, max_retries=2), clock=clock)
    outcome = pf.run_once()
    assert outcome.kind is OutcomeKind.OFFLINE and not outcome.ok
    assert outcome.sentence().startswith("offline: the ANU service cannot be reached; nothing "
                                         "was counted against the monthly budget")
    assert outcome.requests == 0 and outcome.budget_left == 100
    assert len(pf._sleep) == 2  # the fill backed off twice (recorded, not waited)
    with EntropyPool(pool_path) as pool:
        assert pool.requests_this_month() == 0
        tries = pool.recent_requests()
        assert len(tries) == 3 and all(t["reached"] == 0 for t in tries)
    # within the retry interval: no attempt, the last outcome is repeated with the wait
    clock.now += 9 * 60
    waiting = pf.run_once()
    assert waiting.kind is OutcomeKind.WAITING and waiting.retry_in_s == pytest.approx(60)
    assert waiting.sentence().endswith("; next try in 1 minute")
    with EntropyPool(pool_path) as pool:
        assert len(pool.recent_requests()) == 3
    # after it: tried again
    clock.now += 61
    assert pf.run_once().kind is OutcomeKind.OFFLINE
    with EntropyPool(pool_path) as pool:
        assert len(pool.recent_requests()) == 6 and pool.requests_this_month() == 0


def test_the_services_quota_waits_hours_not_minutes(fake, pool_path):
    clock = Clock()
    fake.push("429-quota")
    pf = prefetcher(pool_path, fake, clock=clock)
    outcome = pf.run_once()
    assert outcome.kind is OutcomeKind.QUOTA
    assert "request quota is used up" in outcome.sentence() and len(fake.seen) == 1
    clock.now += 11 * 60  # past entropy.refill_retry_minutes, not past the quota wait
    assert pf.run_once().kind is OutcomeKind.WAITING and len(fake.seen) == 1
    assert pf.retry_in() == pytest.approx(QUOTA_RETRY_S - 11 * 60)


def test_a_failing_service_is_an_outcome_with_its_sentence(fake, pool_path):
    fake.push("403")
    outcome = prefetcher(pool_path, fake).run_once()
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.sentence().startswith("the refill stopped: ") and "refused the API key" in \
        outcome.sentence()


def test_cancel_stops_between_requests(fake, pool_path):
    cancel = threading.Event()
    pf = prefetcher(pool_path, fake, replace(SETTINGS, low_water_days=10.0,
                                             refill_to_days=15.0))  # 3 requests

    def progress(done, total, note):
        if done > 0:
            cancel.set()  # the stop button, pressed while the first batch is being stored

    outcome = pf.run_once(progress=progress, cancel=cancel)
    assert outcome.kind is OutcomeKind.CANCELLED and len(fake.seen) == 1
    assert outcome.stored_bytes == REQUEST_BYTES
    assert outcome.sentence().startswith("cancelled; added 20,480 quantum bytes with 1 request")
    # a cancel already set asks nothing
    outcome = pf.run_once(cancel=cancel)
    assert outcome.kind is OutcomeKind.CANCELLED and len(fake.seen) == 1


def test_a_refill_in_a_worker_thread_while_another_thread_draws(fake, pool_path):
    with EntropyPool(pool_path) as pool:
        stock(pool, 2 * REQUEST_BYTES)
    pf = prefetcher(pool_path, fake, replace(SETTINGS, low_water_days=20.0, refill_to_days=30.0))
    result = {}
    worker = threading.Thread(target=lambda: result.update(outcome=pf.run_once()))
    drawn = []
    with EntropyPool(pool_path) as pool:  # this thread's own connection
        worker.start()
        while worker.is_alive() or len(drawn) < 20:
            if pool.available_bytes() < EXHIBIT_BYTES:  # spent faster than fetched: wait
                time.sleep(0.01)
                continue
            drawn.append(pool.draw(EXHIBIT_BYTES, "exhibit:threads").data)
        worker.join()
        assert pool.audit().ok
    assert result["outcome"].kind is OutcomeKind.FILLED, result["outcome"].sentence()
    assert len(set(drawn)) == len(drawn)  # not one byte handed out twice


def test_refill_of_a_plan_not_due_asks_nothing(fake, pool_path):
    plan = plan_refill(0, Rate(0, 7, 20), replace(SETTINGS, low_water_days=0.0), 0)
    with EntropyPool(pool_path) as pool:
        outcome = refill(pool, client_for(fake), plan, SETTINGS)
    assert outcome.kind is OutcomeKind.SKIPPED and fake.seen == []
    assert "refilling is off" in outcome.sentence()


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture
def keyed(qcat_home, monkeypatch):
    qcat_home.mkdir(parents=True, exist_ok=True)
    (qcat_home / "qcat.toml").write_text(
        "[entropy]\nmax_retries = 0\nassumed_exhibits_per_day = 20.0\n")
    monkeypatch.setenv("QCAT_ANU_API_KEY", KEY)
    return qcat_home


def test_fetch_until_days_end_to_end(keyed, fake, run_qcat):
    r = run_qcat("entropy", "fetch", "--until-days", "9", "--api-url", fake.url)
    assert r.code == 0, r.err
    # 9 days at 20/day = 36,540 bytes: two requests
    assert "stored 40,960 usable bytes in 2 batches with 2 requests" in r.out
    assert "pool: 40,960 usable bytes (201 exhibits, 10.1 days at 20/day)" in r.out
    assert len(fake.seen) == 2
    r = run_qcat("entropy", "fetch", "--until-days", "9", "--api-url", fake.url)
    assert r.code == 0 and r.out.startswith("nothing to fetch: the pool holds 10.1 days")
    assert len(fake.seen) == 2
    r = run_qcat("entropy", "fetch", "--until-days", "12", "--api-url", fake.url, "--json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["kind"] == "filled" and doc["stored_bytes"] == REQUEST_BYTES
    assert doc["plan"]["want_bytes"] == 12 * 20 * EXHIBIT_BYTES - 2 * REQUEST_BYTES
    assert KEY not in r.out and len(fake.seen) == 3


def test_fetch_until_days_at_the_budget_is_one_sentence_exit_3(keyed, fake, run_qcat):
    (keyed / "qcat.toml").write_text("[entropy]\nmax_retries = 0\nassumed_exhibits_per_day = "
                                     "20.0\nmonthly_request_budget = 1\n")
    r = run_qcat("entropy", "fetch", "--until-days", "9", "--api-url", fake.url)
    assert r.code == 3 and len(fake.seen) == 1
    assert "the monthly budget of 1 ANU requests is spent; stored 20,480 of 36,540" in r.err
    r = run_qcat("entropy", "fetch", "--until-days", "9", "--api-url", fake.url)
    assert r.code == 3 and len(fake.seen) == 1 and "Traceback" not in r.err
    assert "qcat: error: the monthly budget of 1 ANU request is spent; the pool holds 5" in r.err


def test_fetch_until_days_offline_exit_3_and_nothing_counted(keyed, run_qcat):
    r = run_qcat("entropy", "fetch", "--until-days", "2", "--api-url", closed_port_url())
    assert r.code == 3 and "cannot connect" in r.err and "Traceback" not in r.err
    st = json.loads(run_qcat("entropy", "status", "--json").out)
    assert st["requests_this_month"] == 0 and st["available_bytes"] == 0


@pytest.mark.parametrize(("args", "says"), [
    (("--until-days", "-1"), "give a number of days above 0"),
    (("--until-days", "0"), "give a number of days above 0"),
    (("--until-days", "nan"), "give a number of days above 0"),
    (("--until-days", "soon"), "'soon' is not a number of days"),
    (("--until-days", "3", "--bytes", "100"), "not allowed with argument"),
    ((), "one of the arguments --bytes --until-days is required"),
])
def test_fetch_bad_amounts_are_one_sentence_exit_2(keyed, fake, run_qcat, args, says):
    r = run_qcat("entropy", "fetch", *args, "--api-url", fake.url)
    assert r.code == 2 and says in r.err and "Traceback" not in r.err
    assert len([x for x in r.err.splitlines() if "error:" in x]) == 1
    assert fake.seen == []


def test_status_shows_the_rate_the_days_and_the_mark(keyed, fake, run_qcat):
    assert run_qcat("entropy", "fetch", "--bytes", "1", "--api-url", fake.url).code == 0
    for _ in range(7):
        assert run_qcat("entropy", "draw", "--bytes", "203", "--purpose", "exhibit:x").code == 0
    st = json.loads(run_qcat("entropy", "status", "--json").out)
    # the old keys stay
    assert st["available_bytes"] == REQUEST_BYTES - 7 * 203 and st["requests_this_month"] == 1
    assert st["exhibits_in_window"] == 7 and st["measured_exhibits_per_day"] == 1.0
    assert st["exhibits_per_day"] == 20.0 and st["rate_assumed"] is True
    assert st["days_left"] == pytest.approx((REQUEST_BYTES - 7 * 203) / (20 * 203), abs=1e-3)
    assert st["low_water_days"] == 3.0 and st["refill_to_days"] == 7.0
    assert st["refill_due"] is False and st["refill_reason"] == "above-mark"
    r = run_qcat("entropy", "status")
    assert "rate        1 exhibits/day over the last 7 days; planned at the assumed 20/day" in r.out
    assert "days left   4.7 at 20 exhibits/day; low-water mark 3 days, refills to 7 days" in r.out
    assert "refill      not due: the pool holds 4.7 days" in r.out
