"""Small float networks kept as `.npz` files and run in numpy: the die judge and the cat
attribute classifier share this container and these layers (docs/formats.md describes both files).

The container: one float32 array per layer part (`<layer>.weight`, `<layer>.bias`) and a
`provenance` array holding one JSON object with at least `format` and `version`. Reading checks
all of it and says in one sentence what is wrong; no pickle is ever loaded.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from installation.errors import FormatError
from installation.files import write_atomic
from installation.reading import read_input

Layers = tuple[tuple[str, tuple[int, ...]], ...]


def decode(raw: bytes, name: str, *, what: str, fmt: str, version: int, layers: Layers,
           hint: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(weights by `<layer>.<part>`, provenance) of a `what` file; FormatError otherwise."""
    try:
        npz = np.load(io.BytesIO(raw), allow_pickle=False)
        arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(f"{name} is not a {what} (.npz) file: {exc}", hint=hint) from None
    if "provenance" not in arrays:
        raise FormatError(f"{name} has no provenance record, so it is not a qcat {what}",
                          hint=hint)
    try:
        provenance = json.loads(str(arrays.pop("provenance")))
    except ValueError:
        raise FormatError(f"{name} has a provenance record that is not JSON", hint=hint) from None
    if not isinstance(provenance, dict) or provenance.get("format") != fmt:
        raise FormatError(f"{name} is not a qcat {what} (format is not {fmt!r})", hint=hint)
    if provenance.get("version") != version:
        raise FormatError(f"{name} has {what} version {provenance.get('version')}; this qcat "
                          f"reads version {version}", hint=hint)
    weights: dict[str, np.ndarray] = {}
    for layer, shape in layers:
        for part, want in (("weight", shape), ("bias", shape[:1])):
            key = f"{layer}.{part}"
            arr = arrays.get(key)
            if arr is None:
                raise FormatError(f"{name} lacks the array {key!r}", hint=hint)
            if arr.shape != want or arr.dtype != np.float32:
                raise FormatError(f"{name}: {key} is {arr.dtype} {arr.shape}, expected "
                                  f"float32 {want}", hint=hint)
            weights[key] = arr
    return weights, provenance


def encode(weights: dict[str, np.ndarray], provenance: dict[str, Any]) -> bytes:
    """The `.npz` bytes (uncompressed, readable by any numpy)."""
    buf = io.BytesIO()
    arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    arrays["provenance"] = np.array(json.dumps(provenance, sort_keys=True))
    np.savez(buf, **arrays)
    return buf.getvalue()


@dataclass
class NpzNet:
    """A loaded network: float32 weights by `<layer>.<part>` and the provenance it was shipped
    with. A subclass names its file (the class variables) and adds its forward pass; it may check
    more of the provenance in `check`."""

    WHAT: ClassVar[str]           # "die judge": what the sentences call it
    FORMAT: ClassVar[str]
    VERSION: ClassVar[int]
    LAYERS: ClassVar[Layers]
    SHIPPED: ClassVar[Path]
    HINT: ClassVar[str]           # how to make a good file
    MAX_FILE_BYTES: ClassVar[int]

    weights: dict[str, np.ndarray]  # "<layer>.weight" / "<layer>.bias" -> float32
    provenance: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Self:
        """Read a file (default: the shipped one); FormatError names what is wrong."""
        path = Path(path) if path is not None else cls.SHIPPED
        raw = read_input(path, f"{cls.WHAT} file", max_bytes=cls.MAX_FILE_BYTES)
        return cls.decode(raw, str(path))

    @classmethod
    def decode(cls, raw: bytes, name: str | None = None) -> Self:
        name = name or f"{cls.WHAT} file"
        weights, provenance = decode(raw, name, what=cls.WHAT, fmt=cls.FORMAT,
                                     version=cls.VERSION, layers=cls.LAYERS, hint=cls.HINT)
        cls.check(provenance, name)
        return cls(weights, provenance)

    @classmethod
    def check(cls, provenance: dict[str, Any], name: str) -> None:
        """More of the provenance a subclass insists on (FormatError); nothing by default."""

    def encode(self) -> bytes:
        """The `.npz` bytes (uncompressed, readable by any numpy)."""
        return encode(self.weights, self.provenance)

    def save(self, path: str | Path) -> str:
        """Write atomically; returns the file's SHA-256."""
        return write_atomic(path, self.encode())

    def parameter_count(self) -> int:
        return int(sum(v.size for v in self.weights.values()))


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x: (N, C, H, W), weight: (O, C, 3, 3) -> (N, O, H, W); zero padding 1, stride 1
    (cross-correlation, as torch's Conv2d)."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    out = np.einsum("nchwij,ocij->nohw", windows, weight, optimize=True)
    return (out + bias[None, :, None, None]).astype(np.float32)


def maxpool2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
