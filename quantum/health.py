"""Health tests a batch of quantum bytes must pass before a single byte of it may be served.

Pure functions over bytes (no database, no network): the pool runs them on every batch it stores
and adds the one check that needs memory, "was any of this ever seen before?", using the hashes
computed here. The tests and their cutoffs follow NIST SP 800-90B §4.4 for 8-bit samples at
H = 8 bits/byte and alpha = 2^-40 (see ../shared/reference/health-tests.md):

    Repetition Count Test     one value C = 6 times in a row fails
    Adaptive Proportion Test  the first value of a 512-byte window recurring C = 19 times fails
    chi-square (255 dof)      byte frequencies too uneven *or too even* (a counter) fail
    duplicates                SHA-256 of the batch and of each 64-byte block (pool checks them)

At alpha = 2^-40 a perfect source trips a test about once in 10^12 batches, so an isolated
failure quarantines that batch and fetching goes on; nothing here ever halts the installation.
This module must never decide what is served: it only reports reasons.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# Assessed min-entropy per byte and false-alarm probability (as -log2 alpha) of the tests.
MIN_ENTROPY_BITS = 8
ALPHA_LOG2 = 40
# SP 800-90B window for non-binary samples.
APT_WINDOW = 512
# Below this many bytes the expected count per chi-square bin falls under 5 and the
# statistic stops following the chi-square law; smaller batches skip that one test.
CHI_SQUARE_MIN_BYTES = 1280
CHI_SQUARE_DOF = 255
# Standard-normal quantile of 2^-40 (one-sided): the chi-square bounds use it on both sides.
CHI_SQUARE_Z = 7.05
# Granularity of the duplicate check: a proxy or a re-read replays whole blocks.
BLOCK_BYTES = 64


def rct_cutoff(h_bits: float = MIN_ENTROPY_BITS, alpha_log2: int = ALPHA_LOG2) -> int:
    """SP 800-90B Repetition Count cutoff: C = 1 + ceil(-log2(alpha) / H)."""
    return 1 + math.ceil(alpha_log2 / h_bits)


def apt_cutoff(window: int = APT_WINDOW, h_bits: int = MIN_ENTROPY_BITS,
               alpha_log2: int = ALPHA_LOG2) -> int:
    """SP 800-90B Adaptive Proportion cutoff: C = 1 + CRITBINOM(W, 2^-H, 1 - alpha), exactly.

    Computed with exact fractions: the tail we compare against (2^-40) is below what a float
    sum of 512 terms near 1.0 can resolve.
    """
    p = Fraction(1, 2**h_bits)
    target = Fraction(1) - Fraction(1, 2**alpha_log2)
    cdf = Fraction(0)
    for k in range(window + 1):
        cdf += math.comb(window, k) * p**k * (1 - p) ** (window - k)
        if cdf >= target:
            return 1 + k
    return window + 1


RCT_CUTOFF = rct_cutoff()  # 6
APT_CUTOFF = apt_cutoff()  # 19


def _chi_square_bounds(dof: int = CHI_SQUARE_DOF, z: float = CHI_SQUARE_Z) -> tuple[float, float]:
    """Two-sided acceptance interval of a chi-square statistic (Wilson-Hilferty approximation)."""
    c = 2.0 / (9.0 * dof)
    low = dof * (1.0 - c - z * math.sqrt(c)) ** 3
    high = dof * (1.0 - c + z * math.sqrt(c)) ** 3
    return low, high


CHI_SQUARE_LOW, CHI_SQUARE_HIGH = _chi_square_bounds()  # about 126 and 449


def repetition_count(data: bytes, cutoff: int = RCT_CUTOFF) -> int | None:
    """Offset of the first run of `cutoff` equal bytes, or None when no run is that long."""
    if len(data) < cutoff:
        return None
    arr = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(arr[1:] != arr[:-1]) + 1))
    lengths = np.diff(np.concatenate((starts, [arr.size])))
    long_runs = np.flatnonzero(lengths >= cutoff)
    return int(starts[long_runs[0]]) if long_runs.size else None


def adaptive_proportion(data: bytes, window: int = APT_WINDOW,
                        cutoff: int = APT_CUTOFF) -> int | None:
    """Offset of the first window whose first byte recurs `cutoff` times in it, or None.

    Windows are consecutive and non-overlapping, as in SP 800-90B; the last, shorter window is
    tested too (it can only be *less* likely to reach the cutoff by chance).
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    for start in range(0, arr.size, window):
        win = arr[start:start + window]
        if win.size >= cutoff and int(np.count_nonzero(win == win[0])) >= cutoff:
            return start
    return None


def chi_square(data: bytes) -> float:
    """Pearson's statistic of the 256 byte frequencies against the uniform law."""
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(np.float64)
    expected = len(data) / 256.0
    return float(((counts - expected) ** 2).sum() / expected)


def batch_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def block_hashes(data: bytes, block: int = BLOCK_BYTES) -> list[bytes]:
    """SHA-256 of every `block`-byte block (the last one may be shorter)."""
    return [hashlib.sha256(data[i:i + block]).digest() for i in range(0, len(data), block)]


@dataclass(frozen=True)
class HealthReport:
    """What the statistical tests found in one batch; `failures` are one-line reasons."""

    size: int
    failures: tuple[str, ...]
    chi2: float | None

    @property
    def ok(self) -> bool:
        return not self.failures


def check(data: bytes) -> HealthReport:
    """Run every statistical test on one batch (duplicates are the pool's job: they need history)."""
    failures: list[str] = []
    if not data:
        return HealthReport(0, ("empty batch",), None)
    at = repetition_count(data)
    if at is not None:
        failures.append(f"repetition count test: byte 0x{data[at]:02x} repeats {RCT_CUTOFF} or "
                        f"more times in a row at offset {at}")
    at = adaptive_proportion(data)
    if at is not None:
        failures.append(f"adaptive proportion test: byte 0x{data[at]:02x} occurs {APT_CUTOFF} or "
                        f"more times in the {APT_WINDOW}-byte window at offset {at}")
    chi2 = None
    if len(data) >= CHI_SQUARE_MIN_BYTES:
        chi2 = chi_square(data)
        if not CHI_SQUARE_LOW <= chi2 <= CHI_SQUARE_HIGH:
            failures.append(f"chi-square of byte frequencies is {chi2:.1f}, outside "
                            f"[{CHI_SQUARE_LOW:.1f}, {CHI_SQUARE_HIGH:.1f}]")
    hashes = block_hashes(data)
    if len(set(hashes)) != len(hashes):
        failures.append("the batch repeats one of its own 64-byte blocks")
    return HealthReport(len(data), tuple(failures), chi2)
