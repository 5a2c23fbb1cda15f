"""One installation as the services see it: the home folder, the validated config, and everything
resolved from the two (which weight image, which clip bank, how verdicts are rendered, which
databases, opened how).

The CLI builds one `Workspace` per command and the TUI one per session; both hand it to the
services, so a setting is looked up in exactly one place. `read_only` is decided once, when the
workspace is opened: a home on read-only media (an archive burnt to a disc, a card mounted
read-only) opens its databases read-only, and anything that would write says so in one sentence
(`require_writable`) before it touches a file.

Must never: print, or write anything itself (opening a database read-write on a writable home is
the one exception, and that is the database's own business).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.config import Config
from installation.errors import InputError
from installation.paths import Home

if TYPE_CHECKING:
    from installation.dice import DieModelRef
    from installation.exhibit import Generator
    from installation.gallery import Gallery
    from quantum.pool import EntropyPool

CLIP_BANK_FILE = "verdicts.qcv"


@dataclass(frozen=True)
class SpeechSettings:
    """How verdict fragments are rendered (the phrases.* config keys), as build_bank takes them."""

    voice: str
    words_per_minute: int
    pitch: int
    sample_rate: int
    gap_ms: int
    tempo: float = 1.0  # festival and flite voices (espeak-ng takes words_per_minute)

    def as_kwargs(self) -> dict[str, Any]:
        return {"voice": self.voice, "words_per_minute": self.words_per_minute,
                "pitch": self.pitch, "sample_rate": self.sample_rate, "gap_ms": self.gap_ms,
                "tempo": self.tempo}


@dataclass(frozen=True)
class Workspace:
    """A home plus its config. `open()` checks the home and decides `read_only`."""

    home: Home
    config: Config
    read_only: bool = False

    @classmethod
    def open(cls, home: Home, config: Config) -> Workspace:
        """Check the home and create its folders where possible; a home that cannot be written
        is opened read-only rather than refused (the read commands still work on it)."""
        return cls(home, config, read_only=not home.check().prepare())

    def require_writable(self, what: str) -> None:
        """One sentence, before anything is touched, when `what` would write to a read-only home."""
        if self.read_only:
            raise InputError(f"the qcat home {self.home.root} is read-only, and {what} writes to it",
                             hint="read commands (gallery list/show/verify, entropy status/audit) "
                                  "work here; to make exhibits, copy the home to writable storage "
                                  "and point --home at the copy")

    # -- settings resolved from the config ------------------------------------------------------

    def weights_path(self, override: str | os.PathLike[str] | None = None) -> Path:
        """The cat weight image in use: `override` (--weights), else models.weights, else the
        shipped demo model. A path that does not exist is one sentence."""
        from models.weightimage import SHIPPED_DEMO

        chosen = override or self.config["models.weights"]
        path = Path(chosen).expanduser() if chosen else SHIPPED_DEMO
        if not path.exists():
            where = "--weights" if override else "models.weights in the config"
            raise InputError(f"weight image {path} (from {where}) does not exist",
                             hint="build one with `qcat sd weights build CKPT --out FILE`, or "
                                  "unset models.weights to use the shipped demo model")
        return path

    def die_ref(self) -> DieModelRef:
        """The die decoder in use (models.die_decoder, else the shipped one) and its content
        SHA-256: what a die's HELLO must name, and what its rolls are checked with."""
        from installation.dice import DieModelRef

        chosen = self.config["models.die_decoder"]
        if chosen and not Path(chosen).expanduser().exists():
            raise InputError(f"die decoder {chosen} (from models.die_decoder in the config) does "
                             "not exist", hint="train one with `qcat models train die`, or unset "
                                               "models.die_decoder to use the shipped decoder")
        return DieModelRef.load(str(Path(chosen).expanduser()) if chosen else None)

    def known_models(self, first: Iterable[Path] = ()) -> list[Path]:
        """Weight images an archived or pending exhibit may refer to, `first` tried first: the
        shipped demo, the configured one, every .qcw under the home's builds folder, and the
        demos qcat shipped before (models/shipped/retired: archived exhibits name them)."""
        from models.weightimage import RETIRED_DIR, SHIPPED_DEMO

        found = [*first, SHIPPED_DEMO]
        if self.config["models.weights"]:
            found.append(Path(self.config["models.weights"]).expanduser())
        found += sorted(self.home.builds_dir.glob("*.qcw"))
        found += sorted(RETIRED_DIR.glob("*.qcw"))
        return list(dict.fromkeys(Path(p).absolute() for p in found))

    @property
    def clip_bank_path(self) -> Path:
        """The verdict clip bank the exhibits speak from (built by `qcat phrases build`)."""
        return self.home.builds_dir / CLIP_BANK_FILE

    @property
    def speech(self) -> SpeechSettings:
        cfg = self.config
        return SpeechSettings(voice=cfg["phrases.voice"],
                              words_per_minute=cfg["phrases.words_per_minute"],
                              pitch=cfg["phrases.pitch"], sample_rate=cfg["phrases.sample_rate"],
                              gap_ms=cfg["phrases.gap_ms"], tempo=cfg["phrases.tempo"])

    @property
    def engine(self) -> str:
        return str(self.config["engine.default"])

    # -- the databases --------------------------------------------------------------------------

    def open_pool(self) -> EntropyPool:
        from quantum.pool import EntropyPool

        return EntropyPool(self.home.pool_db, read_only=self.read_only)

    def open_gallery(self) -> Gallery:
        from installation.gallery import Gallery

        return Gallery(self.home.gallery_db, self.home.gallery_dir, read_only=self.read_only)

    def open_generator(self, engine: str | None = None,
                       weights: str | os.PathLike[str] | None = None) -> Generator:
        """A Generator over this home's pool and gallery (the caller closes both)."""
        from installation.exhibit import Generator, load_model, model_finder

        self.require_writable("making exhibits")
        path = self.weights_path(weights)
        model = load_model(path)
        pool = self.open_pool()
        try:
            gallery = self.open_gallery()
        except BaseException:
            pool.close()
            raise
        return Generator(
            pool=pool, gallery=gallery, model=model,
            engine=engine or self.engine,
            clip_bank_path=self.clip_bank_path,
            when_empty=self.config["entropy.when_empty"],
            wait_timeout_s=self.config["entropy.wait_timeout_s"],
            find_model=model_finder(self.known_models([path])),
        )
