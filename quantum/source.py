"""Where bytes came from: the one list of entropy sources, as an enum.

Stored as its text in the pool, the gallery archive and every `--json` document ("anu",
"os-fallback", ...); a `StrEnum` compares equal to that text, so rows read back as plain strings
are turned into members with `EntropySource(text)` at the boundary and compared as members inside.
Only `OS_FALLBACK` is not quantum; nothing may label it otherwise (promise E2).
"""

from __future__ import annotations

from enum import StrEnum


class EntropySource(StrEnum):
    ANU = "anu"  # the keyed ANU QRNG API
    ANU_LEGACY = "anu-legacy"  # the legacy, key-less ANU API
    IMPORT = "import"  # a .qcatpack moved in from another controller's pool
    OS_FALLBACK = "os-fallback"  # the pool was empty and entropy.when_empty = "os" allowed it

    @property
    def quantum(self) -> bool:
        """True for every source but the operating system's randomness."""
        return self is not EntropySource.OS_FALLBACK

    @classmethod
    def stored(cls) -> tuple[EntropySource, ...]:
        """Sources a stored batch may have (os randomness is never stored: it is drawn on the spot)."""
        return (cls.ANU, cls.ANU_LEGACY, cls.IMPORT)
