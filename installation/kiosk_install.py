"""`qcat kiosk install`: the systemd unit that starts the kiosk on boot, on the first console.

The kiosk is a Textual app, so it needs a terminal: the unit gives it tty1 (the screen and
keyboard of a Raspberry Pi), takes that console from the login prompt, runs as the user who
installed it with that user's qcat home, and comes back two seconds after any exit. It does
not wait for the units' serial devices: they come and go while it runs and qcat finds them
(and finds them again after a re-plug) itself; udev's "settle" service, the old way to wait
for "all" devices, is deprecated by systemd for exactly that reason and only slows the boot.

    render_unit(command, home, user)  -> the unit's text, every line explained in a comment
    install(...)                      -> KioskInstall: the text, where it went (or would go),
                                         the next steps and the console-boot advice

Must never: run systemctl (the next steps are printed for a person), write anywhere but the
one target, or print (the CLI prints).
"""

from __future__ import annotations

import os
import pwd
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from installation import __version__
from installation.errors import InputError
from installation.files import check_target, write_atomic
from installation.paths import CONFIG_ENV, HOME_ENV, READ_ONLY_ERRNOS

UNIT_NAME = "qcat-kiosk.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
TTY = "tty1"
# Seconds between an exit and the restart: long enough not to spin, short enough that a
# visitor hardly sees the console.
RESTART_S = 2
# What `qcat kiosk install` runs the kiosk as when qcat is not an installed `qcat` script.
MODULE_COMMAND = ("-m", "installation.cli")

RASPBERRY_PI_CONSOLE = (
    "On a Raspberry Pi, boot to the text console, not the desktop: `sudo raspi-config` > "
    "System Options > Boot / Auto Login > Console (B1), or without the menus "
    "`sudo raspi-config nonint do_boot_behaviour B1`. The unit takes tty1 from the login "
    "prompt itself, so no autologin is needed; Console Autologin (B2, "
    "`do_boot_behaviour B2`) works too, but leaves a logged-in shell on tty1 whenever the "
    "kiosk is stopped, so B1 is the safer choice for a public room. The other consoles "
    "(Ctrl+Alt+F2) keep their login prompts for the operator.")


@dataclass(frozen=True)
class KioskInstall:
    """The unit, where it was written (None for a dry run), and what a person does next."""

    unit_text: str
    target: Path
    written: bool
    user: str
    home: Path
    command: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    def next_steps(self) -> list[str]:
        steps = []
        if self.target.parent != SYSTEM_UNIT_DIR or self.target.name != UNIT_NAME:
            steps.append(f"sudo install -m 644 {self.target} {SYSTEM_UNIT_DIR / UNIT_NAME}")
        steps.append("sudo systemctl daemon-reload && sudo systemctl enable --now qcat-kiosk")
        return steps


def qcat_command(argv0: str | None = None, python: str | None = None) -> tuple[str, ...]:
    """The absolute command of this qcat: the `qcat` script that is running, or this Python
    with `-m installation.cli` when qcat runs some other way (`python -m`, a test)."""
    script = Path(sys.argv[0] if argv0 is None else argv0)
    if script.name == "qcat" and script.is_file() and os.access(script, os.X_OK):
        return (str(script.absolute()),)
    return (str(Path(python or sys.executable).absolute()), *MODULE_COMMAND)


