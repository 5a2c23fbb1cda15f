"""The app's messages: small dataclasses that thread workers post to the screens.

Workers never touch widgets; they read the station in their own thread and post one of these
(`post_message` is thread-safe and does not wait for the screen, so a unit's worker thread that
reports an event is never held up by drawing). Dataclasses: Textual's `Message.__post_init__`
initialises the message. None bubbles: each is handled where it is posted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    import numpy as np

    from installation.gallery import Exhibit
    from installation.station import DiceSnapshot, LogLine
    from installation.units.supervisor import UnitEvent, UnitStatus


@dataclass
class Snapshot(Message, bubble=False):
    """What the station looks like now, read in a worker (`QcatApp.poll`)."""

    units: list[UnitStatus]
    weights_match: dict[str, bool | None]  # port -> matches the controller's weight image
    layers: int | None  # the model's layer count (a job's "layer n of this")
    pool: dict[str, Any] | None  # Station.pool(), None when it could not be read
    pool_error: str
    latest: list[Exhibit]  # newest first
    log: list[LogLine]
    paused: bool
    picture: np.ndarray | None = None  # the newest exhibit's pixels, (64, 64, 3) uint8
    picture_error: str = ""
    dice: DiceSnapshot | None = None  # the die panel's rolls and fairness, None when unreadable


    @property
    def newest(self) -> Exhibit | None:
        return self.latest[0] if self.latest else None


@dataclass
class UnitHappened(Message, bubble=False):
    """A unit's event worth reacting to at once (a new cat, a verdict spoken, a loss)."""

    event: UnitEvent



@dataclass
class TaskProgress(Message, bubble=False):
    """A long action's progress (`ProgressCallback`'s `(done, total, label)`)."""

    done: int
    total: int
    label: str



@dataclass
class TaskFinished(Message, bubble=False):
    """A long action ended: the sentence to show and how loudly."""

    title: str
    text: str
    severity: str = "information"  # Textual's notification severities
    extra: list[str] = field(default_factory=list)  # detail lines for the log panel

