"""One exhibit, end to end on the controller (DESIGN §4): bytes in; cat, mood and verdict out.

    draw 203 bytes (purpose "exhibit:<model sha>")  ── the pending record, one transaction
      -> latent z (Box-Muller) -> int8 latent -> engine render -> check against the golden render
      -> verdict code -> text (+ WAV when the clip bank is built)
      -> files (PNG 64x64, PNG 512x512, WAV), written atomically
      -> archive row                                  ── completes the exhibit

A crash anywhere between the draw and the archive row leaves a draw with no row; the next
`generate` (or `complete_pending`) renders it again from the *same* bytes, so no entropy is wasted
and the image is identical (E1, F2). Rendering is pure: same bytes + same model = same pixels.

Must never: draw entropy for an exhibit that is not then archived or left pending; label an
os-fallback exhibit as quantum; archive an image that differs from the golden reference (F1).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from installation import faults
from installation.errors import CheckFailed, DeviceError, InputError, QcatError
from installation.files import write_atomic
from installation.gallery import Exhibit, Gallery, NewExhibit
from installation.progress import ProgressCallback
from installation.words import plural
from quantum import latent as latent_mod

if TYPE_CHECKING:
    from models.weightimage import WeightImage
    from phrases.clipbank import ClipBank
    from quantum.pool import Draw, EntropyPool

log = logging.getLogger("qcat.exhibit")

PURPOSE_PREFIX = "exhibit:"
BIG_SCALE = 8  # 64x64 -> 512x512 nearest-neighbour copy for screens and the contact sheet


@dataclass
class Model:
    """A weight image loaded once per run: its path, hash and decoded contents."""

    path: Path
    sha256: str
    image: WeightImage

    @property
    def size(self) -> str:
        return str(self.image.model_size)


def load_model(path: Path) -> Model:
    from models import weightimage

    image = weightimage.load(path)
    return Model(path=path, sha256=weightimage.sha256_of(path), image=image)


FindModel = Callable[[str], "Model | None"]


def model_finder(candidates: Iterable[Path]) -> FindModel:
    """A `find_model(sha256)` over weight-image paths: each file is hashed at most once (and
    only when an earlier candidate did not match) and loaded only when it is the one asked for.
    Missing or unreadable candidates are skipped: the exhibit then says its model is missing."""
    pending: Iterator[Path] = iter(list(candidates))
    by_sha: dict[str, Path] = {}
    loaded: dict[str, Model] = {}
    unloadable: set[str] = set()

    def find(sha256: str) -> Model | None:
        if sha256 in loaded:
            return loaded[sha256]
        if sha256 in unloadable:
            return None
        while sha256 not in by_sha:
            path = next(pending, None)
            if path is None:
                return None
            if path.is_file():
                from models.weightimage import sha256_of

                try:
                    by_sha.setdefault(sha256_of(path), path)
                except OSError as exc:
                    log.warning("skipping weight image %s: %s", path, exc)
        try:
            loaded[sha256] = load_model(by_sha[sha256])
        except QcatError as exc:
            log.warning("skipping weight image %s: %s", by_sha[sha256], exc)
            unloadable.add(sha256)
            return None
        return loaded[sha256]

    return find


def purpose_for(model: Model) -> str:
    return PURPOSE_PREFIX + model.sha256


@dataclass
class Rendered:
    rgb: np.ndarray  # uint8 (64, 64, 3)
    code: latent_mod.VerdictCode
    text: str


def render(entropy: bytes, model: Model, engine: str) -> Rendered:
    """Render an exhibit from its 203 bytes; a non-reference engine is checked against the
    golden reference and a difference is refused (F1)."""
    import phrases
    from installation import engines
    from models import reference

    z, code = latent_mod.split_exhibit(entropy)
    latent_q = reference.quantize_latent(z, model.image)
    out = engines.render(engine, model.path, latent_q, layers=True)
    if engine != "numpy":
        golden = engines.render("numpy", model.path, latent_q, layers=True)
        # Integer engines are compared layer by layer, so the sentence names the first layer
        # that differs, as `qcat engine compare` would; "torch" has no integer layers.
        where = (reference.first_mismatch(out.layers, golden.layers)
                 if out.layers is not None and golden.layers is not None else None)
        if where is not None or not np.array_equal(out.rgb, golden.rgb):
            name = "C" if engine == "c" else engine
            if where is not None:
                detail = where.describe(name, "reference")
            else:
                diff = np.argwhere(out.rgb != golden.rgb)
                y, x, ch = (int(v) for v in diff[0])
                detail = (f"image pixel ({y}, {x}) channel {ch}: {name} {out.rgb[y, x, ch]}, "
                          f"reference {golden.rgb[y, x, ch]}; {len(diff):,} of "
                          f"{out.rgb.size:,} differ")
            raise CheckFailed(
                f"the {name} engine differs from the golden reference at {detail}",
                hint="run `qcat engine compare` to check the engine on many latents")
    return Rendered(rgb=out.rgb, code=code, text=phrases.verdict(code.code).text)


def png_bytes(rgb: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if scale != 1:
        img = img.resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def read_png_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def pending_draw_ids(gallery: Gallery, pool: EntropyPool) -> list[int]:
    """Exhibit draws that have no archive row yet (a crash came between the two), oldest first.
    Reads only the draws' ids and purposes, never their bytes."""
    done = gallery.archived_draw_ids()
    return [i for i, _ in pool.draw_purposes(PURPOSE_PREFIX) if i not in done]


