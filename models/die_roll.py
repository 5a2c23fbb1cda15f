"""A die roll from entropy bytes: the recipe the die unit's firmware follows, as the controller's
golden copy.

A roll reads its die's entropy stream from a position on, in this order:

1. **the pips**: one byte `b`; a byte of 252 or more is spent and the next one tried (252 = 42 x 6
   is the largest multiple of six a byte holds, so every face keeps exactly 42 of the 256 byte
   values: no modulo bias); the first byte under 252 gives `pips = 1 + b mod 6`;
2. **the latent**: the next `NZ` (8) bytes through `models.die_reference.gauss_table` (each
   uniform byte to an int8 standard-normal value at scale 1/32: the unit needs no logarithm);
3. the decoder of `models.die_reference` draws the 32x32 face from (latent, pips).

`entropy_used` counts every byte the roll spent, the rejected ones too. A roll is all or nothing:
when the bytes run out before the latent is complete, no roll is made and nothing is spent (the
unit answers QP_E_NO_ENTROPY and waits for its next TOPUP). The controller re-derives every roll a
unit reports from its own record of the bytes (the pool's draws for that unit) and archives it
only when pips, face and bytes spent agree, the die's form of F1/F2.

numpy only; on the runtime path (never torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import die_reference

FACES = 6
REJECT_FROM = 252  # bytes 252..255 are spent and skipped: 252 = 42 * 6
# The most bytes a roll can take without luck running out: the latent after one pips byte.
BYTES_PER_ROLL = 1 + die_reference.NZ


@dataclass(frozen=True)
class RollRecipe:
    """What a roll takes from its bytes: the pips, the latent, and how many bytes it spent."""

    pips: int
    latent: np.ndarray  # (NZ,) int8
    used: int


def recipe(stream: bytes) -> RollRecipe | None:
    """The roll that starts at `stream[0]`; None when the bytes run out first (nothing spent)."""
    for i, b in enumerate(stream):
        if b < REJECT_FROM:
            latent_bytes = stream[i + 1:i + 1 + die_reference.NZ]
            if len(latent_bytes) < die_reference.NZ:
                return None
            return RollRecipe(1 + b % FACES, die_reference.latent_from_bytes(bytes(latent_bytes)),
                              i + 1 + die_reference.NZ)
    return None


def face(model: die_reference.DieModel, r: RollRecipe) -> bytes:
    """The 128 SSD1306 page bytes the unit shows for this roll (the integer reference)."""
    return bytes(die_reference.run_banded(model, r.latent, r.pips))
