"""`qcat sd reconcile`: a card comes back from a unit that worked without the controller.

The unit spent reserve records in order and journaled each one before it showed the cat
(docs/formats.md, "Consumption journal"). Reconciling turns that journal into the archive and gives
back what was provably never used:

    read the card: manifest, reserve, journal            (a tampered journal: refused, nothing done)
    find the lease in the pool; the reserve's bytes must be the lease's draws, record by record
    each journaled record -> golden render -> its SHA-256 must be the journal's (F1, F2)
        -> archived as an exhibit of the record's own draw (a mismatch: a unit fault, reported)
    a clean journal proves records k.. were never shown: strike them on the card (zeros, fsync),
        update the manifest, THEN return them to the pool (one transaction)

Why strike before returning: a crash between the two must never leave bytes both on a card a
unit could spend and in the pool; struck-but-not-returned records are simply returned by the next
reconcile (the journal still proves them unused, the strike keeps the unit off them). A torn
journal returns nothing: its last record may have been shown. Reconciling twice changes nothing:
archived draws are skipped, returned records are known to the pool, struck records stay struck.

A record that the pool says was returned but that this card's journal spent means a copy of the
card was used after its twin was reconciled: every such record is reported as an exactly-once
breach (exit 1), never silently archived.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware import cardfmt
from installation import faults
from installation.errors import CheckFailed, InputError
from installation.files import write_atomic
from installation.progress import ProgressCallback
from installation.words import plural

if TYPE_CHECKING:
    from firmware.card import Card
    from installation.exhibit import FindModel, Generator, Model

log = logging.getLogger("qcat.reconcile")


@dataclass
class ReconcileReport:
    card: str
    unit: str
    lease_id: str
    card_id: str
    records: int
    journal: str                       # "clean" or "torn"
    spent: int                         # records the journal counts as spent
    archived: list[int] = field(default_factory=list)          # new exhibit ids
    already_archived: int = 0
    unit_faults: list[str] = field(default_factory=list)       # one sentence each
    breaches: list[int] = field(default_factory=list)          # spent here, returned before
    struck: list[int] = field(default_factory=list)            # struck on the card now
    returned: list[int] = field(default_factory=list)          # given back to the pool now
    already_returned: int = 0
    torn_record: int | None = None     # a torn journal's last record: spent, not archived

    @property
    def ok(self) -> bool:
        return not self.unit_faults and not self.breaches

    def as_dict(self) -> dict[str, Any]:
        return {"card": self.card, "unit": self.unit, "lease_id": self.lease_id,
                "card_id": self.card_id, "records": self.records, "journal": self.journal,
                "spent": self.spent, "archived": self.archived,
                "already_archived": self.already_archived, "unit_faults": self.unit_faults,
                "breaches": self.breaches, "struck": self.struck, "returned": self.returned,
                "already_returned": self.already_returned, "torn_record": self.torn_record,
                "ok": self.ok}

    def sentences(self) -> list[str]:
        out = [f"{self.card}: unit {self.unit}, lease {self.lease_id}, "
               f"{plural(self.records, 'record')}; the journal is {self.journal} and spent "
               f"{plural(self.spent, 'record')}"]
        out.append(f"archived {plural(len(self.archived), 'new exhibit')}"
                   + (f" ({self.already_archived} already archived)" if self.already_archived
                      else ""))
        if self.torn_record is not None:
            out.append(f"record {self.torn_record}'s journal entry is torn: it counts as spent "
                       "(it may have been shown) and is not archived; nothing goes back to the "
                       "pool from a torn journal")
        if self.returned or self.already_returned or self.journal == "clean":
            out.append(f"returned {plural(len(self.returned), 'unused record')} to the pool"
                       + (f" ({self.already_returned} returned before)" if self.already_returned
                          else "") + (f", struck {len(self.struck)} on the card"
                                      if self.struck else ""))
        out += self.unit_faults
        if self.breaches:
            out.append(f"records {', '.join(map(str, self.breaches))} were returned to the pool "
                       "by an earlier reconcile, yet this card spent them: a copy of this card "
                       "was used (exactly-once broken for those bytes)")
        return out


def reconcile(card_path: Path, generator: Generator, models_dir: Path,
              progress: ProgressCallback | None = None) -> ReconcileReport:
    """Reconcile the card at `card_path` (a folder or a FAT32 image) into `generator`'s pool and
    gallery. The card's weight image is kept under `models_dir` when no known model has its hash,
    so that the archive can re-render these exhibits later (F2)."""
    from firmware.card import open_card

    card = open_card(card_path)
    try:
        return _reconcile(card, str(card_path), generator, models_dir, progress)
    finally:
        card.close()


def _reconcile(card: Card, name: str, generator: Generator, models_dir: Path,
               progress: ProgressCallback | None) -> ReconcileReport:
    pool, gallery = generator.pool, generator.gallery
    manifest = cardfmt.read_manifest(card.read(cardfmt.MANIFEST))
    header, records = cardfmt.read_reserve(card.read(cardfmt.RESERVE))
    lease_hex = header.lease_id.hex()
    if manifest.get("lease_id") != lease_hex or manifest.get("card_id") != header.card_id.hex():
        raise InputError(f"{name}: the manifest and the reserve name different leases or cards",
                         hint="the card's files were mixed up; `qcat sd verify` names them")
    try:
        journal = cardfmt.read_journal(card.read(cardfmt.JOURNAL), header, records)
    except cardfmt.TamperedJournal as exc:
        raise CheckFailed(f"{name}: the journal is refused ({exc.message}); nothing was "
                          "archived and nothing returned to the pool",
                          hint="a journal the unit did not write proves nothing: keep the card "
                               "and look at it with `qcat sd verify`") from None
    lease = pool.get_lease(lease_hex)
    if lease.records != header.records or lease.card_id != header.card_id.hex():
        raise CheckFailed(f"{name}: the card's reserve does not match lease {lease_hex} in "
                          "this pool (record count or card id)",
                          hint="the card was altered after it was built")
    draws = pool.lease_draws(lease_hex)
    for state in records:
        if state.record is not None and state.record.raw != draws[state.index].data:
            raise CheckFailed(f"{name}: reserve record {state.index} is not the bytes the "
                              f"pool leased to this card; nothing was done",
                              hint="the card's reserve was altered after it was built")
    report = ReconcileReport(card=name, unit=header.serial, lease_id=lease_hex,
                             card_id=header.card_id.hex(), records=header.records,
                             journal=journal.state, spent=journal.spent)
    returned_before = pool.returned_records(lease_hex)
    # The journal's word first: what it spent can never go back, whatever happens next.
    pool.mark_spent(lease_hex, range(journal.spent))
    model = _card_model(card, header.weights_sha256.hex(), generator.find_model, models_dir)
    archived = gallery.archived_draw_ids()
    for n, entry in enumerate(journal.entries):
        draw = draws[entry.index]
        if entry.index in returned_before:
            report.breaches.append(entry.index)
        elif draw.id in archived:
            report.already_archived += 1
        else:
            from installation.exhibit import WrongCardImage

            try:
                exhibit = generator.finish_from_card(draw, model, entry.image_sha256,
                                                     f"{header.serial} (offline)")
            except WrongCardImage as exc:
                report.unit_faults.append(f"record {entry.index}: {exc.message}")
            else:
                report.archived.append(exhibit.id)
        if progress:
            progress(n + 1, len(journal.entries), f"record {entry.index}")
    if journal.state == "torn":
        report.torn_record = len(journal.entries)
    if journal.proves_unused:
        unused = range(journal.spent, header.records)
        _strike(card, manifest, [i for i in unused if not records[i].struck], report)
        faults.point("reconcile-after-strike")
        give_back = [i for i in unused if i not in returned_before]
        report.already_returned = len(unused) - len(give_back)
        if give_back:
            pool.return_records(lease_hex, give_back)
            report.returned = give_back
    log.info("reconciled %s: %s", name, "; ".join(report.sentences()))
    return report


def _strike(card: Card, manifest: dict[str, Any], indices: list[int],
            report: ReconcileReport) -> None:
    """Zero the records on the card (the unit never uses a struck record), then put the
    reserve's new hash in the manifest (same length: only a hex digest changes)."""
    if not indices:
        return
    for i in indices:
        card.pwrite(cardfmt.RESERVE, cardfmt.record_offset(i), cardfmt.STRUCK)
    report.struck = list(indices)
    files = dict(manifest["files"])
    entry = dict(files[cardfmt.RESERVE])
    entry["sha256"] = hashlib.sha256(card.read(cardfmt.RESERVE)).hexdigest()
    files[cardfmt.RESERVE] = entry
    new = cardfmt.pack_manifest({**manifest, "files": files})
    if len(new) != card.size(cardfmt.MANIFEST):  # (an older card's manifest, not padded)
        raise CheckFailed("the card's manifest cannot be rewritten in place (its size would "
                          "change); the struck records are still recorded in the pool",
                          hint="`qcat sd verify` will name the reserve's hash as different")
    card.pwrite(cardfmt.MANIFEST, 0, new)


def _card_model(card: Card, sha: str, find_model: FindModel, models_dir: Path) -> Model:
    """The model the card's latents were made for: a known one with the hash, else the card's own
    weight image, kept under `models_dir` so the exhibits stay re-renderable."""
    from installation.exhibit import load_model

    found = find_model(sha)
    if found is not None:
        return found
    data = card.read(cardfmt.WEIGHTS)
    if hashlib.sha256(data).hexdigest() != sha:
        raise CheckFailed("the card's weight image is not the one its reserve was made for",
                          hint="`qcat sd verify` names the damaged file")
    kept = models_dir / f"card-{sha[:16]}.qcw"
    if not kept.exists():
        write_atomic(kept, data)
    return load_model(kept)
