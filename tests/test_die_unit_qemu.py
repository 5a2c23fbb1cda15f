"""The die unit's rv32ec build under QEMU rolls exactly what the host build rolls, and what the
numpy reference derives from the same entropy bytes; its instructions per roll give the unit's time.

Real parts: `make qemu-die` builds the firmware core, the decoder and its weights as rv32ec code
(picolibc with semihosting) around die/qemu_main.c, a controller that feeds encoded TOPUP and
ROLL_REQUEST frames through die_unit_rx(); `qemu-system-riscv32 -machine virt -icount shift=0`
runs it and semihosting writes every frame the unit sent to a file. The same main built for the
host writes its own. Both are decoded with the production codec (installation.units.protocol).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware import die_bench
from firmware.die_unit import builtin_arrays, limits
from installation.units import protocol as P
from models import die_reference as ref
from tests.cross_support import require_qemu

ROLLS = 120  # QEMU_ROLLS of qemu_main.c
SEED = 0x2545F491  # QEMU_SEED of qemu_main.c


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> die_bench.QemuRun:
    require_qemu()
    return die_bench.qemu_die_run(tmp_path_factory.mktemp("die-qemu"))


def stream(n: int) -> bytes:
    """qemu_main.c's entropy: the top byte of each xorshift32 step."""
    x, out = SEED, bytearray()
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(x >> 24)
    return bytes(out)


def builtin_model() -> ref.DieModel:
    packed, bias, shift, label_shift = builtin_arrays()
    weights = [ref.unpack_nibbles(p, int(np.prod(s))).reshape(s)
               for p, s in zip(packed, ref.weight_shapes(), strict=True)]
    return ref.DieModel(weights, bias, shift, label_shift)


def test_qemu_rolls_the_host_builds_bytes(run: die_bench.QemuRun) -> None:
    assert run.qemu_frames == run.host_frames, "the rv32ec build under QEMU differs from the host"
    assert run.qemu_oled == run.host_oled
    items = P.FrameDecoder().feed(run.qemu_frames)
    assert all(isinstance(f, P.Frame) for f in items)
    msgs = [P.decode_message(f) for f in items]
    rolls = [m for m in msgs if m.SPEC.name == "ROLL"]
    assert len(rolls) == ROLLS >= 100
    # Every roll is the reference's for the bytes at [entropy_offset, + entropy_used).
    model = builtin_model()
    data = stream(ROLLS * 12 + limits().topup_max)
    offset = 0
    for roll in rolls:
        assert roll.entropy_offset == offset
        want = ref.roll_from_bytes(data[offset:offset + roll.entropy_used])
        assert want is not None and (want.pips, want.used) == (roll.pips, roll.entropy_used)
        assert roll.face == ref.run_banded(model, want.z[None], want.pips)[0].tobytes()
        offset += roll.entropy_used
    # The OLED after the last roll shows that roll's face at 2x.
    oled = np.frombuffer(run.qemu_oled, dtype=np.uint8).reshape(8, 128)
    panel = ((oled[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1).reshape(64, 128)
    face = ref.face_from_pages(rolls[-1].face)
    assert np.array_equal(panel[:, 32:96], np.kron(face, np.ones((2, 2), dtype=np.uint8)))
    assert not panel[:, :32].any() and not panel[:, 96:].any()
    # The refusals that made the controller top up are in the stream too.
    assert any(m.SPEC.name == "ERROR" and m.code == P.ErrorCode["NO_ENTROPY"] for m in msgs)


def test_instructions_per_roll_are_counted_and_give_the_time(run: die_bench.QemuRun) -> None:
    counts = run.instructions
    assert len(counts) == ROLLS
    # A roll runs the same decoder whatever its bytes: counts barely vary; under -icount the
    # cycle counter is the instruction counter.
    assert max(counts) < 1.01 * min(counts)
    assert all(abs(c - i) <= 1 for c, i in zip(run.cycles, counts, strict=True))
    median = sorted(counts)[len(counts) // 2]
    ms = die_bench.ms_per_roll(median)
    print(f"\ndie roll: {median:,} instructions, {ms:.0f} ms at 48 MHz and "
          f"{die_bench.CYCLES_PER_INSTRUCTION} CPI")
    # The decoder's ~110,000 MACs at tens of instructions each: millions, not thousands.
    assert 500_000 < median < 20_000_000
    assert ms == pytest.approx(median * die_bench.CYCLES_PER_INSTRUCTION / 48e3)


def test_bench_figures(tmp_path: Path) -> None:
    require_qemu()
    fig = die_bench.measure(tmp_path)
    d = fig.as_dict()
    assert fig.qemu_equals_host and fig.rolls == ROLLS
    assert d["flash_bytes"] <= d["flash_limit"] and d["ram_bytes"] <= d["ram_limit"]
    lo, hi = fig.ms_per_roll_range
    assert lo < fig.ms_per_roll == hi
    text = "\n".join(die_bench.lines(fig))
    assert "ms per roll" in text and "QEMU == host: yes" in text
