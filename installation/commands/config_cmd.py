"""`qcat config init|show|check`: write, print and validate the TOML config file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installation import config as config_mod
from installation.commands import add_json, command, group
from installation.errors import ConfigError, InputError
from installation.files import write_atomic
from installation.words import plural

if TYPE_CHECKING:
    from installation.cli import Context


def register(sub: Any) -> None:
    _, cmds = group(sub, "config", "write, show and check the config file")
    p = command(cmds, "init", "write a commented default config file", init,
                description="Write a config file with every key documented and commented out.")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = command(cmds, "show", "print the effective config (secrets hidden)", show)
    add_json(p)
    p = command(cmds, "check", "validate a config file", check,
                description="Check every key of a config file: each unknown key (with the "
                "closest valid one), wrong type, value out of range or not among the choices "
                "is one line; exit 2 when there is any.")
    p.add_argument("file", nargs="?", help="file to check (default: the config in use)")


def init(ctx: Context, args: argparse.Namespace) -> int:
    path: Path = ctx.config_path
    if path.exists() and not args.force:
        raise InputError(f"{path} already exists", hint="add --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0600 before it appears under its name: it may come to hold the API key
    write_atomic(path, config_mod.default_file_text().encode("utf-8"), mode=0o600)
    ctx.out(f"wrote {path}")
    return 0


def show(ctx: Context, args: argparse.Namespace) -> int:
    cfg = ctx.config
    if args.json:
        ctx.emit_json({"file": str(cfg.path) if cfg.path else None, "config": cfg.redacted()})
    else:
        ctx.out(f"# config file: {cfg.path or f'{ctx.config_path} (absent: defaults)'}")
        ctx.out(config_mod.to_toml(cfg))
    return 0


def check(ctx: Context, args: argparse.Namespace) -> int:
    """Every problem of the file, one line each on stderr, then exit 2; a single problem is
    reported exactly as any other command would (its sentence and its own hint)."""
    path = Path(args.file).absolute() if args.file else ctx.config_path
    found = config_mod.problems(path)
    if len(found) == 1:
        raise found[0]
    if found:
        for problem in found:
            print(problem.message, file=sys.stderr)
        raise ConfigError(f"{path} has {plural(len(found), 'problem')}",
                          hint=f"fix each line above, then run `qcat config check {path}` again")
    ctx.out(f"{path}: ok")
    return 0
