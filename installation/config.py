"""qcat's configuration: one TOML file, one table of keys, validated up front.

Every tunable has a row in `SCHEMA` (type, default, allowed values, a line of documentation, and
whether it is a secret). Loading checks the whole file before anything runs; each problem is one
sentence naming the file, the key, the value and the fix (a `ConfigError`, exit 2). `load()`
stops a command at the first; `problems()` lists them all for `qcat config check`. Secrets
(the ANU API key) come from the environment or from a config file of mode 0600, and never leave
this module unredacted: `Config.redacted()` is what `config show` and `--json` print.
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installation.errors import ConfigError, InputError
from installation.reading import read_text_input

REDACTED = "<hidden>"


@dataclass(frozen=True)
class Key:
    """One config key: `section.name`, its type, default and one line of documentation."""

    name: str
    type: type
    default: Any
    doc: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    secret: bool = False
    env: str | None = None  # environment variable that overrides the file
    # a check beyond type, choices and minimum: the value -> None, or why it is wrong
    check: Callable[[Any], str | None] | None = None

    @property
    def section(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short(self) -> str:
        return self.name.split(".", 1)[1]


SCHEMA: tuple[Key, ...] = (
    # entropy: the ANU QRNG client and the byte pool
    Key("entropy.api_url", str, "https://api.quantumnumbers.anu.edu.au",
        "Base URL of the keyed ANU API (only the base: path and query are the service's)."),
    Key("entropy.legacy_api_url", str, "https://qrng.anu.edu.au",
        "Base URL of the legacy, key-less ANU API."),
    Key("entropy.legacy", bool, False,
        "Fetch from the legacy API instead of the keyed one (no key, 1 request a minute)."),
    Key("entropy.api_key", str, "",
        "ANU API key. Prefer the environment variable QCAT_ANU_API_KEY; a config file holding a key must be mode 0600.",
        secret=True, env="QCAT_ANU_API_KEY"),
    Key("entropy.monthly_request_budget", int, 100,
        "Most ANU requests per calendar month (a free key allows about 100).", minimum=0),
    Key("entropy.request_timeout_s", float, 30.0,
        "Seconds to wait for one ANU reply before counting it as failed.", minimum=0.1),
    Key("entropy.max_retries", int, 4,
        "Retries (with exponential backoff) after a 429, a 5xx or a timeout.", minimum=0),
    Key("entropy.when_empty", str, "os",
        "What to do when the pool is empty: 'os' uses os.urandom and labels it os-fallback, "
        "'wait' waits for bytes, 'fail' stops with an error.", choices=("os", "wait", "fail")),
    Key("entropy.wait_timeout_s", float, 600.0,
        "With when_empty = 'wait': how long to wait for bytes before failing.", minimum=0),
    # the low-water mark: the kiosk and the dashboard keep the pool above it while online
    Key("entropy.low_water_days", float, 3.0,
        "Refill the pool from the ANU service when it holds fewer days of exhibits than this, "
        "at the recent rate; 0 turns the refill off.", minimum=0),
    Key("entropy.refill_to_days", float, 7.0,
        "How many days of exhibits a refill fetches up to (never less than low_water_days).",
        minimum=0),
    Key("entropy.rate_window_days", float, 7.0,
        "The recent rate is the exhibits drawn over this many past days, per day.",
        minimum=0.01),
    Key("entropy.assumed_exhibits_per_day", float, 200.0,
        "The rate planned for when the recent history shows fewer exhibits (a new "
        "installation, a quiet week): the pool errs towards too many bytes, never too few.",
        minimum=0),
    Key("entropy.refill_retry_minutes", float, 10.0,
        "After a refill could not reach the service (or it failed), wait this long before "
        "trying again.", minimum=0),
    # models and engines
    Key("models.weights", str, "",
        "Cat weight image (.qcw) to use; empty means the demo model shipped with qcat."),
    Key("models.die_decoder", str, "",
        "Die decoder (.npz, docs/formats.md) the die units must hold and their rolls are checked "
        "with; empty means the decoder shipped with qcat."),
    Key("engine.default", str, "c",
        "Engine that renders exhibits on the controller.", choices=("c", "numpy")),
    # phrases: rendering the verdict bank
    Key("phrases.voice", str, "flite:rms",
        "Voice of the verdicts, ENGINE:VOICE (engines: espeak-ng, flite, festival; a plain name "
        "is an espeak-ng voice). `qcat phrases voices` measures them; docs/voices.md has the "
        "figures. When the engine is missing, espeak-ng:en-us speaks instead.",
        check=lambda v: _voice_problem(v)),  # defined below the table
    Key("phrases.words_per_minute", int, 160, "espeak-ng speed (espeak-ng voices only).",
        minimum=80),
    Key("phrases.pitch", int, 45, "espeak-ng pitch, 0..99 (espeak-ng voices only).", minimum=0),
    Key("phrases.tempo", float, 1.18,
        "Speaking-rate factor of the festival and flite voices (1.0: their own pace; the "
        "default fits the longest verdict in 9 s).", minimum=0.5),
    Key("phrases.sample_rate", int, 16000, "DAC sample rate of the rendered clips, in Hz.",
        choices=(8000, 11025, 16000, 22050)),
    Key("phrases.gap_ms", int, 90, "Silence between the four fragments of a verdict.", minimum=0),
    # the units' SD cards
    Key("sd.max_card_bytes", int, 256 * 10**9,
        "`qcat sd write` refuses a device larger than this many bytes unless --yes names it: a "
        "disk that big is more likely a backup drive than a unit's card.", minimum=1),
    # units (the supervisor)
    Key("units.ports", list, [],
        "Serial ports or pyserial URLs of the units; empty means discover USB devices."),
    Key("units.heartbeat_s", float, 2.0, "Seconds between heartbeats to each unit.", minimum=0.1),
    # the dashboard, the gallery view and the kiosk
    Key("tui.graphics", str, "auto",
        "How the screens draw the cats: 'auto' uses the terminal's graphics protocol (kitty's, or "
        "Sixel) where it answers the query for one, else colour half blocks; 'halfblocks' "
        "always uses half blocks.", choices=("auto", "halfblocks")),
    # logging
    Key("log.level", str, "INFO", "Level of the log file under <home>/logs.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Key("log.max_bytes", int, 1_000_000, "Size at which the log file is rotated.", minimum=10_000),
    Key("log.backups", int, 5, "Rotated log files kept.", minimum=0),
)

KEYS: dict[str, Key] = {k.name: k for k in SCHEMA}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in SCHEMA))
TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
              list: "a list"}


class Config:
    """The effective configuration: defaults, then the file, then the environment."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], path: Path | None) -> None:
        self._values = values
        self._sources = sources
        self.path = path

    def get(self, name: str) -> Any:
        if name not in KEYS:
            raise KeyError(f"unknown config key {name!r}")  # a bug, not a user error
        return self._values[name]

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def source(self, name: str) -> str:
        """Where a value came from: 'default', the file path, or 'env:NAME'."""
        return self._sources[name]

    def redacted(self) -> dict[str, dict[str, Any]]:
        """The config as nested dicts, every secret replaced; safe to print or log."""
        out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        for key in SCHEMA:
            value = self._values[key.name]
            if key.secret:
                value = REDACTED if value else ""
            out[key.section][key.short] = value
        return out

    def secrets(self) -> list[str]:
        """The secret values in force (for the log filter that scrubs them)."""
        return [self._values[k.name] for k in SCHEMA if k.secret and self._values[k.name]]


