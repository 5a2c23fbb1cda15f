"""The firmware's machine-readable tables and the C headers generated from them.

One table, two readers: the C engine compiles the header generated here, and the Python binding
reads the same table at run time, so a C code and its sentence cannot drift apart between C and
Python (esptool keeps its error table the same way). Generated headers are committed, so building
the firmware needs no Python; a test regenerates each one and fails when the committed copy
differs.

    python3 -m firmware.tables errors   # firmware/cat/errors.toml -> firmware/cat/cat_errors.h
    python3 -m firmware.tables crc32    # zlib's CRC-32 tables     -> firmware/cat/crc32_table.h
    python3 -m firmware.tables protocol # firmware/common/protocol.toml -> firmware/common/
                                        #   qcat_protocol.h and the tables of docs/protocol.md
    python3 -m firmware.tables all      # all of them; add --check to compare instead of write

`c_code_table()` is deliberately general (rows of code, C name, sentence -> a C enum and lookup
functions): the cat engine's errors and the protocol's kinds, states and errors use it alike. The
protocol table's reader and renderers live in firmware/protocol_table.py.

Standard library only (plus the leaf helpers `installation.errors`/`installation.files`): the
Makefile may run it with a bare python3, and the runtime binding imports `read_error_table`.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIRMWARE_DIR = Path(__file__).resolve().parent
REPO_DIR = FIRMWARE_DIR.parent
CAT_DIR = FIRMWARE_DIR / "cat"
ERRORS_TOML = CAT_DIR / "errors.toml"
ERRORS_HEADER = CAT_DIR / "cat_errors.h"
CRC32_HEADER = CAT_DIR / "crc32_table.h"
COMMAND = "python3 -m firmware.tables"

# zlib's CRC-32 (reflected), as docs/formats.md specifies for every streamed block.
CRC32_POLY = 0xEDB88320
# Tables 1..7 serve the host's slicing-by-8 loop (a byte 1..7 positions further back).
CRC32_SLICES = 8
CRC32_PER_LINE = 6
C_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")


@dataclass(frozen=True)
class CodeRow:
    """One row of a code table: the number, its C name, one sentence for people, and a hint."""

    code: int
    name: str
    sentence: str
    hint: str = ""
    bug: bool = False  # the code means a bug in the caller, not a bad file or device


class TableError(ValueError):
    """A table file is malformed; the message names the file and the row."""


# --------------------------------------------------------------------------------------------
# Reading tables


def read_error_table(path: Path = ERRORS_TOML) -> list[CodeRow]:
    """The rows of an error table (TOML, `[[error]]` entries), checked: distinct codes and names,
    C identifiers, non-empty single-line sentences. A malformed table is a bug in qcat, so it
    raises TableError (a ValueError), not a user-facing error."""
    return code_rows(load_toml(path), "error", path)


def load_toml(path: Path) -> dict[str, Any]:
    """A parsed TOML table; TableError naming the file when it is not valid TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TableError(f"{path}: not valid TOML ({exc})") from None


def code_rows(doc: dict[str, Any], key: str, path: Path) -> list[CodeRow]:
    """The `[[key]]` entries of a parsed table as checked CodeRows (see read_error_table)."""
    rows: list[CodeRow] = []
    for n, entry in enumerate(doc.get(key, []), start=1):
        where = f"{path}, [[{key}]] number {n}"
        unknown = set(entry) - {"code", "name", "sentence", "hint", "bug"}
        if unknown:
            raise TableError(f"{where}: unknown keys {sorted(unknown)}")
        try:
            row = CodeRow(int(entry["code"]), str(entry["name"]), str(entry["sentence"]),
                          str(entry.get("hint", "")), bool(entry.get("bug", False)))
        except KeyError as exc:
            raise TableError(f"{where}: missing key {exc.args[0]!r}") from None
        if not C_NAME.match(row.name):
            raise TableError(f"{where}: {row.name!r} is not an upper-case C identifier")
        if not row.sentence or "\n" in row.sentence or "\n" in row.hint:
            raise TableError(f"{where}: the sentence must be one non-empty line")
        rows.append(row)
    if not rows:
        raise TableError(f"{path}: no [[{key}]] entries")
    for attr in ("code", "name"):
        values = [getattr(r, attr) for r in rows]
        dup = {v for v in values if values.count(v) > 1}
        if dup:
            raise TableError(f"{path}: duplicate {attr}s {sorted(dup)} in [[{key}]]")
    return rows


# --------------------------------------------------------------------------------------------
# Writing C


def c_string(text: str) -> str:
    """A C string literal of printable ASCII `text`."""
    if not text.isascii() or not text.isprintable():
        raise TableError(f"{text!r}: C strings in generated headers must be printable ASCII")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def banner(filename: str, source: str, mode: str, what: str) -> str:
    """The opening comment every generated header carries: what it is, and what made it."""
    return (f"/* {filename}: {what}\n"
            f" * Generated by `{COMMAND} {mode}` from {source}; do not edit.\n")


def c_code_table(rows: Sequence[CodeRow], enum: str, prefix: str, unknown: str) -> str:
    """C99 for a code table: `enum <enum> { NAME = code, ... };` and two static inline lookups,
    `<prefix>_sentence(int)` and `<prefix>_name(int)` (a switch: codes may be sparse), each
    answering `unknown` / "?" for a code not in the table. Static inline, so every file that
    includes the header may use them and none warns when it does not."""
    width = max(len(r.name) for r in rows)
    members = ",\n".join(f"    {r.name:<{width}} = {r.code}" for r in rows)
    out = [f"enum {enum} {{\n{members}\n}};\n"]
    for func, field, fallback in (("sentence", "sentence", unknown), ("name", "name", "?")):
        cases = "".join(f"    case {r.name}: return {c_string(getattr(r, field))};\n"
                        for r in rows)
        out.append(f"\nstatic inline const char *{prefix}_{func}(int code)\n{{\n"
                   f"    switch (code) {{\n{cases}"
                   f"    default: return {c_string(fallback)};\n    }}\n}}\n")
    return "".join(out)


