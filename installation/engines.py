"""The one place the appliance renders a cat: `render(engine, weights, latent_q)`.

Engines:
    "c"      the cat unit's C engine through its ctypes binding (firmware.cat_engine), the same
             source the unit runs; streams the weight image slice by slice, CRC-checked.
    "numpy"  the golden integer reference (models.reference) on the decoded weight image.
    "torch"  the *float* model (for comparison only: it is not bit-exact and never archived):
             the checkpoint given, or the shipped `models/shipped/cat-demo.pt`, fed the
             dequantized latent. torch is imported here lazily, only when this engine is used.

"c" and "numpy" agree byte for byte on every layer (promise F1); the exhibit code and the
simulators call this module, and `compare()` (what `qcat engine compare` and the dashboard run)
proves it, naming the first difference with `models.reference.first_mismatch`. Loaded weight images and opened C
engines are cached per (path, size, mtime) so rendering many exhibits neither re-reads nor
re-verifies the file each time; a changed file is loaded afresh.

Must never import torch at module level (the kiosk starts without it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from installation.errors import InputError, ToolMissing
from installation.progress import ProgressCallback
from installation.reading import explain
from installation.words import plural

if TYPE_CHECKING:
    from models.reference import Mismatch

ENGINES = ("c", "numpy", "torch")
# Distinct models (path + version) kept loaded per engine kind; a gallery uses one or two.
CACHE_ENTRIES = 4
# The last layer's int8 output is tanh * 128 (scale 1/128, zero point 0); pixel = q + 128.
TANH_SCALE = 128


@dataclass
class Render:
    """rgb: uint8 (64, 64, 3); layers: every layer's int8 output (C, H, W), when asked for and
    the engine is an integer one (None for "torch")."""

    rgb: np.ndarray
    layers: list[np.ndarray] | None
    engine: str


class _Cache:
    """A small LRU of loaded things keyed by (kind, resolved path, size, mtime)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, kind: str, path: Path, make: Callable[[Path], Any]) -> Any:
        key = (kind, *_file_key(path))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make(path)  # outside the lock: loading the full model takes a while
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                _, old = self._items.popitem(last=False)
                close = getattr(old, "close", None)
                if close:
                    close()
        return value

    def clear(self) -> None:
        with self._lock:
            for value in self._items.values():
                close = getattr(value, "close", None)
                if close:
                    close()
            self._items.clear()


_cache = _Cache(CACHE_ENTRIES)


def _file_key(path: Path) -> tuple[str, int, int]:
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise explain(exc, path, "weight image", hint="build one with `qcat sd weights build`") \
            from None
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def clear_cache() -> None:
    """Forget every loaded model and close the C engines (tests; after rewriting a file)."""
    _cache.clear()


def weight_image(path: Path) -> Any:
    """The decoded, fully verified weight image (models.weightimage.WeightImage), cached."""
    from models import weightimage

    return _cache.get("image", Path(path), weightimage.load)


def c_engine(path: Path) -> Any:
    """An opened C engine (firmware.cat_engine.CatEngine) for `path`, cached."""
    from firmware.cat_engine import CatEngine

    return _cache.get("c", Path(path), CatEngine)


def torch_models() -> Any:
    """`models.cat`, the one module that brings torch in, imported on demand; a clear error
    when torch is not installed. The appliance never imports torch itself."""
    try:
        from models import cat
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ToolMissing("this needs PyTorch, which is not installed",
                          hint="pip install 'qcat[train]' (torch is only for training, "
                               "quantization and comparison; the c and numpy engines need none)"
                          ) from None
    return cat


def torch_generator(checkpoint: Path | None = None) -> Any:
    """The float generator of a checkpoint (default: the shipped demo's), cached."""
    from models.weightimage import SHIPPED_DEMO_STATE

    def make(path: Path) -> Any:
        cat = torch_models()
        return cat.generator_from(cat.load_checkpoint(path))

    return _cache.get("torch", Path(checkpoint or SHIPPED_DEMO_STATE), make)


