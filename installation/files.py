"""Atomic file writes for the appliance: a reader sees the old file or the new one, never half.

Write to a temporary file in the same folder, fsync, then `os.replace`; a crash at any instant
leaves at most a stray ``.tmp`` file behind, never a truncated target. (Hashing a file on disk is
`models.weightimage.sha256_of`, the one copy every layer may call.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> str:
    """Write `data` to `path` atomically; returns its SHA-256 (hex)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()