def defaults() -> Config:
    return Config({k.name: k.default for k in SCHEMA}, {k.name: "default" for k in SCHEMA}, None)


def load(path: Path, *, required: bool = False, environ: dict[str, str] | None = None) -> Config:
    """Load and validate `path` (a missing file means defaults unless `required`).

    A bad file raises its first problem (in file order) as a `ConfigError`; when it has more,
    the hint says so and points at `qcat config check`, which lists them all (`problems()`).
    """
    environ = dict(os.environ) if environ is None else environ
    values = {k.name: k.default for k in SCHEMA}
    sources = {k.name: "default" for k in SCHEMA}
    if path.exists():
        for name, value in _read_file(path).items():
            values[name] = value
            sources[name] = str(path)
    elif required:
        raise _missing(path)
    for key in SCHEMA:
        if key.env and environ.get(key.env):
            values[key.name] = _check_value(key, environ[key.env], f"environment variable {key.env}")
            sources[key.name] = f"env:{key.env}"
    return Config(values, sources, path if path.exists() else None)


def problems(path: Path) -> list[ConfigError]:
    """Every problem of the config file at `path`, in file order; an empty list means it is good.

    This is what `qcat config check` reports: a person fixing a file wants every unknown key,
    wrong type and bad choice at once, not one per run. A file that is missing, unreadable or
    not TOML is a single problem, since nothing past that can be checked. Never raises a
    `ConfigError` itself, and no message holds a secret's value.
    """
    if not path.exists():
        return [_missing(path)]
    try:
        _, found = _scan(path)
    except ConfigError as exc:  # unreadable or not TOML: the one problem there is
        return [exc]
    return found


def _missing(path: Path) -> ConfigError:
    return ConfigError(f"config file {path} does not exist",
                       hint="create one with `qcat config init`")


