"""From entropy bytes to what an exhibit needs: the cat's latent and its verdict code.

DESIGN §4, exactly; every engine and every re-render depends on these functions giving the same
answer forever (promise F2), so they are pure, float64 and free of any platform randomness.

    bytes 0..199   -> 100 big-endian uint16 k -> u = (k + 0.5) / 65536 (never 0 or 1)
                      Box-Muller on pairs (u[2j], u[2j+1]):
                      r = sqrt(-2 ln u[2j]), theta = 2 pi u[2j+1],
                      z[2j] = r cos theta, z[2j+1] = r sin theta
    byte 200       -> bit 0 is the mood (1 motivated, 0 demotivated); bits 1..7 unused
    bytes 201..202 -> four 4-bit slot indices s0..s3, high nibble of byte 201 first
    code = mood << 16 | s0 << 12 | s1 << 8 | s2 << 4 | s3        (0 .. 131071)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from installation.errors import InputError

LATENT_BYTES = 200
VERDICT_BYTES = 3
EXHIBIT_BYTES = LATENT_BYTES + VERDICT_BYTES  # 203: what one exhibit draws from the pool
NZ = LATENT_BYTES // 2
N_VERDICTS = 1 << 17  # 2 moods x 16^4 fragment combinations = 131,072


def uniforms(entropy: bytes) -> np.ndarray:
    """100 midpoint uniforms in (0, 1) from 200 bytes: u = (k + 0.5) / 65536, k big-endian."""
    _check_len(entropy, LATENT_BYTES, "latent")
    k = np.frombuffer(entropy, dtype=">u2").astype(np.float64)
    return (k + 0.5) / 65536.0


def latent_from_entropy(entropy: bytes) -> np.ndarray:
    """z: float64[100], standard normal by Box-Muller, from exactly 200 bytes."""
    u = uniforms(entropy)
    r = np.sqrt(-2.0 * np.log(u[0::2]))
    theta = 2.0 * np.pi * u[1::2]
    z = np.empty(NZ, dtype=np.float64)
    z[0::2] = r * np.cos(theta)
    z[1::2] = r * np.sin(theta)
    return z


@dataclass(frozen=True)
class VerdictCode:
    """The 17-bit verdict code and its parts."""

    code: int
    motivated: bool
    slots: tuple[int, int, int, int]

    @property
    def mood(self) -> str:
        return "motivated" if self.motivated else "demotivated"


def verdict_code(entropy: bytes) -> VerdictCode:
    """The verdict code from the 3 bytes after the latent (bytes 200..202 of an exhibit)."""
    _check_len(entropy, VERDICT_BYTES, "verdict")
    mood = entropy[0] & 1
    s0, s1 = entropy[1] >> 4, entropy[1] & 0xF
    s2, s3 = entropy[2] >> 4, entropy[2] & 0xF
    code = mood << 16 | s0 << 12 | s1 << 8 | s2 << 4 | s3
    return VerdictCode(code, bool(mood), (s0, s1, s2, s3))


def split_code(code: int) -> VerdictCode:
    """The inverse view: the parts of a code 0..131071."""
    if not 0 <= code < N_VERDICTS:
        raise InputError(f"verdict code {code} is outside 0..{N_VERDICTS - 1}")
    slots = ((code >> 12) & 0xF, (code >> 8) & 0xF, (code >> 4) & 0xF, code & 0xF)
    return VerdictCode(code, bool(code >> 16), slots)


def split_exhibit(entropy: bytes) -> tuple[np.ndarray, VerdictCode]:
    """All 203 bytes of an exhibit -> (latent z, verdict code)."""
    _check_len(entropy, EXHIBIT_BYTES, "exhibit")
    return latent_from_entropy(entropy[:LATENT_BYTES]), verdict_code(entropy[LATENT_BYTES:])


def _check_len(data: bytes, want: int, what: str) -> None:
    if len(data) != want:
        raise InputError(f"the {what} needs exactly {want} bytes of entropy, got {len(data)}")
