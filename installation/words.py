"""Numbers in sentences: "1 exhibit", "2 exhibits", "1,024 bytes". One helper, every message: a
person reads "1 exhibits" or "check(s)" as a program that did not care.

A ground module: it imports nothing of qcat.
"""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """`count` and `noun`, the noun in the plural unless `count` is exactly 1 (with thousands
    separators: 20,480 bytes)."""
    word = noun if count == 1 else plural_form or noun + "s"
    return f"{count:,} {word}"
