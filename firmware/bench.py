"""Benchmark helpers of the cat engine: timing, the rv32 build's sizes, and the cat unit's
modelled generation time.

The time model (DESIGN §5): weights stream from the SD card in read units; while the CPU works on
the slices of one unit the next is read (double buffering: the V3F core or DMA drives the card),
so a generation costs the first read, then per unit max(CPU time of this unit, read time of the
next one).

`measured_time()` is the model: it takes the read units the engine really issued and the
instructions it really retired on each (firmware/cat_qemu.py: the unit's rv32imafc -Os code under
QEMU with -icount, "fetch" = CRC, checks and decoding, "compute" = the arithmetic). SD time = the
sectors each read covers / throughput, so it holds for any layout of the slices (today's one slice
per whole sectors, or slices packed back to back and read in sector-aligned ranges); CPU time =
instructions x CYCLES_PER_INSTRUCTION / 400 MHz. The one assumption left is the CPI of the QingKe
V5F (../shared/reference/anchors.md gives its clock and memories, nothing about its pipeline):

  CYCLES_PER_INSTRUCTION = 1.0. The V5F is an in-order core; the code that dominates (the dot4x2
  loop of channel_s2, about 3.4 instructions per MAC at -Os) is byte loads from tightly-coupled
  SRAM (single-cycle, no cache misses: activations in DTCM, slices in SRAM), 32-bit multiplies,
  adds and pointer steps, with a taken branch per 64 MACs. Dual issue of independent ALU pairs
  would bring it below 1; load-use and multiply latencies and the loop branch push it above 1. We
  take 1.0 and report CPI_RANGE (0.7 .. 1.5) as the bracket.

`unit_time()` is the older, assumed model (MACS_PER_CYCLE, CYCLES_PER_OUTPUT and
CRC_CYCLES_PER_BYTE over the layer shapes): `qcat bench --no-qemu` falls back to it, saying so.
The 26 s of the original build is the anchor, 13 s the goal (issue 16: half the original).

Standard library + the firmware package only: never imports torch, models or installation.*
(other than the leaf installation.errors).
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from installation.errors import ExternalError, ToolMissing

FIRMWARE_DIR = Path(__file__).resolve().parent
RV_CC = "riscv64-unknown-elf-gcc"
RV_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"
RV_BUILD_TIMEOUT_S = 300

# The cat unit (CH32H417, QingKe V5F) as the model assumes it.
UNIT_CLOCK_HZ = 400e6
# The measured model's one assumption: cycles per retired instruction of the V5F (docstring).
CYCLES_PER_INSTRUCTION = 1.0
CPI_RANGE = (0.7, 1.5)
# The assumed model (--no-qemu only): scalar RV32IMAFC, about 4 instructions per MAC at about 2
# instructions per cycle. QEMU measures about 3.5-3.8 instructions per MAC for the -Os build.
MACS_PER_CYCLE = 0.5
# Requantization (64-bit multiply and shifts on a 32-bit core), activation and store per output.
CYCLES_PER_OUTPUT = 60
# Table-driven CRC-32, byte at a time.
CRC_CYCLES_PER_BYTE = 6
# SD throughputs (bytes per second): the original SPI-mode build, and 4-bit SDIO.
SD_THROUGHPUTS = (("SPI-mode SD, original build", 0.47e6), ("4-bit SDIO", 8.0e6))
ANCHOR_S = 26.0  # the original build: 26 s per image, SD-bound (../shared/reference/anchors.md)
GOAL_S = 13.0    # issue 16: half the original on the same card
SECTOR = 512
READ_BYTES = 64 * 1024  # CAT_READ_BYTES of cat_engine.h
KERNEL = 4


class LayerShape(Protocol):
    """What the time model needs of a layer: `models.weightimage.Layer` (a decoded image) and
    `models.weightimage.LayerShape` (a planned one) both fit; no import of models needed."""

    @property
    def c_in(self) -> int: ...
    @property
    def c_out(self) -> int: ...
    @property
    def h_in(self) -> int: ...
    @property
    def h_out(self) -> int: ...
    @property
    def stride(self) -> int: ...
    @property
    def padding(self) -> int: ...
    @property
    def slice_bytes(self) -> int: ...


def taps(lay: LayerShape) -> int:
    """Taps per output pixel the engine runs: 2x2 for k4 s2 p1, else the valid ones of a 1x1
    input (the first layer: one)."""
    if lay.stride == 2 and lay.padding == 1:
        return 4
    return 1 if lay.h_in == 1 else KERNEL * KERNEL


def macs_per_channel(lay: LayerShape) -> int:
    return lay.h_out * lay.h_out * taps(lay) * lay.c_in


@dataclass
class LayerTime:
    layer: int
    macs: int
    bytes: int
    read_s: float
    compute_s: float
    time_s: float  # sum over read units of max(read, compute)

    @property
    def bound(self) -> str:
        return "SD" if self.read_s >= self.compute_s else "compute"


@dataclass
class UnitTime:
    sd_bytes_per_s: float
    layers: list[LayerTime]
    first_read_s: float

    @property
    def total_s(self) -> float:
        return self.first_read_s + sum(lay.time_s for lay in self.layers)


def unit_time(layers: Sequence[LayerShape], sd_bytes_per_s: float, clock_hz: float = UNIT_CLOCK_HZ,
              macs_per_cycle: float = MACS_PER_CYCLE, read_bytes: int = READ_BYTES) -> UnitTime:
    """The modelled generation time on the unit (see the module docstring)."""
    out: list[LayerTime] = []
    first_read = 0.0
    for index, lay in enumerate(layers):
        per_unit = max(1, read_bytes // lay.slice_bytes)
        slice_cycles = (macs_per_channel(lay) / macs_per_cycle
                        + lay.h_out * lay.h_out * CYCLES_PER_OUTPUT
                        + lay.slice_bytes * CRC_CYCLES_PER_BYTE)
        read_total = compute_total = overlapped = 0.0
        for first in range(0, lay.c_out, per_unit):
            n = min(per_unit, lay.c_out - first)
            read = n * lay.slice_bytes / sd_bytes_per_s
            compute = n * slice_cycles / clock_hz
            if index == 0 and first == 0:
                first_read = read  # nothing to overlap the very first read with
            read_total += read
            compute_total += compute
            overlapped += max(read, compute)
        out.append(LayerTime(index + 1, macs_per_channel(lay) * lay.c_out,
                             lay.slice_bytes * lay.c_out, read_total, compute_total, overlapped))
    return UnitTime(sd_bytes_per_s, out, first_read)


class ReadCount(Protocol):
    """One read unit as the measured model needs it (firmware.cat_qemu.ReadUnit fits): the layer
    (from 0), the sectors the card delivers, and the instructions spent on its slices."""

    @property
    def layer(self) -> int: ...
    @property
    def sd_bytes(self) -> int: ...
    @property
    def fetch(self) -> int: ...
    @property
    def compute(self) -> int: ...


@dataclass
class MeasuredLayer:
    layer: int              # from 1, as DESIGN §5's table
    reads: int
    bytes: int              # sectors read, in bytes
    fetch_instructions: int
    compute_instructions: int
    sd_s: float             # the card's time for this layer's reads
    cpu_s: float            # (fetch + compute) instructions at the CPI and clock
    time_s: float           # this layer's share of the pipeline: sum of max(cpu, next read)

    @property
    def bound(self) -> str:
        return "SD" if self.sd_s >= self.cpu_s else "compute"


@dataclass
class MeasuredTime:
    sd_bytes_per_s: float
    cycles_per_instruction: float
    layers: list[MeasuredLayer]
    first_read_s: float

    @property
    def total_s(self) -> float:
        return self.first_read_s + sum(lay.time_s for lay in self.layers)


def measured_time(units: Sequence[ReadCount], sd_bytes_per_s: float,
                  cpi: float = CYCLES_PER_INSTRUCTION,
                  clock_hz: float = UNIT_CLOCK_HZ) -> MeasuredTime:
    """The generation time on the unit from the engine's read units in order (module docstring):
    the first read, then for each unit max(its CPU time, the next unit's read), charged to the
    unit's layer."""
    if not units:
        raise ValueError("no read units: the engine read no weights")
    reads = [u.sd_bytes / sd_bytes_per_s for u in units]
    cpus = [(u.fetch + u.compute) * cpi / clock_hz for u in units]
    layers: dict[int, MeasuredLayer] = {}
    for k, u in enumerate(units):
        lay = layers.setdefault(u.layer, MeasuredLayer(u.layer + 1, 0, 0, 0, 0, 0.0, 0.0, 0.0))
        lay.reads += 1
        lay.bytes += u.sd_bytes
        lay.fetch_instructions += u.fetch
        lay.compute_instructions += u.compute
        lay.sd_s += reads[k]
        lay.cpu_s += cpus[k]
        lay.time_s += max(cpus[k], reads[k + 1] if k + 1 < len(units) else 0.0)
    return MeasuredTime(sd_bytes_per_s, cpi, [layers[i] for i in sorted(layers)], reads[0])


def assumptions() -> dict[str, Any]:
    return {"clock_hz": UNIT_CLOCK_HZ, "macs_per_cycle": MACS_PER_CYCLE,
            "cycles_per_output": CYCLES_PER_OUTPUT, "crc_cycles_per_byte": CRC_CYCLES_PER_BYTE,
            "read_bytes": READ_BYTES, "anchor_s": ANCHOR_S, "goal_s": GOAL_S,
            "cycles_per_instruction": CYCLES_PER_INSTRUCTION, "cpi_range": list(CPI_RANGE)}


def time_call(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> dict[str, float]:
    """Wall-clock milliseconds of `fn()`: min and median over `repeat` runs after `warmup`."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return {"min_ms": min(runs), "median_ms": statistics.median(runs), "runs": repeat}


def rv32_build(build_dir: Path) -> dict[str, Any]:
    """`make rv32` into `build_dir`: text/data/bss of the unit image and the worst stack depth."""
    if shutil.which(RV_CC) is None:
        raise ToolMissing(f"{RV_CC} is not installed, so the unit's RISC-V build cannot be measured",
                          hint=f"sudo apt-get install {RV_PACKAGES}")
    if shutil.which("make") is None:
        raise ToolMissing("`make` is not installed", hint="sudo apt-get install make")
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(FIRMWARE_DIR), "rv32",
                           f"BUILD={build_dir}"], capture_output=True, text=True,
                          timeout=RV_BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ExternalError("the rv32 build failed: " + " / ".join(tail))
    sizes = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+[0-9a-f]+\s+\S*cat_unit\.elf",
                      proc.stdout, re.M)
    stack = re.search(r"worst stack depth: (\d+) bytes \((.+)\)", proc.stdout)
    if not sizes or not stack:
        raise ExternalError("the rv32 build printed no sizes (size or stackdepth.py changed?)")
    text, data, bss = (int(v) for v in sizes.groups())
    return {"text": text, "data": data, "bss": bss, "stack_bytes": int(stack.group(1)),
            "stack_path": stack.group(2), "warnings": proc.stderr.count("warning:")}
