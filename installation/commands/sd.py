"""`qcat sd`: the units' SD cards, and the cat weight image (.qcw) that goes onto them.

    qcat sd build --unit NAME --reserve N --out DIR|IMAGE.img [--weights F] [--clips F] [--json]
    qcat sd verify CARD [--json]                exit 1 naming each file that differs
    qcat sd reconcile CARD [--json]             exit 1 on a unit fault or a copied card
    qcat sd weights build CKPT --out FILE [--calibration N] [--seed N] [--format 1|2]
                          [--encoding raw|huffman] [--int4-layers 2,3] [--min-psnr DB] [--json]
    qcat sd weights convert FILE --out FILE [--format 1|2|3] [--encoding raw|huffman] [--json]
    qcat sd weights verify FILE [--json]        exit 1 naming the first bad slice
    qcat sd weights inspect FILE [--json]       per layer: encoding, bytes, bits per weight
    qcat sd write SOURCE TARGET [--yes TARGET] [--json]   a card onto a device, folder or .img

Thin layer: `installation.sdcard` builds and checks cards, `models.quantize` builds weight
images (torch, imported inside the handler), `models.weightimage` reads and checks them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command, group
from installation.errors import CheckFailed, FormatError, InputError, UsageError
from installation.progress import ProgressBar
from installation.words import plural

if TYPE_CHECKING:
    from installation.cli import Context

# Latents the quality gate of --int4-layers measures (models.quality.measure, the numpy reference
# against the float model): enough for a stable mean, few enough for the full model.
DEFAULT_GATE_LATENTS = 64


def register(sub: Any) -> None:
    _, groups = group(sub, "sd", "the units' SD cards and the files that go onto them")

    p = command(groups, "build", "build a cat unit's SD card: weights, clips, an entropy "
                "reserve leased from the pool, an empty journal and a manifest", _build)
    p.add_argument("--unit", required=True, metavar="NAME",
                   help="the unit's serial (1 to 16 ASCII characters), as its HELLO says")
    p.add_argument("--reserve", required=True, type=int, metavar="N",
                   help="exhibits the unit may make offline (each leases 203 bytes for good)")
    p.add_argument("--out", required=True, metavar="DIR|IMAGE.img",
                   help="a new or empty folder (a mounted card), or a new FAT32 image file")
    p.add_argument("--weights", metavar="FILE", help="the weight image (default: the one in use)")
    p.add_argument("--clips", metavar="FILE",
                   help="the clip bank (default: the home's, built with espeak-ng if need be)")
    add_json(p)

    p = command(groups, "verify", "check a card folder or image: manifest, hashes, every "
                "record and journal slot", _verify_card)
    p.add_argument("card", metavar="CARD", help="a card's folder or a .img")
    add_json(p)

    p = command(groups, "reconcile", "take back a card from a unit that worked offline: archive "
                "what its journal spent, return what it provably never used", _reconcile)
    p.add_argument("card", metavar="CARD", help="a card's folder or a .img")
    add_json(p)

    register_write(groups)

    _, cmds = group(groups, "weights", "the cat weight image (.qcw)")

    p = command(cmds, "build", "quantize a cat checkpoint into a .qcw weight image",
                build_weights)
    add_weight_build_args(p)

    p = command(cmds, "convert", "re-encode a weight image in another format version or "
                "encoding, losslessly (e.g. version 1 -> version 2 Huffman)", _convert)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--format", type=int, choices=[1, 2, 3], default=None,
                   help="format version (default 2, or 3 for a model with 4-bit layers)")
    p.add_argument("--encoding", choices=["raw", "huffman"], default="huffman",
                   help="how versions 2 and 3 store each layer's weights (default huffman)")
    add_json(p)

    p = command(cmds, "verify", "check every CRC and the SHA-256 of a weight image", _verify)
    p.add_argument("file", metavar="FILE")
    add_json(p)

    p = command(cmds, "inspect", "describe a weight image (sizes, layers, provenance)", _inspect)
    p.add_argument("file", metavar="FILE")
    add_json(p)


def _build(ctx: Context, args: argparse.Namespace) -> int:
    from installation.sdcard import build_card_for

    with ProgressBar("building the card", enabled=not args.json) as bar:
        built = build_card_for(ctx.workspace, args.unit, args.reserve, Path(args.out),
                               weights=args.weights, clips=args.clips, progress=bar)
    if args.json:
        ctx.emit_json(built.as_dict())
        return 0
    size = f", {built.image_bytes:,} bytes" if built.image_bytes else ""
    ctx.out(f"built the card of unit {built.unit} in {built.out} ({built.kind}{size}):")
    for name, n in built.files.items():
        ctx.out(f"  {name:<13} {n:>12,} bytes")
    ctx.out(f"  lease {built.lease_id}: {plural(built.records, 'exhibit')} "
            f"({built.as_dict()['leased_bytes']:,} bytes) left the pool for this card")
    ctx.out(f"  card id {built.card_id}")
    return 0


def _verify_card(ctx: Context, args: argparse.Namespace) -> int:
    from installation.sdcard import verify_card

    path = _existing_card(args.card)
    with ProgressBar("verifying the card", enabled=not args.json) as bar:
        report = verify_card(path, bar)
    if args.json:
        ctx.emit_json(report.as_dict())
        return 0 if report.ok else 1
    if not report.ok:
        bad = report.bad_files or ["the file system"]
        raise CheckFailed(f"the card {path} differs in {', '.join(bad)}: "
                          + "; ".join(report.problems()),
                          hint="build the card again with `qcat sd build`")
    fsck = f"; fsck.fat: {report.fsck}" if report.fsck else ""
    ctx.out(f"{path}: ok (card {report.card_id} of unit {report.unit}, lease {report.lease_id}: "
            f"{plural(report.records or 0, 'record')}, {len(report.struck)} struck; journal "
            f"{report.journal_state}, {plural(report.spent or 0, 'exhibit')} spent{fsck})")
    return 0


def _existing_card(name: str) -> Path:
    path = Path(name)
    if not path.exists():
        raise InputError(f"card {path} does not exist",
                         hint="give a card's folder or a .img made by `qcat sd build`")
    return path


def _reconcile(ctx: Context, args: argparse.Namespace) -> int:
    from installation.reconcile import reconcile

    path = _existing_card(args.card)
    ws = ctx.workspace
    ws.require_writable("`qcat sd reconcile`")
    gen = ws.open_generator()
    try:
        with ProgressBar("reconciling", enabled=not args.json) as bar:
            report = reconcile(path, gen, ws.home.builds_dir, bar)
    finally:
        gen.pool.close()
        gen.gallery.close()
    if args.json:
        ctx.emit_json(report.as_dict())
    else:
        for line in report.sentences():
            ctx.out(line)
    return 0 if report.ok else 1


def add_weight_build_args(p: Any) -> None:
    """The options of `qcat sd weights build` and `qcat models quantize` (one handler)."""
    from installation.commands.models import QUALITY_GOAL_DB as MIN_PSNR_DB

    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--calibration", type=int, default=None, metavar="N",
                   help="latents for activation calibration (at least 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration entropy")
    p.add_argument("--format", type=int, choices=[1, 2], default=None,
                   help="format version: 2 (default: packed slices) or 1 (sector-padded, raw; "
                        "for older readers); --int4-layers writes version 3")
    p.add_argument("--encoding", choices=["raw", "huffman"], default="huffman",
                   help="how version 2 stores each layer's weights (default huffman, lossless)")
    p.add_argument("--int4-layers", default=None, metavar="L,L",
                   help="layers (from 1) quantized to 4-bit weights: lossy, format version 3, "
                        "written only when the image passes the quality gate")
    p.add_argument("--min-psnr", type=float, default=MIN_PSNR_DB, metavar="DB",
                   help=f"the quality gate for --int4-layers: mean PSNR against the float model "
                        f"(default {MIN_PSNR_DB:g} dB, as `qcat models quality` measures it)")
    p.add_argument("--gate-latents", type=int, default=DEFAULT_GATE_LATENTS, metavar="N",
                   help=f"latents the quality gate measures (default {DEFAULT_GATE_LATENTS})")
    add_json(p)


def build_weights(ctx: Context, args: argparse.Namespace) -> int:
    """`qcat sd weights build` and `qcat models quantize`."""
    from installation.commands.models import canonical
    from installation.engines import torch_models

    torch_models().set_threads(1)
    from models import cat, quantize, weightimage
    n = args.calibration or quantize.DEFAULT_CALIBRATION_LATENTS
    if n < quantize.MIN_CALIBRATION_LATENTS:
        raise UsageError(f"--calibration must be at least {quantize.MIN_CALIBRATION_LATENTS}")
    if args.gate_latents < 1:
        raise UsageError(f"--gate-latents must be at least 1, not {args.gate_latents}")
    ckpt_path = Path(args.checkpoint)
    ckpt = cat.load_checkpoint(ckpt_path)
    n_layers = len(weightimage.generator_layout(int(ckpt["nz"]), int(ckpt["ngf"])))
    int4 = quantize.parse_layers(args.int4_layers, n_layers) if args.int4_layers else ()
    if int4 and args.format is not None:
        raise UsageError("--int4-layers writes format version 3; leave --format out")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist", hint="create it first")
    words: list[Any] = ["sd", "weights", "build", ckpt_path, "--out", out, "--calibration", n,
                        "--seed", args.seed]
    if args.format is not None:
        words += ["--format", args.format]
    if args.encoding != "huffman":
        words += ["--encoding", args.encoding]
    if int4:
        words += ["--int4-layers", ",".join(map(str, int4)), "--min-psnr", args.min_psnr]
    with ProgressBar("quantizing", enabled=not args.json) as bar:
        img = quantize.quantize(ckpt, calibration=n, seed=args.seed,
                                checkpoint_sha256=weightimage.sha256_of(ckpt_path),
                                command=canonical(*words), progress=bar, int4_layers=int4)
    img = weightimage.with_format(img, weightimage.choose_version(img, args.format),
                                  args.encoding)
    gate = None
    if int4:
        with ProgressBar("quality gate", enabled=not args.json) as bar:
            gate = quantize.quality_gate(img, ckpt, min_psnr=args.min_psnr,
                                         latents=args.gate_latents, progress=bar)
    digest = weightimage.save(img, out)
    return _report_written(ctx, args, out, img, digest, gate)


def _report_written(ctx: Context, args: argparse.Namespace, out: Path, img: Any, digest: str,
                    gate: dict[str, Any] | None = None) -> int:
    from models import weightimage

    info = weightimage.describe(img, img.file_bytes, digest)
    if args.json:
        info["path"] = str(out)
        if gate is not None:
            info["quality_gate"] = gate
        ctx.emit_json(info)
        return 0
    ctx.out(f"wrote {out}: {img.model_size} model, {img.conv_weights:,} conv weights, "
            f"{img.file_bytes:,} bytes ({img.file_bytes / 2**20:.2f} MiB, format version "
            f"{img.version}, {info['bits_per_weight']:.2f} bits per weight), sha256 {digest}")
    if gate is not None:
        ctx.out(f"  quality gate: {gate['psnr_db_mean']:.2f} dB mean PSNR against the float model "
                f"over {plural(gate['latents'], 'latent')} (gate {gate['min_psnr_db']:g} dB)")
    return 0


def _convert(ctx: Context, args: argparse.Namespace) -> int:
    from models import weightimage

    source, out = Path(args.file), Path(args.out)
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist", hint="create it first")
    if out.resolve() == source.resolve():
        raise UsageError("--out must name a new file: the old image stays as it is",
                         hint="archived exhibits name their weight image by its SHA-256")
    img, digest = weightimage.convert(source, out, args.format, args.encoding)
    return _report_written(ctx, args, out, img, digest)


def _verify(ctx: Context, args: argparse.Namespace) -> int:
    from models import weightimage

    path = Path(args.file)
    if not path.exists():
        # nothing to verify: bad input (exit 2), unlike a file that fails its checks (exit 1)
        raise InputError(f"weight image {path} does not exist",
                         hint="give the path of a .qcw file; `qcat sd weights build` makes one")
    report = weightimage.verify(path)
    if args.json:
        out = report.as_dict()
        if report.image is not None:
            out["conv_weights"] = report.image.conv_weights
            out["model_size"] = report.image.model_size
        ctx.emit_json(out)
        return 0 if report.ok else 1
    if not report.ok:
        raise CheckFailed(report.error or "the weight image is bad", hint=report.hint)
    img = report.image
    assert img is not None
    slices = sum(lay.c_out for lay in img.layers)
    ctx.out(f"{args.file}: ok ({img.model_size}, {slices} slices with good CRCs, "
            f"{report.bytes:,} bytes, sha256 {report.sha256})")
    return 0


def _inspect(ctx: Context, args: argparse.Namespace) -> int:
    from models import weightimage

    report = weightimage.verify(Path(args.file))
    if not report.ok or report.image is None:
        # inspect reads what it is given: a bad file is bad input (exit 2), not a failed check
        raise FormatError(report.error or "the weight image is bad", hint=report.hint)
    info = weightimage.describe(report.image, report.bytes, report.sha256)
    if args.json:
        ctx.emit_json(info)
        return 0
    ctx.out(f"{args.file}")
    ctx.out(f"  model        {info['model_size']} (nz {info['nz']}, ngf {info['ngf']})")
    ctx.out(f"  format       version {info['format_version']}")
    ctx.out(f"  conv weights {info['conv_weights']:,} ({info['weight_mib']} MiB of int8)")
    tax = (f", sector padding {info['padding_bytes']:,} = {info['padding_percent']} % of the "
           f"weights" if info["format_version"] == 1 else "")
    ctx.out(f"  file         {info['bytes']:,} bytes ({info['mib']} MiB: header "
            f"{info['header_bytes']:,}{tax})")
    ctx.out(f"  sha256       {info['sha256']}")
    ctx.out(f"  latent       scale {info['latent']['scale']:.6g}, zero point "
            f"{info['latent']['zero_point']}")
    for lay in info["layers"]:
        ctx.out(f"  layer {lay['index'] + 1}  {lay['c_in']:>5} -> {lay['c_out']:<5} "
                f"{lay['h_in']:>2}x{lay['h_in']:<2} -> {lay['h_out']:>2}x{lay['h_out']:<2} "
                f"s{lay['stride']} p{lay['padding']} {lay['activation']:<4} "
                f"zp {lay['in_zp']:>4} -> {lay['out_zp']:>4}  {lay['encoding']:<7} "
                f"{lay['weight_bits']}-bit {lay['weights']:>10,} weights {lay['stored_bytes']:>11,} B "
                f"{lay['bits_per_weight']:6.3f} bits/weight")
    ctx.out(f"  total        {info['conv_weights']:,} weights in {info['slice_bytes_total']:,} "
            f"bytes of slices: {info['bits_per_weight']:.3f} bits per weight")
    prov = info["provenance"]
    for key in ("tool", "command", "seed", "epochs", "final_losses", "created"):
        if key in prov:
            ctx.out(f"  {key:<12} {prov[key]}")
    return 0


# ------------------------------------------------------------------------------------------------
# qcat sd write (installation/sdwrite.py does the work)


def register_write(groups: Any) -> None:
    p = command(groups, "write", "write a built card onto a microSD card, a folder or a .img file",
                _write, description=(
                    "Write the card SOURCE (a folder or .img from `qcat sd build`) to TARGET (the "
                    "card's device, e.g. /dev/sdb; the folder it is mounted at; or a .img file), "
                    "then read it back and compare. Refuses the system disk, mounted devices, "
                    "partitions, non-removable or oversized disks (sd.max_card_bytes) and folders "
                    "holding other files; --yes TARGET overrides the last three only."))
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--yes", metavar="TARGET", default=None,
                   help="write without asking; must name TARGET itself")
    add_json(p)


def _reconciled_in(ctx: Context) -> Callable[[str, int], bool]:
    """Has this home's pool taken in the records a card's journal spent? (A lease it does not
    know was not reconciled here.)"""
    def reconciled(lease_id: str, spent: int) -> bool:
        if not ctx.home.pool_db.exists():
            return False
        with ctx.workspace.open_pool() as pool:
            if lease_id not in {lease.lease_id for lease in pool.leases()}:
                return False
            return set(range(spent)) <= pool.spent_records(lease_id)

    return reconciled


def _write(ctx: Context, args: argparse.Namespace) -> int:
    import os
    import sys

    from installation import sdwrite

    sysroot = os.environ.get(sdwrite.SYSROOT_ENV)
    view = (sdwrite.SystemView.under(Path(sysroot), home=ctx.home.root) if sysroot
            else sdwrite.SystemView.host(home=ctx.home.root))
    say = sys.stderr if args.json else ctx.stdout  # --json keeps stdout for the document

    def show(plan: sdwrite.WritePlan) -> None:
        print("\n".join(plan.describe()), file=say)

    def confirm(plan: sdwrite.WritePlan) -> bool:
        print(f"overwrite everything on {plan.target}? type yes to write: ", end="",
              file=sys.stderr, flush=True)  # stderr: --json keeps stdout for the document
        return sys.stdin.readline().strip().lower() == "yes"

    with ProgressBar("sd write") as bar:
        result = sdwrite.write_card(
            Path(args.source), Path(args.target), view=view,
            yes=Path(args.yes) if args.yes else None,
            max_card_bytes=ctx.config["sd.max_card_bytes"], show=show,
            confirm=confirm if sys.stdin.isatty() else None, progress=bar,
            check_card=sdwrite.installed_card_check(), reconciled=_reconciled_in(ctx))
    if args.json:
        ctx.emit_json(result.as_dict())
        return 0
    ctx.out(f"wrote {result.target}: {result.bytes_written:,} bytes, read back and identical "
            f"({result.seconds:.1f} s)" + (f"; {result.card_check}" if result.card_check else ""))
    return 0