def _check_latent(latent_q: np.ndarray, nz: int) -> np.ndarray:
    latent = np.asarray(latent_q)
    if latent.shape != (nz,) or latent.dtype != np.int8:
        raise InputError(f"the latent must be {nz} int8 values, got {latent.dtype} {latent.shape}")
    return latent


def render(engine: str, weights_path: Path | str, latent_q: np.ndarray, layers: bool = False,
           *, checkpoint: Path | None = None,
           progress: ProgressCallback | None = None) -> Render:
    """One cat from an int8 latent with the named engine (see the module docstring)."""
    path = Path(weights_path)
    if engine == "c":
        eng = c_engine(path)
        latent = _check_latent(latent_q, eng.nz)
        out = eng.generate(latent, layers=layers, progress=progress)
        return Render(out.rgb, out.layers, "c")
    if engine == "numpy":
        from models import reference

        img = weight_image(path)
        latent = _check_latent(latent_q, img.nz)
        per_layer = reference.run(img, latent)
        return Render(reference.to_rgb(per_layer[-1]), per_layer if layers else None, "numpy")
    if engine == "torch":
        img = weight_image(path)
        latent = _check_latent(latent_q, img.nz)
        return Render(_torch_rgb(torch_generator(checkpoint), img, latent), None, "torch")
    raise InputError(f"unknown engine {engine!r}", hint=f"use one of {', '.join(ENGINES)}")


def _torch_rgb(generator: Any, img: Any, latent: np.ndarray) -> np.ndarray:
    """Float render of the dequantized latent, mapped to pixels as the int8 path does:
    pixel = clamp(round(128 * tanh), -128, 127) + 128."""
    from models import reference

    if (generator.nz, generator.ngf) != (img.nz, img.ngf):
        raise InputError(f"the float checkpoint (nz {generator.nz}, ngf {generator.ngf}) is not "
                         f"the weight image's model (nz {img.nz}, ngf {img.ngf})",
                         hint="pass the checkpoint this weight image was quantized from "
                              "with --checkpoint")
    y = torch_models().generate_float(generator, reference.dequantize_latent(latent, img))
    q = reference.round_half_away(y * TANH_SCALE)
    return (np.clip(q, -128, 127) + 128).astype(np.uint8).transpose(1, 2, 0).copy()


# --------------------------------------------------------------------------------------------
# C engine vs reference, every layer (what `qcat engine compare` and the dashboard run)


@dataclass(frozen=True)
class LatentMismatch:
    """One latent on which the C engine and the reference differ. `where` is the first layer
    difference; None when every layer is equal but the RGB888 image still differs (a fault in
    the C engine's last step, pixel = q + 128)."""

    latent: int
    where: Mismatch | None

    def describe(self) -> str:
        detail = (self.where.describe("C", "reference") if self.where is not None
                  else "every layer equal, but the RGB image differs")
        return f"latent {self.latent}, {detail}"

    def as_dict(self) -> dict[str, Any]:
        """--json: layer (from 1, or "rgb"), channel, pixel [y, x], c, reference, differ, of."""
        if self.where is None:
            return {"latent": self.latent, "layer": "rgb"}
        w = self.where
        return {"latent": self.latent, "layer": w.layer, "channel": w.channel,
                "pixel": list(w.pixel), "c": w.ours, "reference": w.theirs,
                "differ": w.differ, "of": w.of}


@dataclass(frozen=True)
class CompareReport:
    """The outcome of `compare`: identical, or every latent that differed (first first)."""

    weights: Path
    model_size: str
    latents: int
    seed: int
    layers: int
    mismatches: tuple[LatentMismatch, ...]

    @property
    def identical(self) -> bool:
        return not self.mismatches

    @property
    def first(self) -> LatentMismatch | None:
        return self.mismatches[0] if self.mismatches else None

    def describe(self) -> str:
        """One sentence for either outcome (the CLI prints it, the dashboard shows it)."""
        if self.first is None:
            return (f"identical: {plural(self.latents, 'latent')} x {self.layers} layers of the "
                    f"{self.model_size} model, byte for byte (C engine vs numpy reference)")
        return (f"C engine differs from the reference on {len(self.mismatches)} of "
                f"{plural(self.latents, 'latent')}; first: {self.first.describe()}")

    def as_dict(self) -> dict[str, Any]:
        return {"weights": str(self.weights), "model_size": self.model_size,
                "latents": self.latents, "seed": self.seed, "layers": self.layers,
                "identical": self.identical, "mismatched_latents": len(self.mismatches),
                "first_mismatch": self.first.as_dict() if self.first else None}


