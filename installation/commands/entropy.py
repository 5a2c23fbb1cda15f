"""`qcat entropy`: the quantum byte pool from the command line.

    fetch --bytes N | --until-days D [--api-url BASE] [--legacy] [--json]
                                                  fill the pool from the ANU QRNG (resumable)
    status [--json]                               what the pool holds; LOUD about os-fallback
    draw --bytes N --purpose TEXT [--json]        hand out bytes once, print them as hex
    export --bytes N FILE                         move bytes into a self-verifying pack
    import FILE                                   add a pack's bytes, once
    quarantine [--json]                           batches that failed the health tests
    audit [--json]                                re-prove every invariant of the pool

Thin: parses, calls `quantum.*`, prints. The API key goes from the config (environment or a
0600 file) straight into the client's header; it is never printed, logged or stored.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation.commands import add_json, command, group
from installation.errors import CheckFailed, ServiceError
from installation.words import plural

log = logging.getLogger("qcat.entropy")

# The os-fallback warning box is at most this many columns wide (fits an 80-column terminal).
BOX_WIDTH = 78

DESCRIPTION = """\
Quantum random bytes from the ANU QRNG (vacuum noise), fetched while online and spent offline.
Every byte is handed out at most once, ever: across crashes, processes and machines (export
moves bytes, it does not copy them). Every draw is recorded with its bytes and provenance.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _days(text: str) -> float:
    try:
        value = float(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} days: give a number of days above 0")
    return value


if TYPE_CHECKING:
    from installation.cli import Context

def register(sub: Any) -> None:
    _, cmds = group(sub, "entropy", "quantum entropy: ANU fetch, the byte pool, packs, audit",
                    description=DESCRIPTION)
    p = command(cmds, "fetch", "fill the pool from the ANU QRNG", _fetch,
                description="Fetch N more usable bytes (largest blocks the API allows), or "
                            "until the pool holds D days of exhibits at the recent rate (what "
                            "the kiosk's refill does; run it by hand or from a timer), within "
                            "the monthly request budget. Resumable: what was stored stays "
                            "stored. Exit 3 if the service failed before the target.")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--bytes", type=_positive_int, metavar="N",
                        help="usable bytes to add (20,480 per keyed request)")
    amount.add_argument("--until-days", type=_days, metavar="D",
                        help="fetch until the pool holds D days of exhibits at the recent rate "
                             "(see `qcat entropy status`); nothing when it already does")
    p.add_argument("--api-url", metavar="BASE",
                   help="base URL of the service (path and query stay the service's)")
    p.add_argument("--legacy", action="store_true",
                   help="use the key-less legacy API (1 request a minute)")
    add_json(p)

    p = command(cmds, "status", "what the pool holds and where it came from", _status)
    add_json(p)

    p = command(cmds, "draw", "hand out bytes once and print them as hex", _draw)
    p.add_argument("--bytes", type=_positive_int, required=True, metavar="N")
    p.add_argument("--purpose", required=True, metavar="TEXT",
                   help="what the bytes are for (recorded with the draw)")
    p.add_argument("--when-empty", choices=("os", "wait", "fail"),
                   help="override entropy.when_empty for this draw")
    add_json(p)

    p = command(cmds, "export", "move bytes out of this pool into a pack file", _export,
                description="Moves N bytes into FILE (a self-verifying pack, docs/formats.md). "
                            "They are never served from this pool again; import the pack on "
                            "one other machine with `qcat entropy import FILE`.")
    p.add_argument("--bytes", type=_positive_int, required=True, metavar="N")
    p.add_argument("file", metavar="FILE")

    p = command(cmds, "import", "add the bytes of a pack (each pack once, ever)", _import)
    p.add_argument("file", metavar="FILE")

    p = command(cmds, "quarantine", "list batches that failed the health tests", _quarantine)
    add_json(p)

    p = command(cmds, "audit", "check every invariant of the pool (exit 1 on a violation)",
                _audit)
    add_json(p)


def _open(ctx: Context) -> Any:
    return ctx.workspace.open_pool()


