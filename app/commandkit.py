"""What every area's `bookbot` commands share: settings built at the command, and one way to fail.

Kept apart from `app/cli.py` (which only mounts the areas) so that command
modules can import it at top level without import cycles or side effects.
"""

from __future__ import annotations

from typing import NoReturn

import typer


def command_settings():  # noqa: ANN201 - Settings, imported lazily to keep `--help` fast
    """Settings from the environment (BOOKBOT_*), with the data dir created."""
    from app.settings import Settings

    settings = Settings()
    settings.ensure_dirs()
    return settings


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line on stderr and exit non-zero."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
