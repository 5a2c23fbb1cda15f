"""The screen's words for the station's facts: pure functions of snapshots, no widgets, no I/O.

Kept apart from the widgets so that the tests can hold each sentence to what it must say (an empty
pool under the `os` policy must be impossible to miss) without drawing a screen.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from installation.words import plural
from quantum.source import EntropySource

if TYPE_CHECKING:
    from installation.dice import Fairness
    from installation.gallery import Exhibit, Roll
    from installation.station import DiceSnapshot
    from installation.units.supervisor import UnitStatus

BAR_CELLS = 10  # width of the per-job progress bar in the units table
WORKING_STATES = ("working", "speaking")


def source_words(source: str) -> str:
    """Where an exhibit's chance came from, for a visitor."""
    if source == EntropySource.OS_FALLBACK:
        return "os randomness (the quantum pool was empty)"
    if source == EntropySource.IMPORT:
        return "quantum vacuum noise, ANU (imported)"
    return "quantum vacuum noise, ANU"


def made_by(exhibit: Exhibit) -> str:
    """"unit CAT-7" for a unit's exhibit, "controller (numpy)" for one made here."""
    if exhibit.engine.startswith("unit:cat:"):
        return "unit " + exhibit.engine.removeprefix("unit:cat:")
    return f"controller ({exhibit.engine})"


def ago(then: float | None, now: float) -> str:
    if then is None:
        return "-"
    seconds = max(0.0, now - then)
    if seconds < 100:
        return f"{seconds:.0f} s ago"
    if seconds < 6000:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def clock(when: float) -> str:
    """HH:MM:SS of a wall-clock time, local."""
    return time.strftime("%H:%M:%S", time.localtime(when))


def job_progress(status: UnitStatus, layers: int | None) -> str:
    """"#12 layer 3/8 40/96 ▰▰▰▰▱▱▱▱▱▱" for a unit at work, "-" otherwise."""
    if status.job is None:
        return "-"
    if status.progress is None:
        return f"#{status.job} " + ("speaking" if status.state == "speaking" else "starting")
    layer, done, total = status.progress
    filled = round(BAR_CELLS * done / total) if total else 0
    bar = "▰" * filled + "▱" * (BAR_CELLS - filled)
    of = f"/{layers}" if layers else ""
    return f"#{status.job} layer {layer}{of} {done}/{total} {bar}"


def pool_empty(pool: dict[str, Any]) -> bool:
    return int(pool.get("exhibits_left", 0)) == 0


def os_fallback_warning(pool: dict[str, Any]) -> str:
    """The loud sentence when cats are (or are about to be) made with os randomness; "" when not."""
    draws = int(pool.get("os_fallback_draws", 0))
    empty = pool_empty(pool)
    if empty and pool.get("when_empty") == "os":
        lead = "THE QUANTUM POOL IS EMPTY: new cats use the operating system's randomness"
    elif draws:
        lead = "Some cats were made with the operating system's randomness"
    else:
        return ""
    made = f" ({plural(draws, 'exhibit')} so far" + (
        f", the last at {pool['last_os_fallback']})" if pool.get("last_os_fallback") else ")")
    return lead + (made if draws else "") + ". Fetch entropy (f) to go back to quantum bytes."


def days_left(pool: dict[str, Any]) -> str:
    """From the prefetch service's figures when the station has them, else "-"."""
    if "days_left" not in pool or pool["days_left"] is None:
        return "-"
    rate = pool.get("rate_per_day")
    at = f" at {rate:,.0f} exhibits/day" if isinstance(rate, int | float) else ""
    return f"{pool['days_left']:,.1f} days{at}"