def _fetch(ctx: Context, args: argparse.Namespace) -> int:
    from installation import prefetch
    from installation.progress import ProgressBar
    from quantum.latent import EXHIBIT_BYTES

    with ProgressBar("fetching", enabled=not args.json) as bar:
        outcome = prefetch.fetch(ctx.workspace, want_bytes=args.bytes,
                                 until_days=args.until_days,
                                 legacy=True if args.legacy else None, api_url=args.api_url,
                                 progress=bar)
    if args.json:
        ctx.emit_json(outcome.as_dict())
    elif outcome.kind is prefetch.OutcomeKind.SKIPPED:
        ctx.out(f"nothing to fetch: {outcome.sentence()}")
    elif outcome.ok:
        for line in outcome.report.lines() if outcome.report else []:
            ctx.out(line)
    if not outcome.ok:
        if not args.json and outcome.report:
            for line in outcome.report.lines():
                print(line, file=sys.stderr)
        raise ServiceError(outcome.detail, hint=outcome.hint)
    if not args.json and outcome.kind is not prefetch.OutcomeKind.SKIPPED:
        exhibits = (outcome.available_bytes or 0) // EXHIBIT_BYTES
        days = ("" if outcome.days_left is None
                else f", {outcome.days_left:,.1f} days at {outcome.plan.rate.per_day:,.0f}/day")
        ctx.out(f"pool: {outcome.available_bytes or 0:,} usable bytes "
                f"({exhibits:,} exhibits{days})")
    return 0


def _fallback_warning(st: dict[str, Any]) -> str | None:
    if not st["os_fallback_draws"]:
        return None
    return (f"{plural(st['os_fallback_draws'], 'draw')}, {plural(st['os_fallback_bytes'], 'byte')}, used the "
            f"operating system's randomness (os.urandom), NOT quantum entropy; they are labelled "
            f"os-fallback; the last was at {st['last_os_fallback']}")


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide (CJK) characters two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF"
               else 1 for c in text)


def wrap_columns(text: str, columns: int) -> list[str]:
    """Words into rows of at most `columns` display columns (textwrap counts characters, so a
    wide character would push the border out); a word longer than a row is cut."""
    rows: list[str] = []
    row = ""
    for word in text.split():
        while display_width(word) > columns:
            if row:
                rows.append(row)
                row = ""
            cut = 1
            while cut < len(word) and display_width(word[:cut + 1]) <= columns:
                cut += 1
            rows.append(word[:cut])
            word = word[cut:]
        joined = f"{row} {word}" if row else word
        if display_width(joined) <= columns:
            row = joined
        else:
            rows.append(row)
            row = word
    if row:
        rows.append(row)
    return rows


def warning_box(paragraphs: list[str], width: int = BOX_WIDTH) -> list[str]:
    """Paragraphs wrapped into a box of `!` no wider than `width` whose right border lines up:
    every line has the same display width (the box shrinks to fit short text)."""
    rows = [row for text in paragraphs for row in wrap_columns(text, width - 6)]
    inner = max(display_width(row) for row in rows)
    bar = "!" * (inner + 6)
    return [bar, *(f"!! {row}{' ' * (inner - display_width(row))} !!" for row in rows), bar]


def _status(ctx: Context, args: argparse.Namespace) -> int:
    from installation import prefetch

    cfg = ctx.config
    with _open(ctx) as pool:
        st = pool.status()
        plan = prefetch.check(pool, prefetch.PrefetchSettings.from_config(cfg))
    budget = cfg["entropy.monthly_request_budget"]
    st["request_budget"] = budget
    st["requests_left_this_month"] = max(0, budget - st["requests_this_month"])
    st["when_empty"] = cfg["entropy.when_empty"]
    st["os_fallback_warning"] = _fallback_warning(st)
    rate = plan.rate.as_dict()
    left = plan.days_left
    st.update({
        "exhibits_per_day": rate["per_day"],
        "measured_exhibits_per_day": rate["measured_per_day"],
        "exhibits_in_window": rate["exhibits_in_window"],
        "rate_window_days": rate["window_days"],
        "assumed_exhibits_per_day": rate["assumed_per_day"],
        "rate_assumed": rate["assumed"],
        "days_left": None if left is None else round(left, 3),
        "low_water_days": plan.mark_days,
        "refill_to_days": plan.target_days,
        "refill_due": plan.needed,
        "refill_reason": str(plan.reason),
        "refill_bytes": plan.want_bytes,
        "refill": plan.sentence(),
    })
    if args.json:
        ctx.emit_json(st)
        return 0
    ctx.out(f"entropy pool {st['path']}")
    ctx.out(f"  available   {st['available_bytes']:>12,} bytes  = {st['exhibits_left']:,} "
            f"exhibits of 203 bytes   next from: {st['source']}")
    ctx.out(f"  served      {st['served_bytes']:>12,} bytes in {plural(st['draws'], 'draw')}")
    ctx.out(f"  exported    {st['exported_bytes']:>12,} bytes in {plural(st['exports'], 'pack')}")
    ctx.out(f"  imported    {st['imported_bytes']:>12,} bytes")
    if st["leases"]:
        back = st["returned_records"]
        ctx.out(f"  leased      {st['leased_bytes']:>12,} bytes = "
                f"{plural(st['leased_records'], 'exhibit')} on {plural(st['leases'], 'card')}"
                + (f"  ({back:,} returned)" if back else ""))
    q = st["quarantined_batches"]
    ctx.out(f"  batches     {st['batches']:>12,} stored, {q} quarantined"
            + ("  (see `qcat entropy quarantine`)" if q else ""))
    legacy = st["legacy_requests_this_month"]
    ctx.out(f"  requests    {st['requests_this_month']:>12,} this month of a budget of {budget}"
            + (f"  (+{legacy} to the free legacy API)" if legacy else ""))
    ctx.out(f"  last fetch  {st['last_fetch'] or 'never'}")
    ctx.out(f"  when empty  {st['when_empty']}")
    ctx.out(f"  rate        {plan.rate.describe()}")
    days = "no exhibits are being made" if left is None else (
        f"{left:,.1f} at {plan.rate.per_day:,.0f} exhibits/day")
    ctx.out(f"  days left   {days}; low-water mark {plan.mark_days:g} days, refills to "
            f"{plan.target_days:g} days")
    ctx.out(f"  refill      {'due' if plan.needed else 'not due'}: {plan.sentence()}")
    warning = st["os_fallback_warning"]
    if warning:
        for box_line in warning_box([f"WARNING: {warning}.",
                                     "Fetch (`qcat entropy fetch`) or import bytes to stop this."]):
            ctx.out(box_line)
        print(f"qcat: warning: {warning}", file=sys.stderr)
    return 0


