"""`bookbot` command line: one Typer app that mounts each area's sub-commands.

Each area owns its commands in its own module (`app/<area>/commands.py`, a
`register(root)` function); this file only wires them together, so importing
it builds no index, engine or database connection.
"""

from __future__ import annotations

import importlib

import typer

root = typer.Typer(
    name="bookbot",
    help="Chat with book characters whose reasoning you can inspect and correct.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

AREAS = ("app.library.commands", "app.bots.commands", "app.review.commands",
         "app.tuning.commands", "app.ui.commands")


def build() -> typer.Typer:
    for module_name in AREAS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(root)
    return root


def main() -> None:
    build()()


if __name__ == "__main__":
    main()
