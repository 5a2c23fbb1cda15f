"""Simulated units for this home: what `qcat sim cat` and `qcat sim die` serve.

The simulators themselves (firmware/sim.py) run the units' own C cores behind a pseudo-terminal
and know nothing of homes or configs. For a cat unit this service resolves what the unit would
have on its card: the weight image (--weights, models.weights, else the shipped demo), the clip
bank (--clips, else HOME/builds/verdicts.qcv, else none: zeros in HELLO), the identity hashes of
both files, and how long a verdict takes to speak (the clip bank's clip lengths; without one, an
estimate from the verdict's words at the configured speaking rate). A die unit carries its
decoder in flash: the one compiled into the firmware (firmware/die/die_weights.h), or, with
--weights, a die weights file (.npz, models.die_reference) as if flashed with it; its HELLO then
names that file's content SHA-256.

With a card (--card DIR, a folder as `qcat sd build --out DIR` writes it) the cat unit has what a
real card gives it: WEIGHTS.QCW, CLIPS.QCV, the hashes its HELLO reports from MANIFEST.JSN, its
serial from the manifest's `unit`, and the reserve and journal for offline work: `serve_cat`
goes offline after the unit's default wait when no controller talks, and `make_offline` makes N
exhibits from the reserve at once with no controller and no pty.

With --emulate (`options.emulate`) the same unit is resolved the same way (weights, clip bank
hashes, serial; a card folder's files) but served by the unit's own rv32 firmware under QEMU
(installation.units.emulator) instead of the host-built core: no faults, no realistic timing
(those are the host simulator's board), and the serial defaults to emucat-PID.

Never prints: the caller hands in `announce(path)` (the port, one line per plug-in) and
`note(sentence)` (what the operator should know, for stderr).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from installation.errors import FormatError, InputError
from installation.files import sha256_of

if TYPE_CHECKING:
    from firmware.cat_unit import Identity, OfflineState
    from firmware.sim import (
        CardAccess,
        CatSimulator,
        DieSimulator,
        Faults,
        OfflineExhibit,
        SimStats,
    )
    from installation.units.emulator import EmulatorRun
    from installation.workspace import Workspace

TIMINGS = ("fast", "realistic")
SERIAL_PREFIX = "simcat-"  # the default serial: simcat-<pid>, distinct per simulator process
EMULATED_SERIAL_PREFIX = "emucat-"  # --emulate: the unit says it is the emulated firmware
DIE_SERIAL_PREFIX = "simdie-"
SECONDS_PER_MINUTE = 60.0
GAPS_PER_VERDICT = 3  # four clips joined with a gap between each


@dataclass(frozen=True)
class CatSimOptions:
    """The command line of `qcat sim cat`, as the service takes it."""

    weights: str | None = None
    clips: str | None = None
    serial: str | None = None
    timing: str = "fast"
    faults: Faults | None = None
    card: str | None = None
    emulate: bool = False


def default_serial(prefix: str = SERIAL_PREFIX) -> str:
    return f"{prefix}{os.getpid()}"


def check_serial(serial: str) -> str:
    """A serial HELLO can carry: 1 to 16 printable ASCII characters, or one sentence."""
    if not serial or len(serial) > 16 or not serial.isascii() or not serial.isprintable():
        raise InputError(f"--serial {serial!r} cannot be a unit's serial number",
                         hint="give 1 to 16 printable ASCII characters, e.g. --serial cat-07")
    return serial


def speak_ms_function(workspace: Workspace, clips: Path | None,
                      note: Callable[[str], None],
                      clips_bytes: bytes | None = None) -> Callable[[int], int]:
    """verdict code -> milliseconds the unit's DAC speaks it (the clip bank at `clips`, or its
    bytes as read from a card, else an estimate from the words)."""
    if clips is not None:
        from phrases.clipbank import ClipBank

        bank = (ClipBank.from_bytes(clips_bytes, clips) if clips_bytes is not None
                else ClipBank.load(clips))
        return lambda code: round(bank.verdict_seconds(code) * 1000)
    from phrases.bank import default_bank

    words = default_bank()
    speech = workspace.speech
    per_word_s = SECONDS_PER_MINUTE / speech.words_per_minute
    gaps_s = GAPS_PER_VERDICT * speech.gap_ms / 1000
    note(f"speaking times are estimated at {speech.words_per_minute} words per minute "
         "(no clip bank)")
    return lambda code: round((len(words.verdict(code).text.split()) * per_word_s + gaps_s)
                              * 1000)


class StableLink:
    """A symbolic link that always points at the simulator's current pty, as udev's
    /dev/serial/by-id/... links follow a real unit across re-plugs: the controller is configured
    with the link and finds the unit again after an unplug. Replaced atomically; removed while
    the unit is unplugged (as udev removes a by-id link: a stale link could otherwise lead to
    whatever device is given the old pty number next) and at exit."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        if self.path.exists() and not self.path.is_symlink():
            raise InputError(f"--link {self.path} exists and is not a symbolic link",
                             hint="name a new path; qcat replaces only its own links")
        if not self.path.parent.is_dir():
            raise InputError(f"--link {self.path}: the folder {self.path.parent} does not exist")

    def point_at(self, target: str) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        if self.path.is_symlink():
            self.path.unlink()