def compare_latents(weights_path: Path | str, n: int, seed: int) -> np.ndarray:
    """n int8 latents (n, nz) from seeded pseudo-random exhibit entropy (DESIGN §4), so a
    comparison covers the latents exhibits really produce and is repeatable from its seed."""
    from models import reference
    from quantum.latent import LATENT_BYTES, latent_from_entropy

    img = weight_image(Path(weights_path))
    rng = np.random.default_rng(seed)
    return np.stack([reference.quantize_latent(latent_from_entropy(rng.bytes(LATENT_BYTES)), img)
                     for _ in range(n)])


def compare(weights_path: Path | str, latents: int, seed: int,
            progress: ProgressCallback | None = None) -> CompareReport:
    """Render `latents` latents (from `seed`) with the C engine and the numpy reference and
    compare every layer's int8 output and the image byte for byte (promise F1).

    A difference is a result, not an exception: the report lists every latent that differed
    with its first layer difference. A bad weight image raises its FormatError/EngineError.
    """
    from models import reference

    if latents < 1:
        raise InputError(f"a comparison needs at least 1 latent, not {latents}")
    path = Path(weights_path)
    img = weight_image(path)
    eng = c_engine(path)
    batch = compare_latents(path, latents, seed)
    golden = reference.run_batch(img, batch)
    found: list[LatentMismatch] = []
    for i, latent in enumerate(batch):
        got = eng.generate(latent, layers=True)
        where = reference.first_mismatch(got.layers, [layer[i] for layer in golden])
        if where is not None or not np.array_equal(got.rgb, reference.to_rgb(golden[-1][i])):
            found.append(LatentMismatch(i, where))
        if progress is not None:
            progress(i + 1, latents, f"{len(found)} differ")
    return CompareReport(weights=path, model_size=img.model_size, latents=latents, seed=seed,
                         layers=len(img.layers), mismatches=tuple(found))


# --------------------------------------------------------------------------------------------
# The die decoder: its C engine vs its integer reference (`qcat engine compare die`)


def die_model(path: Path) -> Any:
    """The checked die decoder (models.die_reference.DieModel) of a `.npz`, cached: the
    reference's copy (a test may alter it to prove a difference is found)."""
    from models import die_reference

    return _cache.get("die", Path(path), die_reference.load)


def die_c_engine(path: Path) -> Any:
    """The die's C engine (firmware.die_engine.DieEngine) holding its own copy of the decoder's
    arrays, as the unit holds them compiled into flash; cached."""
    from firmware.die_engine import DieEngine
    from models import die_reference

    return _cache.get("die-c", Path(path),
                      lambda p: DieEngine(*die_reference.load(p).engine_arrays()))


@dataclass(frozen=True)
class DieMismatch:
    """The first difference on one face: latent `latent` rolled with `pips`; `where.layer`
    counts from 1 (5 is the face), `where.pixel` is (row, col)."""

    latent: int
    pips: int
    where: Mismatch

    def describe(self) -> str:
        w = self.where
        y, x = w.pixel
        return (f"latent {self.latent} with {plural(self.pips, 'pip')}, layer {w.layer}, "
                f"channel {w.channel}, row {y}, col {x}: C {w.ours}, reference {w.theirs}; "
                f"{w.differ:,} of {w.of:,} differ")

    def as_dict(self) -> dict[str, Any]:
        w = self.where
        return {"latent": self.latent, "pips": self.pips, "layer": w.layer,
                "channel": w.channel, "row": w.pixel[0], "col": w.pixel[1], "c": w.ours,
                "reference": w.theirs, "differ": w.differ, "of": w.of}


