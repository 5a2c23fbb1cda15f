"""The whole die unit fits the CH32V003: flash (code + weights + tables) <= 16,384 B and RAM
(static + the worst stack) <= 2,048 B, and it never multiplies or divides.

Real parts: `make rv32-die` cross-builds the unit's image (the firmware core, the decoder with
its weights, the framing and the board at register level, die_main.c) with picolibc for
-march=rv32ec -mabi=ilp32e; the linker's sections and gcc's -fcallgraph-info give the figures
(firmware/die_bench.py), and the linked image is disassembled.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from firmware import die_bench
from firmware.die_engine import arena_bytes
from firmware.die_unit import limits
from tests.cross_support import require_cross_compiler


@pytest.fixture(scope="module")
def sizes(tmp_path_factory: pytest.TempPathFactory) -> die_bench.DieSizes:
    require_cross_compiler()
    return die_bench.rv32_die_build(tmp_path_factory.mktemp("die-rv32"))


def test_the_whole_unit_fits_the_part(sizes: die_bench.DieSizes) -> None:
    print(f"\ndie unit: flash {sizes.flash_bytes:,} B, static RAM {sizes.static_ram_bytes:,} B, "
          f"worst stack {sizes.stack_bytes} B ({sizes.stack_path}), sections {sizes.sections}")
    assert sizes.warnings == 0
    assert sizes.flash_bytes <= die_bench.FLASH_BYTES
    assert sizes.ram_bytes <= die_bench.RAM_BYTES
    # The linker holds it too: static data and the stack picolibc reserves fit the 2 KB region,
    # and that reserve holds the deepest call chain.
    assert sizes.static_ram_bytes + sizes.reserved_stack_bytes <= die_bench.RAM_BYTES
    assert 0 < sizes.stack_bytes <= sizes.reserved_stack_bytes
    # The deepest chain is the unit's: a frame answered by a roll through the decoder.
    assert sizes.stack_path.split(" -> ")[:2] in (["main", "die_unit_rx"],
                                                  ["main", "die_unit_poll"])
    assert "die_generate" in sizes.stack_path
    # The static RAM is the unit and what the board keeps: the engine's arena, the reserve, the
    # receive buffer and the payload are all in it (not on the stack, not malloc'd).
    lim = limits()
    assert sizes.static_ram_bytes >= arena_bytes() + lim.reserve_bytes + lim.max_payload + 134
    # The weights and tables are const: in flash, not copied to RAM.
    assert sizes.sections.get(".data", 0) == 0
    elf = sizes.elf.read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 1  # ELFCLASS32
    assert int.from_bytes(elf[18:20], "little") == 243  # EM_RISCV
    assert int.from_bytes(elf[36:40], "little") & 0x8  # EF_RISCV_RVE: 16 registers


def _disassembly(elf: Path) -> str:
    return subprocess.run(["riscv64-unknown-elf-objdump", "-d", str(elf)], capture_output=True,
                          text=True, check=True).stdout


def test_the_unit_never_multiplies_or_divides(sizes: die_bench.DieSizes) -> None:
    """RV32EC has neither: a `*`, `/` or `%` on a variable makes gcc call libgcc's helpers
    (hundreds of cycles each, and flash). The whole linked image is searched."""
    dis = _disassembly(sizes.elf)
    for fn in ("main", "die_unit_rx", "die_unit_poll", "die_roll_recipe", "die_generate",
               "qp_frame_encode"):
        assert f"<{fn}>:" in dis, fn  # the parts really are in the image
    helpers = re.findall(r"<(__(?:mul|div|udiv|mod|umod)[sd]i3)>", dis)
    assert helpers == [], helpers
    assert not re.search(r"\t(mul|mulh|mulhu|mulhsu|div|divu|rem|remu)\s", dis)
