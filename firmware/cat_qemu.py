"""The cat engine as the unit's RISC-V code under QEMU: its images, and its instructions per layer
and per weight read.

`build(dir)` runs `make qemu-cat qemu-cat-host`: cat/qemu_main.c around the engine, compiled as
the unit compiles it (rv32imafc, ilp32f, -Os, picolibc; semihosting for files) and for the host.
`render(weights, latents, dir)` runs both on the same latents and returns both image streams;
`count(weights, dir)` runs one latent under `-icount shift=0`, where minstret counts retired
instructions exactly (die_bench.py measured it), and returns what the engine spent per layer and
per read unit (the engine's CAT_COUNT marks: "fetch" = CRC, checks and decoding of the slices
read, "compute" = the arithmetic) together with every read it issued (offset, bytes).

Under plain TCG (no -icount) QEMU runs about 1.5x faster, so the byte comparison of many latents
runs without it, split over `jobs` QEMU processes; only the counted latent pays for -icount. The
full model takes about 3 s of QEMU per latent here, the demo model well under one.

`counts_cached(weights, dir)` keeps one counted run per (weight image, ELF) pair: a JSON file in
`dir` named by both SHA-256s, so a second `qcat bench` reads it instead of running QEMU.

Standard library, the firmware package and the leaf helpers installation.errors and
installation.files (numpy stays in the tests and the command).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from firmware.bench import FIRMWARE_DIR, RV_BUILD_TIMEOUT_S, RV_CC, RV_PACKAGES
from installation.errors import ExternalError, InputError, ToolMissing
from installation.files import sha256_of, write_atomic

QEMU = "qemu-system-riscv32"
QEMU_PACKAGE = "qemu-system-misc"
QEMU_ARGS = ("-machine", "virt", "-m", "16M", "-bios", "none", "-nographic",
             "-semihosting-config", "enable=on,target=native")
ICOUNT_ARGS = ("-icount", "shift=0")
# What qemu_main.c reads and writes in its working directory.
WEIGHTS_FILE, LATENTS_FILE = "cat.qcw", "latents.bin"
IMAGES_FILE, COUNTS_FILE = "images.bin", "cat_counts.txt"
# Seconds: a run's start, and each latent (the full model takes about 3 s, 4.5 s counted).
QEMU_START_S, QEMU_PER_LATENT_S = 30.0, 60.0
SECTOR = 512
# The latent the counts are taken on: counts barely depend on it (the ReLU clamp's branches).
COUNT_SEED = 7
CACHE_VERSION = 1

TOTAL_LINE = re.compile(r"^latent (\d+) total (\d+)$", re.M)
LAYER_LINE = re.compile(r"^latent (\d+) layer (\d+) fetch (\d+) compute (\d+)$", re.M)
UNIT_LINE = re.compile(r"^unit (\d+) layer (\d+) offset (\d+) bytes (\d+) fetch (\d+) "
                       r"compute (\d+)$", re.M)
ERROR_LINE = re.compile(r"^error (.*)$", re.M)


@dataclass(frozen=True)
class ReadUnit:
    """One weight read the engine issued, and the instructions spent on the slices it brought."""

    layer: int      # from 0, as the engine counts
    offset: int
    bytes: int
    fetch: int
    compute: int

    @property
    def sd_bytes(self) -> int:
        """The sectors the card must deliver for this read (a read starts and ends on sectors)."""
        first = self.offset // SECTOR
        last = -(-(self.offset + self.bytes) // SECTOR)
        return (last - first) * SECTOR


@dataclass(frozen=True)
class Counts:
    """One latent's instructions on the rv32 engine (exact under -icount shift=0)."""

    total: int                  # the whole cat_generate call
    fetch: tuple[int, ...]      # per layer
    compute: tuple[int, ...]    # per layer
    units: tuple[ReadUnit, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "fetch": list(self.fetch), "compute": list(self.compute),
                "units": [asdict(u) for u in self.units]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        return cls(int(d["total"]), tuple(d["fetch"]), tuple(d["compute"]),
                   tuple(ReadUnit(**u) for u in d["units"]))


@dataclass(frozen=True)
class Build:
    elf: Path    # rv32imafc, for QEMU
    host: Path   # the same main, host build


@dataclass(frozen=True)
class Render:
    """Both builds' images for the same latents (N x image bytes each, as the engine writes)."""

    qemu_images: bytes
    host_images: bytes
    latents: int
    jobs: int
    qemu_s: float   # wall seconds of the QEMU runs (in parallel), without -icount


def _require(tool: str, package: str, what: str) -> None:
    if shutil.which(tool) is None:
        raise ToolMissing(f"{tool} is not installed, so {what}", hint=f"sudo apt-get install {package}")


def build(build_dir: Path) -> Build:
    """`make qemu-cat qemu-cat-host` into `build_dir` (make skips what is up to date)."""
    _require(RV_CC, RV_PACKAGES, "the cat engine cannot be built for QEMU")
    _require("make", "make", "the cat engine cannot be built for QEMU")
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(FIRMWARE_DIR), "qemu-cat",
                           "qemu-cat-host", f"BUILD={build_dir.absolute()}"],
                          capture_output=True, text=True, timeout=RV_BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ExternalError("`make qemu-cat qemu-cat-host` failed: " + " / ".join(tail))
    qemu = build_dir.absolute() / "qemu"
    return Build(qemu / "cat_qemu.elf", qemu / "cat_qemu_host")


