"""The ANU client against the fake server over real HTTP: request shape, strict validation,
and one clear, typed error for every misbehaviour."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from installation.errors import InputError, ServiceError
from quantum import client as anu
from tests.fake_anu import BEHAVIOURS, KEY, client_for, running_fake


@pytest.fixture
def fake():
    with running_fake() as f:
        yield f


def test_keyed_request_shape_is_exactly_the_services(fake):
    reply = client_for(fake).request()
    seen = fake.seen[-1]
    assert seen.path == "/"
    assert seen.query == {"length": "1024", "type": "hex16", "size": "10"}
    assert seen.headers.get("x-api-key") == KEY
    assert len(reply.data) == 20480 == anu.HEX16_10.usable_bytes
    assert reply.source == "anu" and reply.server_date  # the HTTP Date header
    assert KEY not in repr(reply.provenance()) and KEY not in repr(client_for(fake))


def test_api_url_replaces_only_the_base(fake):
    c = anu.AnuClient(requests.Session(), base_url=fake.url + "/prefix/", api_key=KEY,
                      min_interval_s=0)
    assert c.url_for(anu.HEX16_10) == fake.url + "/prefix/"
    assert c.url_for(anu.LEGACY_HEX16_1024) == fake.url + "/prefix/API/jsonI.php"
    with pytest.raises(InputError, match="base URL"):
        anu.AnuClient(requests.Session(), base_url=fake.url + "/?length=5")
    with pytest.raises(InputError, match="not an http"):
        anu.AnuClient(requests.Session(), base_url="ftp://example.org")


def test_legacy_request_shape_and_parse(fake):
    reply = client_for(fake, legacy=True).request()
    seen = fake.seen[-1]
    assert seen.path == "/API/jsonI.php"
    assert seen.query == {"length": "1024", "type": "hex16", "size": "1024"}
    assert "x-api-key" not in {k.lower() for k in seen.headers}
    assert len(reply.data) == 1024 * 1024 and reply.source == "anu-legacy"


@pytest.mark.parametrize("kind", anu.REQUEST_PLAN, ids=lambda k: k.name)
def test_every_kind_in_the_plan_parses_to_its_size(fake, kind):
    c = client_for(fake, legacy=kind.api == "legacy")
    assert len(c.request(kind).data) == kind.usable_bytes


def test_hex_bytes_come_out_in_reply_order():
    body = b'{"success": true, "type": "hex16", "length": "2", "data": ["0a0b", "ff00"]}'
    kind = anu.RequestKind("t", "keyed", "hex16", 2, 1)
    assert anu.parse_reply(body, kind, "x") == bytes([0x0A, 0x0B, 0xFF, 0x00])
    # length as an int is fine too; uint16 is big-endian
    body16 = b'{"success": true, "type": "uint16", "length": 2, "data": [258, 65535]}'
    assert anu.parse_reply(body16, anu.RequestKind("t", "keyed", "uint16", 2), "x") == \
        bytes([1, 2, 255, 255])


@pytest.mark.parametrize(("body", "phrase"), [
    (b'{"success": true, "type": "hex16", "length": "2", "data": ["0a0b"]}', "1 elements"),
    (b'{"success": true, "type": "hex16", "length": "3", "data": ["0a0b", "0a0b"]}',
     "length is 3"),
    (b'{"success": true, "type": "hex16", "length": "two", "data": []}', "not a number"),
    (b'{"success": true, "type": "hex16", "length": true, "data": []}', "not a number"),
    (b'{"success": true, "type": "hex8", "length": "2", "data": ["0a0b", "0a0b"]}', "type"),
    (b'{"success": true, "type": "hex16", "length": "2", "data": ["0a0 ", "0a0b"]}', "not hex"),
    (b'{"success": true, "type": "hex16", "length": "2", "data": ["0a0b0", "0a0b"]}',
     "not 4 hex digits"),
    (b'{"success": true, "type": "hex16", "length": "2", "data": [10, 11]}', "not 4 hex"),
    (b'{"success": "yes", "type": "hex16", "length": "2", "data": ["0a0b", "0a0b"]}',
     "success"),
    (b'{"type": "hex16", "length": "2", "data": ["0a0b", "0a0b"]}', "success"),
    (b'["0a0b"]', "not a JSON object"),
    (b'<html>', "not JSON"),
])
def test_strict_validation_names_the_fault(body, phrase):
    kind = anu.RequestKind("t", "keyed", "hex16", 2, 1)
    with pytest.raises(anu.BadReply, match=phrase) as info:
        anu.parse_reply(body, kind, "http://x")
    assert "nothing from it was stored" in info.value.message


def test_fromhex_whitespace_is_not_accepted():
    # bytes.fromhex would happily skip the space; the alphabet check must not.
    kind = anu.RequestKind("t", "keyed", "hex8", 1, 2)
    with pytest.raises(anu.BadReply):
        anu.parse_reply(b'{"success": true, "type": "hex8", "length": 1, "data": ["0 a0"]}',
                        kind, "x")


@pytest.mark.parametrize(("behaviour", "error", "phrase", "retryable"), [
    ("429-throttle", anu.RateLimited, "throttling requests.*HTTP 429: Too Many Requests", True),
    ("429-quota", anu.QuotaExceeded, "quota is used up.*HTTP 429: Limit Exceeded", False),
    ("503", anu.Unavailable, "HTTP 503", True),
    ("403", anu.AnuError, "refused the API key", False),
    ("403-no-route", anu.AnuError, "the URL or path is wrong", False),
    ("drop", anu.Unavailable, "broke before a reply came", True),
    ("success-false", anu.BadReply, "success = false", True),
    ("short", anu.BadReply, "512 elements, 1024 were asked for", True),
    ("narrow", anu.BadReply, "not 40 hex digits", True),
    ("bad-hex", anu.BadReply, "not hex digits", True),
    ("not-json", anu.BadReply, "not JSON", True),
    ("wrong-type", anu.BadReply, "type", True),
    ("slow", anu.Unavailable, "did not answer within 0.5 s", True),
])
def test_each_misbehaviour_is_one_typed_line(fake, behaviour, error, phrase, retryable):
    fake.push(behaviour)
    with pytest.raises(error, match=phrase) as info:
        client_for(fake).request()
    exc = info.value
    assert isinstance(exc, ServiceError) and exc.exit_code == 3
    assert exc.retryable is retryable
    assert "\n" not in exc.message and fake.url in exc.message


def test_legacy_rate_limit_text_body(fake):
    fake.push("500-legacy")
    with pytest.raises(anu.RateLimited, match="1 request a minute") as info:
        client_for(fake, legacy=True).request()
    assert info.value.retry_after_s == anu.LEGACY_MIN_INTERVAL_S


def test_wrong_key_is_refused_and_never_echoed(fake):
    with pytest.raises(anu.AnuError, match="refused the API key") as info:
        client_for(fake, api_key="not-the-key-123456").request()
    assert "not-the-key-123456" not in info.value.message + (info.value.hint or "")


def test_no_key_fails_before_any_request(fake):
    with pytest.raises(anu.AnuError, match="no ANU API key"):
        client_for(fake, api_key="").request()
    assert fake.seen == []


def test_connection_refused_is_a_retryable_line():
    with running_fake() as f:
        url = f.url
    c = anu.AnuClient(requests.Session(), base_url=url, api_key=KEY, timeout_s=0.5)
    with pytest.raises(anu.Unavailable, match="cannot connect"):
        c.request()


class _Raising(requests.Session):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    def get(self, *a, **k):  # type: ignore[override]
        raise self.exc


@pytest.mark.parametrize(("exc", "phrase"), [
    (requests.exceptions.SSLError("certificate has expired"), "TLS certificate"),
    (requests.exceptions.ConnectionError(
        "HTTPSConnectionPool: NameResolutionError: Temporary failure in name resolution"),
     "DNS"),
])
def test_tls_and_dns_failures_are_one_clear_line(exc, phrase):
    c = anu.AnuClient(_Raising(exc), api_key=KEY)
    with pytest.raises(anu.AnuError, match=phrase) as info:
        c.request()
    assert not info.value.retryable and "\n" not in info.value.message
    assert info.value.__cause__ is None and info.value.__suppress_context__


# -- what the gateway's words mean (../shared/reference/anu-qrng.md) --------------------------


def test_quota_429_says_the_plan_is_spent_and_not_to_retry(fake):
    fake.push("429-quota")
    with pytest.raises(anu.QuotaExceeded) as info:
        client_for(fake).request()
    exc = info.value
    assert not exc.retryable and exc.reached_service and exc.outcome == "quota"
    assert "usage plan's request quota is used up" in exc.message
    assert "does not retry" in exc.message
    assert "quota resets" in (exc.hint or "") and "raise the plan" in (exc.hint or "")


def test_throttle_429_is_retryable_and_not_called_a_quota(fake):
    fake.push("429-throttle")
    with pytest.raises(anu.RateLimited) as info:
        client_for(fake).request()
    assert info.value.retryable and "quota" not in info.value.message


def test_missing_authentication_token_names_the_url_and_does_not_blame_the_key(fake):
    # A real wrong path: the fake answers what the API Gateway answers to it.
    c = anu.AnuClient(requests.Session(), base_url=fake.url + "/v1", api_key=KEY, timeout_s=1)
    with pytest.raises(anu.AnuError) as info:
        c.request()
    exc = info.value
    assert fake.seen[-1].path == "/v1/"
    assert f"no ANU API answers at {fake.url}/v1/ " in exc.message
    assert "Missing Authentication Token" in exc.message and "not a problem with the key" in exc.message
    assert "refused the API key" not in exc.message and not exc.retryable
    assert "--api-url" in (exc.hint or "") and "entropy.api_url" in (exc.hint or "")


def test_a_wrong_legacy_path_names_the_legacy_url(fake):
    c = anu.AnuClient(requests.Session(), legacy=True, base_url=fake.url + "/qrng", timeout_s=1)
    with pytest.raises(anu.AnuError, match="the URL or path is wrong") as info:
        c.request()
    assert f"{fake.url}/qrng/API/jsonI.php" in info.value.message
    assert "entropy.legacy_api_url" in (info.value.hint or "")


def test_a_plain_403_still_means_the_key(fake):
    with pytest.raises(anu.AnuError, match="refused the API key") as info:
        client_for(fake, api_key="wrong-key-0000").request()
    assert "URL or path" not in info.value.message


def test_retry_after_in_seconds_reaches_the_caller_unbounded(fake):
    fake.retry_after = "86400"
    fake.push("429-throttle")
    with pytest.raises(anu.RateLimited, match="Retry-After 86400 s") as info:
        client_for(fake).request()
    assert info.value.retry_after_s == 86400.0  # the client reports; quantum.fetch caps


def test_retry_after_as_an_http_date_is_read_against_the_servers_clock(fake):
    fake.retry_after = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    fake.push("429-throttle")
    with pytest.raises(anu.RateLimited) as info:
        client_for(fake).request()
    assert info.value.retry_after_s == pytest.approx(3600, abs=5)


@pytest.mark.parametrize(("value", "server_date", "seconds"), [
    ("120", None, 120.0),
    (" 7 ", None, 7.0),
    ("-5", None, 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:27:00 GMT", 60.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 08:00:00 GMT", 0.0),  # in the past
    ("Wed, 21 Oct 2015 07:28:00 GMT", None, 0.0),  # long past by our clock
    ("soon", None, None),
    ("nan", None, None),
    ("inf", None, None),
    ("", None, None),
    (None, None, None),
])
def test_retry_after_forms(value, server_date, seconds):
    assert anu._parse_retry_after(value, server_date) == seconds


# -- which failures may have reached the service (and so spent quota) --------------------------


def test_refused_connection_never_reached_the_service():
    with running_fake() as f:
        url = f.url
    c = anu.AnuClient(requests.Session(), base_url=url, api_key=KEY, timeout_s=0.5)
    with pytest.raises(anu.Unavailable, match="cannot connect") as info:
        c.request()
    assert info.value.reached_service is False and info.value.retryable


def test_tls_handshake_failure_never_reached_the_service(fake):
    # https:// to a plain-HTTP server: a real handshake failure on a real socket.
    c = anu.AnuClient(requests.Session(), base_url=fake.url.replace("http:", "https:"),
                      api_key=KEY, timeout_s=2)
    with pytest.raises(anu.AnuError, match="TLS handshake") as info:
        c.request()
    assert info.value.reached_service is False and not info.value.retryable
    assert fake.seen == []  # the fake's API never saw a request


@pytest.mark.parametrize("behaviour", ["slow", "drop", "503", "429-throttle", "429-quota", "403"])
def test_failures_after_sending_may_have_reached_the_service(fake, behaviour):
    fake.push(behaviour)
    with pytest.raises(anu.AnuError) as info:
        client_for(fake).request()
    assert info.value.reached_service is True
    assert len(fake.seen) == 1


@pytest.mark.parametrize(("exc", "reached"), [
    (requests.exceptions.ConnectTimeout("connect timed out"), False),
    (requests.exceptions.ReadTimeout("read timed out"), True),
    (requests.exceptions.SSLError("certificate has expired"), False),
    (requests.exceptions.ConnectionError("NameResolutionError: Name or service not known"),
     False),
    (requests.exceptions.ConnectionError("Connection aborted. RemoteDisconnected"), True),
])
def test_reached_service_by_exception(exc, reached):
    with pytest.raises(anu.AnuError) as info:
        anu.AnuClient(_Raising(exc), api_key=KEY).request()
    assert info.value.reached_service is reached


def test_no_key_never_reached_the_service(fake):
    with pytest.raises(anu.AnuError) as info:
        client_for(fake, api_key="").request()
    assert info.value.reached_service is False and fake.seen == []


_UNSAID = re.compile(r"\b(issues?|releases?|released|tickets?)\b", re.IGNORECASE)


@pytest.mark.parametrize("behaviour", [b for b in BEHAVIOURS if b not in ("ok", "replay")])
def test_no_error_speaks_of_issues_or_releases(fake, behaviour):
    fake.retry_after = "30"
    fake.push(behaviour)
    try:
        client_for(fake, legacy=behaviour == "500-legacy").request()
    except anu.AnuError as exc:
        said = exc.message + " " + (exc.hint or "")
        assert not _UNSAID.search(said), said
    else:
        assert behaviour == "stuck"  # well-formed; the health tests judge it, not the client
