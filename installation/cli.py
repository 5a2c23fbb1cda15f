"""The `qcat` command line: parses arguments and calls the library; does no work itself.

Each command group lives in `installation/commands/<group>.py` with a `register(subparsers)`
function; handlers receive a `Context` and the parsed arguments and return an exit code. Command
modules import their heavy libraries *inside* the handlers, so `qcat --help` and the kiosk start
fast and torch is imported only by the commands that train or export.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or bad input, 3 a device or service failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from installation import __version__, logs
from installation import config as config_mod
from installation.commands import GROUP_MODULES
from installation.errors import EXIT_BAD_INPUT, ConfigError, QcatError
from installation.paths import CONFIG_ENV, READ_ONLY_ERRNOS, Home
from installation.workspace import Workspace

log = logging.getLogger("qcat.cli")

EPILOG = """\
exit codes: 0 ok, 1 a check failed, 2 bad usage or bad input, 3 a device or service failed
state: everything lives under --home (env QCAT_HOME); see `qcat config show`
"""


@dataclass
class Context:
    """What every handler gets: the home, the (lazily loaded, validated) config, the workspace
    the services take, and output helpers."""

    home: Home
    config_path: Path
    verbose: int = 0
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    read_only: bool = False  # the home could not be written (read-only media)
    config_explicit: bool = False  # --config or QCAT_CONFIG named the file: it must exist
    _config: config_mod.Config | None = None

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path, required=self.config_explicit)
            for secret in self._config.secrets():
                logs.register_secret(secret)
        return self._config

    @property
    def workspace(self) -> Workspace:
        """The home and config as the services take them (loads and checks the config)."""
        return Workspace(self.home, self.config, read_only=self.read_only)

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def emit_json(self, obj: Any) -> None:
        """Print one JSON document (scripts read this; never put a secret in `obj`)."""
        print(json.dumps(obj, indent=2, sort_keys=False, default=str), file=self.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qcat",
        description="qcat supervises a generative-AI art installation: quantum entropy, "
        "int8 cat DCGANs and generative dice on microcontrollers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qcat {__version__}")
    parser.add_argument("--home", metavar="DIR",
                        help="folder holding all state (env QCAT_HOME; default: the user data dir)")
    parser.add_argument("--config", metavar="FILE",
                        help="config file (env QCAT_CONFIG; default: HOME/qcat.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log to stderr too (-vv for debug)")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    for module in GROUP_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # `qcat` or `qcat GROUP` alone: show the help of that level.
        helper = getattr(args, "help_parser", parser)
        helper.print_help()
        return 0 if args.group is None else 2
    home = Home.resolve(args.home)
    ctx = Context(home=home, config_path=home.config_path(args.config), verbose=args.verbose,
                  config_explicit=bool(args.config or os.environ.get(CONFIG_ENV)))
    try:
        ctx.read_only = not home.check().prepare()
        _setup_logging(ctx)
        log.info("qcat %s: %s", __version__, " ".join(sys.argv[1:] if argv is None else argv))
        return int(args.func(ctx, args) or 0)
    except QcatError as exc:
        print(f"qcat: error: {logs.scrub(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {logs.scrub(exc.hint)}", file=sys.stderr)
        log.warning("exit %d: %s", exc.exit_code, exc.message)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`qcat gallery list | head`): not an error of ours. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno not in READ_ONLY_ERRNOS:
            raise  # a bug or a broken machine: the traceback is the useful thing
        # a file qcat had to write sits on read-only media or in a folder it may not write
        where = f" {exc.filename}" if exc.filename else ""
        print(f"qcat: error: cannot write{where}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("qcat: interrupted", file=sys.stderr)
        return 130


def _setup_logging(ctx: Context) -> None:
    """Log with the config's settings; a broken config still logs (with defaults)."""
    try:
        cfg = ctx.config
    except ConfigError:
        cfg = config_mod.defaults()
    logs.setup(ctx.home.log_file, level=cfg["log.level"], max_bytes=cfg["log.max_bytes"],
               backups=cfg["log.backups"], verbose=ctx.verbose)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
