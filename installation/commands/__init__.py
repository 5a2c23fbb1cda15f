"""The command groups of `qcat`, one module each, in the order `qcat --help` lists them.

A module exposes `register(subparsers)`. Helpers shared by the groups live here: `group()` makes
a group parser whose bare invocation prints its help, `add_json()` adds the `--json` flag,
`not_built()` is the handler of a command still to come. (Counting things in words is
`installation.words.plural`, a ground module every package may use.)
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from installation.errors import NotBuiltYet

if TYPE_CHECKING:
    from installation.cli import Context


def group(sub: Any, name: str, help: str, description: str | None = None) -> tuple[
        argparse.ArgumentParser, Any]:
    """A command group (`qcat entropy ...`): returns its parser and its sub-command registry."""
    parser = sub.add_parser(name, help=help, description=description or help)
    parser.set_defaults(help_parser=parser)
    return parser, parser.add_subparsers(dest="command", metavar="COMMAND")


def command(sub: Any, name: str, help: str, func: Any,
            description: str | None = None) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=description or help,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=func)
    return parser


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document for scripts")


def not_built(cannot: str, meanwhile: str) -> Any:
    """A handler for a feature this version of qcat does not have: it says so plainly, exit 2.

    `cannot` finishes "qcat cannot ... yet" ("supervise units"); `meanwhile` is the hint, what
    a person can do instead. The words speak of the program, never of our plans or trackers.
    """

    def handler(ctx: Context, args: argparse.Namespace) -> int:
        raise NotBuiltYet(f"qcat cannot {cannot} yet: it is not built in this version of qcat",
                          hint=meanwhile)

    return handler


from installation.commands import (  # noqa: E402  (the helpers above must exist first)
    bench,
    config_cmd,
    demo,
    engine,
    entropy,
    gallery,
    generate,
    kiosk,
    models,
    phrases,
    sd,
    sim,
    tui_cmd,
    units,
)

GROUP_MODULES = (config_cmd, entropy, models, sd, engine, phrases, generate, gallery, demo, bench,
                 units, sim, tui_cmd, kiosk)
