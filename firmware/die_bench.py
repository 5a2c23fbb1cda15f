"""The die unit's figures: its CH32V003 image's flash and RAM, and its time per roll from the
instructions QEMU counts.

`rv32_die_build(dir)` runs `make rv32-die` (the whole unit: core, engine, weights, framing, the
board at register level) and reads the linker's sections and the worst stack depth
(stackdepth.py over gcc's -fcallgraph-info): flash = .init + .text + .rodata + .data (the data's
load image), RAM = .data + .bss + the worst stack.

`qemu_die_run(dir)` runs `make qemu-die qemu-die-host` and the two builds of die/qemu_main.c: the
same core, engine and weights as rv32ec code on `qemu-system-riscv32 -machine virt` (semihosting
writes the frames the unit sent), and on the host. Under `-icount shift=0` QEMU's minstret counts
retired instructions exactly (measured: a 3-instruction loop of 100,000 turns reads 300,003;
without -icount it reads the host's clock), so each roll's count is exact for this build.

Time per roll on the part = instructions x CYCLES_PER_INSTRUCTION / 48 MHz. The QingKe V2A is a
2-stage in-order core without cache or branch prediction; at 48 MHz its flash needs one wait
state (FLASH_ACTLR, the reference manual: SYSCLK above 24 MHz), so a fetch from flash costs 2
cycles. Code is mostly 16-bit compressed instructions (two per 32-bit fetch), ALU operations
retire in one cycle, but every taken branch refetches through the wait state and the decoder's
weights are loads from flash too. We assume 2.0 cycles per instruction (1.5 would be the best case
of straight-line compressed code); the report gives both ends. Anchor: BitNetMCU's CH32V003
digit classifiers take 14-57 ms per inference.

Standard library + the firmware package only; never imports models or installation.* (other than
the leaf installation.errors).
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from firmware.bench import FIRMWARE_DIR, RV_BUILD_TIMEOUT_S, RV_CC, RV_PACKAGES
from installation.errors import ExternalError, ToolMissing

# The part (CH32V003).
FLASH_BYTES = 16 * 1024
RAM_BYTES = 2 * 1024
CLOCK_HZ = 48e6
CYCLES_PER_INSTRUCTION = 2.0  # the assumption (module docstring)
CPI_RANGE = (1.5, 2.0)        # best case (straight-line compressed code) .. the assumption
ANCHOR_MS = (14.0, 57.0)      # BitNetMCU's CH32V003 classifiers, per inference
QEMU = "qemu-system-riscv32"
QEMU_PACKAGE = "qemu-system-misc"
QEMU_ARGS = ("-machine", "virt", "-bios", "none", "-nographic",
             "-semihosting-config", "enable=on,target=native", "-icount", "shift=0")
QEMU_TIMEOUT_S = 120
# What die/qemu_main.c writes.
ROLLS_FILE, OLED_FILE, COUNTS_FILE = "die_rolls.bin", "die_oled.bin", "die_counts.txt"
COUNT_LINE = re.compile(r"^roll (\d+) instret (\d+) cycle (\d+)$", re.M)
SECTION = re.compile(r"^(\.\S+)\s+(\d+)\s+\d+", re.M)
STACK = re.compile(r"worst stack depth: (\d+) bytes \((.+)\)")


@dataclass(frozen=True)
class DieSizes:
    """The CH32V003 image (`make rv32-die`)."""

    elf: Path
    sections: dict[str, int]
    stack_bytes: int          # the worst call chain's depth (stackdepth.py)
    stack_path: str
    warnings: int

    @property
    def flash_bytes(self) -> int:
        s = self.sections
        return s.get(".init", 0) + s.get(".text", 0) + s.get(".rodata", 0) + s.get(".data", 0)

    @property
    def static_ram_bytes(self) -> int:
        return self.sections.get(".data", 0) + self.sections.get(".bss", 0)

    @property
    def ram_bytes(self) -> int:
        """Static RAM and the worst stack: what the part must hold at once."""
        return self.static_ram_bytes + self.stack_bytes

    @property
    def reserved_stack_bytes(self) -> int:
        """The stack the linker script sets aside (picolibc's .stack)."""
        return self.sections.get(".stack", 0)


@dataclass(frozen=True)
class QemuRun:
    """Both builds of die/qemu_main.c, run: what each wrote, and QEMU's counts per roll."""

    qemu_frames: bytes
    host_frames: bytes
    qemu_oled: bytes
    host_oled: bytes
    instructions: list[int]   # per roll, from minstret
    cycles: list[int]         # per roll, from mcycle (equal to instret under -icount shift=0)

    @property
    def identical(self) -> bool:
        return self.qemu_frames == self.host_frames and self.qemu_oled == self.host_oled


def _require(tool: str, package: str, what: str) -> None:
    if shutil.which(tool) is None:
        raise ToolMissing(f"{tool} is not installed, so {what}", hint=f"sudo apt-get install {package}")


def _make(targets: list[str], build_dir: Path) -> subprocess.CompletedProcess[str]:
    _require("make", "make", "the die unit cannot be built")
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(FIRMWARE_DIR), *targets,
                           f"BUILD={build_dir}"], capture_output=True, text=True,
                          timeout=RV_BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ExternalError(f"`make {' '.join(targets)}` failed: " + " / ".join(tail))
    return proc