def _draw(ctx: Context, args: argparse.Namespace) -> int:
    cfg = ctx.config
    policy = args.when_empty or cfg["entropy.when_empty"]
    with _open(ctx) as pool:
        d = pool.draw(args.bytes, args.purpose, when_empty=policy,
                      wait_timeout_s=cfg["entropy.wait_timeout_s"])
    log.info("draw %d: %d bytes for %r from %s", d.id, len(d.data), d.purpose, d.source)
    if not d.quantum:
        print(f"qcat: warning: draw {d.id} is os-fallback (os.urandom), NOT quantum: the pool "
              "held too few bytes", file=sys.stderr)
    if args.json:
        ctx.emit_json({"id": d.id, "purpose": d.purpose, "source": d.source, "hex": d.hex,
                       "bytes": len(d.data), "created": d.created, "provenance": d.provenance})
    else:
        ctx.out(d.hex)
    return 0


def _export(ctx: Context, args: argparse.Namespace) -> int:
    with _open(ctx) as pool:
        res = pool.export_pack(args.bytes, Path(args.file))
        left = pool.available_bytes()
    log.info("exported %d bytes as pack %s to %s", res.size, res.pack_id, res.path)
    ctx.out(f"moved {plural(res.size, 'byte')} into {res.path} (pack {res.pack_id}, "
            f"sha256 {res.file_sha256[:16]}...)")
    ctx.out(f"they will never be served from this pool; {left:,} usable bytes remain here")
    return 0


def _import(ctx: Context, args: argparse.Namespace) -> int:
    with _open(ctx) as pool:
        stored = pool.import_pack(Path(args.file))
        left = pool.available_bytes()
    log.info("imported %s as batch %d (%s)", args.file, stored.id, stored.status)
    if not stored.usable:
        raise CheckFailed(f"the pack's {stored.size:,} bytes failed the health tests and were "
                          f"quarantined as batch {stored.id}: {'; '.join(stored.reasons)}",
                          hint="none of them will be served; see `qcat entropy quarantine`")
    ctx.out(f"added {stored.size:,} bytes from {args.file} as batch {stored.id}; "
            f"the pool holds {left:,} usable bytes")
    return 0


def _quarantine(ctx: Context, args: argparse.Namespace) -> int:
    with _open(ctx) as pool:
        rows = pool.quarantined()
    if args.json:
        ctx.emit_json(rows)
        return 0
    if not rows:
        ctx.out("no quarantined batches")
    for r in rows:
        prov = r["provenance"]
        where = prov.get("base_url") or f"pack {prov.get('pack_id', '?')}"
        ctx.out(f"batch {r['batch']}  {r['created']}  {r['source']}  {r['size']:,} bytes  "
                f"from {where}")
        ctx.out(f"    {r['reason']}")
    return 0


def _audit(ctx: Context, args: argparse.Namespace) -> int:
    with _open(ctx) as pool:
        rep = pool.audit()
    if args.json:
        ctx.emit_json({"ok": rep.ok, "violations": rep.violations, "counts": rep.counts})
    else:
        for v in rep.violations:
            ctx.out(f"VIOLATION: {v}")
        counts = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in rep.counts.items())
        ctx.out(("audit passed: " if rep.ok else "audit FAILED: ") + counts)
    if not rep.ok:
        raise CheckFailed(f"the entropy pool audit found {plural(len(rep.violations), 'violation')}",
                          hint=f"first: {rep.violations[0]}")
    return 0