CARD_HINT = "give the folder `qcat sd build --out DIR` made (or the mounted card)"


@dataclass(frozen=True)
class SimCard:
    """A card (folder or image) as the simulated unit finds it: its files and what its manifest
    says."""

    path: Path
    access: CardAccess
    unit: str
    weights_sha256: bytes
    clips_sha256: bytes


def open_sim_card(path: str | os.PathLike[str]) -> SimCard:
    """The card at `path` (a folder or a FAT32 image, `firmware.card`), its five files present
    and its manifest sound; one sentence (InputError or FormatError, exit 2) otherwise."""
    from firmware import cardfmt
    from firmware.card import open_card

    where = Path(path).expanduser()
    if not where.exists():
        raise InputError(f"card {where} (from --card) does not exist", hint=CARD_HINT)
    access = open_card(where)
    for name in cardfmt.CARD_FILES:
        if not access.has(name):
            raise InputError(f"card {where} has no {name}", hint=cardfmt.REBUILD_HINT)
    try:
        manifest = cardfmt.read_manifest(access.read(cardfmt.MANIFEST))
        files = manifest["files"]
        hashes = [bytes.fromhex(files[name]["sha256"]) for name in (cardfmt.WEIGHTS, cardfmt.CLIPS)]
        unit = manifest["unit"]
        if not isinstance(unit, str) or any(len(h) != 32 for h in hashes):
            raise ValueError(unit)
    except FormatError as exc:
        raise FormatError(f"card {where}: {exc.message}", hint=exc.hint) from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise FormatError(f"card {where}: the manifest does not give the unit and the hashes "
                          "of WEIGHTS.QCW and CLIPS.QCV", hint=cardfmt.REBUILD_HINT) from None
    return SimCard(where, access, unit, hashes[0], hashes[1])


def _clip_bank(workspace: Workspace, options: CatSimOptions,
               note: Callable[[str], None]) -> Path | None:
    """The unit's clip bank: --clips, else the home's if built, else none (noted)."""
    if options.clips is not None:
        clips = Path(options.clips).expanduser()
        if not clips.is_file():
            raise InputError(f"clip bank {clips} (from --clips) does not exist or is not a file",
                             hint="build one with `qcat phrases build`")
        return clips
    if workspace.clip_bank_path.is_file():
        return workspace.clip_bank_path
    note(f"no clip bank at {workspace.clip_bank_path}: the unit reports none "
         "(zeros for its SHA-256); `qcat phrases build` makes one")
    return None


def _card_identity(card: SimCard, serial: str | None) -> Identity:
    from firmware.cat_unit import Identity

    if serial is None:
        try:
            serial = check_serial(card.unit)
        except InputError:
            raise FormatError(f"card {card.path}: the manifest's unit {card.unit!r} cannot be a "
                              "unit's serial number", hint="give one with --serial") from None
    return Identity(serial, weights_sha256=card.weights_sha256, clips_sha256=card.clips_sha256)


def serve_cat(workspace: Workspace, options: CatSimOptions, *, announce: Callable[[str], None],
              note: Callable[[str], None], stop: Callable[[], bool],
              unplugged: Callable[[], None] = lambda: None) -> SimStats | EmulatorRun:
    """Serve one simulated cat unit until `stop()`; returns what its board did (the host
    simulator's counters, or the emulator's run with --emulate)."""
    from firmware.cat_unit import Identity
    from firmware.sim import CatSimulator, Timing

    if options.timing not in TIMINGS:
        raise InputError(f"--timing must be one of {', '.join(TIMINGS)}, not {options.timing!r}")
    if options.emulate:
        return _serve_emulated(workspace, options, announce=announce, note=note, stop=stop,
                               unplugged=unplugged)
    if options.card is not None:
        return _card_simulator(workspace, options, announce=announce, note=note,
                               unplugged=unplugged).serve(stop)
    serial = check_serial(options.serial) if options.serial is not None else default_serial()
    weights = workspace.weights_path(options.weights)
    clips = _clip_bank(workspace, options, note)
    identity = Identity(serial, weights_sha256=bytes.fromhex(sha256_of(weights)),
                        clips_sha256=bytes.fromhex(sha256_of(clips)) if clips else bytes(32))
    realistic = options.timing == "realistic"
    timing = Timing(realistic=realistic,
                    speak_ms=speak_ms_function(workspace, clips, note) if realistic
                    else (lambda code: 0))
    sim = CatSimulator(weights, identity, timing=timing, faults=options.faults,
                       announce=announce, unplugged=unplugged, note=note)
    return sim.serve(stop)


