"""Filling the pool from the fake ANU over real HTTP: every misbehaviour ends in one clear
line and not one bad byte served; budget, pacing and backoff hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from installation.errors import EntropyExhausted
from quantum import fetch
from quantum.client import AnuClient
from quantum.pool import EntropyPool
from tests.fake_anu import KEY, Sleeps, client_for, running_fake


@pytest.fixture
def fake():
    with running_fake() as f:
        yield f


@pytest.fixture
def pool(tmp_path):
    with EntropyPool(tmp_path / "entropy.sqlite") as p:
        yield p


def served_everything(pool: EntropyPool) -> bytes:
    """Draw every usable byte there is (to prove which bytes *could* ever be served)."""
    n = pool.available_bytes()
    return pool.draw(n, "sweep").data if n else b""


# Misbehaviours a retry may cure, with the phrase the final status line must contain.
TRANSIENT = [
    ("429-throttle", "throttling requests, too many too fast (HTTP 429: Too Many Requests)"),
    ("503", "failed with HTTP 503"),
    ("success-false", "success = false"),
    ("short", "512 elements, 1024 were asked for"),
    ("narrow", "not 40 hex digits"),
    ("bad-hex", "not hex digits"),
    ("not-json", "not JSON"),
    ("wrong-type", "has type"),
    ("slow", "did not answer within"),
    ("drop", "broke before a reply came"),
]


@pytest.mark.parametrize(("behaviour", "phrase"), TRANSIENT, ids=[t[0] for t in TRANSIENT])
def test_a_persistent_fault_stops_with_one_line_and_stores_nothing(fake, pool, behaviour, phrase):
    fake.push(behaviour, behaviour, behaviour)
    sleeps = Sleeps()
    with pytest.raises(fetch.FetchIncomplete) as info:
        fetch.fill(pool, client_for(fake), 20480, max_retries=2, sleep=sleeps)
    msg = info.value.message
    assert phrase in msg and "gave up after 2 retries" in msg
    assert "stored 0 of 20,480 bytes" in msg and "\n" not in msg
    assert info.value.exit_code == 3
    assert sleeps == [2.0, 4.0]  # exponential backoff between the three attempts
    assert pool.available_bytes() == 0
    with pytest.raises(EntropyExhausted):
        pool.draw(1, "exhibit", when_empty="fail")
    # each attempt was sent, so the service may have counted it: so do we
    assert pool.status()["requests_this_month"] == 3


@pytest.mark.parametrize(("behaviour", "_"), TRANSIENT, ids=[t[0] for t in TRANSIENT])
def test_a_passing_fault_is_retried_and_only_the_good_reply_is_stored(fake, pool, behaviour, _):
    fake.push(behaviour)
    report = fetch.fill(pool, client_for(fake), 1, max_retries=1, sleep=Sleeps())
    assert report.stored_batches == 1 and report.retries == 1
    assert len(report.failures) == 1
    assert pool.available_bytes() == 20480
    outcomes = [r["outcome"] for r in reversed(pool.recent_requests())]
    assert outcomes[-1] == "stored" and outcomes[0] != "stored"


def test_forbidden_stops_at_once_without_retrying(fake, pool):
    fake.push("403")
    sleeps = Sleeps()
    with pytest.raises(fetch.FetchIncomplete, match="refused the API key") as info:
        fetch.fill(pool, client_for(fake), 1, max_retries=5, sleep=sleeps)
    assert sleeps == [] and len(fake.seen) == 1
    assert "QCAT_ANU_API_KEY" in (info.value.hint or "")


def test_a_replayed_batch_is_quarantined_and_never_served(fake, pool):
    fetch.fill(pool, client_for(fake), 1, sleep=Sleeps())
    first = pool.batch_data(1)
    fake.push("replay")
    report = fetch.fill(pool, client_for(fake), 1, sleep=Sleeps())
    assert len(report.quarantined) == 1 and "replayed reply" in report.quarantined[0]
    assert pool.batch_data(2) == first  # kept for inspection
    [q] = pool.quarantined()
    assert q["batch"] == 2 and "duplicate" in q["reason"]
    served = served_everything(pool)
    assert len(served) == 2 * 20480 and served[:20480] == first
    assert served.count(first) == 1


def test_stuck_bytes_are_quarantined_and_never_served(fake, pool):
    fake.push("stuck")
    report = fetch.fill(pool, client_for(fake), 1, sleep=Sleeps())
    assert "repetition count test" in report.quarantined[0]
    stuck = pool.batch_data(1)
    assert stuck.endswith(b"\x5a" * 10240)
    served = served_everything(pool)
    assert len(served) == 20480 and b"\x5a" * 8 not in served


def test_too_many_quarantines_in_a_row_stop_the_fetch(fake, pool):
    fake.push("stuck", "stuck", "stuck")
    with pytest.raises(fetch.FetchIncomplete, match="3 batches in a row failed the health"):
        fetch.fill(pool, client_for(fake), 1, sleep=Sleeps())
    assert pool.available_bytes() == 0 and len(pool.quarantined()) == 3


def test_budget_stops_the_fetch_and_is_counted_in_the_database(fake, pool, tmp_path):
    with pytest.raises(fetch.FetchIncomplete, match="monthly budget of 3 ANU requests") as info:
        fetch.fill(pool, client_for(fake), 10 * 20480, budget=3, sleep=Sleeps())
    assert info.value.report.stored_bytes == 3 * 20480 and len(fake.seen) == 3
    # A new process (a new pool object) sees the same count: it lives in the database.
    with EntropyPool(tmp_path / "entropy.sqlite") as again:
        assert again.requests_this_month() == 3
        with pytest.raises(fetch.FetchIncomplete, match="budget"):
            fetch.fill(again, client_for(fake), 1, budget=3, sleep=Sleeps())
    assert len(fake.seen) == 3
    next_month = datetime(2999, 1, 1, tzinfo=UTC)
    assert pool.requests_this_month(next_month) == 0


def test_pacing_waits_out_the_interval_since_the_last_request(fake, pool):
    client = client_for(fake)
    client.min_interval_s = 60.0
    fetch.fill(pool, client, 1, sleep=Sleeps())
    last = pool.last_request_epoch("keyed")
    sleeps = Sleeps()
    fetch.fill(pool, client, 1, sleep=sleeps, clock=lambda: last + 15.0)
    assert sleeps == [pytest.approx(45.0)]


def test_legacy_rate_limit_waits_a_minute_then_stores(fake, pool):
    fake.push("500-legacy")
    sleeps = Sleeps()
    report = fetch.fill(pool, client_for(fake, legacy=True), 1, sleep=sleeps)
    assert sleeps == [60.0] and report.stored_bytes == 1024 * 1024
    assert pool.status()["source"] == "anu-legacy"


def test_fetch_provenance_names_base_request_and_server_date(fake, pool):
    fetch.fill(pool, client_for(fake), 1, sleep=Sleeps())
    d = pool.draw(203, "exhibit")
    [seg] = d.provenance["segments"]
    assert seg["base_url"] == fake.url and seg["source"] == "anu"
    assert seg["request_number"] == 1 and seg["server_date"].endswith("GMT")
    assert seg["request_time"].startswith(str(datetime.now(UTC).year))


def test_progress_reports_bytes_and_quota(fake, pool):
    calls = []
    fetch.fill(pool, client_for(fake), 30000, budget=10, sleep=Sleeps(),
               progress=lambda done, total, note: calls.append((done, total, note)))
    assert calls[0][:2] == (0, 30000) and calls[-1][:2] == (30000, 30000)
    assert "quota left 8" in calls[-1][2]


# -- the monthly budget counts only requests that may have reached the service ----------------


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (a fake that was started, then stopped)."""
    with running_fake() as f:
        return f.url


