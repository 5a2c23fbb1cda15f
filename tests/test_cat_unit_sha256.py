"""SHA-256 in C (firmware/common/sha256.c), the hash the cat unit puts in IMAGE_DONE, held to
Python's hashlib: the FIPS 180-4 known answers, every length around the 55/56/64-byte padding
edges, and incremental updates split at arbitrary points."""

from __future__ import annotations

import hashlib
import random

import pytest

from firmware.cat_unit import Sha256, sha256

# FIPS 180-4 / NIST CSHA examples: (message, digest).
KNOWN = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


@pytest.mark.parametrize("message, digest", KNOWN, ids=["empty", "abc", "two-blocks", "million-a"])
def test_known_answers(message: bytes, digest: str) -> None:
    assert sha256(message).hex() == digest


def test_every_length_around_the_padding_edges_matches_hashlib() -> None:
    rng = random.Random(5)
    # 0..200 covers 55 (last one-block pad), 56..63 (pad spills over) and several whole blocks.
    for n in range(201):
        data = rng.randbytes(n)
        assert sha256(data) == hashlib.sha256(data).digest(), f"length {n}"


def test_incremental_updates_in_any_split_match_one_shot() -> None:
    rng = random.Random(9)
    data = rng.randbytes(12_288)  # one cat image
    for _ in range(50):
        cuts = sorted(rng.sample(range(len(data)), rng.randrange(1, 12)))
        h = Sha256()
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            h.update(data[a:b])
        assert h.digest() == hashlib.sha256(data).digest(), cuts
