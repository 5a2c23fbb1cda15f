"""A fake ANU QRNG: a real HTTP server on 127.0.0.1 speaking both APIs, with scripted faults.

The tests and `qcat bench` point the real client at it (`--api-url http://127.0.0.1:PORT`), so
the code under test is the production path: sockets, HTTP, JSON, validation. It is the twin the
house style asks for (esptool's `--virt`), and it lives in the package because the benchmark,
not only the tests, needs it.

    keyed   GET /?length=N&type=T[&size=S]          x-api-key checked when the fake has a key
    legacy  GET /API/jsonI.php?length=N&type=T[&size=S]

`push(*behaviours)` queues what the next requests get; an empty queue means well-behaved
replies. `retry_after` (a header value: seconds or an HTTP-date), while set, goes with every
429 and 5xx reply. Behaviours (one per request):

    ok             a valid reply
    429-quota      429 {"message": "Limit Exceeded"}: the usage plan's quota is spent
    429-throttle   429 {"message": "Too Many Requests"}: a short throttle
    429            the same as 429-throttle
    500-legacy     500 with the legacy rate-limit text body
    503            503 with a gateway body (an outage)
    403            403 {"message": "Forbidden"}: the key was refused
    403-no-route   403 {"message": "Missing Authentication Token"}: what the gateway says to a
                   wrong URL or path (every path the fake does not serve gets it too)
    success-false  200 with {"success": false}
    short          200 with fewer elements than asked for
    narrow         200 with one element a digit short
    bad-hex        200 with a non-hex character in one element
    not-json       200 with an HTML page (a captive portal)
    wrong-type     200 naming another type
    replay         200 repeating the previous successful reply's bytes exactly
    stuck          200 whose second half is one byte value over and over
    slow           the reply arrives after `slow_s` seconds (longer than the client waits)
    drop           the request is read, then the connection is closed without a reply

It must never be used against anything but 127.0.0.1, and never serves real entropy: its bytes
come from os.urandom (or a seeded generator) and exist only to exercise the client and pool.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LEGACY_PATH = "/API/jsonI.php"
LEGACY_RATE_BODY = ("The QRNG API is limited to 1 requests per minute. For more requests, please "
                    "visit https://quantumnumbers.anu.edu.au or contact qrng@anu.edu.au.")
BEHAVIOURS = ("ok", "429-quota", "429-throttle", "429", "500-legacy", "503", "403",
              "403-no-route", "success-false", "short", "narrow", "bad-hex", "not-json",
              "wrong-type", "replay", "stuck", "slow", "drop")
# The API Gateway's error bodies (../shared/reference/anu-qrng.md), by behaviour.
GATEWAY_REPLIES: dict[str, tuple[int, dict[str, Any]]] = {
    "429-quota": (429, {"message": "Limit Exceeded"}),
    "429-throttle": (429, {"message": "Too Many Requests"}),
    "429": (429, {"message": "Too Many Requests"}),
    "503": (503, {"message": "Service Unavailable"}),
    "403": (403, {"message": "Forbidden"}),
    "403-no-route": (403, {"message": "Missing Authentication Token"}),
    "success-false": (200, {"success": False, "message": "The service is unavailable"}),
}
# How long a "slow" reply makes the client wait (tests set the client's timeout below it).
DEFAULT_SLOW_S = 3.0
# How often the serving loop looks for a shutdown request (keeps test teardown quick).
POLL_S = 0.05


@dataclass
class Seen:
    """One request as the fake received it (tests assert on these)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    behaviour: str