@dataclass(frozen=True)
class UnitJob:
    """One pending exhibit as a cat unit's job; `draw.id` is the exhibit id on the wire."""

    draw: Draw
    model: Model
    latent: np.ndarray  # (nz,) int8
    verdict_code: int


class WrongImage(DeviceError):
    """A unit returned an image that differs from the golden render: a unit fault (exit 3)."""

    def __init__(self, unit: str, exhibit_id: int, got: np.ndarray, want: np.ndarray) -> None:
        if got.shape != want.shape:
            detail = f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        else:
            diff = np.argwhere(got != want)
            y, x, ch = (int(v) for v in diff[0])
            detail = (f"first at pixel ({y}, {x}) channel {ch}: unit {got[y, x, ch]}, "
                      f"reference {want[y, x, ch]}; {len(diff):,} of {got.size:,} values differ")
        super().__init__(f"{unit} returned a wrong image for exhibit {exhibit_id} ({detail}); "
                         "it was not archived",
                         hint="the job stays pending; check the unit's weight image and SD card")
        self.unit = unit
        self.exhibit_id = exhibit_id


class WrongCardImage(DeviceError):
    """A unit's journal names an image hash the golden render does not have: a unit fault."""

    def __init__(self, unit: str, draw_id: int, journal: bytes, golden: bytes) -> None:
        super().__init__(f"{unit} recorded image {journal.hex()[:16]}… for exhibit {draw_id}, "
                         f"but the golden render is {golden.hex()[:16]}…; it was not archived",
                         hint="the unit computed a wrong cat offline: check its weight image and "
                              "SD card (`qcat sd verify`)")
        self.unit = unit
        self.draw_id = draw_id


@dataclass(frozen=True)
class EntropyPlan:
    """Before a run: how many of `count` new exhibits the pool's quantum bytes cover, and what
    the empty-pool policy does with the rest (said before starting, never discovered after)."""

    count: int
    available_bytes: int
    policy: str  # entropy.when_empty: "os" | "wait" | "fail"
    wait_timeout_s: float = 0.0

    @property
    def quantum(self) -> int:
        return min(self.count, self.available_bytes // latent_mod.EXHIBIT_BYTES)

    @property
    def short(self) -> int:
        """Exhibits the quantum bytes in the pool do not cover."""
        return self.count - self.quantum

    def sentence(self) -> str:
        if self.count == 0:
            return "no new exhibits asked for (--count 0): nothing is drawn from the pool"
        these = "this exhibit" if self.count == 1 else f"these {plural(self.count, 'exhibit')}"
        if self.short == 0:
            every = "it" if self.count == 1 else "every one of them"
            return (f"the pool holds {plural(self.available_bytes, 'quantum byte')}: {every} "
                    "uses ANU vacuum noise")
        if self.quantum == 0:
            covered = f"the pool has no quantum bytes for {these}"
            rest = "it" if self.count == 1 else "they"
        else:
            covered = (f"the pool's {plural(self.available_bytes, 'quantum byte')} cover "
                       f"{self.quantum} of {these}")
            rest = f"the other {self.short}"
        if self.policy == "os":
            return (f"{covered}; {rest} will use the operating system's randomness "
                    "(entropy.when_empty = \"os\"), labelled os-fallback, never quantum")
        if self.policy == "wait":
            return (f"{covered}; {rest} will wait up to {self.wait_timeout_s:g} s each for "
                    "bytes to arrive (entropy.when_empty = \"wait\")")
        return (f"{covered}; entropy.when_empty = \"fail\", so the run stops with an error "
                f"after {plural(self.quantum, 'exhibit')}")

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "available_bytes": self.available_bytes,
                "quantum": self.quantum, "not_quantum": self.short, "policy": self.policy}


