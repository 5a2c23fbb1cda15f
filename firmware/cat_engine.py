"""ctypes binding of the cat unit's C engine (firmware/cat/), built on demand.

`CatEngine(path)` opens a weight image with the same C code the unit runs (host build: -O3,
-march=native, a pthread prefetching the next slice) and `generate(latent_q)` renders one image,
optionally with every layer's int8 output in (C, H, W) order for per-layer comparison with the
numpy reference. The shared library is (re)built with `make -C firmware host` when it is missing
or older than any C source, into firmware/build/ or, when the package folder is read-only, into a
cache folder; with no C compiler the binding raises ToolMissing naming what to install.

Errors from the engine keep their C code (`EngineError.code`) and carry the sentence and hint of
that code's row in firmware/cat/errors.toml (`ERRORS`), the table the C header cat_errors.h is
generated from, so the C runner, the unit and qcat say the same thing. A failed render returns no
image.

Must never import torch, textual or `installation.*` other than the leaf `installation.errors`
(and the type `installation.progress.ProgressCallback`): this module is on the runtime path.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware.tables import ERRORS_TOML, read_error_table
from installation.errors import ExternalError, FormatError, InputError, ToolMissing
from installation.progress import ProgressCallback

FIRMWARE_DIR = Path(__file__).resolve().parent
CAT_SOURCES = FIRMWARE_DIR / "cat"
COMMON_SOURCES = FIRMWARE_DIR / "common"  # the framing: `make host` builds libqcatproto.so too
DIE_SOURCES = FIRMWARE_DIR / "die"  # the die decoder: `make host` builds libdieengine.so too
MAKEFILE = FIRMWARE_DIR / "Makefile"
DEFAULT_BUILD_DIR = FIRMWARE_DIR / "build"
LIBRARY_NAME = "libcatengine.so"
# Override where the host library is built (tests, read-only installs).
BUILD_DIR_ENV = "QCAT_FIRMWARE_BUILD"
# Seconds a compile may take before we call it hung (the library builds in about a second).
BUILD_TIMEOUT_S = 300
INSTALL_HINT = ("install a C compiler and make (Debian/Ubuntu: sudo apt-get install gcc make; "
                "or run `make test` as root, which installs them)")


@dataclass(frozen=True)
class ErrorInfo:
    name: str
    sentence: str
    hint: str


# enum cat_error, code -> its row: read at import from firmware/cat/errors.toml, the table that
# firmware/cat/cat_errors.h is generated from, so C and Python say the same sentence.
_ROWS = read_error_table(ERRORS_TOML)
ERRORS: dict[int, ErrorInfo] = {row.code: ErrorInfo(row.name, row.sentence, row.hint)
                                for row in _ROWS if row.code != 0}
CODES: dict[str, int] = {info.name: code for code, info in ERRORS.items()}
# Codes that mean "a bug in the caller", not a bad file.
BUG_CODES = tuple(row.code for row in _ROWS if row.bug)
# For a code the table does not know (an engine newer than this binding).
REBUILD_HINT = "re-run `qcat sd weights build` (or copy the weight image again)"


class EngineError(FormatError):
    """The C engine refused a weight image or stopped on a bad slice; no image was produced.
    `layer` and `channel` (from 0) name the slice at fault, when one was."""

    def __init__(self, code: int, path: Path | str,
                 where: tuple[int, int] | None = None) -> None:
        info = ERRORS.get(code, ErrorInfo(f"CAT_E_{code}", "unknown engine error", REBUILD_HINT))
        # People count layers from 1 (DESIGN §5), channels from 0, as the Python reader does.
        at = f"layer {where[0] + 1}, channel {where[1]}: " if where else ""
        super().__init__(f"{path}: {at}{info.sentence} [{info.name}]", hint=info.hint or None)
        self.code = code
        self.code_name = info.name
        self.layer: int | None = where[0] if where else None
        self.channel: int | None = where[1] if where else None


# --------------------------------------------------------------------------------------------
# Building and loading the library


def sources() -> list[Path]:
    return (sorted(CAT_SOURCES.glob("*.[ch]")) + sorted(COMMON_SOURCES.glob("*.[ch]"))
            + sorted(DIE_SOURCES.glob("*.[ch]")) + [MAKEFILE])


def build_dir() -> Path:
    """firmware/build/ when writable, else a per-user cache folder (an installed, read-only qcat)."""
    env = os.environ.get(BUILD_DIR_ENV)
    if env:
        return Path(env).expanduser().absolute()
    if os.access(FIRMWARE_DIR, os.W_OK) and (not DEFAULT_BUILD_DIR.exists()
                                              or os.access(DEFAULT_BUILD_DIR, os.W_OK)):
        return DEFAULT_BUILD_DIR
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "qcat" / "firmware-build"


def library_path() -> Path:
    return build_dir() / LIBRARY_NAME


def is_stale(lib: Path) -> bool:
    """Missing, or older than any C source, header or the Makefile."""
    if not lib.exists():
        return True
    built = lib.stat().st_mtime_ns
    return any(src.stat().st_mtime_ns > built for src in sources())


def find_compiler() -> str | None:
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def build(force: bool = False, library: str = LIBRARY_NAME) -> Path:
    """Build the host libraries (`make host`) if `library` is missing or stale; returns its path.
    `library` may name the framing's libqcatproto.so (firmware/protocol_host.py)."""
    out = build_dir()
    lib = out / library
    if not force and not is_stale(lib):
        return lib
    cc = find_compiler()
    if cc is None:
        raise ToolMissing("no C compiler found to build the cat engine (tried $CC, cc, gcc, clang)",
                          hint=INSTALL_HINT)
    if shutil.which("make") is None:
        raise ToolMissing("`make` is not installed; it builds the cat engine", hint=INSTALL_HINT)
    out.mkdir(parents=True, exist_ok=True)
    import fcntl  # POSIX only, like the pthread build itself

    # Two processes (parallel tests, the kiosk and a CLI) may both find the library stale.
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and not is_stale(lib):
            return lib
        cmd = ["make", "--no-print-directory", "-C", str(FIRMWARE_DIR), "host",
               f"BUILD={out}", f"CC={cc}"]
        if force:
            cmd.insert(1, "-B")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ExternalError(f"building the cat engine took over {BUILD_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise ExternalError("building the cat engine failed: " + " / ".join(tail),
                                hint=f"run `make -C {FIRMWARE_DIR} host` to see the whole output")
        # make rebuilds each library from its own prerequisites only; one it left alone is
        # current, though another library's source (is_stale looks at all) may be newer: say so,
        # or every process would run make again for it.
        if is_stale(lib):
            os.utime(lib)
    return lib