def _stage(folder: Path, weights: Path, latents: bytes) -> None:
    """A run's working directory: the weight image (linked, not copied) and the latents."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, IMAGES_FILE, COUNTS_FILE):
        (folder / name).unlink(missing_ok=True)
    os.symlink(weights.absolute(), folder / WEIGHTS_FILE)
    write_atomic(folder / LATENTS_FILE, latents)


def _finish(name: str, folder: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ExternalError(f"the cat engine's {name} run took over {timeout:.0f} s") from None
    if proc.returncode != 0:
        counts = folder / COUNTS_FILE
        said = ERROR_LINE.findall(counts.read_text()) if counts.exists() else []
        detail = said[0] if said else err.decode(errors="replace").strip()[-300:]
        raise ExternalError(f"the cat engine's {name} run exited {proc.returncode}: {detail}")


def _qemu_cmd(elf: Path, icount: bool) -> list[str]:
    return [QEMU, *QEMU_ARGS, *(ICOUNT_ARGS if icount else ()), "-kernel", str(elf)]


def _run_parallel(cmds: list[tuple[str, list[str], Path, int]]) -> None:
    """Start every (name, command, folder, latents) at once, then wait for each."""
    procs = [(name, folder, n, subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
             for name, cmd, folder, n in cmds]
    try:
        for name, folder, n, proc in procs:
            _finish(name, folder, proc, QEMU_START_S + QEMU_PER_LATENT_S * n)
    finally:
        for *_, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _nz(weights: Path) -> int:
    """The latent size, from the image's header (u16 at byte 40; docs/formats.md)."""
    with open(weights, "rb") as f:
        head = f.read(64)
    if len(head) < 42 or head[:8] != b"QCWEIGHT":
        raise InputError(f"{weights} is not a cat weight image",
                         hint="build one with `qcat sd weights build`")
    return int.from_bytes(head[40:42], "little")