@dataclass
class Generator:
    """Makes and archives exhibits: owns nothing, is handed the pool, gallery and model."""

    pool: EntropyPool
    gallery: Gallery
    model: Model
    engine: str = "c"
    clip_bank_path: Path | None = None
    when_empty: str = "os"
    wait_timeout_s: float = 0.0
    # finds the model a pending exhibit was started with, when it is not `model`
    find_model: FindModel = field(default=lambda sha256: None)
    _bank: ClipBank | None = None

    def plan(self, count: int) -> EntropyPlan:
        """What the pool covers of `count` new exhibits, under the configured policy."""
        return EntropyPlan(count, self.pool.available_bytes(), self.when_empty,
                           self.wait_timeout_s)

    def pending(self) -> list[Draw]:
        """Exhibit draws that have no archive row yet (a crash came between the two)."""
        return [self.pool.get_draw(i) for i in pending_draw_ids(self.gallery, self.pool)]

    def complete_pending(self, progress: ProgressCallback | None = None) -> list[Exhibit]:
        pending = self.pending()
        finished = []
        for i, draw in enumerate(pending):
            model = self._model_for(draw.purpose[len(PURPOSE_PREFIX):], draw.id)
            log.info("completing pending exhibit from draw %d", draw.id)
            finished.append(self._finish(draw, model))
            if progress:
                progress(i + 1, len(pending), "pending")
        return finished

    def generate(self, count: int, progress: ProgressCallback | None = None) -> list[Exhibit]:
        made = []
        for i in range(count):
            draw = self.pool.draw(latent_mod.EXHIBIT_BYTES, purpose_for(self.model),
                                  when_empty=self.when_empty, wait_timeout_s=self.wait_timeout_s)
            faults.point("after-draw")
            made.append(self._finish(draw, self.model))
            if progress:
                progress(i + 1, count, f"exhibit {made[-1].id}")
        return made

    def _model_for(self, sha: str, draw_id: int) -> Model:
        if sha == self.model.sha256:
            return self.model
        found = self.find_model(sha)
        if found is not None:
            return found
        raise InputError(
            f"pending exhibit (entropy draw {draw_id}) was started with model {sha[:16]}…, "
            "which is not available any more",
            hint="set models.weights in the config to that weight image and run `qcat generate` again")

    def unit_job(self, draw: Draw) -> UnitJob:
        """What a cat unit is sent for this pending exhibit: the draw id as the exhibit id, the
        int8 latent (the unit needs no logarithms) and the verdict code."""
        from models import reference

        model = self._model_for(draw.purpose[len(PURPOSE_PREFIX):], draw.id)
        z, code = latent_mod.split_exhibit(draw.data)
        return UnitJob(draw, model, reference.quantize_latent(z, model.image), code.code)

    def finish_from_unit(self, job: UnitJob, rgb: np.ndarray, unit: str) -> Exhibit:
        """Archive the image a unit returned, after comparing it byte for byte with the
        controller's own golden render (F1); a difference is the unit's fault, never archived."""
        rendered = render(job.draw.data, job.model, self.engine)
        if rgb.shape != rendered.rgb.shape or not np.array_equal(rgb, rendered.rgb):
            raise WrongImage(unit, job.draw.id, rgb, rendered.rgb)
        return self._archive(job.draw, job.model, rendered, engine=unit)

    def finish_from_card(self, draw: Draw, model: Model, image_sha256: bytes,
                         unit: str) -> Exhibit:
        """Archive an exhibit a unit made offline from its card's reserve, known only by the
        SHA-256 its journal recorded: the golden render must hash the same (F1), else it is the
        unit's fault and nothing is archived."""
        rendered = render(draw.data, model, self.engine)
        got = hashlib.sha256(rendered.rgb.tobytes()).digest()
        if got != image_sha256:
            raise WrongCardImage(unit, draw.id, image_sha256, got)
        return self._archive(draw, model, rendered, engine=unit)

    def _finish(self, draw: Draw, model: Model) -> Exhibit:
        return self._archive(draw, model, render(draw.data, model, self.engine), self.engine)

    def _archive(self, draw: Draw, model: Model, rendered: Rendered, engine: str) -> Exhibit:
        """Files first (atomically), then the row: the one way an exhibit enters the archive."""
        stem = f"cat-{draw.id:06d}"
        png = f"{stem}.png"
        big = f"{stem}-512.png"
        png_sha = write_atomic(self.gallery.path(png), png_bytes(rendered.rgb))
        big_sha = write_atomic(self.gallery.path(big), png_bytes(rendered.rgb, BIG_SCALE))
        wav = wav_sha = None
        bank = self._clip_bank()
        if bank is not None:
            wav = f"{stem}.wav"
            wav_sha = write_atomic(self.gallery.path(wav), bank.verdict_wav(rendered.code.code))
        faults.point("before-archive")
        return self.gallery.add(NewExhibit(
            draw_id=draw.id,
            created=draw.created,
            entropy_hex=draw.data.hex(),
            source=draw.source,
            provenance=draw.provenance,
            model_sha256=model.sha256,
            model_path=str(model.path.absolute()),
            model_size=model.size,
            engine=engine,
            image_sha256=hashlib.sha256(rendered.rgb.tobytes()).hexdigest(),
            png_path=png,
            png_sha256=png_sha,
            big_png_path=big,
            big_png_sha256=big_sha,
            wav_path=wav,
            wav_sha256=wav_sha,
            verdict_code=rendered.code.code,
            mood=rendered.code.mood,
            verdict_text=rendered.text,
        ))

    def _clip_bank(self) -> Any:
        if self._bank is None and self.clip_bank_path is not None and self.clip_bank_path.exists():
            from phrases.clipbank import ClipBank

            self._bank = ClipBank.load(self.clip_bank_path)
        return self._bank