# A signature: (function name, restype, argtypes).
Signature = tuple[str, Any, list[Any]]
_libraries: dict[str, ctypes.CDLL] = {}
_libraries_lock = threading.Lock()
_PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                ctypes.c_uint32)


def open_library(library: str, signatures: Iterable[Signature],
                 check: Callable[[ctypes.CDLL], None] | None = None) -> ctypes.CDLL:
    """One of the firmware's host libraries, built first when needed, its functions declared
    and (`check`) its struct sizes compared with their ctypes mirrors; loaded once per process.
    The engine, the cat unit core and the protocol framing all open theirs here."""
    with _libraries_lock:
        lib = _libraries.get(library)
        if lib is None:
            lib = ctypes.CDLL(str(build(library=library)))
            for name, res, args in signatures:
                fn = getattr(lib, name)
                fn.restype = res
                fn.argtypes = args
            if check is not None:
                check(lib)
            _libraries[library] = lib
        return lib


def load_library() -> ctypes.CDLL:
    """The engine's host library."""
    u32, vp = ctypes.c_uint32, ctypes.c_void_p
    return open_library(LIBRARY_NAME, (
        ("cat_host_sizeof", u32, []),
        ("cat_host_arena_budget", u32, []),
        ("cat_host_open", ctypes.c_int, [vp, ctypes.c_char_p, vp, u32, ctypes.c_int]),
        ("cat_host_arena_bytes", u32, [vp]),
        ("cat_host_n_layers", u32, [vp]),
        ("cat_host_nz", u32, [vp]),
        ("cat_host_layer_dim", u32, [vp, u32, u32]),
        ("cat_host_run", ctypes.c_int, [vp, vp, vp, vp, _PROGRESS_FN, vp]),
        ("cat_host_close", None, [vp]),
        ("cat_strerror", ctypes.c_char_p, [ctypes.c_int]),
        ("cat_host_failed_slice", ctypes.c_int, [vp, vp, vp]),
        ("cat_host_layers_seen", u32, [vp]),
        ("cat_host_plan", u32, [vp, u32]),
    ))


# The fields of cat_arena_plan_t in the order cat_host_plan() numbers them.
PLAN_FIELDS = ("header_bytes", "act_off", "act_bytes", "unit_limit", "read_bytes", "read_off0",
               "read_off1", "slice_off", "slice_bytes", "lut_off", "lut_bytes", "total")


def arena_budget() -> int:
    """CAT_ARENA_BUDGET as compiled (512 KB)."""
    return int(load_library().cat_host_arena_budget())


