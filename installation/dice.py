"""Die units, the controller's side of their entropy: each die's stream, the check of every roll,
and the fairness test.

A die spends entropy without asking: a visitor presses its button, and it rolls from the small
reserve the controller keeps topped up (TOPUP, docs/protocol.md). So the bytes leave the pool when
they are *sent*, each TOPUP one draw with purpose ``die:<serial>`` (E1: once handed to a die, never
handed out again, whatever becomes of the die), and a die's **stream** is the concatenation of its
draws in the order they were made: stream position p is the same byte for the controller and the
unit. A roll the unit reports names its stretch of that stream (`entropy_offset`,
`entropy_used`); the controller re-derives pips and face from those bytes with the golden
reference (`models.die_reference.roll_from_bytes`) and archives the roll with the draws it came from (E2) only when
everything agrees. Bytes a die held when it lost power are simply never rolled: spent, not reused.

The fairness test is Pearson's chi-square over the six faces, with its p-value computed exactly
for the integer degrees of freedom it needs (no scipy on the appliance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from installation.errors import CheckFailed, InputError
from installation.gallery import NewRoll, Roll
from models import die_reference
from quantum.pool import Draw, EntropyPool, utc_now
from quantum.source import EntropySource

PURPOSE_PREFIX = "die:"
FAIRNESS_LEVEL = 0.01  # a die is called unfair when a fair one would look this odd 1 % of the time


def purpose(serial: str) -> str:
    """The pool purpose of a die's draws."""
    return PURPOSE_PREFIX + serial


@dataclass(frozen=True)
class _Piece:
    draw_id: int
    start: int  # stream position of the draw's first byte
    data: bytes
    source: EntropySource


class DieStream:
    """One die's entropy stream: the pool's draws for it, end to end, in the order they were made.

    Loaded once from the pool and extended by `topup`; one process drives a home's units (the
    station's lock), so nobody else appends to it meanwhile."""

    def __init__(self, pool: EntropyPool, serial: str) -> None:
        self.pool = pool
        self.serial = serial
        self._pieces: list[_Piece] = []
        self._end = 0
        for d in pool.draws(purpose(serial)):
            self._append(d)

    def _append(self, d: Draw) -> None:
        self._pieces.append(_Piece(d.id, self._end, d.data, d.source))
        self._end += len(d.data)

    @property
    def end(self) -> int:
        """Bytes ever drawn for this die: where its next TOPUP starts."""
        return self._end

    def topup(self, n: int, when_empty: str = "fail", wait_timeout_s: float = 0.0) -> tuple[int, bytes]:
        """Draw `n` bytes for the die (one recorded draw); returns (stream position, bytes)."""
        start = self._end
        d = self.pool.draw(n, purpose(self.serial), when_empty, wait_timeout_s)
        self._append(d)
        return start, d.data

    def slice(self, offset: int, n: int) -> tuple[bytes, list[list[int]], EntropySource]:
        """The bytes at [offset, offset + n), the draws they lie in as [draw id, first byte in
        the draw, bytes], and their source (os-fallback if any byte was)."""
        if offset < 0 or n < 0 or offset + n > self._end:
            raise CheckFailed(f"die {self.serial} reported stream bytes {offset}..{offset + n} "
                              f"but only {self._end} were ever sent to it",
                              hint="the unit is faulty or was topped up by another controller")
        data = bytearray()
        draws: list[list[int]] = []
        sources: list[EntropySource] = []
        for p in self._pieces:
            lo, hi = max(offset, p.start), min(offset + n, p.start + len(p.data))
            if lo >= hi:
                continue
            data += p.data[lo - p.start:hi - p.start]
            draws.append([p.draw_id, lo - p.start, hi - lo])
            sources.append(p.source)
        if EntropySource.OS_FALLBACK in sources:
            return bytes(data), draws, EntropySource.OS_FALLBACK
        return bytes(data), draws, sources[0] if sources else EntropySource.ANU


@dataclass(frozen=True)
class DieModelRef:
    """The decoder the controller checks rolls with, and its content SHA-256 (what a die's
    HELLO must name)."""

    model: die_reference.DieModel
    sha256: str

    @classmethod
    def load(cls, path: str | None = None) -> DieModelRef:
        model = die_reference.load(die_reference.SHIPPED_DECODER if path is None else Path(path))
        return cls(model, die_reference.content_sha256(model))


def recover_rolls(ref: DieModelRef, stream: DieStream, start: int, end: int) -> list[NewRoll]:
    """The rolls a die made from stream bytes [start, end) whose ROLL frames never arrived (the
    cable was out): re-derived from the bytes, one after another, as the die made them, and
    marked `reported=0`. CheckFailed when the stretch is not a whole number of rolls."""
    data, _, _ = stream.slice(start, end - start)
    out: list[NewRoll] = []
    at = 0
    while at < len(data):
        r = die_reference.roll_from_bytes(data[at:])
        if r is None:
            raise CheckFailed(f"die {stream.serial} spent stream bytes {start}..{end - 1} unseen, "
                              f"and bytes {start + at}..{end - 1} are not a whole roll",
                              hint="the unit's firmware does not roll as the reference does")
        face = die_reference.roll_face(ref.model, r)
        new = check_roll(ref, stream, pips=r.pips, face=face, offset=start + at, used=r.used)
        out.append(replace(new, reported=0))
        at += r.used
    return out


