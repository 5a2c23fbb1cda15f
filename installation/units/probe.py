"""Asking ports who is there: the controller's card hashes, one HELLO per port, all ports at once.

The service behind `qcat units list` / `units ping`, the dashboard's unit table and the supervisor's
check of a unit it connects to. Whether a unit may be used is decided once, here
(`identity_problems`): it must be a cat unit whose weight image is the controller's and whose clip
bank is the controller's (when the controller has one).

Ports are probed in parallel: a silent port costs its handshake timeout, and a room of units with
one dead port must not take a second per port to list.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from installation.errors import DeviceError
from installation.units.link import Link, PortInfo, TraceFn
from installation.units.session import ZERO_SHA, UnitIdentity, UnitSession

if TYPE_CHECKING:
    from installation.workspace import Workspace

# At most this many ports are asked at once (each is a thread waiting on a serial read).
MAX_PARALLEL = 16


@dataclass(frozen=True)
class CardHashes:
    """What a unit's card must hold for the controller to use it: the SHA-256 of the controller's
    weight image and of its clip bank (zeros: the controller has no clip bank, any will do)."""

    weights: bytes
    clips: bytes = ZERO_SHA
    die_weights: bytes = ZERO_SHA  # a die unit's decoder (content SHA-256; zeros: none known)

    @classmethod
    def of(cls, workspace: Workspace) -> CardHashes:
        from models.weightimage import sha256_of

        clips = workspace.clip_bank_path
        return cls(bytes.fromhex(sha256_of(workspace.weights_path())),
                   bytes.fromhex(sha256_of(clips)) if clips.is_file() else ZERO_SHA,
                   bytes.fromhex(workspace.die_ref().sha256))

    def for_kind(self, kind: str) -> bytes:
        """The weights SHA-256 a unit of this kind must name."""
        return self.die_weights if kind == "die" else self.weights


def identity_problems(unit: UnitIdentity, expected: CardHashes) -> list[str]:
    """Why this unit may not do its kind's work here (empty: it may)."""
    if unit.kind == "die":
        if unit.weights_sha256 == expected.die_weights:
            return []
        return [f"its die decoder is {unit.weights_sha256.hex()[:16]}…, the controller's is "
                f"{expected.die_weights.hex()[:16]}…"]
    problems = []
    if unit.kind != "cat":
        problems.append(f"it is a {unit.kind} unit")
    if unit.weights_sha256 != expected.weights:
        problems.append(f"its weight image is {unit.weights_sha256.hex()[:16]}…, the "
                        f"controller's is {expected.weights.hex()[:16]}…")
    if expected.clips != ZERO_SHA and unit.clips_sha256 != expected.clips:
        problems.append(f"its clip bank is {unit.clips_sha256.hex()[:16]}…, the "
                        f"controller's is {expected.clips.hex()[:16]}…")
    return problems


def hello(port: str, expected: CardHashes, trace: TraceFn | None = None) -> dict[str, Any]:
    """One handshake: the unit's HELLO fields, the round trip, and whether its card matches.
    DeviceError (one sentence naming the port) when nothing, or nothing qcat, answers."""
    with Link.open(port, trace=trace) as link:
        session = UnitSession(link)
        start = time.monotonic()
        unit = session.handshake(expected.weights, expected.clips)
        rtt_ms = (time.monotonic() - start) * 1000
    info = unit.as_dict()
    info["round_trip_ms"] = round(rtt_ms, 2)
    info["weights_match"] = unit.weights_sha256 == expected.for_kind(unit.kind)
    info["clips_match"] = expected.clips == ZERO_SHA or unit.clips_sha256 == expected.clips
    info["problems"] = identity_problems(unit, expected)
    return info


def survey(ports: Iterable[PortInfo], expected: CardHashes,
           trace: TraceFn | None = None) -> list[dict[str, Any]]:
    """Every port asked for its HELLO at once; one row per port in the order given, with `state`
    "ready", "refused: ..." or "unreachable" (and `error`, the sentence)."""
    found = list(ports)

    def ask(place: PortInfo) -> dict[str, Any]:
        row: dict[str, Any] = place.as_dict()
        try:
            row.update(hello(place.port, expected, trace), state="ready")
            if row["problems"]:
                row["state"] = "refused: " + "; ".join(row["problems"])
        except DeviceError as exc:
            row.update(state="unreachable", error=exc.message)
        return row

    if not found:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(found)),
                            thread_name_prefix="probe") as pool:
        return list(pool.map(ask, found))