def _emulation_refusals(options: CatSimOptions) -> None:
    """What the emulated unit cannot do, one sentence each: the faults and the realistic timing
    are the host simulator's board (the emulated unit runs at QEMU's speed on a clean line)."""
    faults = options.faults
    hint = "leave it out, or leave out --emulate to run the host-built simulator"
    if options.timing != "fast":
        raise InputError(f"--timing {options.timing} is the host simulator's time model; the "
                         "emulated unit runs at QEMU's own speed", hint=hint)
    if faults is not None:
        for flag, value, default in (
                ("--drop-rate", faults.drop_rate, 0.0),
                ("--corrupt-rate", faults.corrupt_rate, 0.0),
                ("--hang-after", faults.hang_after, None),
                ("--unplug-after", faults.unplug_after, None),
                ("--wrong-image-rate", faults.wrong_image_rate, 0.0)):
            if value != default:
                raise InputError(f"{flag} is a fault of the host simulator's board; the emulated "
                                 "unit has a clean line", hint=hint)


def _serve_emulated(workspace: Workspace, options: CatSimOptions, *,
                    announce: Callable[[str], None], note: Callable[[str], None],
                    stop: Callable[[], bool], unplugged: Callable[[], None]) -> EmulatorRun:
    """`qcat sim cat --emulate`: the unit's rv32 image under QEMU (installation.units.emulator)
    with the same weight image, clip bank hashes and serial rules as the host simulator; a card
    folder gives its weights, hashes, serial and, linked, its reserve and journal."""
    from firmware import cardfmt
    from firmware.cat_unit import Identity
    from installation.units.emulator import CatEmulator, EmulatedCard

    _emulation_refusals(options)
    if options.card is not None:
        if options.weights is not None or options.clips is not None:
            raise InputError("--card brings its own weight image and clip bank",
                             hint="leave out --weights and --clips, or --card")
        where = Path(options.card).expanduser()
        if where.exists() and not where.is_dir():
            raise InputError(f"card {where}: the emulated unit takes a card folder, not an "
                             "image", hint="give the folder `qcat sd build --out DIR` made")
        card = open_sim_card(where)
        identity = _card_identity(card, options.serial)
        files = EmulatedCard(card.path / cardfmt.WEIGHTS, card.path / cardfmt.RESERVE,
                             card.path / cardfmt.JOURNAL)
    else:
        serial = (check_serial(options.serial) if options.serial is not None
                  else default_serial(EMULATED_SERIAL_PREFIX))
        weights = workspace.weights_path(options.weights)
        clips = _clip_bank(workspace, options, note)
        identity = Identity(serial, weights_sha256=bytes.fromhex(sha256_of(weights)),
                            clips_sha256=bytes.fromhex(sha256_of(clips)) if clips else bytes(32))
        files = EmulatedCard(weights)
    emulator = CatEmulator(files, identity, announce=announce, note=note)
    run = emulator.serve(stop)
    unplugged()
    return run


def _card_simulator(workspace: Workspace, options: CatSimOptions, *,
                    announce: Callable[[str], None] = lambda p: None,
                    note: Callable[[str], None], unplugged: Callable[[], None] = lambda: None,
                    on_exhibit: Callable[[OfflineExhibit], None] = lambda e: None,
                    offline: bool = False) -> CatSimulator:
    """A cat simulator on the card of `options.card`; with `offline`, one that goes offline at
    once and spends records back to back (offline_after_ms and offline_period_ms 0)."""
    from firmware import cardfmt
    from firmware.cat_unit import Offline
    from firmware.sim import CatSimulator, Timing

    assert options.card is not None
    if options.weights is not None or options.clips is not None:
        raise InputError("--card brings its own weight image and clip bank",
                         hint="leave out --weights and --clips, or --card")
    card = open_sim_card(options.card)
    identity = _card_identity(card, options.serial)
    realistic = options.timing == "realistic"
    timing = Timing(realistic=realistic,
                    speak_ms=speak_ms_function(workspace, card.path / cardfmt.CLIPS, note,
                                               card.access.read(cardfmt.CLIPS))
                    if realistic else (lambda code: 0))
    return CatSimulator(None, identity, timing=timing, faults=options.faults, card=card.access,
                        offline=Offline(0, 0) if offline else None, on_exhibit=on_exhibit,
                        announce=announce, unplugged=unplugged, note=note)


