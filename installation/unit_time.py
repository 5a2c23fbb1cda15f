"""The cat unit's modelled time per weight image, and which format makes it fastest.

`unit_model` models one weight image on the unit (firmware.bench): from the reads the engine
issues and the instructions its rv32 code retires under QEMU (firmware.cat_qemu, cached by the
image's and the ELF's SHA-256), or, without QEMU, from the older assumed MACs per cycle.

`formats_section` answers the question the SD card poses (the unit is SD-bound at 0.47 MB/s):
how long one image takes with each weight-image format, for both model sizes. The demo rows are
the shipped trained model itself, re-encoded losslessly (version 2, Huffman) and quantized with
4-bit layers (version 3) behind the quality gate (`models.quantize.quality_gate`, mean PSNR
against the float model >= 30 dB): the first of GATE_CANDIDATES that passes. No full-size model
is trained (that needs a GPU), and uniform random weights do not compress, so the full rows are
full-size models whose weights are drawn per layer from the trained demo's own value
frequencies (`models.weightimage.synthetic(like=...)`): they compress as the trained weights do,
and their instruction counts are real for that format. Files are cached in the bench folder,
named by the source image's SHA-256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from installation.errors import QcatError, ToolMissing
from installation.progress import ProgressCallback

# 4-bit layer choices tried for version 3, fewest bytes first; the first that passes the gate
# is the "best format". Layer 2 holds two thirds of the weights at every size.
GATE_CANDIDATES: tuple[tuple[int, ...], ...] = ((2, 3, 4), (2, 3), (2,))
GATE_LATENTS = 64
FULL_SEED = 1  # the full-size stand-ins' weights (the same seed as the bench's random one)


def unit_model(path: Path, img: Any, build_dir: Path | None) -> tuple[dict[str, Any],
                                                                     list[dict[str, Any]]]:
    """The cat unit's modelled time for one weight image at each SD throughput: measured (the
    engine's read units and instructions under QEMU, at the stated CPI) when `build_dir` is given
    and QEMU runs, else the assumed model. Returns (how it was modelled, one dict per speed)."""
    from firmware import bench as fb

    why = "--no-qemu"
    if build_dir is not None:
        from firmware import cat_qemu

        try:
            got = cat_qemu.counts_cached(path, build_dir)
        except QcatError as exc:
            why = exc.message + (f" ({exc.hint})" if exc.hint else "")
        else:
            macs = [fb.macs_per_channel(lay) * lay.c_out for lay in img.layers]
            c = got.counts
            model = {"kind": "measured", "cycles_per_instruction": fb.CYCLES_PER_INSTRUCTION,
                     "cpi_range": list(fb.CPI_RANGE), "instructions": c.total,
                     "instructions_per_mac": sum(c.compute) / sum(macs),
                     "qemu_s": got.qemu_s, "cached": got.cached, "reads": len(c.units),
                     "note": f"instructions counted under QEMU (rv32imafc -Os), "
                             f"{fb.CYCLES_PER_INSTRUCTION} cycles per instruction assumed"}
            speeds = []
            for name, speed in fb.SD_THROUGHPUTS:
                t = fb.measured_time(c.units, speed)
                speeds.append({
                    "sd": name, "sd_mb_per_s": speed / 1e6, "total_s": t.total_s,
                    "first_read_s": t.first_read_s,
                    "total_s_range": [fb.measured_time(c.units, speed, cpi=cpi).total_s
                                      for cpi in fb.CPI_RANGE],
                    "layers": [{"layer": lay.layer, "macs": macs[lay.layer - 1],
                                "bytes": lay.bytes, "reads": lay.reads,
                                "fetch_instructions": lay.fetch_instructions,
                                "compute_instructions": lay.compute_instructions,
                                "instructions_per_mac":
                                    lay.compute_instructions / macs[lay.layer - 1],
                                "read_s": lay.sd_s, "compute_s": lay.cpu_s,
                                "time_s": lay.time_s, "bound": lay.bound}
                               for lay in t.layers]})
            return model, speeds
    model = {"kind": "assumed", "macs_per_cycle": fb.MACS_PER_CYCLE,
             "note": f"not measured ({why}): {fb.MACS_PER_CYCLE} MAC per cycle assumed"}
    return model, [_unit_dict(fb.unit_time(img.layers, speed), name)
                   for name, speed in fb.SD_THROUGHPUTS]


def _unit_dict(t: Any, name: str) -> dict[str, Any]:
    return {"sd": name, "sd_mb_per_s": t.sd_bytes_per_s / 1e6, "total_s": t.total_s,
            "first_read_s": t.first_read_s,
            "layers": [{"layer": lay.layer, "macs": lay.macs, "bytes": lay.bytes,
                        "read_s": lay.read_s, "compute_s": lay.compute_s, "time_s": lay.time_s,
                        "bound": lay.bound} for lay in t.layers]}




def _cached(folder: Path, name: str, make: Any) -> Path:
    """folder/name, written by `make(path)` unless a valid image is already there."""
    from models import weightimage

    path = folder / name
    if not (path.exists() and weightimage.verify(path).ok):
        make(path)
    return path


def _row(size: str, label: str, path: Path, img: Any, source: str,
         qemu_dir: Path | None) -> dict[str, Any]:
    model, speeds = unit_model(path, img, qemu_dir)
    weights = sum(lay.weights.size for lay in img.layers)
    return {"size": size, "format": label, "version": img.version, "source": source,
            "weights": str(path), "file_bytes": path.stat().st_size,
            "encodings": [lay.encoding for lay in img.layers],
            "weight_bits": [lay.weight_bits for lay in img.layers],
            "bits_per_weight": 8.0 * sum(lay.stored_bytes for lay in img.layers) / weights,
            "model": model["kind"],
            "seconds": {f"{s['sd_mb_per_s']:g}": s["total_s"] for s in speeds},
            "seconds_range": {f"{s['sd_mb_per_s']:g}": s.get("total_s_range") for s in speeds}}


def _gated_int4(source: Path, folder: Path, tag: str, with_torch: bool,
                progress: ProgressCallback | None) -> tuple[Path | None, dict[str, Any]]:
    """The shipped demo quantized with the fewest-bytes 4-bit layer choice that passes the
    quality gate (`quantize.MIN_PSNR_DB`, measured as `quantize.quality_gate` does; cached with
    its figures), or None and why."""
    import json

    from models import weightimage

    if not with_torch:
        return None, {"skipped": "--no-torch: the quality gate needs the float model"}
    if source.resolve() != weightimage.SHIPPED_DEMO.resolve() or \
            not weightimage.SHIPPED_DEMO_STATE.exists():
        return None, {"skipped": "no float checkpoint beside the demo image to gate against"}
    try:
        from installation.engines import torch_models
        cat = torch_models()
    except ToolMissing as exc:
        return None, {"skipped": exc.message}
    from models import quantize

    cat.set_threads(1)
    ckpt = None
    tried = []
    for layers in GATE_CANDIDATES:
        name = f"demo-{tag}-int4-{''.join(map(str, layers))}"
        path, gate_file = folder / f"{name}.qcw", folder / f"{name}.gate.json"
        if gate_file.exists() and (not json.loads(gate_file.read_text())["passed"]
                                   or weightimage.verify(path).ok):
            gate = json.loads(gate_file.read_text())
        else:
            ckpt = ckpt or cat.load_checkpoint(weightimage.SHIPPED_DEMO_STATE)
            calibration = (weightimage.load(source).provenance.get("calibration") or {}).get(
                "latents", quantize.DEFAULT_CALIBRATION_LATENTS)
            img = quantize.quantize(ckpt, calibration=int(calibration), int4_layers=layers,
                                    checkpoint_sha256=weightimage.sha256_of(
                                        weightimage.SHIPPED_DEMO_STATE),
                                    command=f"qcat bench (--int4-layers "
                                            f"{','.join(map(str, layers))})", progress=progress)
            img = weightimage.with_format(img, weightimage.VERSION_INT4, "huffman")
            from models import quality
            report = quality.measure(img, cat.generator_from(ckpt), n=GATE_LATENTS,
                                     progress=progress)
            passed = report["psnr_db_mean"] >= quantize.MIN_PSNR_DB
            if passed:
                weightimage.save(img, path)
            gate = {"int4_layers": list(layers), "psnr_db_mean": report["psnr_db_mean"],
                    "passed": passed}
            from installation.files import write_atomic
            write_atomic(gate_file, json.dumps(gate).encode())
        tried.append(gate)
        if gate["passed"]:
            return path, {"chosen": gate, "tried": tried}
    return None, {"tried": tried, "skipped": "no 4-bit layer choice passes the quality gate"}


def formats_section(demo: Path, folder: Path, qemu_dir: Path | None, with_torch: bool = True,
                    progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Seconds per image on the unit for each weight-image format (see the module docstring):
    rows for the demo and full sizes, the gate's figures, and the goal's verdict."""
    from firmware import bench as fb
    from models import weightimage

    folder.mkdir(parents=True, exist_ok=True)
    tag = weightimage.sha256_of(demo)[:12]
    demo_img = weightimage.load(demo)
    rows = [_row("demo", f"v{demo_img.version} as shipped", demo, demo_img,
                 "the shipped trained model", qemu_dir)]
    lossless = _cached(folder, f"demo-{tag}-v2.qcw",
                       lambda p: weightimage.convert(demo, p, weightimage.DEFAULT_VERSION))
    lossless_img = weightimage.load(lossless)
    rows.append(_row("demo", "v2 huffman (lossless)", lossless, lossless_img,
                     "the shipped model, re-encoded", qemu_dir))
    int4, gate = _gated_int4(demo, folder, tag, with_torch, progress)
    int4_img = weightimage.load(int4) if int4 else None
    if int4 is not None and int4_img is not None:
        rows.append(_row("demo", f"v3 int4 layers {gate['chosen']['int4_layers']}", int4,
                         int4_img, f"the shipped model's float generator, gate "
                                   f"{gate['chosen']['psnr_db_mean']:.2f} dB", qemu_dir))

    def full_like(like: Any, version: int) -> Any:
        def make(path: Path) -> None:
            img = weightimage.synthetic("full", seed=FULL_SEED, like=like)
            weightimage.save(weightimage.with_format(img, version, "huffman"), path)
        return make

    random_full = _cached(folder, f"full-random-{FULL_SEED}-v1.qcw", lambda p: weightimage.save(
        weightimage.synthetic("full", seed=FULL_SEED), p))
    rows.append(_row("full", "v1, uniform random weights", random_full,
                     weightimage.load(random_full), "random weights (incompressible)", qemu_dir))
    full_v2 = _cached(folder, f"full-like-{tag}-v2.qcw",
                      full_like(lossless_img, weightimage.DEFAULT_VERSION))
    rows.append(_row("full", "v2 huffman (lossless)", full_v2, weightimage.load(full_v2),
                     "weights drawn from the trained demo's per-layer frequencies", qemu_dir))
    if int4 is not None and int4_img is not None:
        full_v3 = _cached(folder, f"full-like-{weightimage.sha256_of(int4)[:12]}-v3.qcw",
                          full_like(int4_img, weightimage.VERSION_INT4))
        rows.append(_row("full", f"v3 int4 layers {gate['chosen']['int4_layers']}", full_v3,
                         weightimage.load(full_v3), "weights drawn from the gated int4 demo's "
                         "per-layer frequencies", qemu_dir))
    slow = f"{fb.SD_THROUGHPUTS[0][1] / 1e6:g}"
    full_rows = [r for r in rows if r["size"] == "full" and r["format"].startswith("v")
                 and "random" not in r["format"]]
    lossless_s = full_rows[0]["seconds"][slow]
    best_s = min(r["seconds"][slow] for r in full_rows)
    return {"rows": rows, "int4_gate": gate, "goal_s": fb.GOAL_S, "sd_mb_per_s": float(slow),
            "full_lossless_s": lossless_s, "full_best_s": best_s,
            "goal_met": best_s <= fb.GOAL_S}