def render(weights: Path, latents: bytes, build_dir: Path, jobs: int = 2) -> Render:
    """Render `latents` (N x nz int8) with the rv32 build under QEMU (plain TCG, `jobs`
    processes over consecutive chunks) and with the host build; both image streams."""
    _require(QEMU, QEMU_PACKAGE, "the cat engine's RISC-V build cannot be run")
    nz = _nz(weights)
    if not latents or len(latents) % nz:
        raise InputError(f"the latents must be a whole number of {nz}-byte latents")
    n = len(latents) // nz
    jobs = max(1, min(jobs, n))
    b = build(build_dir)
    work = build_dir.absolute() / "qemu" / "runs"
    bounds = [n * j // jobs for j in range(jobs + 1)]
    cmds = []
    for j in range(jobs):
        folder = work / f"qemu-{j}"
        _stage(folder, weights, latents[bounds[j] * nz:bounds[j + 1] * nz])
        cmds.append((f"QEMU (part {j + 1} of {jobs})", _qemu_cmd(b.elf, icount=False), folder,
                     bounds[j + 1] - bounds[j]))
    host = work / "host"
    _stage(host, weights, latents)
    _run_parallel([("host", [str(b.host)], host, n)])
    start = time.perf_counter()
    _run_parallel(cmds)
    seconds = time.perf_counter() - start
    qemu_images = b"".join((work / f"qemu-{j}" / IMAGES_FILE).read_bytes() for j in range(jobs))
    return Render(qemu_images, (host / IMAGES_FILE).read_bytes(), n, jobs, seconds)


def parse_counts(text: str) -> Counts:
    """The first latent's counts from cat_counts.txt."""
    totals = {int(i): int(t) for i, t in TOTAL_LINE.findall(text)}
    if 0 not in totals:
        raise ExternalError("the counted run wrote no counts (qemu_main.c changed?)")
    layers = sorted((int(lay), int(f), int(c)) for i, lay, f, c in LAYER_LINE.findall(text)
                    if int(i) == 0)
    units = tuple(ReadUnit(*(int(v) for v in m[1:])) for m in UNIT_LINE.findall(text))
    return Counts(totals[0], tuple(f for _, f, _ in layers), tuple(c for _, _, c in layers), units)


def count_latent(nz: int, seed: int = COUNT_SEED) -> bytes:
    """The latent counts are taken on: seeded int8 values in the range quantized normals take."""
    rng = random.Random(seed)
    return bytes((max(-127, min(127, round(rng.gauss(0.0, 40.0)))) & 0xFF) for _ in range(nz))


def count(weights: Path, build_dir: Path, latent: bytes | None = None) -> tuple[Counts, float]:
    """One latent under -icount shift=0: the engine's instructions, and QEMU's wall seconds."""
    _require(QEMU, QEMU_PACKAGE, "the cat engine's RISC-V build cannot be run")
    b = build(build_dir)
    folder = build_dir.absolute() / "qemu" / "runs" / "counted"
    _stage(folder, weights, latent if latent is not None else count_latent(_nz(weights)))
    start = time.perf_counter()
    _run_parallel([("QEMU (counted)", _qemu_cmd(b.elf, icount=True), folder, 1)])
    seconds = time.perf_counter() - start
    return parse_counts((folder / COUNTS_FILE).read_text()), seconds


@dataclass(frozen=True)
class CachedCounts:
    counts: Counts
    qemu_s: float       # the counted run's wall seconds when it was taken
    cached: bool        # read from the cache, no QEMU run this time
    cache_file: Path


def counts_cached(weights: Path, build_dir: Path) -> CachedCounts:
    """`count()`, kept in `build_dir` under the SHA-256s of the weight image and the ELF."""
    b = build(build_dir)
    key = f"{sha256_of(weights)[:16]}-{sha256_of(b.elf)[:16]}"
    cache = build_dir / "qemu" / f"cat-counts-{key}.json"
    if cache.exists():
        try:
            doc = json.loads(cache.read_text())
            if doc.get("version") == CACHE_VERSION:
                return CachedCounts(Counts.from_dict(doc["counts"]), float(doc["qemu_s"]), True,
                                    cache)
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache file is measured again
    counts, seconds = count(weights, build_dir)
    write_atomic(cache, json.dumps({"version": CACHE_VERSION, "weights": str(weights),
                                    "qemu_s": seconds, "counts": counts.as_dict()}).encode())
    return CachedCounts(counts, seconds, False, cache)


def first_difference(ours: bytes, theirs: bytes, width: int, channels: int = 3) -> str | None:
    """None when equal, else where two image streams first differ: "latent 3, pixel (y, x),
    channel c: 17 vs 18"."""
    if ours == theirs:
        return None
    image = width * width * channels
    if len(ours) != len(theirs):
        return f"{len(ours) // image} images vs {len(theirs) // image}"
    i = next(k for k, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
    latent, rest = divmod(i, image)
    pixel, channel = divmod(rest, channels)
    y, x = divmod(pixel, width)
    return f"latent {latent}, pixel ({y}, {x}), channel {channel}: {ours[i]} vs {theirs[i]}"
