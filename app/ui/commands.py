"""`bookbot serve`: start the chat app (accounts are `bookbot users`, in app/review/commands.py).

Owns the start-up sequence of the web app: upgrade the database (Alembic, our
tables and Chainlit's), create demo users in explicit development mode only,
on the very first start create a lab account with a random one-time password,
make sure the books are there (Rich progress), keep a persistent auth secret
(the setting; else in the shared database or the data dir), then hand over to ``chainlit run app/ui/main.py``.  Heavy
modules are imported inside the commands so ``bookbot --help`` stays fast.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer

from app.commandkit import command_settings

ROOT = Path(__file__).resolve().parents[2]          # where .chainlit/, public/, chainlit.md live
ENTRY = Path(__file__).resolve().parent / "main.py"
FIRST_ACCOUNT = "admin"
DEMO_USERS = (("reader", "reader"), ("editor", "editor"), ("lab", "lab"))
PATH_SETTINGS = ("data_dir", "books_dir", "characters_dir", "reviews_dir", "local_books_dir",
                 "embed_model_dir")


def _store(settings):
    from app.review.db import upgrade
    from app.review.store import ReviewStore

    upgrade(settings.resolved_database_url)
    return ReviewStore(settings.resolved_database_url)


def demo_password(role: str) -> str:
    return f"{role}-demo-password"


def auth_secret(settings) -> str:
    """BOOKBOT_AUTH_SECRET; else, on a shared database, one random secret kept there for every
    instance (a token signed by one is valid on all); else one kept in <data_dir>/auth_secret (mode 600)."""
    if settings.auth_secret:
        return settings.auth_secret
    if settings.shared_database:
        from app.review.db import make_engine
        from app.review.shared_tables import shared_value

        engine = make_engine(settings.database_url)
        try:
            return shared_value(engine, "auth_secret", lambda: secrets.token_urlsafe(48))
        finally:
            engine.dispose()
    path = settings.data_dir / "auth_secret"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


APP_LINKS = (".chainlit", "public")                    # folders: linked
APP_COPIES = ("chainlit.md", "chainlit_ko-KR.md")       # Chainlit refuses welcome pages behind a link


def app_root(settings) -> Path:
    """A Chainlit app root inside the data dir that links to the repo's Chainlit files.

    Chainlit keeps session files in ``<app root>/.files`` and deletes that whole
    folder when a server stops; a root per data dir keeps runtime files out of the
    repo and lets several servers (tests, a second instance) run side by side.
    """
    root = (settings.data_dir / "chainlit_app").resolve()
    root.mkdir(parents=True, exist_ok=True)
    for name in APP_LINKS:
        link, target = root / name, ROOT / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        link.symlink_to(target)
    for name in APP_COPIES:
        shutil.copyfile(ROOT / name, root / name)
    return root


def server_env(settings, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Environment for the chainlit process: absolute BOOKBOT_* paths (it runs in the repo root)."""
    env = dict(os.environ if base is None else base)
    for name in PATH_SETTINGS:
        value = getattr(settings, name)
        if value is not None:
            env[f"BOOKBOT_{name.upper()}"] = str(Path(value).resolve())
    if not settings.database_url:
        env["BOOKBOT_DATABASE_URL"] = settings.resolved_database_url
    env["CHAINLIT_AUTH_SECRET"] = auth_secret(settings)
    env.pop("DATABASE_URL", None)     # Chainlit would build its own data layer from it
    env["CHAINLIT_APP_ROOT"] = str(app_root(settings))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _sync_books(settings, console) -> bool:
    """Fetch/import the manifests' books with a Rich progress bar; False when some are missing."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from app.library.sync import ensure_books

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("books", total=None)

        def on_progress(message: str, done: int, total: int) -> None:
            progress.update(task, description=message, completed=done, total=total or None)

        report = ensure_books(settings, on_progress=on_progress)
    console.print(report.summary())
    return report.ok


def serve(host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
          port: int = typer.Option(8000, help="TCP port."),
          sync_books: bool = typer.Option(True, "--sync-books/--no-sync-books",
                                          help="Fetch/import the manifests' books before starting."),
          watch: bool = typer.Option(False, help="Reload when app/ui changes (development).")) -> None:
    """Start the chat app: database upgrade, books, then `chainlit run app/ui/main.py`."""
    from rich.console import Console

    console = Console(stderr=True)
    settings = command_settings()
    with console.status("upgrading the database…"):
        store = _store(settings)
    console.print(f"database ready: {settings.resolved_database_url.split('@')[-1]}")
    if settings.dev_mode:
        existing = {u.name for u in store.list_users()}
        for name, role in DEMO_USERS:
            if name not in existing:
                store.add_user(name, demo_password(role), role)
        console.print("[yellow]development mode:[/] demo users "
                      + ", ".join(f"{n} / {demo_password(r)}" for n, r in DEMO_USERS))
    if not store.list_users():
        password = secrets.token_urlsafe(12)
        store.add_user(FIRST_ACCOUNT, password, "lab")
        console.print(f"[bold green]First start:[/] created the account '{FIRST_ACCOUNT}' (lab) with password "
                      f"{password}\n  It is shown only now. Change it with `bookbot users set-password "
                      f"{FIRST_ACCOUNT}`; add people with `bookbot users add NAME --role editor`.",
                      soft_wrap=True)
    store.close()
    if sync_books and not _sync_books(settings, console):
        console.print("[yellow]Starting anyway:[/] characters whose books are missing answer from "
                      "what is there (run the fix above, then restart).")
    env = server_env(settings)
    argv = [sys.executable, "-m", "chainlit", "run", str(ENTRY), "--host", host, "--port", str(port),
            "--headless"]
    if watch:
        argv.append("--watch")
    console.print(f"Bookbot on http://{host}:{port}  (Ctrl+C stops it)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(env["CHAINLIT_APP_ROOT"])
    os.execve(sys.executable, argv, env)


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