def offline_client(url: str, *, legacy: bool = False) -> AnuClient:
    return AnuClient(requests.Session(), legacy=legacy, base_url=url,
                     api_key="" if legacy else KEY, timeout_s=0.5, min_interval_s=0.0)


def test_offline_attempts_do_not_spend_the_budget(fake, pool):
    fetch.fill(pool, client_for(fake), 1, sleep=Sleeps())
    assert pool.requests_this_month() == 1
    last = pool.last_request_epoch("keyed")
    url = closed_port_url()
    for _ in range(5):
        sleeps = Sleeps()
        with pytest.raises(fetch.FetchIncomplete, match="cannot connect") as info:
            fetch.fill(pool, offline_client(url), 1, max_retries=2, sleep=sleeps)
        assert sleeps == [2.0, 4.0]  # still backs off: the network may come back
        assert info.value.report.unreached == 3
        assert "3 never reached the service and do not count" in info.value.report.lines()[0]
        assert "99 requests left this month" in info.value.report.lines()[0]
    assert pool.requests_this_month() == 1  # 15 refused connections later
    assert pool.status()["requests_this_month"] == 1
    assert pool.last_request_epoch("keyed") == last  # pacing ignores them too
    offline = [r for r in pool.recent_requests(50) if r["outcome"] == "connect"]
    assert len(offline) == 15 and all(r["reached"] == 0 for r in offline)  # logged, not counted


def test_offline_attempts_do_not_spend_the_last_request_of_the_budget(pool):
    with pytest.raises(fetch.FetchIncomplete, match="cannot connect"):
        fetch.fill(pool, offline_client(closed_port_url()), 1, budget=1, max_retries=3,
                   sleep=Sleeps())
    assert pool.requests_this_month() == 0  # the one request of the month is still there