def pool_lines(pool: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the entropy panel."""
    return [
        ("bytes", f"{int(pool.get('available_bytes', 0)):,}"),
        ("exhibits left", f"{int(pool.get('exhibits_left', 0)):,}"),
        ("days left", days_left(pool)),
        ("last fetch", str(pool.get("last_fetch") or "never")),
        ("quarantined", plural(int(pool.get("quarantined_batches", 0)), "batch", "batches")),
        ("requests left", f"{int(pool.get('requests_left', 0)):,} this month"),
        ("when empty", policy_words(str(pool.get("when_empty", "")))),
        ("low water", low_water(pool)),
        ("last refill", str(pool.get("refill") or "none since start")),
    ]


def low_water(pool: dict[str, Any]) -> str:
    """The refill mark in days, and whether the pool is below it."""
    mark = pool.get("low_water_days")
    if not isinstance(mark, int | float):
        return "-"
    if mark <= 0:
        return "off (entropy.low_water_days = 0)"
    left = pool.get("days_left")
    if not (isinstance(left, int | float) and left < mark):
        return f"{mark:g} days"
    why = {"no-key": "no ANU API key to refill with",
           "budget-spent": "this month's request budget is spent"}
    return f"{mark:g} days · below: " + why.get(str(pool.get("refill_reason")), "refill due")


def policy_words(when_empty: str) -> str:
    return {"os": "use os randomness (labelled)", "wait": "wait for quantum bytes",
            "fail": "stop making cats"}.get(when_empty, when_empty or "-")


def kiosk_status(units: list[UnitStatus], pool: dict[str, Any] | None, paused: bool,
                 last_roll: Roll | None = None) -> str:
    """The kiosk's discreet line: units at work, the pool in words, and, with a die in the room,
    what it last rolled."""
    working = sum(u.state in WORKING_STATES for u in units)
    parts = [f"{working} of {plural(len(units), 'unit')} working" if units else "no units"]
    if paused:
        parts.append("paused")
    if last_roll is not None and any(is_die(u) for u in units):
        parts.append(f"the die last rolled {last_roll.pips}")
    if pool is None:
        parts.append("entropy pool unreadable")
    elif not pool_empty(pool):
        parts.append(f"quantum bytes for {plural(int(pool['exhibits_left']), 'more cat')}")
    else:
        parts.append({"os": "quantum pool empty: cats use os randomness",
                      "wait": "waiting for quantum bytes",
                      "fail": "quantum pool empty: no new cats until entropy is fetched"}
                     .get(str(pool.get("when_empty")), "quantum pool empty"))
    if pool is not None and pool.get("refill_kind") in REFILL_WORDS:
        parts.append(REFILL_WORDS[str(pool["refill_kind"])])
    return " · ".join(parts)


# The last background refill, as the kiosk's line says it (the dashboard shows the sentence).
REFILL_WORDS = {"filled": "refilled from the ANU", "offline": "ANU unreachable",
                "quota": "ANU quota used up", "budget": "this month's ANU requests spent",
                "failed": "the last refill failed"}


# --------------------------------------------------------------------------------------------
# Dice

# Below this many rolls (10 expected per face) the chi-square test can hardly tell a fair die from
# a loaded one: the panel says so instead of letting a "fair" sound like proof.
FEW_ROLLS = 60
DICE_LINE_ROLLS = 5  # the last rolls the one-line form names


def is_die(status: UnitStatus) -> bool:
    return (status.identity or {}).get("kind") == "die"


def made(status: UnitStatus) -> str:
    """The units table's "made": a cat's exhibits as a number, a die's rolls as "12 rolls"."""
    return plural(status.made, "roll") if is_die(status) else str(status.made)


def die_doing(status: UnitStatus, rolls: list[Roll]) -> str:
    """A die's "progress" cell: its last roll among `rolls` (newest first), "-" when none is
    there. A die has no job and no layers: a roll takes a fraction of a second."""
    serial = (status.identity or {}).get("serial")
    last = next((r for r in rolls if r.serial == serial), None)
    return "-" if last is None else f"last rolled {last.pips}"


def roll_caption(roll: Roll, width: int) -> str:
    """Under a face: "4 pips · SIM-1", shorter ("4 · SIM-1", then the serial cut) to fit `width`."""
    for text in (f"{plural(roll.pips, 'pip')} · {roll.serial}", f"{roll.pips} · {roll.serial}"):
        if len(text) <= width:
            return text
    return text[:max(0, width - 1)] + "…"


def p_words(p: float) -> str:
    """"p = 0.53", "p = 0.004", "p < 0.001"."""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def level_words(level: float) -> str:
    return f"{level * 100:g} %"


def few_rolls(f: Fairness) -> bool:
    return 0 < f.rolls < FEW_ROLLS


def unfair(f: Fairness) -> bool:
    """Rejected at the test's level (the panel says it loudly)."""
    return f.rolls > 0 and not f.fair


def fairness_words(f: Fairness) -> str:
    """The die panel's verdict: "6,000 rolls: chi-square 4.1, p = 0.53 — consistent with a fair
    die at the 1 % level", a loud "LOOKS UNFAIR" when the test rejects, "no rolls yet", and a
    warning that few rolls prove little either way."""
    if f.rolls == 0:
        return "no rolls yet"
    level = level_words(f.level)
    text = f"{plural(f.rolls, 'roll')}: chi-square {f.chi_square:.1f}, {p_words(f.p_value)} — "
    if f.fair:
        text += f"consistent with a fair die at the {level} level"
    else:
        text += f"LOOKS UNFAIR: a fair die rolls this unevenly less than {level} of the time"
    if few_rolls(f):
        text += ", but so few rolls prove little" if f.fair else " (so few rolls prove little)"
    return text


def fair_share(f: Fairness) -> str:
    """The histogram's legend: what each face would count on a perfectly even die."""
    share = f.rolls / len(f.counts) if f.counts else 0.0
    return f"fair share {share:,.0f}" if share >= 10 else f"fair share {share:,.1f}"


def dice_line(dice: DiceSnapshot) -> str:
    """The die panel in one line, for a terminal too narrow for the faces."""
    f = dice.fairness
    if f.rolls == 0:
        return "dice: no rolls yet"
    last = " ".join(str(r.pips) for r in dice.rolls[:DICE_LINE_ROLLS])
    counts = "/".join(f"{f.counts[face]:,}" for face in sorted(f.counts))
    verdict = f"{p_words(f.p_value)}, " + ("LOOKS UNFAIR" if unfair(f) else "fair")
    if few_rolls(f):
        verdict += " (few rolls)"
    return f"dice: last {last} · faces 1-6: {counts} · {plural(f.rolls, 'roll')}, {verdict}"
