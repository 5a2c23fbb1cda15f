"""`qcat bench [--json]`: how fast the cat engines are, how big the unit's build is, how long the
unit takes, and (when present) the entropy benchmark, in one report.

For `demo` (the shipped trained model; a synthetic one until it ships) and `full` (synthetic
weights: the arithmetic's speed does not depend on their values): milliseconds per image of the
C engine (host build, single-threaded compute; with and without its prefetch thread), the numpy
golden reference and the float torch model (torch.set_num_threads(1)), all measured in this run,
with the ratios; the arena bytes; the rv32 build's text/data/bss and worst stack depth; and the
modelled time on the unit per layer for the SD throughputs of firmware.bench, next to the 26 s
anchor and the 13 s goal: from the instructions the unit's rv32 code retires under QEMU on that
very weight image (firmware.cat_qemu; cached by the SHA-256s of the image and the ELF), or with
--no-qemu (or no QEMU) from the older assumed MACs per cycle, saying so; the same model for each
weight-image format (installation.unit_time.formats_section: v1, v2 lossless, v3 int4 behind the
quality gate; demo and full-size stand-ins with trained weight statistics); and the die unit (firmware.die_bench): its CH32V003 image's flash and RAM, and its time per
roll from the instructions QEMU counts. Numbers taken while other programs run are noisy: the
ratios of one run are what count.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command
from installation.errors import QcatError, ToolMissing
from installation.progress import ProgressBar

if TYPE_CHECKING:
    from installation.cli import Context

# Timed runs per engine and model size (after one warm-up run each).
REPEATS = {"demo": {"c": 30, "c_sync": 30, "numpy": 10, "torch": 30},
           "full": {"c": 8, "c_sync": 8, "numpy": 3, "torch": 8}}
QUICK_REPEATS = 3
BENCH_SEED = 7
SYNTHETIC_SEED = 1


def register(sub: Any) -> None:
    p = command(sub, "bench", "speed and size benchmarks: cat engines, unit model, entropy",
                _bench, description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_REPEATS} timed runs per engine (a smoke test, not a measurement)")
    p.add_argument("--no-torch", action="store_true", help="skip the float torch model")
    p.add_argument("--no-entropy", action="store_true", help="skip the entropy benchmark")
    p.add_argument("--no-units", action="store_true",
                   help="skip the units benchmark (a simulated unit on a pty)")
    p.add_argument("--no-qemu", action="store_true",
                   help="model the cat unit from assumed MACs per cycle instead of QEMU's counts")
    p.add_argument("--no-formats", action="store_true",
                   help="skip the cat unit's time per weight-image format (v1, v2 lossless, "
                        "v3 int4 behind the quality gate)")
    p.add_argument("--no-die", action="store_true",
                   help="skip the die unit (its rv32ec build and a QEMU run)")
    p.add_argument("--no-tui", action="store_true",
                   help="skip the dashboard's cold start and memory (two simulated units)")
    add_json(p)


def _model_files(ctx: Context) -> dict[str, tuple[Path, str]]:
    """size -> (weight image, where it came from)."""
    from models import weightimage

    folder = ctx.home.builds_dir / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}
    for size in ("demo", "full"):
        if size == "demo" and weightimage.SHIPPED_DEMO.exists():
            out[size] = (weightimage.SHIPPED_DEMO, "shipped trained model")
            continue
        path = folder / f"{size}-synthetic-{SYNTHETIC_SEED}.qcw"
        if not weightimage.verify(path).ok:
            weightimage.save(weightimage.synthetic(size, seed=SYNTHETIC_SEED), path)
        out[size] = (path, f"synthetic weights (seed {SYNTHETIC_SEED})")
    return out


def _torch_model(size: str, img: Any) -> Any:
    """The float generator of this size: the shipped checkpoint for demo when present."""
    from installation.engines import torch_models
    from models import weightimage

    cat = torch_models()
    cat.set_threads(1)
    if size == "demo" and weightimage.SHIPPED_DEMO_STATE.exists():
        return cat.generator_from(cat.load_checkpoint(weightimage.SHIPPED_DEMO_STATE))
    g = cat.Generator(img.nz, img.ngf)
    g.apply(cat.init_weights)
    return g.eval()


def measure_engines(ctx: Context, quick: bool = False, with_torch: bool = True,
                    qemu: bool = True) -> dict[str, Any]:
    import numpy as np

    from firmware import bench as fb
    from firmware.cat_engine import CatEngine
    from installation import unit_time
    from models import reference, weightimage

    results: dict[str, Any] = {}
    rng = np.random.default_rng(BENCH_SEED)
    for size, (path, source) in _model_files(ctx).items():
        img = weightimage.load(path)
        latent = reference.quantize_latent(rng.standard_normal(img.nz), img)
        reps = {k: (QUICK_REPEATS if quick else v) for k, v in REPEATS[size].items()}
        row: dict[str, Any] = {"weights": str(path), "source": source,
                               "conv_weights": img.conv_weights, "file_bytes": path.stat().st_size}
        with CatEngine(path, threaded=True) as eng:
            row["arena_bytes"] = eng.arena_bytes
            row["c"] = fb.time_call(partial(eng.generate, latent), reps["c"])
        with CatEngine(path, threaded=False) as eng:
            row["c_sync"] = fb.time_call(partial(eng.generate, latent), reps["c_sync"])
        row["numpy"] = fb.time_call(partial(reference.run, img, latent), reps["numpy"])
        row["torch"] = None
        if with_torch:
            try:
                g = _torch_model(size, img)
            except ToolMissing:
                row["torch_note"] = "torch is not installed (pip install 'qcat[train]')"
            else:
                from installation.engines import torch_models

                z = reference.dequantize_latent(latent, img)
                row["torch"] = fb.time_call(partial(torch_models().generate_float, g, z),
                                            reps["torch"])
        c = row["c"]["median_ms"]
        row["ratios"] = {"c_over_numpy": c / row["numpy"]["median_ms"]}
        if row["torch"]:
            row["ratios"]["c_over_torch"] = c / row["torch"]["median_ms"]
        row["unit_model"], row["unit"] = unit_time.unit_model(
            path, img, ctx.home.builds_dir / "cat-qemu" if qemu else None)
        results[size] = row
    return results


def entropy_section(progress: Any = None) -> dict[str, Any]:
    """The entropy package's benchmark: bytes per request and draws per second from a pool."""
    from quantum import bench as qbench

    result = qbench.run(progress=progress)
    return {"available": True, "result": result, "lines": list(qbench.lines(result))}