def _read_file(path: Path) -> dict[str, Any]:
    """The file's valid values by key name, or its first problem raised."""
    values, found = _scan(path)
    if found:
        first = found[0]
        if len(found) > 1:
            more = f"{path} has other problems too: `qcat config check {path}` lists them all"
            first.hint = f"{first.hint}; {more}" if first.hint else more
        raise first
    return values


def _scan(path: Path) -> tuple[dict[str, Any], list[ConfigError]]:
    """Read and check the whole file: (its valid values, every problem found, in file order).

    Raises a ConfigError only when the file cannot be read or parsed at all.
    """
    try:
        text = read_text_input(path, "config file",
                               hint="write it as TOML; `qcat config init --force` makes a fresh one")
    except InputError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}",
                          hint="fix the line named, or start again with `qcat config init --force`") from None
    values: dict[str, Any] = {}
    found: list[ConfigError] = []
    for section, table in data.items():
        if section not in SECTIONS:
            found.append(ConfigError(f"{path}: unknown section [{section}]{_suggest(section, SECTIONS)}",
                                     hint=f"valid sections: {', '.join(SECTIONS)}"))
            continue
        if not isinstance(table, dict):
            found.append(ConfigError(f"{path}: '{section}' must be a [{section}] table, not a single value"))
            continue
        for short, value in table.items():
            name = f"{section}.{short}"
            if name not in KEYS:
                valid = [k.short for k in SCHEMA if k.section == section]
                found.append(ConfigError(f"{path}: unknown key '{name}'{_suggest(short, valid)}",
                                         hint=f"keys of [{section}]: {', '.join(valid)}"))
                continue
            try:
                values[name] = _check_value(KEYS[name], value, str(path))
            except ConfigError as exc:
                found.append(exc)
    if values.get("entropy.api_key"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            found.append(ConfigError(
                f"{path} holds entropy.api_key but other users can read it (mode {mode:04o})",
                hint=f"run `chmod 600 {path}`, or move the key to the environment variable QCAT_ANU_API_KEY"))
    return values, found


def _check_value(key: Key, value: Any, where: str) -> Any:
    """Return the value converted to the key's type, or raise a sentence naming the fix."""
    shown = repr(value) if not key.secret else REDACTED
    expected = TYPE_NAMES[key.type]
    ok_type = (
        isinstance(value, key.type) and not (key.type is int and isinstance(value, bool))
        or (key.type is float and isinstance(value, int) and not isinstance(value, bool))
    )
    if key.env and where.startswith("environment") and isinstance(value, str):
        ok_type = key.type is str
    if not ok_type:
        raise ConfigError(f"{where}: {key.name} = {shown} must be {expected}",
                          hint=f"{key.doc} Default: {_toml(key.default)}")
    if key.type is float:
        value = float(value)
    if key.choices and value not in key.choices:
        options = ", ".join(_toml(c) for c in key.choices)
        raise ConfigError(f"{where}: {key.name} = {shown} is not one of {options}", hint=key.doc)
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{where}: {key.name} = {shown} is below the minimum {key.minimum:g}",
                          hint=key.doc)
    problem = key.check(value) if key.check else None
    if problem:
        raise ConfigError(f"{where}: {key.name} = {shown} {problem}", hint=key.doc)
    return value


def _voice_problem(value: str) -> str | None:
    """phrases.voice names a known engine (whether it is installed is said when it speaks)."""
    from phrases.voices import ENGINES, SEPARATOR

    engine, sep, name = value.strip().partition(SEPARATOR)
    if sep and (engine not in ENGINES or not name):
        return f"is not ENGINE:VOICE with ENGINE one of {', '.join(ENGINES)}"
    if not value.strip():
        return "is empty"
    return None


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def default_file_text() -> str:
    """A complete, commented config file with every key at its default (commented out)."""
    lines = [
        "# qcat configuration. Every key is shown with its default, commented out:",
        "# remove the '#' in front of a key to change it. `qcat config check FILE` validates.",
        "# The ANU API key belongs in the environment (QCAT_ANU_API_KEY); if you put it here,",
        "# make this file private: chmod 600 qcat.toml",
    ]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for key in (k for k in SCHEMA if k.section == section):
            lines.append(f"# {key.doc}")
            if key.choices:
                lines.append(f"# one of: {', '.join(_toml(c) for c in key.choices)}")
            lines.append(f"# {key.short} = {_toml(key.default)}")
    return "\n".join(lines) + "\n"


def to_toml(config: Config) -> str:
    """The effective config as TOML text, secrets redacted (for `config show`)."""
    lines: list[str] = []
    for section, table in config.redacted().items():
        lines.append(f"[{section}]")
        for short, value in table.items():
            src = config.source(f"{section}.{short}")
            note = "" if src == "default" else f"  # from {src}"
            lines.append(f"{short} = {_toml(value)}{note}")
        lines.append("")
    return "\n".join(lines)