def test_a_tls_handshake_failure_does_not_spend_the_budget(fake, pool):
    https = offline_client(fake.url.replace("http:", "https:"))
    with pytest.raises(fetch.FetchIncomplete, match="TLS handshake"):
        fetch.fill(pool, https, 1, sleep=Sleeps())
    assert fake.seen == [] and pool.requests_this_month() == 0


def test_a_request_counts_until_it_is_known_not_to_have_reached(pool):
    """Recorded before sending, marked afterwards: a crash in between keeps it counted."""
    rid = pool.begin_request("keyed", "http://x", "keyed hex16 size 10")
    assert pool.requests_this_month() == 1  # in flight (or crashed): counts
    pool.finish_request(rid, "connect", None, "cannot connect", reached=False)
    assert pool.requests_this_month() == 0
    with EntropyPool(pool.path) as other:  # another process sees the same
        assert other.requests_this_month() == 0


@pytest.mark.parametrize("behaviour", ["slow", "drop"])
def test_a_failure_after_sending_still_counts(fake, pool, behaviour):
    fake.push(behaviour)
    fetch.fill(pool, client_for(fake), 1, max_retries=1, sleep=Sleeps())
    assert pool.requests_this_month() == 2  # the service may have served the first one


def test_legacy_requests_are_not_counted_against_the_keyed_budget(fake, pool):
    fetch.fill(pool, client_for(fake), 1, sleep=Sleeps())
    report = fetch.fill(pool, client_for(fake, legacy=True), 1, budget=1, sleep=Sleeps())
    assert report.stored_batches == 1  # a spent keyed budget does not stop the free API
    assert "not counted against the monthly budget" in report.lines()[0]
    assert pool.requests_this_month() == 1
    assert pool.requests_this_month(api="legacy") == 1
    st = pool.status()
    assert st["requests_this_month"] == 1 and st["legacy_requests_this_month"] == 1


def test_legacy_pacing_still_holds(fake, pool):
    client = client_for(fake, legacy=True)
    client.min_interval_s = 60.0
    fetch.fill(pool, client, 1, sleep=Sleeps())
    last = pool.last_request_epoch("legacy")
    sleeps = Sleeps()
    fetch.fill(pool, client, 1, sleep=sleeps, clock=lambda: last + 20.0)
    assert sleeps == [pytest.approx(40.0)]


def test_pacing_never_sleeps_longer_than_the_interval_when_the_clock_went_back(fake, pool):
    client = client_for(fake)
    client.min_interval_s = 60.0
    fetch.fill(pool, client, 1, sleep=Sleeps())
    last = pool.last_request_epoch("keyed")
    sleeps = Sleeps()
    fetch.fill(pool, client, 1, sleep=sleeps, clock=lambda: last - 86400.0)
    assert sleeps == [60.0]


# -- quota, throttle and Retry-After ------------------------------------------------------------


def test_a_quota_429_stops_after_exactly_one_request(fake, pool):
    fake.push("429-quota", "ok", "ok")
    sleeps = Sleeps()
    with pytest.raises(fetch.FetchIncomplete, match="quota is used up") as info:
        fetch.fill(pool, client_for(fake), 1, max_retries=4, sleep=sleeps)
    assert len(fake.seen) == 1 and sleeps == []
    assert "quota resets" in (info.value.hint or "")
    assert pool.requests_this_month() == 1  # it reached the service


def test_a_day_long_retry_after_is_capped(fake, pool):
    fake.retry_after = "86400"
    fake.push("429-throttle", "429-throttle")
    sleeps = Sleeps()
    report = fetch.fill(pool, client_for(fake), 1, max_retries=2, sleep=sleeps)
    assert report.stored_batches == 1 and len(fake.seen) == 3
    assert sleeps and all(s <= fetch.BACKOFF_MAX_S for s in sleeps)
    assert sleeps == [fetch.BACKOFF_MAX_S, fetch.BACKOFF_MAX_S]  # honoured, up to the cap


@pytest.mark.parametrize(("retry_after", "expect"), [
    ("10", 10.0),  # longer than the backoff: honoured
    ("1", 2.0),  # shorter than the backoff: the backoff wins
    ("soon", 2.0),  # unreadable: ignored
    (format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True), fetch.BACKOFF_MAX_S),
])
def test_retry_after_is_honoured_within_bounds(fake, pool, retry_after, expect):
    fake.retry_after = retry_after
    fake.push("429-throttle")
    sleeps = Sleeps()
    fetch.fill(pool, client_for(fake), 1, max_retries=1, sleep=sleeps)
    assert sleeps == [pytest.approx(expect, abs=0.01)]


def test_a_503_retry_after_is_capped_too(fake, pool):
    fake.retry_after = "99999"
    fake.push("503")
    sleeps = Sleeps()
    fetch.fill(pool, client_for(fake), 1, max_retries=1, sleep=sleeps)
    assert sleeps == [fetch.BACKOFF_MAX_S]