# --------------------------------------------------------------------------------------------
# The engine


@dataclass
class Generated:
    rgb: np.ndarray  # uint8 (image_size, image_size, 3)
    layers: list[np.ndarray] | None  # int8 (C, H, W) per layer, when asked for


ProgressFn = ProgressCallback  # the ground type, under the name this module has always used


class CatEngine:
    """One opened weight image with its own arena; `generate` is serialized per instance."""

    def __init__(self, weights_path: Path | str, threaded: bool = True) -> None:
        path = Path(weights_path)
        if not path.is_file():
            raise InputError(f"weight image {path} does not exist or is not a file",
                             hint="build one with `qcat sd weights build`")
        self.path = path
        self._lib = load_library()
        self._host = ctypes.create_string_buffer(self._lib.cat_host_sizeof())
        self._arena = ctypes.create_string_buffer(self._lib.cat_host_arena_budget())
        self._lock = threading.Lock()
        rc = self._lib.cat_host_open(self._host, os.fsencode(path), self._arena,
                                     len(self._arena), 1 if threaded else 0)
        if rc != 0:
            self._raise(rc)
        self._open = True
        self.arena_bytes = int(self._lib.cat_host_arena_bytes(self._host))
        self.nz = int(self._lib.cat_host_nz(self._host))
        n = int(self._lib.cat_host_n_layers(self._host))
        # (C, H, W) of every layer's output.
        self.layer_shapes = [(int(self._lib.cat_host_layer_dim(self._host, i, 0)),
                              int(self._lib.cat_host_layer_dim(self._host, i, 1)),
                              int(self._lib.cat_host_layer_dim(self._host, i, 1)))
                             for i in range(n)]

    def _raise(self, rc: int) -> None:
        if rc in BUG_CODES:
            raise RuntimeError(f"cat engine called wrongly: {ERRORS[rc].name}")
        layer, channel = ctypes.c_uint32(0), ctypes.c_uint32(0)
        where = None
        if self._lib.cat_host_failed_slice(self._host, ctypes.byref(layer), ctypes.byref(channel)):
            where = (int(layer.value), int(channel.value))
        raise EngineError(rc, self.path, where)

    @property
    def arena_plan(self) -> dict[str, int]:
        """How the engine cut its arena for this model (cat_arena_plan_t), bytes."""
        return {name: int(self._lib.cat_host_plan(self._host, i))
                for i, name in enumerate(PLAN_FIELDS)}

    @property
    def layers_seen(self) -> int:
        """Layers the engine handed to its layer hook in the last run (all, unless it failed)."""
        return int(self._lib.cat_host_layers_seen(self._host))

    def generate(self, latent_q: np.ndarray, layers: bool = False,
                 progress: ProgressFn | None = None) -> Generated:
        """latent_q: int8 (nz,) -> the image (and every layer when `layers`)."""
        latent = np.ascontiguousarray(latent_q, dtype=np.int8)
        if latent.shape != (self.nz,):
            raise InputError(f"the latent must be {self.nz} int8 values, got shape {latent.shape}")
        c, h, w = self.layer_shapes[-1]
        rgb = np.zeros((h, w, c), dtype=np.uint8)
        sizes = [a * b * d for a, b, d in self.layer_shapes]
        flat = np.zeros(sum(sizes), dtype=np.int8) if layers else None
        callback = _PROGRESS_FN(0)
        if progress is not None:
            def on_slice(_user: int | None, done: int, total: int, layer: int) -> None:
                progress(done, total, f"layer {layer + 1}")
            callback = _PROGRESS_FN(on_slice)
        with self._lock:
            if not self._open:
                raise RuntimeError("the cat engine was closed")
            rc = self._lib.cat_host_run(
                self._host, latent.ctypes.data, rgb.ctypes.data,
                flat.ctypes.data if flat is not None else None, callback, None)
        if rc != 0:
            self._raise(rc)
        out_layers = None
        if flat is not None:
            out_layers, start = [], 0
            for shape, size in zip(self.layer_shapes, sizes, strict=True):
                out_layers.append(flat[start:start + size].reshape(shape))
                start += size
        return Generated(rgb=rgb, layers=out_layers)

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._lib.cat_host_close(self._host)
                self._open = False

    def __enter__(self) -> CatEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # At interpreter shutdown the library, and even module globals such as `contextlib`,
        # may already be gone: a plain try needs no global.
        try:  # noqa: SIM105 (contextlib.suppress needs a global that may be gone)
            self.close()
        except Exception:  # noqa: BLE001 (nothing useful can be done here)
            pass