def invoking_user(environ: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """Who asked: under sudo the user who typed `sudo`, else the user running qcat."""
    environ = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    if uid == 0 and environ.get("SUDO_USER"):
        return environ["SUDO_USER"]
    return pwd.getpwuid(uid).pw_name


def render_unit(command: Sequence[str], home: Path, user: str, *,
                config: Path | None = None, tty: str = TTY) -> str:
    """The unit file's text; every setting carries a comment that says why it is there."""
    exec_start = " ".join(_exec_word(w) for w in (*command, "kiosk"))
    config_line = ("" if config is None else
                   "# The config file named when the unit was installed (--config or QCAT_CONFIG).\n"
                   f"Environment={_env(CONFIG_ENV, config)}\n")
    return f"""\
# {UNIT_NAME}: the qcat kiosk on the first console ({tty}), started on every boot.
# Written by `qcat kiosk install` (qcat {__version__}); run that again to rewrite it.
# Enable: sudo systemctl daemon-reload && sudo systemctl enable --now qcat-kiosk
# Its messages: journalctl -u qcat-kiosk

[Unit]
Description=qcat kiosk (the gallery view and the units) on {tty}
# Start once logins are allowed and the boot splash has let go of the screen.
After=systemd-user-sessions.service plymouth-quit-wait.service
# No wait for the units' serial devices: they come and go while the kiosk runs, and qcat
# finds them (again after a re-plug) by itself; waiting for udev to settle is deprecated.
# Take {tty} from the login prompt, and start only once it has let go of the console.
Conflicts=getty@{tty}.service
After=getty@{tty}.service
# Never give up restarting: an unattended kiosk must come back by itself.
StartLimitIntervalSec=0

[Service]
# Start after the boot's other jobs, so their messages do not scribble over the screen.
Type=idle
# The user who installed the kiosk (it needs the dialout group for the units' serial ports).
User={_plain(user, "user name")}
# The qcat home: the entropy pool, the gallery, the config and the logs.
Environment={_env(HOME_ENV, home)}
{config_line}# The Linux console's terminal type, which the Textual app draws for.
Environment=TERM=linux
# This qcat, by its absolute path (systemd has no PATH of the user's).
ExecStart={exec_start}
# The app needs a terminal: keys come from {tty}, and the picture goes to it (Textual
# draws on stderr, so that goes to the console too).
StandardInput=tty
StandardOutput=tty
StandardError=tty
TTYPath=/dev/{tty}
# Reset the console before starting, hang up whatever else held it, and clear it on exit.
TTYReset=yes
TTYVHangup=yes
TTYVTDisallocate=yes
# Come back {RESTART_S} seconds after any exit, crash or not.
Restart=always
RestartSec={RESTART_S}

[Install]
# Started on every boot to the console (the multi-user target).
WantedBy=multi-user.target
"""


def install(home: Path, *, user: str | None = None, target: Path | None = None,
            dry_run: bool = False, home_named: bool = True, config: Path | None = None,
            command: Sequence[str] | None = None, uid: int | None = None,
            environ: Mapping[str, str] | None = None) -> KioskInstall:
    """Render the unit for `home` and write it atomically to `target` (default: the system's
    unit folder), unless `dry_run`. A folder that cannot be written is one sentence whose hint
    is the exact command that works (sudo with absolute paths), or --dry-run / --output.

    `home_named` says whether the home was named (--home or QCAT_HOME): under sudo a home that
    was not is root's own, never the kiosk user's, so that is refused before anything is done.
    """
    environ = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    who = user or invoking_user(environ, uid)
    cmd = tuple(command) if command is not None else qcat_command()
    if uid == 0 and environ.get("SUDO_USER") and not home_named:
        raise InputError(f"under sudo the qcat home defaults to root's own ({home}), not "
                         f"{environ['SUDO_USER']}'s",
                         hint="name the kiosk's home: sudo "
                              f"{shlex.join(cmd)} --home DIR kiosk install")
    try:
        pwd.getpwnam(who)
    except KeyError:
        raise InputError(f"there is no user {who!r} on this machine to run the kiosk as",
                         hint="name an existing user with --user NAME") from None
    text = render_unit(cmd, home, who, config=config)
    path = target if target is not None else SYSTEM_UNIT_DIR / UNIT_NAME
    notes = [] if who != "root" else [
        "the kiosk would run as root: install it as the user who runs qcat, or name one "
        "with --user NAME"]
    result = KioskInstall(text, path, False, who, home, cmd, notes)
    if dry_run:
        return result
    check_target(path, "--output" if target is not None else None, UNIT_NAME)
    try:
        write_atomic(path, text.encode(), mode=0o644)
    except OSError as exc:
        if exc.errno not in READ_ONLY_ERRNOS:
            raise
        output = ["--output", str(path)] if target is not None else []
        again = "sudo " + shlex.join([*cmd, "--home", str(home), "kiosk", "install",
                                      "--user", who, *output])
        raise InputError(f"cannot write {path}: {exc.strerror}",
                         hint=(f"run it as root: {again}; or see the unit with --dry-run, or "
                               "write it elsewhere with --output FILE")) from None
    return KioskInstall(text, path, True, who, home, cmd, notes)


# -- systemd's quoting -----------------------------------------------------------------------

def _plain(value: str, what: str) -> str:
    """A value that must be one plain word in a unit file (a user name)."""
    if not value or any(c.isspace() or c in "\"'\\%$;" or not c.isprintable() for c in value):
        raise InputError(f"the {what} {value!r} cannot be written into a systemd unit",
                         hint="use a name of letters, digits, '-', '_' and '.'")
    return value


def _checked(value: str) -> str:
    if any(not c.isprintable() for c in value):
        raise InputError(f"the path {value!r} holds a control character and cannot be written "
                         "into a systemd unit", hint="move qcat or its home to a plain path")
    return value


def _exec_word(word: str) -> str:
    """One ExecStart word: `%` is a specifier and `$` a variable to systemd, so both doubled;
    quoted when it holds a space or a quote."""
    text = _checked(word).replace("%", "%%").replace("$", "$$")
    if any(c.isspace() or c in "\"'\\" for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _env(name: str, value: str | os.PathLike[str]) -> str:
    """One Environment= assignment (no `$` expansion there, but specifiers are)."""
    text = _checked(str(value)).replace("%", "%%")
    assignment = f"{name}={text}"
    if any(c.isspace() or c in "\"'\\" for c in text):
        return '"' + assignment.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return assignment
