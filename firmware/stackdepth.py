"""Worst-case stack depth of the rv32 build, from gcc's -fcallgraph-info=su files (*.ci).

Run by `make rv32` (python3 stackdepth.py BUILD_DIR). Each function's own frame comes from the
callgraph node labels ("N bytes (static)"); the depth of a function is its frame plus the deepest
of its callees. Indirect calls (the engine's block-reader and progress callbacks) are charged with
the deepest address-taken function that nothing calls directly: a static function (its title is
"file.c:name") that nothing calls, since an extern one nothing calls (framing API the image does
not use, such as qp_cobs_encode) is merely unused; and never one defined in the file that makes
the call (a callback is handed to another module: the unit core's progress callback to the engine,
the board's serial and clock functions to the unit core; charging a file's own callbacks would
read the core's progress callback, which sends frames, as recursion). Library helpers (memcpy, the
64-bit shift helpers) have no callgraph entry and count as 0: picolibc's are leaf functions with a
few words of frame at most. A recursive cycle is reported instead of silently ignored.

Standard library only; never imported by qcat at run time.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)" label: "([^"]*)"')
FRAME = re.compile(r"\\n(\d+) bytes \((static|dynamic|dynamic,bounded)\)")
INDIRECT = "__indirect_call"
ROOT = "main"


def source_file(where: str) -> str:
    """The file of a node title ("dir/f.c:name") or an edge label ("dir/f.c:12:5"); "" for a
    title without one (an extern function)."""
    head = where.split(":", 1)[0]
    return head if head.endswith(".c") else ""


def parse(folder: Path) -> tuple[dict[str, int], dict[str, set[str]], set[str]]:
    """Frames, call edges and dynamic frames. An indirect call's edge target is written
    `__indirect_call@file.c`, the file of the call site."""
    frames: dict[str, int] = {}
    edges: dict[str, set[str]] = {}
    dynamic: set[str] = set()
    for ci in sorted(folder.glob("*.ci")):
        text = ci.read_text()
        for title, label in NODE.findall(text):
            m = FRAME.search(label)
            if m:
                frames[title] = int(m.group(1))
                if m.group(2) != "static":
                    dynamic.add(title)
        for src, dst, label in EDGE.findall(text):
            if dst == INDIRECT:
                dst = f"{INDIRECT}@{source_file(label)}"
            edges.setdefault(src, set()).add(dst)
    return frames, edges, dynamic


def worst(frames: dict[str, int], edges: dict[str, set[str]],
          root: str = ROOT) -> tuple[int, list[str]]:
    """The deepest chain from `root` (main; or one function, for its share of the stack)."""
    called = {d for targets in edges.values() for d in targets}
    callbacks = [f for f in frames if f not in called and f != ROOT and ":" in f]
    memo: dict[str, tuple[int, list[str]]] = {}
    active: set[str] = set()

    def depth(fn: str) -> tuple[int, list[str]]:
        if fn in memo:
            return memo[fn]
        if fn in active:
            raise SystemExit(f"stackdepth: recursion through {fn}: no static bound")
        active.add(fn)
        targets = set(edges.get(fn, ()))
        for site in [t for t in targets if t.startswith(INDIRECT)]:
            targets.discard(site)
            caller_file = site.split("@", 1)[1]
            targets.update(c for c in callbacks if source_file(c) != caller_file)
        best: tuple[int, list[str]] = (0, [])
        for t in targets:
            d = depth(t)
            if d[0] > best[0]:
                best = d
        active.discard(fn)
        memo[fn] = (frames.get(fn, 0) + best[0], [fn, *best[1]])
        return memo[fn]

    return depth(root)


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else ".")
    frames, edges, dynamic = parse(folder)
    if ROOT not in frames:
        print(f"stackdepth: no callgraph for {ROOT} in {folder}", file=sys.stderr)
        return 2
    total, path = worst(frames, edges)
    largest = max(frames.items(), key=lambda kv: kv[1])
    short = [p.rsplit(":", 1)[-1] for p in path]
    print(f"worst stack depth: {total} bytes ({' -> '.join(short)})")
    print(f"largest frame: {largest[1]} bytes ({largest[0].rsplit(':', 1)[-1]})")
    if dynamic:
        print(f"dynamic frames (bounded by hand): {', '.join(sorted(dynamic))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