def formats_lines(section: dict[str, Any]) -> list[str]:
    """The formats table for people."""
    speeds = list(section["rows"][0]["seconds"])
    lines = ["cat unit by weight-image format: seconds per image at " +
             ", ".join(f"{s} MB/s" for s in speeds),
             f"  {'model':<5} {'format':<28} {'bits/w':>6} {'MB':>6} " +
             " ".join(f"{s + ' MB/s':>10}" for s in speeds)]
    for r in section["rows"]:
        lines.append(f"  {r['size']:<5} {r['format']:<28} {r['bits_per_weight']:6.2f} "
                     f"{r['file_bytes'] / 1e6:6.2f} " +
                     " ".join(f"{r['seconds'][s]:9.2f}s" for s in speeds))
    gate = section["int4_gate"]
    if "chosen" in gate:
        tried = ", ".join(f"{t['int4_layers']}: {t['psnr_db_mean']:.2f} dB" for t in gate["tried"])
        lines.append(f"  int4 quality gate (>= 30 dB mean PSNR vs float): {tried}")
    else:
        lines.append(f"  int4: {gate.get('skipped', 'not measured')}")
    lines.append(f"  full model at {section['sd_mb_per_s']:g} MB/s: lossless "
                 f"{section['full_lossless_s']:.2f} s, best {section['full_best_s']:.2f} s; goal "
                 f"{section['goal_s']:g} s: {'met' if section['goal_met'] else 'NOT met'} (full "
                 "rows are full-size models with the trained demo's weight statistics)")
    return lines
