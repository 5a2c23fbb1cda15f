"""Filling the pool from the fake ANU over real HTTP: every misbehaviour ends in one clear
line and not one bad byte served; budget, pacing and backoff hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from installation.errors import EntropyExhausted
from quantum import fetch
from quantum.pool import EntropyPool
from tests.fake_anu import Sleeps, client_for, running_fake


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
    ("429", "rate or quota limit exceeded (HTTP 429: Limit Exceeded)"),
    ("503", "failed with HTTP 503"),
    ("success-false", "success = false"),
    ("short", "512 elements, 1024 were asked for"),
    ("narrow", "not 40 hex digits"),
    ("bad-hex", "not hex digits"),
    ("not-json", "not JSON"),
    ("wrong-type", "has type"),
    ("slow", "did not answer within"),
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
    assert pool.status()["requests_this_month"] == 3  # failed attempts count toward the quota


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