def errors_header(rows: Sequence[CodeRow]) -> str:
    """firmware/cat/cat_errors.h from the rows of firmware/cat/errors.toml."""
    source = ERRORS_TOML.relative_to(REPO_DIR).as_posix()
    return (banner("cat_errors.h", source, "errors",
                   "the cat engine's error codes and their sentences.")
            + " * Every code names one cause, so the controller can say exactly what went wrong;\n"
            " * cat_strerror() (cat_engine.c) answers cat_error_sentence(). */\n"
            "#ifndef QCAT_CAT_ERRORS_H\n#define QCAT_CAT_ERRORS_H\n\n"
            + c_code_table(rows, "cat_error", "cat_error", "unknown engine error")
            + "\n#endif\n")


def crc32_tables() -> list[list[int]]:
    """zlib's CRC-32 lookup tables: table 0 drives the byte-at-a-time loop; table k (1..7) maps a
    byte that is k positions further back (slicing-by-8)."""
    t0 = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ CRC32_POLY if c & 1 else c >> 1
        t0.append(c)
    tables = [t0]
    for _ in range(1, CRC32_SLICES):
        prev = tables[-1]
        tables.append([(prev[n] >> 8) ^ t0[prev[n] & 0xFF] for n in range(256)])
    return tables


def _c_u32_rows(values: Sequence[int], indent: str) -> str:
    lines = []
    for start in range(0, len(values), CRC32_PER_LINE):
        chunk = values[start:start + CRC32_PER_LINE]
        lines.append(indent + " ".join(f"0x{v:08x}u," for v in chunk))
    return "\n".join(lines) + "\n"


def crc32_header() -> str:
    """firmware/cat/crc32_table.h."""
    tables = crc32_tables()
    slices = "".join("  {\n" + _c_u32_rows(t, "    ") + "  },\n" for t in tables[1:])
    return (banner("crc32_table.h", "CRC32_POLY in firmware/tables.py", "crc32",
                   "zlib's CRC-32 tables (poly 0xEDB88320).")
            + " * Table k maps a byte that is k positions further back. Table 0 drives the\n"
            " * byte-at-a-time loop of the unit build; tables 1..7 the slicing-by-8 loop of the\n"
            " * host build (CAT_CRC_SLICE8). */\n"
            "#ifndef QCAT_CRC32_TABLE_H\n#define QCAT_CRC32_TABLE_H\n#include <stdint.h>\n\n"
            f"static const uint32_t crc32_t0[256] = {{\n{_c_u32_rows(tables[0], '    ')}}};\n\n"
            "#ifdef CAT_CRC_SLICE8\n"
            f"static const uint32_t crc32_t17[{CRC32_SLICES - 1}][256] = {{\n{slices}}};\n"
            "#endif\n\n#endif\n")


def crc32_check(tables: Sequence[Sequence[int]], data: bytes) -> int:
    """CRC-32 of `data` by slicing-by-8 over `tables` (then byte at a time), as qcw.c computes
    it: tests hold this equal to zlib.crc32."""
    t0, crc, i = tables[0], 0xFFFFFFFF, 0
    while len(data) - i >= 8:
        lo = crc ^ int.from_bytes(data[i:i + 4], "little")
        hi = int.from_bytes(data[i + 4:i + 8], "little")
        crc = 0
        for k in range(4):
            crc ^= tables[7 - k][(lo >> (8 * k)) & 0xFF] ^ tables[3 - k][(hi >> (8 * k)) & 0xFF]
        i += 8
    for b in data[i:]:
        crc = (crc >> 8) ^ t0[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def _protocol_header() -> str:
    from firmware.protocol_table import protocol_header  # it imports this module

    return protocol_header()


def _protocol_doc() -> str:
    from firmware.protocol_table import protocol_doc

    return protocol_doc()


# The files this module makes: mode -> [(path, function producing its text)]. The protocol's
# doc keeps its hand-written parts: only the part between its GENERATED markers is rewritten.
GENERATED: dict[str, list[tuple[Path, Callable[[], str]]]] = {
    "errors": [(ERRORS_HEADER, lambda: errors_header(read_error_table()))],
    "crc32": [(CRC32_HEADER, crc32_header)],
    "protocol": [(FIRMWARE_DIR / "common" / "qcat_protocol.h", _protocol_header),
                 (REPO_DIR / "docs" / "protocol.md", _protocol_doc)],
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=[*GENERATED, "all"])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a committed header differs from what would be written")
    args = parser.parse_args(argv)
    stale = []
    for mode in GENERATED if args.mode == "all" else [args.mode]:
        for path, make in GENERATED[mode]:
            text = make().encode("utf-8")
            rel = path.relative_to(REPO_DIR)
            if args.check:
                if not path.exists() or path.read_bytes() != text:
                    stale.append(str(rel))
                continue
            if path.exists() and path.read_bytes() == text:
                print(f"{rel} is up to date")  # untouched: its mtime must not force a rebuild
                continue
            from installation.files import write_atomic

            write_atomic(path, text)
            print(f"wrote {rel}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run `{COMMAND} {args.mode}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