@dataclass
class FakeAnu:
    api_key: str = ""
    seed: int | None = None
    slow_s: float = DEFAULT_SLOW_S
    retry_after: str | None = None
    script: deque[str] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed) if self.seed is not None else None
        self._last: bytes | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeAnu:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_S,),
                                        daemon=True,
                                        name="fake-anu")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAnu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def push(self, *behaviours: str) -> None:
        for b in behaviours:
            if b not in BEHAVIOURS:
                raise ValueError(f"unknown fake behaviour {b!r}")
        with self._lock:
            self.script.extend(behaviours)

    # -- serving --------------------------------------------------------------------------------

    def _random(self, n: int) -> bytes:
        with self._lock:
            return self._rng.randbytes(n) if self._rng else os.urandom(n)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            behaviour = self.script.popleft() if self.script else "ok"
            self.seen.append(Seen(parts.path, query, dict(h.headers.items()), behaviour))
        legacy = parts.path == LEGACY_PATH
        if parts.path not in ("/", LEGACY_PATH):
            return self._send(h, *GATEWAY_REPLIES["403-no-route"])
        if not legacy and self.api_key and h.headers.get("x-api-key") != self.api_key:
            return self._send(h, 403, {"message": "Forbidden"})
        if behaviour == "slow":
            time.sleep(self.slow_s)
        if behaviour == "drop":
            h.close_connection = True
            return None
        if behaviour in GATEWAY_REPLIES:
            status, body = GATEWAY_REPLIES[behaviour]
            return self._send(h, status, body, self._retry_after(status))
        if behaviour == "500-legacy":
            return self._send_raw(h, 500, LEGACY_RATE_BODY.encode(), "text/html",
                                  self._retry_after(500))
        if behaviour == "not-json":
            return self._send_raw(h, 200, b"<html><body>Please log in</body></html>",
                                  "text/html")
        try:
            length = int(query.get("length", ""))
            qtype = query["type"]
            size = int(query.get("size", "1"))
        except (KeyError, ValueError):
            return self._send(h, 400, {"message": "length and type are required"})
        if not 1 <= length <= 1024 or qtype not in ("uint8", "uint16", "hex8", "hex16"):
            return self._send(h, 400, {"message": "bad length or type"})
        per = {"uint8": 1, "uint16": 2, "hex8": size,
               "hex16": size if legacy else 2 * size}[qtype]
        nbytes = length * per
        if behaviour == "replay" and self._last is not None and len(self._last) == nbytes:
            data = self._last
        else:
            data = self._random(nbytes)
        if behaviour == "stuck":
            data = data[:nbytes // 2] + bytes([0x5A]) * (nbytes - nbytes // 2)
        if behaviour in ("ok", "replay", "slow"):
            self._last = data
        if qtype == "uint8":
            elements: list[Any] = list(data)
        elif qtype == "uint16":
            elements = [int.from_bytes(data[i:i + 2], "big") for i in range(0, nbytes, 2)]
        else:
            elements = [data[i:i + per].hex() for i in range(0, nbytes, per)]
        if behaviour == "short":
            elements = elements[: length // 2]
        elif behaviour == "narrow" and isinstance(elements[0], str):
            elements[3] = elements[3][:-1]
        elif behaviour == "bad-hex" and isinstance(elements[0], str):
            elements[5] = "g" + elements[5][1:]
        reply_type = "string" if legacy and qtype == "hex16" else qtype
        if behaviour == "wrong-type":
            reply_type = "uint8" if qtype != "uint8" else "uint16"
        if legacy:
            doc: dict[str, Any] = {"type": reply_type, "length": length, "data": elements,
                                   "success": True}
            if qtype == "hex16":
                doc["size"] = size
        else:
            doc = {"success": True, "type": reply_type, "length": str(length), "data": elements}
        return self._send(h, 200, doc)

    def _retry_after(self, status: int) -> dict[str, str]:
        if self.retry_after is None or not (status == 429 or status >= 500):
            return {}
        return {"Retry-After": self.retry_after}

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, doc: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        FakeAnu._send_raw(h, status, json.dumps(doc).encode(), "application/json", headers)

    @staticmethod
    def _send_raw(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str,
                  headers: dict[str, str] | None = None) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            for name, value in (headers or {}).items():
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a "slow" reply): nothing to do