@dataclass(frozen=True)
class OfflineRun:
    """What `make_offline` did: the exhibits made, in order, and the unit's offline state after
    them (why it stopped, the next record, the reserve's size)."""

    asked: int
    exhibits: list[OfflineExhibit]
    state: OfflineState

    @property
    def short(self) -> bool:
        return len(self.exhibits) < self.asked


def make_offline(workspace: Workspace, options: CatSimOptions, count: int, *,
                 on_exhibit: Callable[[OfflineExhibit], None], note: Callable[[str], None],
                 stop: Callable[[], bool] = lambda: False) -> OfflineRun:
    """`count` offline exhibits from the card's reserve, as the unit makes them with no
    controller (each one's journal entry on the card before `on_exhibit` hears of it); fewer
    when the reserve runs out or the unit stops offline work (`OfflineRun.state` says why)."""
    if options.card is None:
        raise InputError("--offline spends a card's reserve: give the card with --card",
                         hint="qcat sim cat --card DIR --offline N")
    if count < 1:
        raise InputError(f"--offline {count}: give at least 1 exhibit")
    if options.timing not in TIMINGS:
        raise InputError(f"--timing must be one of {', '.join(TIMINGS)}, not {options.timing!r}")
    sim = _card_simulator(workspace, options, note=note, on_exhibit=on_exhibit, offline=True)
    try:
        made = sim.make_offline(count, stop)
        return OfflineRun(count, made, sim.unit.offline)
    finally:
        sim.close()


@dataclass(frozen=True)
class DieSimOptions:
    """The command line of `qcat sim die`, as the service takes it."""

    serial: str | None = None
    schedule_s: float | None = None
    weights: str | None = None
    faults: Faults | None = None


@contextlib.contextmanager
def terminal_keys(stream: object) -> Iterator[int | None]:
    """The file descriptor of `stream` in cbreak mode (keys arrive one by one, unechoed) while
    the block runs, when it is a terminal; None otherwise (a pipe, a service manager)."""
    fileno = getattr(stream, "fileno", None)
    try:
        fd = fileno() if fileno is not None else -1
    except (OSError, ValueError):
        fd = -1
    if fd < 0 or not os.isatty(fd):
        yield None
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def die_simulator(options: DieSimOptions, *, announce: Callable[[str], None],
                  note: Callable[[str], None], keys_fd: int | None = None,
                  unplugged: Callable[[], None] = lambda: None) -> DieSimulator:
    """A simulated die unit set up from `options`, not yet serving (`serve(stop)` runs it; its
    `press()` presses the button). `keys_fd`: a terminal in cbreak mode whose Enter and space
    keys press the button."""
    from firmware.die_unit import Identity
    from firmware.sim import MIN_SCHEDULE_S, DieSimulator

    serial = (check_serial(options.serial) if options.serial is not None
              else default_serial(DIE_SERIAL_PREFIX))
    if options.schedule_s is not None and not options.schedule_s >= MIN_SCHEDULE_S:
        raise InputError(f"--schedule {options.schedule_s:g}: the button cannot be pressed more "
                         f"often than every {MIN_SCHEDULE_S} s",
                         hint=f"give a number of seconds of at least {MIN_SCHEDULE_S}")
    engine = None
    sha: bytes | None = None
    if options.weights is not None:
        from firmware.die_engine import DieEngine
        from models import die_reference

        path = Path(options.weights).expanduser()
        if not path.is_file():
            raise InputError(f"die weights {path} (from --weights) do not exist or are not a file",
                             hint="leave --weights out to run the decoder built into the firmware")
        model = die_reference.load(path)
        engine = DieEngine(*model.engine_arrays())
        sha = bytes.fromhex(die_reference.content_sha256(model))
    return DieSimulator(Identity(serial, sha), engine=engine, schedule_s=options.schedule_s,
                        keys_fd=keys_fd, faults=options.faults, announce=announce,
                        unplugged=unplugged, note=note)


def serve_die(options: DieSimOptions, *, announce: Callable[[str], None],
              note: Callable[[str], None], stop: Callable[[], bool], keys_fd: int | None = None,
              unplugged: Callable[[], None] = lambda: None) -> SimStats:
    """Serve one simulated die unit until `stop()`; returns what its board did."""
    sim = die_simulator(options, announce=announce, note=note, keys_fd=keys_fd,
                        unplugged=unplugged)
    if keys_fd is not None:
        note("press Enter or space to roll the die")
    if options.schedule_s is not None:
        note(f"the button is pressed every {options.schedule_s:g} s")
    return sim.serve(stop)