def rv32_die_build(build_dir: Path) -> DieSizes:
    """`make rv32-die` into `build_dir`, and what the image costs."""
    _require(RV_CC, RV_PACKAGES, "the die unit's RISC-V build cannot be measured")
    proc = _make(["-B", "rv32-die"], build_dir)
    elf = build_dir / "rv32" / "die" / "die_unit.elf"
    size = subprocess.run([RV_CC.replace("gcc", "size"), "-A", str(elf)], capture_output=True,
                          text=True, check=True).stdout
    stack = STACK.search(proc.stdout)
    if not stack:
        raise ExternalError("the die build printed no stack depth (stackdepth.py changed?)")
    return DieSizes(elf, {m.group(1): int(m.group(2)) for m in SECTION.finditer(size)},
                    int(stack.group(1)), stack.group(2), proc.stderr.count("warning:"))


def qemu_die_run(build_dir: Path) -> QemuRun:
    """Build both, run both in folders of their own under `build_dir`, read what they wrote."""
    _require(RV_CC, RV_PACKAGES, "the die unit cannot be built for QEMU")
    _require(QEMU, QEMU_PACKAGE, "the die unit's RISC-V build cannot be run")
    _make(["qemu-die", "qemu-die-host"], build_dir)
    out = {}
    for name, cmd in (("qemu", [QEMU, *QEMU_ARGS, "-kernel",
                                str((build_dir / "qemu" / "die_qemu.elf").absolute())]),
                      ("host", [str((build_dir / "qemu" / "die_qemu_host").absolute())])):
        folder = build_dir / "qemu" / f"run-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in (ROLLS_FILE, OLED_FILE, COUNTS_FILE):
            (folder / f).unlink(missing_ok=True)
        try:
            proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True,
                                  timeout=QEMU_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ExternalError(f"the die unit's {name} run took over {QEMU_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            raise ExternalError(f"the die unit's {name} run exited {proc.returncode}: "
                                f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        out[name] = folder
    counts = COUNT_LINE.findall((out["qemu"] / COUNTS_FILE).read_text())
    return QemuRun(qemu_frames=(out["qemu"] / ROLLS_FILE).read_bytes(),
                   host_frames=(out["host"] / ROLLS_FILE).read_bytes(),
                   qemu_oled=(out["qemu"] / OLED_FILE).read_bytes(),
                   host_oled=(out["host"] / OLED_FILE).read_bytes(),
                   instructions=[int(i) for _, i, _ in counts],
                   cycles=[int(c) for _, _, c in counts])


def ms_per_roll(instructions: float, cpi: float = CYCLES_PER_INSTRUCTION) -> float:
    return instructions * cpi / CLOCK_HZ * 1e3


@dataclass(frozen=True)
class DieFigures:
    """What `qcat bench` reports for the die unit."""

    flash_bytes: int
    ram_bytes: int
    static_ram_bytes: int
    stack_bytes: int
    stack_path: str
    rolls: int
    instructions_per_roll: int      # median over the QEMU run's rolls
    instructions_min: int
    instructions_max: int
    ms_per_roll: float              # at CLOCK_HZ and CYCLES_PER_INSTRUCTION
    ms_per_roll_range: tuple[float, float]  # over CPI_RANGE
    qemu_equals_host: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flash_limit": FLASH_BYTES, "ram_limit": RAM_BYTES,
                "clock_hz": CLOCK_HZ, "cycles_per_instruction": CYCLES_PER_INSTRUCTION,
                "cpi_range": CPI_RANGE, "anchor_ms": ANCHOR_MS}


def measure(build_dir: Path) -> DieFigures:
    """Build, run and measure (about 10 s: two cross builds and a QEMU run)."""
    sizes = rv32_die_build(build_dir)
    run = qemu_die_run(build_dir)
    if not run.instructions:
        raise ExternalError("the die unit's QEMU run counted no roll")
    median = int(statistics.median(run.instructions))
    return DieFigures(
        flash_bytes=sizes.flash_bytes, ram_bytes=sizes.ram_bytes,
        static_ram_bytes=sizes.static_ram_bytes, stack_bytes=sizes.stack_bytes,
        stack_path=sizes.stack_path, rolls=len(run.instructions), instructions_per_roll=median,
        instructions_min=min(run.instructions), instructions_max=max(run.instructions),
        ms_per_roll=ms_per_roll(median),
        ms_per_roll_range=(ms_per_roll(median, CPI_RANGE[0]), ms_per_roll(median, CPI_RANGE[1])),
        qemu_equals_host=run.identical)


def lines(fig: DieFigures) -> list[str]:
    """The report's lines."""
    lo, hi = fig.ms_per_roll_range
    return [f"die unit (CH32V003, rv32ec): flash {fig.flash_bytes:,} of {FLASH_BYTES:,} B, RAM "
            f"{fig.ram_bytes:,} of {RAM_BYTES:,} B ({fig.static_ram_bytes:,} static + "
            f"{fig.stack_bytes:,} worst stack: {fig.stack_path})",
            f"  per roll under QEMU: {fig.instructions_per_roll:,} instructions (median of "
            f"{fig.rolls}; {fig.instructions_min:,}..{fig.instructions_max:,}); QEMU == host: "
            f"{'yes' if fig.qemu_equals_host else 'NO'}",
            f"  at {CLOCK_HZ / 1e6:.0f} MHz, {CYCLES_PER_INSTRUCTION} cycles per instruction "
            f"(one flash wait state): {fig.ms_per_roll:.0f} ms per roll ({lo:.0f}-{hi:.0f} ms "
            f"for {CPI_RANGE[0]}-{CPI_RANGE[1]} CPI); anchor: BitNetMCU's classifiers "
            f"{ANCHOR_MS[0]:.0f}-{ANCHOR_MS[1]:.0f} ms"]
