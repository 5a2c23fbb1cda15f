"""`qcat models`: make, train, quantize and measure the cat DCGAN, the die judge and decoder.

    qcat models init cat --size demo|full --seed N --out CKPT
    qcat models train cat --data DIR|procedural --size demo|full --epochs N --out CKPT
                          [--r1-gamma G] [--ema IMAGES] [--hf-penalty W] [--augment POLICY]
    qcat models export CKPT --out PT                 (generator only: the shipped cat-demo.pt)
    qcat models samples [--weights FILE] --out PNG   (a grid of int8 cats, numpy reference)
    qcat models samples cat --source data --out PNG  (a grid of procedural training cats)
    qcat models quantize CKPT --out FILE.qcw [--int4-layers 2,3,4]  (= `qcat sd weights build`)
    qcat models quality [--weights FILE] [--state CKPT] [--latents N] [-n N] [--json]
                                                     (int8 vs float, and the cats' variety)
    qcat models train attributes [--epochs N] [--out FILE.npz]  (the cat attribute classifier)
    qcat models train judge [--epochs N] [--out FILE.npz]   (the die face pip classifier)
    qcat models quality judge [--judge FILE] [--per-count N] [--seed S] [--json]
    qcat models samples die [--source data|decoder] --out PNG   (one row of die faces per count)
    qcat models train die [--epochs N] [--seed S] [--out FILE.npz] [--resume]   (the die decoder)
    qcat models quality die [--decoder FILE] [--per-count N] [--seed S] [--json]

Thin layer: parsing and printing only; the work is in `models.*`. torch is imported inside the
handlers that need it, so `qcat --help` stays fast.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command, group
from installation.errors import UsageError
from installation.progress import ProgressBar
from installation.words import plural

if TYPE_CHECKING:
    from installation.cli import Context

DEFAULT_PROCEDURAL_IMAGES = 12000
DEFAULT_TRAIN_THREADS = 2
DEFAULT_QUALITY_LATENTS = 256
QUALITY_GOAL_DB = 30.0
DEFAULT_CAT_EPOCHS = 20
DEFAULT_CAT_SEED = 0
DEFAULT_CAT_SCALE = 2
# The judge must read at least this share of fresh faces, greyscale and 1-bit (percent).
JUDGE_GOAL_PERCENT = 99.5
DEFAULT_JUDGE_PER_COUNT = 100
DEFAULT_JUDGE_OUT = "die-judge.npz"
DEFAULT_ATTRIBUTES_OUT = "cat-attributes.npz"
DEFAULT_VARIETY_CATS = 1000
DEFAULT_DIE_OUT = "die-decoder.npz"
DIE_SHEET_PER_ROW = 12
DIE_SHEET_SCALE = 4


def register(sub: Any) -> None:
    _, cmds = group(sub, "models", "make, train, quantize and measure the cat DCGAN")

    p = command(cmds, "init", "make an untrained cat model checkpoint (tests, benchmarks)", _init)
    p.add_argument("model", choices=["cat"])
    p.add_argument("--size", choices=["demo", "full"], default="demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="CKPT")

    p = command(cmds, "train", "train the cat DCGAN (resumes from --out if it exists), the "
                "die judge (a few minutes, from scratch) or the die decoder", _train)
    p.add_argument("model", choices=["cat", "judge", "die", "attributes"])
    p.add_argument("--data", default="procedural", metavar="DIR|procedural",
                   help="a folder of face crops, or 'procedural' (the built-in cartoon cats)")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="procedural images to draw (or the most images to load from DIR); "
                        "for judge, the die faces to train on; for attributes, the cats")
    p.add_argument("--size", choices=["demo", "full"], default="demo")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"default {DEFAULT_CAT_EPOCHS} for cat, 10 for judge, 40 for die")
    p.add_argument("--seed", type=int, default=None,
                   help="default 0 for cat, 1 for judge, 0 for die")
    p.add_argument("--data-seed", type=int, default=None,
                   help="die: the seed of the training faces (default 11)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", metavar="CKPT|FILE.npz",
                   help=f"needed for cat; for judge default ./{DEFAULT_JUDGE_OUT}, for die "
                        f"./{DEFAULT_DIE_OUT} (its checkpoint is FILE.ckpt beside it)")
    p.add_argument("--resume", action="store_true",
                   help="die: go on from the checkpoint beside --out (written every epoch)")
    p.add_argument("--samples", metavar="DIR",
                   help="folder for one sample grid PNG per epoch (default: next to CKPT)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=DEFAULT_TRAIN_THREADS,
                   help="CPU threads for torch")
    p.add_argument("--fresh", action="store_true", help="start over even if CKPT exists")
    p.add_argument("--r1-gamma", type=float, default=None, metavar="GAMMA",
                   help="cat: R1 gradient penalty weight on real images (default 0.1; 0: none; "
                        "a resumed run keeps its checkpoint's, like --seed)")
    p.add_argument("--ema", type=float, default=None, metavar="IMAGES",
                   help="cat: half-life in images of the generator's moving average, which is "
                        "what the checkpoint exports (default 10000; 0: no average)")
    p.add_argument("--hf-penalty", type=float, default=None, metavar="WEIGHT",
                   help="cat: weight of the generator's penalty on 2-pixel checkerboard "
                        "patterns (default 100; 0: none)")
    p.add_argument("--augment", default=None, metavar="POLICY",
                   help="cat: DiffAugment for the discriminator, some of color,translation,"
                        "cutout (default all three; 'none' for none)")

    p = command(cmds, "export", "write the generator-only checkpoint (small; what the torch "
                "engine and `quality` load)", _export)
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--out", required=True, metavar="PT")

    p = command(cmds, "samples", "render a grid of int8 cats (numpy reference), or of die "
                "faces (training data or the decoder's), as a PNG", _samples)
    p.add_argument("model", nargs="?", choices=["cat", "die"], default="cat")
    p.add_argument("--weights", metavar="FILE",
                   help="weight image (default: models.weights, else the shipped demo)")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("-n", type=int, default=64, help="cats in the grid")
    p.add_argument("--source", choices=["data", "decoder"], default=None,
                   help="die: rendered training faces (default), or faces the decoder generates; "
                        "cat: 'data' draws procedural training cats instead of int8 ones")
    p.add_argument("--decoder", metavar="FILE",
                   help="die decoder (.npz) for --source decoder; default: the shipped one")
    p.add_argument("--seed", type=int, default=0, help="seed of the entropy bytes (of the "
                   "die faces)")
    p.add_argument("--scale", type=int, default=None,
                   help=f"enlarge each pixel this many times (default {DEFAULT_CAT_SCALE} for "
                        f"cat, {DIE_SHEET_SCALE} for die)")

    p = command(cmds, "quantize", "quantize a checkpoint into a .qcw weight image", _quantize)
    _add_quantize_args(p)

    p = command(cmds, "quality", "PSNR/SSIM of the int8 cat against the float model, the "
                "die judge's accuracy on fresh faces, or the die decoder's legibility and "
                "variety", _quality)
    p.add_argument("model", nargs="?", choices=["cat", "judge", "die"], default="cat")
    p.add_argument("--weights", metavar="FILE",
                   help="weight image (default: models.weights, else the shipped demo)")
    p.add_argument("--state", metavar="CKPT",
                   help="float checkpoint (default: the one shipped next to the demo image)")
    p.add_argument("--latents", type=int, default=DEFAULT_QUALITY_LATENTS, metavar="N")
    p.add_argument("--seed", type=int, default=None,
                   help="default 0 for cat; for judge a seed no training used")
    p.add_argument("--goal", type=float, default=None, metavar="DB|PERCENT",
                   help=f"exit 1 when the mean PSNR is below this (default {QUALITY_GOAL_DB} dB), "
                        f"or the judge's accuracy (default {JUDGE_GOAL_PERCENT} %%)")
    p.add_argument("--judge", metavar="FILE", help="judge file (default: the shipped one)")
    p.add_argument("--per-count", type=int, default=None, metavar="N",
                   help=f"fresh faces per pip count the judge reads (default "
                        f"{DEFAULT_JUDGE_PER_COUNT} for judge, 1000 for die)")
    p.add_argument("--decoder", metavar="FILE",
                   help="die decoder (.npz); default: the shipped one")
    p.add_argument("-n", "--n", type=int, default=DEFAULT_VARIETY_CATS, dest="n",
                   help="cat: generated and data cats compared for variety (default "
                        f"{DEFAULT_VARIETY_CATS}; 0 skips the variety measures); exit 1 also "
                        "when the near-twin rate is over 5 points above the data's or an "
                        "attribute value is never generated")
    p.add_argument("--classifier", metavar="FILE",
                   help="cat: attribute classifier (.npz); default: the shipped one")
    p.add_argument("--data-seed", type=int, default=None, metavar="S",
                   help="cat: seed of the procedural data cats (default 0, the training seed)")
    add_json(p)


def _add_quantize_args(p: Any) -> None:
    from installation.commands.sd import add_weight_build_args

    add_weight_build_args(p)


def canonical(*words: Any) -> str:
    """The command as a user would type it again (provenance), from the parsed arguments."""
    return "qcat " + " ".join(shlex.quote(str(w)) for w in words)


def _init(ctx: Context, args: argparse.Namespace) -> int:
    from models import cat

    g, d = cat.make_models(args.size, args.seed)
    ckpt = cat.new_checkpoint(args.size, args.seed, g, d, command=canonical(
        "models", "init", "cat", "--size", args.size, "--seed", args.seed, "--out", args.out))
    cat.save_checkpoint(Path(args.out), ckpt)
    ctx.out(f"wrote untrained {args.size} cat model ({g.conv_weight_count():,} conv weights) "
            f"to {args.out}")
    return 0


def _train(ctx: Context, args: argparse.Namespace) -> int:
    from installation.engines import torch_models

    if args.model == "judge":
        return _train_judge(ctx, args)
    if args.model == "die":
        return _train_die(ctx, args)
    if args.model == "attributes":
        return _train_attributes(ctx, args)
    if args.out is None:
        raise UsageError("qcat models train cat needs --out CKPT (the checkpoint to write)")
    args.epochs = DEFAULT_CAT_EPOCHS if args.epochs is None else args.epochs
    args.seed = DEFAULT_CAT_SEED if args.seed is None else args.seed
    args.images = DEFAULT_PROCEDURAL_IMAGES if args.images is None else args.images
    if args.epochs < 1 or args.batch_size < 1 or args.images < 1:
        raise UsageError("--epochs, --batch-size and --images must be at least 1")
    torch_models().set_threads(args.threads)
    from models import data, train
    defaults = train.Recipe()
    augment = defaults.augment if args.augment is None else args.augment
    recipe = train.Recipe(
        r1_gamma=defaults.r1_gamma if args.r1_gamma is None else args.r1_gamma,
        ema_halflife=defaults.ema_halflife if args.ema is None else args.ema,
        hf_penalty=defaults.hf_penalty if args.hf_penalty is None else args.hf_penalty,
        augment="" if augment == "none" else augment)
    out = Path(args.out)
    with ProgressBar("data") as bar:
        if args.data == "procedural":
            images = data.procedural(args.images, args.seed, progress=bar)
            desc = f"procedural cats: {args.images} images, seed {args.seed}"
        else:
            images = data.load_folder(Path(args.data), limit=args.images, progress=bar)
            desc = f"folder {args.data}: {len(images)} images"
    samples = Path(args.samples) if args.samples else out.with_suffix("").with_name(
        out.stem + "-samples")
    with ProgressBar("training") as bar:
        ckpt = train.train(out, images, size=args.size, epochs=args.epochs, seed=args.seed,
                           batch_size=args.batch_size, resume=not args.fresh,
                           samples_dir=samples, device=args.device, recipe=recipe,
                           command=canonical("models", "train", "cat", "--data", args.data,
                                             "--images", args.images, "--size", args.size,
                                             "--epochs", args.epochs, "--seed", args.seed,
                                             "--batch-size", args.batch_size,
                                             "--r1-gamma", recipe.r1_gamma,
                                             "--ema", f"{recipe.ema_halflife:g}",
                                             "--hf-penalty", f"{recipe.hf_penalty:g}",
                                             "--augment", augment, "--out", args.out),
                           data_desc=desc, progress=bar)
    last = ckpt["history"][-1] if ckpt["history"] else {}
    ctx.out(f"trained {args.size} cat model to epoch {ckpt['epoch']}: "
            f"loss D {last.get('loss_d')}, G {last.get('loss_g')}, checkerboard "
            f"{last.get('checkerboard')} grey levels; checkpoint {out}; "
            f"samples in {samples}")
    return 0


def _train_judge(ctx: Context, args: argparse.Namespace) -> int:
    from installation.engines import torch_models
    from installation.files import check_target

    epochs, seed, faces = args.epochs, args.seed, args.images
    if (epochs is not None and epochs < 1) or (faces is not None and faces < 6):
        raise UsageError("--epochs must be at least 1 and --images at least 6 (one face per count)")
    out = Path(args.out or DEFAULT_JUDGE_OUT)
    check_target(out, "--out")
    torch_models().set_threads(args.threads)  # says so in one sentence when torch is missing
    from models import die_judge_train

    epochs = die_judge_train.DEFAULT_EPOCHS if epochs is None else epochs
    seed = die_judge_train.DEFAULT_SEED if seed is None else seed
    faces = die_judge_train.DEFAULT_TRAIN_FACES if faces is None else faces
    with ProgressBar("training judge") as bar:
        judge, _ = die_judge_train.train(
            epochs=epochs, seed=seed, faces=faces, progress=bar,
            command=canonical("models", "train", "judge", "--epochs", epochs, "--seed", seed,
                              "--images", faces, "--out", out))
    judge.save(out)
    p = judge.provenance
    ctx.out(f"trained the die judge ({p['parameters']:,} parameters, {epochs} epochs, "
            f"{p['train_seconds']:.0f} s) to {out}: validation accuracy "
            f"{100 * p['accuracy_grey']:.2f} % greyscale, {100 * p['accuracy_one_bit']:.2f} % 1-bit")
    return 0


def _train_attributes(ctx: Context, args: argparse.Namespace) -> int:
    from installation.engines import torch_models
    from installation.files import check_target

    if (args.epochs is not None and args.epochs < 1) or (args.images is not None
                                                         and args.images < 2):
        raise UsageError("--epochs must be at least 1 and --images at least 2")
    out = check_target(Path(args.out or DEFAULT_ATTRIBUTES_OUT), "--out")
    torch_models().set_threads(args.threads)  # says so in one sentence when torch is missing
    from models import attr_train

    epochs = attr_train.DEFAULT_EPOCHS if args.epochs is None else args.epochs
    seed = attr_train.DEFAULT_SEED if args.seed is None else args.seed
    cats = attr_train.DEFAULT_TRAIN_CATS if args.images is None else args.images
    with ProgressBar("training attribute classifier") as bar:
        classifier, _ = attr_train.train(
            epochs=epochs, seed=seed, cats=cats, progress=bar,
            command=canonical("models", "train", "attributes", "--epochs", epochs, "--seed",
                              seed, "--images", cats, "--out", out))
    classifier.save(out)
    p = classifier.provenance
    worst = min(p["accuracy"], key=p["accuracy"].get)
    ctx.out(f"trained the cat attribute classifier ({p['parameters']:,} parameters, {epochs} "
            f"epochs, {p['train_seconds']:.0f} s) to {out}: validation accuracy from "
            f"{100 * p['accuracy'][worst]:.1f} % ({worst}) to "
            f"{100 * max(p['accuracy'].values()):.1f} %")
    return 0


def _train_die(ctx: Context, args: argparse.Namespace) -> int:
    from installation.engines import torch_models
    from installation.files import check_target

    if (args.epochs is not None and args.epochs < 1) or (args.images is not None
                                                         and args.images < 6):
        raise UsageError("--epochs must be at least 1 and --images at least 6 (one face per count)")
    out = check_target(Path(args.out or DEFAULT_DIE_OUT), "--out")
    checkpoint = out.with_suffix(".ckpt")
    if args.resume and not checkpoint.exists():
        raise UsageError(f"--resume: there is no checkpoint {checkpoint} to go on from",
                         hint="train without --resume to start one")
    torch_models().set_threads(args.threads)  # says so in one sentence when torch is missing
    from models import die_train

    d = die_train.Settings()
    settings = die_train.Settings(
        epochs=d.epochs if args.epochs is None else args.epochs,
        seed=d.seed if args.seed is None else args.seed,
        data_seed=d.data_seed if args.data_seed is None else args.data_seed,
        faces=d.faces if args.images is None else args.images)
    command_line = canonical("models", "train", "die", "--epochs", settings.epochs, "--seed",
                             settings.seed, "--data-seed", settings.data_seed, "--images",
                             settings.faces, "--threads", args.threads, "--out", out)
    with ProgressBar("training die decoder") as bar:
        trained = die_train.train(settings, checkpoint=checkpoint, resume=args.resume,
                                  command=command_line, progress=bar)
    from models import die_reference

    die_reference.save(trained.model, out)
    p = trained.model.provenance
    ctx.out(f"trained the die decoder ({trained.model.n_weights():,} 4-bit weights, "
            f"{settings.epochs} epochs, {p['train_seconds']} s) to {out} (checkpoint "
            f"{checkpoint}): legibility min {100 * float(p['legibility_min']):.2f} %, distinct "
            f"min {100 * float(p['distinct_min']):.2f} % over "
            f"{p['quality_latents_per_count']} latents per count")
    return 0


def _export(ctx: Context, args: argparse.Namespace) -> int:
    from models import cat

    ckpt = cat.load_checkpoint(Path(args.checkpoint))
    # "generator" is the moving average in a checkpoint `train cat` wrote: the one that ships
    slim = {k: ckpt.get(k) for k in ("size", "nz", "ngf", "seed", "epoch", "batch", "step",
                                     "history", "command", "commands", "data", "recipe",
                                     "settings", "generator")}
    slim["generator"] = {k: v.detach().clone() for k, v in ckpt["generator"].items()}
    cat.generator_from(slim)  # refuse to export something that does not load
    cat.save_checkpoint(Path(args.out), slim)
    ctx.out(f"wrote the generator of {args.checkpoint} (epoch {ckpt.get('epoch')}) to {args.out}")
    return 0


def _samples(ctx: Context, args: argparse.Namespace) -> int:
    import numpy as np

    from models import data, quality, reference, weightimage

    if args.model == "die":
        return _samples_die(ctx, args)
    if args.source == "decoder":
        raise UsageError("--source decoder is for die; a cat's grid is --source data or the "
                         "int8 model's (no --source)")
    if args.source == "data":
        return _samples_cat_data(ctx, args)
    args.scale = DEFAULT_CAT_SCALE if args.scale is None else args.scale
    if args.n < 1 or args.scale < 1:
        raise UsageError("-n and --scale must be at least 1")
    weights = ctx.workspace.weights_path(args.weights)
    img = weightimage.load(weights)
    z = quality.entropy_latents(args.n, args.seed)
    last = reference.run_batch(img, reference.quantize_latent(z, img))[-1]
    rgb = np.stack([reference.to_rgb(x) for x in last])
    cols = int(np.ceil(np.sqrt(args.n)))
    data.save_png(Path(args.out), data.grid(rgb, cols=cols), scale=args.scale)
    ctx.out(f"wrote {args.n} int8 cats from {weights} to {args.out}")
    return 0


def _samples_cat_data(ctx: Context, args: argparse.Namespace) -> int:
    import numpy as np

    from models import data

    scale = DEFAULT_CAT_SCALE if args.scale is None else args.scale
    if args.n < 1 or scale < 1:
        raise UsageError("-n and --scale must be at least 1")
    cats = data.procedural(args.n, args.seed)
    data.save_png(Path(args.out), data.grid(cats, cols=int(np.ceil(np.sqrt(args.n)))),
                  scale=scale)
    ctx.out(f"wrote {args.n} procedural cats (seed {args.seed}) to {args.out}")
    return 0


def _samples_die(ctx: Context, args: argparse.Namespace) -> int:
    import numpy as np

    from models import data, dice

    scale = DIE_SHEET_SCALE if args.scale is None else args.scale
    if scale < 1:
        raise UsageError("--scale must be at least 1")
    if args.source == "decoder":
        from models import die_quality, die_reference

        path = Path(args.decoder) if args.decoder else die_reference.SHIPPED_DECODER
        sheet = die_quality.sample_sheet(die_reference.load(path), args.seed,
                                         per_row=DIE_SHEET_PER_ROW)
        data.save_png(Path(args.out), np.repeat(sheet[:, :, None], 3, axis=2), scale=scale)
        ctx.out(f"wrote {len(dice.PIP_COUNTS)} rows of {DIE_SHEET_PER_ROW} generated die faces "
                f"(decoder {path}, entropy seed {args.seed}) to {args.out}")
        return 0
    if args.decoder:
        raise UsageError("--decoder is for --source decoder")
    sheet = dice.sample_sheet(args.seed, per_row=DIE_SHEET_PER_ROW)
    data.save_png(Path(args.out), np.repeat(sheet[:, :, None], 3, axis=2), scale=scale)
    ctx.out(f"wrote {len(dice.PIP_COUNTS)} rows of {DIE_SHEET_PER_ROW} die faces (seed "
            f"{args.seed}) to {args.out}")
    return 0


def _quantize(ctx: Context, args: argparse.Namespace) -> int:
    from installation.commands.sd import build_weights

    return build_weights(ctx, args)


def _quality(ctx: Context, args: argparse.Namespace) -> int:
    from installation.engines import torch_models

    if args.model == "judge":
        return _quality_judge(ctx, args)
    if args.model == "die":
        return _quality_die(ctx, args)
    args.seed = DEFAULT_CAT_SEED if args.seed is None else args.seed
    args.goal = QUALITY_GOAL_DB if args.goal is None else args.goal
    if args.latents < 1:  # checked before torch loads: a typo costs no start-up time
        raise UsageError(f"--latents must be at least 1, not {args.latents}",
                         hint=f"the default is {DEFAULT_QUALITY_LATENTS}")
    if args.n == 1 or args.n < 0:
        raise UsageError(f"-n must be at least 2 (or 0 to skip the variety measures), not "
                         f"{args.n}", hint=f"the default is {DEFAULT_VARIETY_CATS}")
    from models import variety
    classifier = variety.AttributeClassifier.load(args.classifier) if args.n else None

    torch_models().set_threads(1)
    from models import cat, quality, weightimage
    weights = ctx.workspace.weights_path(args.weights)
    img = weightimage.load(weights)
    state = Path(args.state) if args.state else None
    if state is None:
        if weights.resolve() != weightimage.SHIPPED_DEMO.resolve():
            raise UsageError("--state is needed to measure a weight image other than the "
                             "shipped demo")
        state = weightimage.SHIPPED_DEMO_STATE
    g = cat.generator_from(cat.load_checkpoint(state))
    with ProgressBar("quality", enabled=not args.json) as bar:
        report = quality.measure(img, g, n=args.latents, seed=args.seed, progress=bar)
    if classifier is not None:
        data_seed = variety.DEFAULT_DATA_SEED if args.data_seed is None else args.data_seed
        with ProgressBar("variety", enabled=not args.json) as bar:
            report["variety"] = variety.measure(img, classifier, n=args.n, seed=args.seed,
                                                data_seed=data_seed, progress=bar)
        report["variety"]["classifier"] = str(args.classifier or variety.SHIPPED_CLASSIFIER)
    report["weights"], report["state"], report["goal_db"] = str(weights), str(state), args.goal
    variety_ok = report["variety"]["ok"] if "variety" in report else True
    report["ok"] = report["psnr_db_mean"] >= args.goal and variety_ok
    if args.json:
        ctx.emit_json(report)
    else:
        ctx.out(f"int8 vs float over {plural(report['latents'], 'latent')}: PSNR mean "
                f"{report['psnr_db_mean']:.2f} dB (min {report['psnr_db_min']:.2f}), "
                f"SSIM mean {report['ssim_mean']:.4f}; goal {args.goal} dB: "
                f"{'met' if report['psnr_db_mean'] >= args.goal else 'NOT met'}")
        if "variety" in report:
            for line in _variety_lines(report["variety"]):
                ctx.out(line)
    return 0 if report["ok"] else 1


def _variety_lines(v: dict[str, Any]) -> list[str]:
    """The variety report as a few lines (the data's figures are the reference)."""
    lines = [f"variety of {v['generated']} int8 cats against {v['data']} data cats "
             f"(data seed {v['data_seed']}):",
             f"  near twins (RMS < {v['near_twin_rms']}): generated "
             f"{100 * v['near_twin_rate_generated']:.1f} %, data "
             f"{100 * v['near_twin_rate_data']:.1f} %",
             f"  Frechet distance (classifier features): {v['fid']:.2f} (data half against "
             f"half: {v['fid_data_halves']:.2f})",
             "  attribute    TV distance  accuracy  values never generated"]
    for name, a in v["attributes"].items():
        acc = v["classifier_accuracy"].get(name)
        acc_text = f"{100 * acc:6.1f} %" if acc is not None else "      ?"
        missing = ", ".join(a["missing"]) or "-"
        lines.append(f"  {name:<12} {a['tv_distance']:>11.3f}  {acc_text}  {missing}")
    lines.append(f"  goals (near twins at most {100 * v['goals']['near_twin_margin']:.0f} points "
                 f"above the data's, no value never generated): "
                 f"{'met' if v['ok'] else 'NOT met'}")
    return lines


def _quality_judge(ctx: Context, args: argparse.Namespace) -> int:
    from models import die_judge

    goal = JUDGE_GOAL_PERCENT if args.goal is None else args.goal
    seed = die_judge.DEFAULT_EVAL_SEED if args.seed is None else args.seed
    per_count = DEFAULT_JUDGE_PER_COUNT if args.per_count is None else args.per_count
    path = Path(args.judge) if args.judge else die_judge.SHIPPED_JUDGE
    judge = die_judge.DieJudge.load(path)
    with ProgressBar("judging") as bar:
        report = die_judge.evaluate(judge, per_count, seed, progress=bar)
    report["judge"], report["goal_percent"] = str(path), goal
    report["ok"] = min(report["grey"]["overall"], report["one_bit"]["overall"]) * 100 >= goal
    if args.json:
        ctx.emit_json(report)
        return 0 if report["ok"] else 1
    ctx.out(f"die judge {path} on {plural(report['faces'], 'fresh face')} (seed {seed}):")
    ctx.out("pips   " + " ".join(f"{k:>7}" for k in report["grey"]["per_count"]) + "   overall")
    for kind, label in (("grey", "grey "), ("one_bit", "1-bit")):
        row = report[kind]
        ctx.out(f"{label}  " + " ".join(f"{100 * v:6.2f}%" for v in row["per_count"].values())
                + f"   {100 * row['overall']:6.2f}%")
    ctx.out(f"goal {goal} % on both: {'met' if report['ok'] else 'NOT met'}")
    return 0 if report["ok"] else 1


def _quality_die(ctx: Context, args: argparse.Namespace) -> int:
    from models import die_quality, die_reference

    if args.goal is not None:
        raise UsageError("--goal is not for die: its goals are fixed (legibility "
                         f"{die_quality.LEGIBILITY_GOAL}, distinct fraction "
                         f"{die_quality.DISTINCT_GOAL} for every count)")
    per_count = die_quality.DEFAULT_PER_COUNT if args.per_count is None else args.per_count
    if per_count < 1:
        raise UsageError(f"--per-count must be at least 1, not {per_count}")
    seed = die_quality.DEFAULT_SEED if args.seed is None else args.seed
    decoder = Path(args.decoder) if args.decoder else die_reference.SHIPPED_DECODER
    judge = Path(args.judge) if args.judge else None
    with ProgressBar("die quality", enabled=not args.json) as bar:
        report = die_quality.measure_file(decoder, judge, per_count, seed, progress=bar)
    if args.json:
        ctx.emit_json(report)
        return 0 if report["ok"] else 1
    ctx.out(f"die decoder {decoder}: {plural(report['faces'], 'face')} ({per_count} latents per "
            f"count, entropy seed {seed}), read by the {report['judge']} judge:")
    for line in die_quality.summary_table(report):
        ctx.out(line)
    ctx.out(f"goals: legibility >= {100 * die_quality.LEGIBILITY_GOAL:.0f} % and distinct >= "
            f"{100 * die_quality.DISTINCT_GOAL:.0f} % for every count: "
            f"{'met' if report['ok'] else 'NOT met'}")
    return 0 if report["ok"] else 1
