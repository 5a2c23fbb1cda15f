"""Health tests: SP 800-90B cutoffs from first principles, and each test catching its fault."""

from __future__ import annotations

import os

import pytest

from quantum import health


@pytest.mark.parametrize(("h", "alpha_log2", "rct", "apt"), [
    (8, 20, 4, 13), (8, 30, 5, 16), (8, 40, 6, 19),
    (7, 20, 4, 18), (7, 30, 6, 22), (7, 40, 7, 26),
])
def test_cutoffs_match_the_reference_table(h, alpha_log2, rct, apt):
    assert health.rct_cutoff(h, alpha_log2) == rct
    assert health.apt_cutoff(512, h, alpha_log2) == apt


def test_the_pool_uses_h8_alpha_2_pow_minus_40():
    assert (health.RCT_CUTOFF, health.APT_CUTOFF, health.APT_WINDOW) == (6, 19, 512)


def test_repetition_count_trips_at_six_not_five():
    base = bytes(range(256)) * 4
    five = base[:100] + b"\x07" * 5 + base[100:]
    six = base[:100] + b"\x07" * 6 + base[100:]
    assert health.repetition_count(five) is None
    assert health.repetition_count(six) == 100


def test_adaptive_proportion_trips_at_nineteen_in_a_window():
    window = bytearray(os.urandom(512))
    # 18 occurrences of the first byte in the window: passes; 19: fails.
    first = 0x33
    window = bytearray(b if b != first else first ^ 1 for b in window)
    window[0] = first
    for i in range(1, 18):
        window[i * 25] = first
    assert sum(1 for b in window if b == first) == 18
    assert health.adaptive_proportion(bytes(window)) is None
    window[470] = first
    assert health.adaptive_proportion(bytes(window) + os.urandom(512)) == 0



def test_random_bytes_pass_everything():
    report = health.check(os.urandom(20480))
    assert report.ok, report.failures
    assert health.CHI_SQUARE_LOW < report.chi2 < health.CHI_SQUARE_HIGH


def test_a_counter_is_too_even_for_chi_square():
    # 0, 1, ..., 255 over and over: no runs, no window bias, yet nothing random about it. Its
    # frequencies are *exactly* uniform (chi-square 0), which the lower bound refuses.
    data = bytes(range(256)) * 80
    report = health.check(data)
    assert any("chi-square" in f for f in report.failures)
    assert report.chi2 == 0.0


def test_biased_bytes_fail_chi_square():
    raw = os.urandom(20480)
    biased = bytes(b & 0xFE for b in raw)  # the low bit stuck at 0
    report = health.check(biased)
    assert any("chi-square" in f for f in report.failures)


def test_a_repeated_block_inside_a_batch_is_caught():
    block = os.urandom(64)
    data = block + os.urandom(64 * 10) + block
    report = health.check(data)
    assert any("64-byte blocks" in f for f in report.failures)


def test_block_hashes_cover_every_byte():
    data = os.urandom(130)
    hashes = health.block_hashes(data)
    assert len(hashes) == 3  # 64 + 64 + a 2-byte tail
    assert hashes[2] == health.batch_hash(data[128:])


def test_empty_batch_is_refused():
    assert not health.check(b"").ok

def test_apt_checks_windows_after_the_first():
    bad = bytearray(b if b != 9 else 8 for b in os.urandom(512))
    bad[0] = 9
    for i in range(1, 19):
        bad[i * 20] = 9
    clean = bytes(b if b != 9 else 8 for b in os.urandom(512))
    assert health.adaptive_proportion(clean + bytes(bad)) == 512