def check_roll(ref: DieModelRef, stream: DieStream, *, pips: int, face: bytes, offset: int,
               used: int) -> NewRoll:
    """A roll as the unit reported it -> the record to archive, or CheckFailed naming what the
    unit got wrong (a unit fault: the bytes it was sent make another roll)."""
    data, draws, source = stream.slice(offset, used)
    expected = die_reference.roll_from_bytes(data)
    where = f"die {stream.serial}'s roll at stream byte {offset}"
    if expected is None or expected.used != used:
        raise CheckFailed(f"{where} spent {used} bytes; those bytes make a roll of "
                          f"{'more' if expected is None else expected.used} bytes",
                          hint="the unit's firmware does not roll as the reference does")
    if expected.pips != pips:
        raise CheckFailed(f"{where} shows {pips} pips; its bytes roll {expected.pips}",
                          hint="the unit's firmware does not roll as the reference does")
    want = die_reference.roll_face(ref.model, expected)
    if want != bytes(face):
        first = next(i for i, (a, b) in enumerate(zip(want, face, strict=True)) if a != b)
        raise CheckFailed(f"{where}: its face differs from the reference's at page byte {first} "
                          f"(unit 0x{face[first]:02x}, reference 0x{want[first]:02x})",
                          hint="the unit's decoder weights or engine differ from the controller's")
    return NewRoll(serial=stream.serial, stream_offset=offset, used=used, entropy_hex=data.hex(),
                   draws=draws, source=str(source), pips=pips, face_hex=bytes(face).hex(),
                   model_sha256=ref.sha256, created=utc_now().isoformat(timespec="milliseconds"))


# --------------------------------------------------------------------------------------------
# Fairness


@dataclass(frozen=True)
class Fairness:
    """Pearson's chi-square test of a die's counts against the uniform six faces."""

    counts: dict[int, int]
    rolls: int
    chi_square: float
    p_value: float
    level: float = FAIRNESS_LEVEL

    @property
    def fair(self) -> bool:
        """Not rejected at `level` (few rolls say little: see `rolls`)."""
        return self.p_value >= self.level

    def as_dict(self) -> dict[str, object]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "rolls": self.rolls,
                "chi_square": round(self.chi_square, 4), "p_value": round(self.p_value, 6),
                "level": self.level, "fair": self.fair}


def fairness(counts: Mapping[int, int], level: float = FAIRNESS_LEVEL) -> Fairness:
    """Chi-square of {pips: rolls} over faces 1..6 (5 degrees of freedom)."""
    full = {face: int(counts.get(face, 0)) for face in range(1, die_reference.PIPS + 1)}
    if any(v < 0 for v in full.values()) or set(counts) - set(full):
        raise InputError(f"die counts must be non-negative, for faces 1..6: {dict(counts)}")
    n = sum(full.values())
    if n == 0:
        return Fairness(full, 0, 0.0, 1.0, level)
    expected = n / die_reference.PIPS
    chi2 = sum((v - expected) ** 2 for v in full.values()) / expected
    return Fairness(full, n, chi2, chi_square_sf(chi2, die_reference.PIPS - 1), level)


def chi_square_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable of `df` (a positive integer) degrees of freedom.

    Exact by the recurrence of the regularized upper gamma function Q(a, y), y = x/2:
    Q(1/2, y) = erfc(sqrt y), Q(1, y) = e^-y, Q(a + 1, y) = Q(a, y) + y^a e^-y / Gamma(a + 1)."""
    if df < 1:
        raise ValueError("degrees of freedom must be a positive integer")
    if x <= 0:
        return 1.0
    y = x / 2
    a = 0.5 if df % 2 else 1.0
    q = math.erfc(math.sqrt(y)) if df % 2 else math.exp(-y)
    while a < df / 2:
        q += math.exp(a * math.log(y) - y - math.lgamma(a + 1))
        a += 1
    return min(1.0, max(0.0, q))


def reverify(roll: Roll, ref: DieModelRef, pool: EntropyPool | None) -> list[str]:
    """What is wrong with an archived roll, re-derived from its stored bytes (F2 for dice): the
    bytes against the pool's record of the draws they came from, then pips, bytes spent and face
    against the reference. Empty: nothing."""
    problems: list[str] = []
    data = bytes.fromhex(roll.entropy_hex)
    if pool is not None:
        drawn = bytearray()
        for draw_id, start, n in roll.draws:
            try:
                d = pool.get_draw(draw_id)
            except InputError:
                problems.append(f"the entropy pool has no record of its draw {draw_id}")
                continue
            if d.purpose != purpose(roll.serial):
                problems.append(f"its draw {draw_id} was made for {d.purpose!r}, not for die "
                                f"{roll.serial}")
            drawn += d.data[start:start + n]
        if not problems and bytes(drawn) != data:
            problems.append("archived entropy differs from the bytes the pool handed out in its "
                            "draws " + ", ".join(str(d[0]) for d in roll.draws))
    expected = die_reference.roll_from_bytes(data)
    if expected is None or expected.used != roll.used or expected.pips != roll.pips:
        problems.append(f"{roll.pips} pips from {roll.used} bytes does not follow from its bytes")
    elif roll.model_sha256 != ref.sha256:
        problems.append(f"die decoder {roll.model_sha256[:16]}… is not available to re-draw its "
                        "face")
    elif die_reference.roll_face(ref.model, expected) != roll.face:
        problems.append("its face differs from the one its bytes draw")
    return problems