@dataclass(frozen=True)
class DieCompareReport:
    """The outcome of `compare_die`: every face (latent x pip count) that differed, first first."""

    decoder: Path
    latents: int
    seed: int
    layers: int
    mismatches: tuple[DieMismatch, ...]

    @property
    def faces(self) -> int:
        return self.latents * DIE_PIPS

    @property
    def identical(self) -> bool:
        return not self.mismatches

    @property
    def first(self) -> DieMismatch | None:
        return self.mismatches[0] if self.mismatches else None

    def describe(self) -> str:
        if self.first is None:
            return (f"identical: {plural(self.latents, 'latent')} x {DIE_PIPS} pip counts x "
                    f"{self.layers} layers of the die decoder, byte for byte (C engine vs numpy "
                    "reference)")
        return (f"C engine differs from the reference on {len(self.mismatches)} of "
                f"{plural(self.faces, 'face')}; first: {self.first.describe()}")

    def as_dict(self) -> dict[str, Any]:
        return {"model": "die", "decoder": str(self.decoder), "latents": self.latents,
                "faces": self.faces, "seed": self.seed, "layers": self.layers,
                "identical": self.identical, "mismatched_faces": len(self.mismatches),
                "first_mismatch": self.first.as_dict() if self.first else None}


DIE_PIPS = 6  # models.die_reference.PIPS (not imported at module level: numpy-only callers)
DIE_BATCH = 500  # latents per C/reference batch


def die_compare_latents(n: int, seed: int) -> np.ndarray:
    """n int8 latents (n, 8), each from 8 seeded pseudo-random entropy bytes through the unit's
    table (`latent_from_bytes`), so the comparison covers the latents rolls really make."""
    from models import die_reference

    rng = np.random.default_rng(seed)
    raw = np.frombuffer(rng.bytes(n * die_reference.NZ), dtype=np.uint8)
    return die_reference.gauss_table()[raw.reshape(n, die_reference.NZ)]


def compare_die(decoder_path: Path | str, latents: int, seed: int,
                progress: ProgressCallback | None = None) -> DieCompareReport:
    """Every latent with every pip count through the die's C engine and the integer reference;
    layers 1-4 and the face compared byte for byte (and the SSD1306 pages against the
    reference's face). A difference is a result: the report names each differing face's first
    one (layer, channel, row, col, both values)."""
    from models import die_reference
    from models.reference import first_mismatch

    if latents < 1:
        raise InputError(f"a comparison needs at least 1 latent, not {latents}")
    path = Path(decoder_path)
    model = die_model(path)
    eng = die_c_engine(path)
    z_all = die_compare_latents(latents, seed)
    found: list[DieMismatch] = []
    for start in range(0, latents, DIE_BATCH):
        z = np.repeat(z_all[start:start + DIE_BATCH], DIE_PIPS, axis=0)
        pips = np.tile(np.arange(1, DIE_PIPS + 1), len(z) // DIE_PIPS)
        got_pages, got_maps = eng.run(z, pips, layers=True)
        want = die_reference.run(model, z, pips)
        got_faces = np.stack([die_reference.face_from_pages(p) for p in got_pages])[:, None]
        got = [*got_maps, got_faces]
        bad = np.zeros(len(z), dtype=bool)
        for a, b in zip(got, want, strict=True):
            bad |= (a != b).reshape(len(z), -1).any(axis=1)
        for i in np.flatnonzero(bad):
            where = first_mismatch([layer[i] for layer in got], [layer[i] for layer in want])
            assert where is not None
            found.append(DieMismatch(start + int(i) // DIE_PIPS, int(pips[i]), where))
        done = min(start + DIE_BATCH, latents)
        if progress is not None:
            progress(done, latents, f"{len(found)} faces differ")
    return DieCompareReport(decoder=path, latents=latents, seed=seed,
                            layers=die_reference.LAYERS, mismatches=tuple(found))