def die_section(build_dir: Path) -> dict[str, Any]:
    """The die unit's flash, RAM and time per roll, or why they could not be measured."""
    from firmware import die_bench

    try:
        fig = die_bench.measure(build_dir)
    except QcatError as exc:
        return {"error": exc.message, "hint": exc.hint,
                "lines": [f"die unit: not measured: {exc.message}"
                          + (f" ({exc.hint})" if exc.hint else "")]}
    return {"result": fig.as_dict(), "lines": die_bench.lines(fig)}


def _bench(ctx: Context, args: argparse.Namespace) -> int:
    from firmware import bench as fb

    engines = measure_engines(ctx, quick=args.quick, with_torch=not args.no_torch,
                              qemu=not args.no_qemu)
    formats: dict[str, Any] = {"lines": ["weight-image formats skipped (--no-formats)"]}
    if not args.no_formats:
        from installation import unit_time

        with ProgressBar("formats", enabled=not args.json) as bar:
            formats = unit_time.formats_section(
                _model_files(ctx)["demo"][0], ctx.home.builds_dir / "bench",
                None if args.no_qemu else ctx.home.builds_dir / "cat-qemu",
                with_torch=not args.no_torch, progress=bar)
        formats["lines"] = unit_time.formats_lines(formats)
    try:
        rv32: dict[str, Any] = fb.rv32_build(ctx.home.builds_dir / "firmware-rv32")
    except QcatError as exc:
        rv32 = {"error": exc.message, "hint": exc.hint}
    die = ({"lines": ["die unit skipped (--no-die)"]} if args.no_die
           else die_section(ctx.home.builds_dir / "firmware-die"))
    if args.no_entropy:
        entropy = {"available": False, "lines": ["entropy benchmark skipped (--no-entropy)"]}
    else:
        with ProgressBar("entropy bench", enabled=not args.json) as bar:
            entropy = entropy_section(progress=bar)
    if args.no_units:
        units: dict[str, Any] = {"lines": ["units benchmark skipped (--no-units)"]}
    else:
        from installation.units import bench as ubench

        with ProgressBar("units bench", enabled=not args.json) as bar:
            result = ubench.run(ctx.workspace.weights_path(), progress=bar)
        units = {"result": result, "lines": ubench.lines(result)}
    if args.no_tui:
        tui: dict[str, Any] = {"lines": ["tui benchmark skipped (--no-tui)"]}
    else:
        from installation import tui_bench

        with ProgressBar("tui bench", enabled=not args.json) as bar:
            result = tui_bench.run(runs=1 if args.quick else tui_bench.RUNS, progress=bar)
        tui = {"result": result, "lines": tui_bench.lines(result)}
    report = {"engines": engines, "formats": formats, "rv32": rv32,
              "unit_assumptions": fb.assumptions(),
              "die": die, "entropy": entropy, "units": units, "tui": tui}
    if args.json:
        ctx.emit_json(report)
        return 0
    for line in format_report(report):
        ctx.out(line)
    return 0


