"""DESIGN §4 worked by hand: the latent and the verdict code never change (promise F2)."""

import math

import numpy as np
import pytest

from installation.errors import InputError
from quantum import latent


def test_uniforms_are_midpoints_never_zero_or_one():
    u = latent.uniforms(b"\x00\x00" + b"\xff\xff" + bytes(196))
    assert u[0] == 0.5 / 65536  # k = 0
    assert u[1] == 65535.5 / 65536  # k = 65535
    assert np.all((u > 0) & (u < 1))


def test_box_muller_first_pair_by_hand():
    # k0 = 0x4000 = 16384 -> u0 = 16384.5/65536; k1 = 0x8000 = 32768 -> u1 = 32768.5/65536
    data = bytes([0x40, 0x00, 0x80, 0x00]) + bytes(196)
    z = latent.latent_from_entropy(data)
    u0, u1 = 16384.5 / 65536, 32768.5 / 65536
    r = math.sqrt(-2 * math.log(u0))
    assert z[0] == pytest.approx(r * math.cos(2 * math.pi * u1), abs=0, rel=1e-15)
    assert z[1] == pytest.approx(r * math.sin(2 * math.pi * u1), abs=0, rel=1e-12)
    # worked by hand: r = sqrt(-2 ln 0.2500076) = 1.6650909, theta = pi + 4.79e-5
    assert z[0] == pytest.approx(-1.6650909, abs=1e-6)
    assert z[1] == pytest.approx(-0.0000798, abs=1e-6)


def test_latent_is_big_endian():
    little = latent.latent_from_entropy(bytes([0x00, 0x40]) + bytes(198))
    big = latent.latent_from_entropy(bytes([0x40, 0x00]) + bytes(198))
    assert little[0] != big[0]
    assert big[0] == pytest.approx(math.sqrt(-2 * math.log(16384.5 / 65536)) * math.cos(2 * math.pi * 0.5 / 65536))


def test_latent_statistics_look_normal():
    rng = np.random.default_rng(1)
    zs = np.concatenate([latent.latent_from_entropy(rng.bytes(200)) for _ in range(400)])
    assert abs(zs.mean()) < 0.05 and abs(zs.std() - 1) < 0.05


def test_verdict_code_by_hand():
    v = latent.verdict_code(bytes([0b1111_1111, 0xA5, 0x3C]))
    assert v.motivated and v.slots == (0xA, 0x5, 0x3, 0xC)
    assert v.code == 1 << 16 | 0xA53C == 107_836
    v = latent.verdict_code(bytes([0b1111_1110, 0x00, 0x01]))
    assert not v.motivated and v.code == 1 and v.mood == "demotivated"


def test_only_bit_zero_of_byte_200_matters():
    assert latent.verdict_code(bytes([0x02, 1, 2])) == latent.verdict_code(bytes([0x00, 1, 2]))


def test_split_code_inverts_verdict_code():
    for code in (0, 1, 0xFFFF, 0x10000, 131071, 0x1A53C):
        parts = latent.split_code(code)
        b = bytes([parts.motivated, parts.slots[0] << 4 | parts.slots[1], parts.slots[2] << 4 | parts.slots[3]])
        assert latent.verdict_code(b) == parts
    with pytest.raises(InputError):
        latent.split_code(131072)


def test_wrong_length_is_a_clear_error():
    with pytest.raises(InputError, match="exactly 200 bytes"):
        latent.latent_from_entropy(bytes(199))
    with pytest.raises(InputError, match="exactly 203"):
        latent.split_exhibit(bytes(200))


def test_cli_constant_matches_the_latent_contract():
    from installation.commands import engine

    assert engine.LATENT_BYTES == latent.LATENT_BYTES
