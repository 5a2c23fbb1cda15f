"""The ANU QRNG client: one HTTP request, one strictly validated batch of bytes, or one clear error.

Speaks both services (../shared/reference/anu-qrng.md):

    keyed   GET {base}/?length=1024&type=hex16&size=10        header x-api-key   20,480 bytes
    legacy  GET {base}/API/jsonI.php?length=1024&type=hex16&size=1024   no key  1 MiB

Quotas count requests, so a fetch always asks for the largest block the API allows. `--api-url`
replaces only the base; path and query stay exactly the service's. The `requests.Session` is
handed in, so tests (and the benchmark) talk real HTTP to the fake server on 127.0.0.1.

What this module must never do: retry, sleep, count, or store (that is `quantum.fetch` and the
pool); accept a reply it has not fully validated; or let the API key reach a message, a URL, a
provenance record or a log line. The key travels only in the `x-api-key` header.

Errors (all `installation.errors.ServiceError`, exit 3) say in one line what happened to which
base URL; `retryable` tells the fetch loop whether backing off can help, and `reached_service`
whether the request may have reached the service (and so counts against a quota). Replies are
read as the API Gateway in front of the keyed API words them:

    403 "Forbidden"                     the key was refused
    403 "Missing Authentication Token"  no API at that URL or path (not a key problem)
    429 "Limit Exceeded"                the usage plan's quota is spent: stop, do not retry
    429 "Too Many Requests" (or other)  a short throttle: the caller backs off and retries
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from installation.errors import InputError, ServiceError

KEYED_BASE_URL = "https://api.quantumnumbers.anu.edu.au"
LEGACY_BASE_URL = "https://qrng.anu.edu.au"
LEGACY_PATH = "/API/jsonI.php"
API_KEY_HEADER = "x-api-key"
# The services' published request rates (keyed: about 1 a second; legacy: 1 a minute).
KEYED_MIN_INTERVAL_S = 1.0
LEGACY_MIN_INTERVAL_S = 60.0
# Bodies are JSON of at most ~2.1 MB (legacy hex16, 1024 x 1024 bytes); refuse anything absurd.
MAX_REPLY_BYTES = 8 * 1024 * 1024
LEGACY_RATE_TEXT = "limited to 1 request"
# The API Gateway's wording (reference: ../shared/reference/anu-qrng.md), compared casefolded.
GATEWAY_QUOTA = "limit exceeded"  # 429: the usage plan's quota, hours to a month
GATEWAY_NO_ROUTE = "missing authentication token"  # 403: no API at that URL or path
USER_AGENT = "qcat-entropy/1"


@dataclass(frozen=True)
class RequestKind:
    """One request shape: which API, which type, how many elements of which size."""

    name: str
    api: str  # "keyed" | "legacy"
    type: str  # uint8 | uint16 | hex8 | hex16
    length: int
    size: int | None = None

    @property
    def element_bytes(self) -> int:
        if self.type == "uint8":
            return 1
        if self.type == "uint16":
            return 2
        assert self.size is not None
        if self.type == "hex16" and self.api == "keyed":
            return 2 * self.size  # keyed hex16: `size` 16-bit words per element
        return self.size  # keyed hex8 and legacy hex16: `size` bytes per element

    @property
    def usable_bytes(self) -> int:
        """Bytes one successful request of this kind yields."""
        return self.length * self.element_bytes

    @property
    def reply_type(self) -> str:
        """The `type` the service echoes (legacy hex16 says "string")."""
        return "string" if self.api == "legacy" and self.type == "hex16" else self.type

    def query(self) -> dict[str, str]:
        q = {"length": str(self.length), "type": self.type}
        if self.size is not None:
            q["size"] = str(self.size)
        return q


# Every request shape qcat knows; the benchmark compares them against UINT8.
UINT8 = RequestKind("keyed uint8", "keyed", "uint8", 1024)
UINT16 = RequestKind("keyed uint16", "keyed", "uint16", 1024)
HEX8_10 = RequestKind("keyed hex8 size 10", "keyed", "hex8", 1024, 10)
HEX16_10 = RequestKind("keyed hex16 size 10", "keyed", "hex16", 1024, 10)
LEGACY_HEX16_1024 = RequestKind("legacy hex16 size 1024", "legacy", "hex16", 1024, 1024)
REQUEST_PLAN: tuple[RequestKind, ...] = (UINT8, UINT16, HEX8_10, HEX16_10, LEGACY_HEX16_1024)
# What a fetch actually asks for: the largest block each API allows.
FETCH_KIND = {"keyed": HEX16_10, "legacy": LEGACY_HEX16_1024}

_HEX = re.compile(r"[0-9a-fA-F]+")


class AnuError(ServiceError):
    """A failed request; `retryable` says whether waiting and asking again can help."""

    retryable = False

    def __init__(self, message: str, hint: str | None = None, *, http_status: int | None = None,
                 retry_after_s: float | None = None, outcome: str = "failed",
                 reached_service: bool = True) -> None:
        super().__init__(message, hint)
        self.http_status = http_status
        self.retry_after_s = retry_after_s  # what the service asked for, unbounded: cap it
        self.outcome = outcome  # short tag recorded in the pool's request log
        # False only when the request provably never left this machine (DNS, refused
        # connection, TLS handshake, no key): then it cannot have used any quota.
        self.reached_service = reached_service


class RateLimited(AnuError):
    """A short throttle (429 Too Many Requests, the legacy API's 1 a minute): back off."""

    retryable = True


class QuotaExceeded(AnuError):
    """429 Limit Exceeded: the usage plan's quota is spent until it resets (hours to a month).

    Not retryable: every retry before the reset is refused the same way."""


class Unavailable(AnuError):
    """5xx, timeout, refused connection: transient by nature."""

    retryable = True


class BadReply(AnuError):
    """The service answered 200 but the body is not a valid batch; nothing from it is stored.

    Retryable: a short or garbled body is often a one-off (a proxy, a truncated transfer)."""

    retryable = True


@dataclass(frozen=True)
class Reply:
    """One validated batch and where it came from (never the key)."""

    data: bytes
    kind: RequestKind
    base_url: str
    requested_at: str  # ISO-8601 UTC, our clock
    server_date: str | None  # the HTTP Date header, the service's clock
    elapsed_s: float
    wire_bytes: int

    @property
    def source(self) -> str:
        return "anu" if self.kind.api == "keyed" else "anu-legacy"

    def provenance(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "api": self.kind.api,
            "base_url": self.base_url,
            "request": self.kind.query(),
            "request_time": self.requested_at,
            "server_date": self.server_date,
        }


def normalize_base_url(url: str) -> str:
    """`https://host[:port][/prefix]` without a trailing slash; anything else is refused."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"API URL {url!r} is not an http(s) URL",
                         hint="give only the base, e.g. --api-url https://api.quantumnumbers.anu.edu.au")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise InputError(f"API URL {parts.scheme}://{parts.hostname} must be a base URL without "
                         "a query, fragment or credentials",
                         hint="qcat adds the path and the query itself")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class AnuClient:
    """Makes validated requests to one ANU API through an injected `requests.Session`."""

    def __init__(self, session: requests.Session, *, legacy: bool = False,
                 base_url: str | None = None, api_key: str = "", timeout_s: float = 30.0,
                 min_interval_s: float | None = None) -> None:
        self.session = session
        self.api = "legacy" if legacy else "keyed"
        default = LEGACY_BASE_URL if legacy else KEYED_BASE_URL
        self.base_url = normalize_base_url(base_url or default)
        self._api_key = api_key
        self.timeout_s = timeout_s
        if min_interval_s is None:
            min_interval_s = LEGACY_MIN_INTERVAL_S if legacy else KEYED_MIN_INTERVAL_S
        self.min_interval_s = min_interval_s

    def __repr__(self) -> str:  # never show the key, even in a debugger or a traceback
        return f"AnuClient(api={self.api!r}, base_url={self.base_url!r})"

    @property
    def source(self) -> str:
        return "anu" if self.api == "keyed" else "anu-legacy"

    @property
    def fetch_kind(self) -> RequestKind:
        return FETCH_KIND[self.api]

    def url_for(self, kind: RequestKind) -> str:
        return self.base_url + ("/" if kind.api == "keyed" else LEGACY_PATH)

    def request(self, kind: RequestKind | None = None) -> Reply:
        """One HTTP request and its validated bytes, or an `AnuError` saying what went wrong."""
        try:
            return self._request(kind or self.fetch_kind)
        except AnuError as exc:
            # Belt and braces for S1: a server (or a proxy) echoing the key into a body must
            # not carry it into our message.
            if self._api_key:
                exc.message = exc.message.replace(self._api_key, "<hidden>")
                exc.args = (exc.message,)
            raise

    def _request(self, kind: RequestKind) -> Reply:
        if kind.api != self.api:
            raise ValueError(f"{kind.name} is not a request of the {self.api} API")  # a bug
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if kind.api == "keyed":
            if not self._api_key:
                raise AnuError("no ANU API key is set for the keyed API",
                               hint="export QCAT_ANU_API_KEY=<key>, or fetch with --legacy",
                               outcome="no-key", reached_service=False)
            headers[API_KEY_HEADER] = self._api_key
        where = self.base_url
        requested_at = utc_now_iso()
        started = time.monotonic()
        try:
            resp = self.session.get(self.url_for(kind), params=kind.query(), headers=headers,
                                    timeout=self.timeout_s, allow_redirects=False)
            body = resp.content
        except requests.exceptions.SSLError as exc:
            # The handshake comes before the request: nothing was sent.
            if "certificate" not in repr(exc).lower():
                raise AnuError(f"the TLS handshake with {where} failed",
                               hint="check the API URL (is it really https?) and any proxy "
                                    "between this machine and the service",
                               outcome="tls", reached_service=False) from None
            raise AnuError(f"the TLS certificate of {where} could not be verified",
                           hint="check the machine's clock and CA certificates; "
                                "the service has had expired certificates before",
                           outcome="tls", reached_service=False) from None
        except requests.exceptions.ConnectTimeout:
            raise Unavailable(f"cannot connect to {where} within {self.timeout_s:g} s",
                              hint="check the network connection", outcome="connect-timeout",
                              reached_service=False) from None
        except requests.exceptions.Timeout:
            # Sent, then no answer in time: the service may have served (and counted) it.
            raise Unavailable(f"{where} did not answer within {self.timeout_s:g} s",
                              outcome="timeout") from None
        except requests.exceptions.ConnectionError as exc:
            if _is_dns_failure(exc):
                raise AnuError(f"cannot resolve the host of {where} (DNS failed)",
                               hint="check the network connection and the API URL",
                               outcome="dns", reached_service=False) from None
            if _never_connected(exc):
                raise Unavailable(f"cannot connect to {where} (connection refused or "
                                  "unreachable)", hint="check the network connection",
                                  outcome="connect", reached_service=False) from None
            raise Unavailable(f"the connection to {where} broke before a reply came",
                              hint="check the network connection", outcome="dropped") from None
        except requests.exceptions.RequestException as exc:
            raise AnuError(f"the request to {where} failed ({type(exc).__name__})",
                           outcome="request") from None
        elapsed = time.monotonic() - started
        self._check_status(resp.status_code, body,
                           _parse_retry_after(resp.headers.get("Retry-After"),
                                              resp.headers.get("Date")), kind)
        data = parse_reply(body, kind, where)
        return Reply(data, kind, self.base_url, requested_at, resp.headers.get("Date"), elapsed,
                     len(body))

    def _check_status(self, status: int, body: bytes, wait: float | None,
                      kind: RequestKind) -> None:
        if status == 200:
            return
        where = self.base_url
        detail = _gateway_message(body)
        said = detail.removeprefix(": ").casefold()
        if status == 429 and said == GATEWAY_QUOTA:
            raise QuotaExceeded(f"{where} says the usage plan's request quota is used up "
                                f"(HTTP 429{detail}); every retry before it resets would be "
                                "refused too, so qcat does not retry",
                                hint="fetch again after the plan's quota resets (hours, at "
                                     "most until next month), or raise the plan's quota; "
                                     "`qcat entropy import FILE` adds bytes meanwhile",
                                http_status=status, retry_after_s=wait, outcome="quota")
        if status == 429:
            asked = f", Retry-After {wait:g} s" if wait is not None else ""
            raise RateLimited(f"{where} is throttling requests, too many too fast "
                              f"(HTTP 429{detail}{asked})",
                              hint="qcat backs off and retries; another client using the same "
                                   "key may share the limit",
                              http_status=status, retry_after_s=wait, outcome="rate-limited")
        if kind.api == "legacy" and status == 500 and LEGACY_RATE_TEXT in body.decode("utf-8", "replace"):
            raise RateLimited(f"{where} allows 1 request a minute and refused this one (HTTP 500)",
                              hint="qcat waits a minute between legacy requests; another "
                                   "client on this network may share the limit",
                              http_status=status, retry_after_s=wait or LEGACY_MIN_INTERVAL_S,
                              outcome="rate-limited")
        if status == 403 and said == GATEWAY_NO_ROUTE:
            setting = "entropy.legacy_api_url" if kind.api == "legacy" else "entropy.api_url"
            raise AnuError(f"no ANU API answers at {self.url_for(kind)} (HTTP 403{detail}): "
                           "the URL or path is wrong; this is not a problem with the key",
                           hint=f"check --api-url (or {setting}): give only the base, e.g. "
                                f"{LEGACY_BASE_URL if kind.api == 'legacy' else KEYED_BASE_URL};"
                                " qcat adds the path itself",
                           http_status=status, outcome="wrong-url")
        if status == 403:
            raise AnuError(f"{where} refused the API key (HTTP 403{detail})",
                           hint="check QCAT_ANU_API_KEY (or entropy.api_key); keys are per account",
                           http_status=status, outcome="forbidden")
        if status >= 500:
            raise Unavailable(f"{where} failed with HTTP {status}{detail}",
                              hint="the service has outages; try again later",
                              http_status=status, retry_after_s=wait, outcome=f"http-{status}")
        raise AnuError(f"{where} answered HTTP {status}{detail}",
                       hint="check the API URL: give only the base, qcat adds the path",
                       http_status=status, outcome=f"http-{status}")


def parse_reply(body: bytes, kind: RequestKind, where: str) -> bytes:
    """The bytes of a 200 reply, after checking every field; `BadReply` names the first fault."""
    if len(body) > MAX_REPLY_BYTES:
        raise _bad(where, f"the reply is {len(body)} bytes, more than any valid batch")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _bad(where, "the reply is not JSON") from None
    if not isinstance(doc, dict):
        raise _bad(where, "the reply is not a JSON object")
    if doc.get("success") is not True:
        message = doc.get("message")
        said = f": {str(message)[:80]}" if isinstance(message, str) and message else ""
        raise _bad(where, f"the reply says success = {json.dumps(doc.get('success'))}{said}",
                   outcome="success-false")
    if doc.get("type") != kind.reply_type:
        raise _bad(where, f"the reply has type {json.dumps(doc.get('type'))[:40]}, "
                          f"expected {kind.reply_type!r}")
    length = doc.get("length")
    if isinstance(length, bool) or not (
            isinstance(length, int) or isinstance(length, str) and length.isdigit()):
        raise _bad(where, f"the reply's length {json.dumps(length)[:40]} is not a number")
    if int(length) != kind.length:
        raise _bad(where, f"the reply's length is {int(length)}, {kind.length} were asked for")
    if "size" in doc and kind.size is not None and _as_int(doc["size"]) != kind.size:
        raise _bad(where, f"the reply's size is {json.dumps(doc['size'])[:20]}, "
                          f"{kind.size} was asked for")
    data = doc.get("data")
    if not isinstance(data, list):
        raise _bad(where, "the reply has no data list")
    if len(data) != kind.length:
        raise _bad(where, f"the reply holds {len(data)} elements, {kind.length} were asked for",
                   outcome="short")
    if kind.type in ("uint8", "uint16"):
        top = 255 if kind.type == "uint8" else 65535
        for i, v in enumerate(data):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= top:
                raise _bad(where, f"element {i} is {json.dumps(v)[:20]}, not an integer 0..{top}")
        return bytes(data) if kind.type == "uint8" else b"".join(v.to_bytes(2, "big") for v in data)
    width = 2 * kind.element_bytes
    for i, v in enumerate(data):
        if not isinstance(v, str) or len(v) != width:
            shown = len(v) if isinstance(v, str) else type(v).__name__
            raise _bad(where, f"element {i} is not {width} hex digits (got {shown})",
                       outcome="bad-element")
        if not _HEX.fullmatch(v):
            raise _bad(where, f"element {i} holds characters that are not hex digits",
                       outcome="bad-hex")
    return bytes.fromhex("".join(data))


def _bad(where: str, what: str, outcome: str = "bad-reply") -> BadReply:
    return BadReply(f"{where} sent an invalid reply: {what}; nothing from it was stored",
                    outcome=outcome)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _gateway_message(body: bytes) -> str:
    """`: Limit Exceeded` from an API Gateway JSON body, or a short text body; else empty."""
    text = body[:300].decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            text = doc["message"]
    except ValueError:
        pass
    text = " ".join(text.split())[:100]
    return f": {text}" if text and "<" not in text else ""


def _parse_retry_after(value: str | None, server_date: str | None = None) -> float | None:
    """Seconds a `Retry-After` asks for: delta-seconds or an HTTP-date; None if absent or
    unreadable. An HTTP-date is measured from the reply's `Date` (the service's clock) when
    there is one, so a wrong clock here does not stretch the wait. Unbounded: callers cap it."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when = _http_date(value)
        if when is None:
            return None
        now = _http_date(server_date) if server_date else None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, inf
        return None
    return max(0.0, seconds)


def _http_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when no connection was made (refused, unreachable, connect timeout): the request
    never left this machine. A connection that broke after sending is *not* this case."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # urllib3's NewConnectionError (refused, unreachable) is a ConnectTimeoutError.
    return isinstance(reason, ConnectTimeoutError)


def _is_dns_failure(exc: Exception) -> bool:
    text = repr(exc)
    return any(s in text for s in ("NameResolutionError", "Name or service not known",
                                   "Temporary failure in name resolution",
                                   "nodename nor servname", "getaddrinfo failed"))