def format_report(report: dict[str, Any]) -> list[str]:
    eng = report["engines"]
    a = report["unit_assumptions"]
    lines = ["cat engines: ms per image, median (C and torch compute on one thread; "
             "numpy uses its BLAS threads)",
             f"  {'model':<5} {'c':>8} {'c-sync':>8} {'numpy':>8} {'torch':>8} "
             f"{'c/torch':>8} {'c/numpy':>8} {'arena B':>9}"]
    for size, row in eng.items():
        torch_ms = f"{row['torch']['median_ms']:8.2f}" if row["torch"] else f"{'-':>8}"
        ratio_t = (f"{row['ratios']['c_over_torch']:7.2f}x" if "c_over_torch" in row["ratios"]
                   else f"{'-':>8}")
        lines.append(f"  {size:<5} {row['c']['median_ms']:8.2f} {row['c_sync']['median_ms']:8.2f} "
                     f"{row['numpy']['median_ms']:8.2f} {torch_ms} {ratio_t} "
                     f"{row['ratios']['c_over_numpy']:7.2f}x {row['arena_bytes']:9,}")
    for size, row in eng.items():
        lines.append(f"  {size}: {row['source']}, {row['conv_weights']:,} weights, "
                     f"{row['file_bytes']:,}-byte image" + (f" ({row['torch_note']})"
                                                            if row.get("torch_note") else ""))
    rv = report["rv32"]
    if "error" in rv:
        lines.append(f"rv32 build: not measured: {rv['error']}"
                     + (f" ({rv['hint']})" if rv.get("hint") else ""))
    else:
        lines.append(f"rv32 build (rv32imafc, -Os, picolibc): text {rv['text']:,} B, data "
                     f"{rv['data']:,} B, bss {rv['bss']:,} B (the 512 KB arena), worst stack "
                     f"{rv['stack_bytes']:,} B ({rv['stack_path']})")
    lines.append(f"cat unit, modelled: {a['clock_hz'] / 1e6:.0f} MHz, weights read double-"
                 f"buffered; anchor: {a['anchor_s']:.0f} s per image (original build, SD-bound), "
                 f"goal: {a['goal_s']:.0f} s")
    for size, row in eng.items():
        m = row["unit_model"]
        if m["kind"] == "measured":
            lines.append(f"  {size}: {m['instructions']:,} instructions per image counted under "
                         f"QEMU ({m['instructions_per_mac']:.2f} per MAC in compute; "
                         f"{'cached' if m['cached'] else 'measured now'}, {m['qemu_s']:.1f} s "
                         f"of QEMU), {m['cycles_per_instruction']} cycles per instruction "
                         f"assumed ({m['cpi_range'][0]}-{m['cpi_range'][1]} bracket)")
        else:
            lines.append(f"  {size}: {m['note']}, {a['cycles_per_output']} cycles per output "
                         f"value, CRC {a['crc_cycles_per_byte']} cycles/byte")
        for u in row["unit"]:
            span = (f" ({u['total_s_range'][0]:.2f}-{u['total_s_range'][1]:.2f} s)"
                    if "total_s_range" in u else "")
            lines.append(f"  {size}, {u['sd']} ({u['sd_mb_per_s']:g} MB/s): "
                         f"{u['total_s']:.2f} s per image{span}")
            for lay in u["layers"]:
                if "fetch_instructions" in lay:
                    lines.append(f"    layer {lay['layer']}: {lay['bytes'] / 1e6:6.2f} MB in "
                                 f"{lay['reads']:3} reads, SD {lay['read_s']:6.2f} s; fetch "
                                 f"{lay['fetch_instructions'] / 1e6:6.1f} M + compute "
                                 f"{lay['compute_instructions'] / 1e6:7.1f} M instructions, "
                                 f"CPU {lay['compute_s']:5.2f} s -> {lay['time_s']:6.2f} s "
                                 f"({lay['bound']}-bound)")
                elif size == "full":
                    lines.append(f"    layer {lay['layer']}: {lay['bytes'] / 1e6:6.2f} MB "
                                 f"read {lay['read_s']:6.2f} s, {lay['macs'] / 1e6:6.1f} M MAC "
                                 f"compute {lay['compute_s']:5.2f} s -> {lay['time_s']:6.2f} s "
                                 f"({lay['bound']}-bound)")
    lines += report["formats"]["lines"]
    lines += report["die"]["lines"]
    lines += ["entropy:"] + [f"  {line}" for line in report["entropy"]["lines"]]
    lines += report["units"]["lines"]
    lines += report["tui"]["lines"]
    return lines
