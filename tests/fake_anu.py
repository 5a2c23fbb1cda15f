"""The fake ANU server for the entropy tests (the implementation is `quantum.fakeanu`).

It lives in the package because `qcat bench` measures request kinds through it too; this module
gives the tests their helpers: a running fake with a key, a client pointed at it with pacing off,
and a recording `sleep` so backoff is checked without waiting.

    with running_fake() as fake:
        fake.push("429", "ok")
        client = client_for(fake)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests

from quantum.client import AnuClient
from quantum.fakeanu import BEHAVIOURS, LEGACY_RATE_BODY, FakeAnu

__all__ = ["BEHAVIOURS", "KEY", "LEGACY_RATE_BODY", "FakeAnu", "Sleeps", "client_for",
           "running_fake"]

# A key that looks like a real one and is easy to search for in every output.
KEY = "qcat-test-KEY-7f3a9c1e5b2d4f60a8"
# The client gives up on a "slow" reply after this long; the fake takes longer.
CLIENT_TIMEOUT_S = 0.5
FAKE_SLOW_S = 1.5


@contextmanager
def running_fake(api_key: str = KEY, seed: int | None = None) -> Iterator[FakeAnu]:
    fake = FakeAnu(api_key=api_key, seed=seed, slow_s=FAKE_SLOW_S).start()
    try:
        yield fake
    finally:
        fake.stop()


def client_for(fake: FakeAnu, *, legacy: bool = False, api_key: str = KEY,
               session: requests.Session | None = None) -> AnuClient:
    """A real client on a real session, aimed at the fake, with request pacing switched off."""
    return AnuClient(session or requests.Session(), legacy=legacy, base_url=fake.url,
                     api_key="" if legacy else api_key, timeout_s=CLIENT_TIMEOUT_S,
                     min_interval_s=0.0)


class Sleeps(list[float]):
    """A `sleep` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
