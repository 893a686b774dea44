"""`bookbot db upgrade|current|move-data-dir`, `bookbot reviews stats|export`, `bookbot users add|list|set-password|set-role`.

Settings are built inside each command and heavy modules imported lazily, so
`bookbot --help` stays fast and importing this module touches no database.
"""

from __future__ import annotations

from contextlib import contextmanager

import json
from pathlib import Path
from typing import Optional

import typer

from app.commandkit import command_settings, fail
from rich.console import Console
from rich.table import Table

console = Console()
db_app = typer.Typer(help="Database schema (Alembic migrations; Chainlit's tables included).",
                     no_args_is_help=True)
reviews_app = typer.Typer(help="Review statistics, editor agreement and dataset exports.",
                          no_args_is_help=True)
users_app = typer.Typer(help="Accounts and roles (reader, editor, lab).", no_args_is_help=True)


def _store():  # noqa: ANN202
    from app.review import db
    from app.review.store import ReviewStore

    settings = command_settings()
    url = settings.resolved_database_url
    try:
        db.upgrade(url)
    except db.StoreUnavailable as exc:
        fail(str(exc))
    return ReviewStore(url)


# ------------------------------------------------------------------ db
@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision (default: newest).")) -> None:
    """Create or migrate the database (SQLite in the data dir, or BOOKBOT_DATABASE_URL)."""
    from app.review import db

    url = command_settings().resolved_database_url
    try:
        before = db.current(url)
        after = db.upgrade(url, revision)
    except db.StoreUnavailable as exc:
        fail(str(exc))
    console.print(f"{db.safe_url(url)}: {before or 'blank'} → [bold]{after}[/bold]")


@db_app.command("current")
def db_current() -> None:
    """Show which migration the database is at and the newest one this code ships."""
    from app.review import db

    url = command_settings().resolved_database_url
    try:
        rev = db.current(url)
    except db.StoreUnavailable as exc:
        fail(str(exc))
    head = db.head()
    state = "up to date" if rev == head else "needs `bookbot db upgrade`"
    console.print(f"{db.safe_url(url)}: at {rev or 'blank (no tables)'}; newest {head} — {state}")


@db_app.command("move-data-dir")
def db_move_data_dir(source: Optional[Path] = typer.Option(
        None, "--from", help="The one-machine data dir to move (default: BOOKBOT_DATA_DIR).")) -> None:
    """Move a one-machine data dir's shared state into BOOKBOT_DATABASE_URL (PostgreSQL) and
    BOOKBOT_CHROMA_URL: books and excerpts, their vectors as they are (no re-embedding), the
    SQLite database's rows (accounts, reviews, chat history; tables the target already has
    rows in are left alone), tuning snapshots with their files and which one is active, chat
    element payloads.  The source is not changed; a re-run moves only what is not there yet."""
    from app.library.errors import LibraryError
    from app.library.library import open_catalog
    from app.library.move import move_library
    from app.review import db
    from app.review.shared_tables import import_element_files
    from app.review.store import ReviewStore
    from app.tuning.snapshots import share_snapshots

    settings = command_settings()
    if not settings.shared_database:
        fail("set BOOKBOT_DATABASE_URL to the shared PostgreSQL database (and BOOKBOT_CHROMA_URL to the "
             "Chroma server) first, e.g. BOOKBOT_DATABASE_URL=postgresql://bookbot@db-host/bookbot")
    source = Path(source or settings.data_dir)
    if not source.is_dir():
        fail(f"{source}: no such data dir")
    try:
        db.upgrade(settings.database_url)
        catalog = open_catalog(settings)
        try:
            report = move_library(source / "library", catalog, settings.chroma_url)
        finally:
            catalog.close()
    except (db.StoreUnavailable, LibraryError) as exc:
        fail(str(exc))
    console.print(report.summary(), highlight=False)
    if not settings.chroma_url:
        console.print("[yellow]note:[/] BOOKBOT_CHROMA_URL is not set, so the vectors stay in this data "
                      "dir's embedded Chroma; other machines would embed the books again")
    old_db = source / "bookbot.db"
    if old_db.is_file():
        from app.review.copy import CopyError, copy_rows

        try:
            db.upgrade(f"sqlite:///{old_db.resolve()}")
            copied, kept = copy_rows(f"sqlite:///{old_db.resolve()}", settings.database_url)
        except (db.StoreUnavailable, CopyError) as exc:
            fail(str(exc))
        per_table = ", ".join(f"{t} {n}" for t, n in copied.items() if n) or "none"
        console.print(f"database rows copied: {sum(copied.values())} ({per_table})"
                      + (f"; left alone (the target already had rows): {', '.join(kept)}" if kept else ""))
    store = ReviewStore(settings.database_url)
    try:
        added, activated = share_snapshots(settings.model_copy(update={"data_dir": source}), store)
        elements = import_element_files(store.engine, source / "chainlit_files")
    finally:
        store.close()
    console.print(f"tuning snapshots: {len(added)} copied, active in the database: "
                  f"{', '.join(activated) or 'unchanged'}; chat element payloads: {elements} copied")
    if report.conflicts:
        raise typer.Exit(1)


# ------------------------------------------------------------------ reviews
def _counts_table(title: str, rows: dict[str, dict[str, int]]) -> Table:
    labels = sorted({k for per in rows.values() for k in per})
    table = Table(title=title)
    table.add_column("")
    for label in labels:
        table.add_column(label, justify="right")
    for name, per in rows.items():
        table.add_row(name, *(str(per.get(label, 0)) for label in labels))
    return table


@reviews_app.command("stats")
def reviews_stats(character: Optional[str] = typer.Option(None, help="Only this character's turns."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Counts per label, per character and per procedure step; editor agreement."""
    from app.review.agreement import review_stats
    from app.review.db import StoreUnavailable

    store = _store()
    try:
        stats = review_stats(store.engine, character)
    except StoreUnavailable as exc:
        fail(str(exc))
    finally:
        store.close()
    if as_json:
        print(json.dumps(stats.as_dict(), indent=2))
        return
    console.print(_counts_table("Labels", {"all": stats.labels}))
    console.print(_counts_table("Per character", stats.per_character))
    console.print(_counts_table("Per procedure step", stats.per_step))
    table = Table(title="Editor agreement (people's own -1/0/+1 ratings)")
    for col in ("editor A", "editor B", "shared steps", "Cohen's kappa"):
        table.add_column(col)
    for p in stats.pairs:
        table.add_row(p.a, p.b, str(p.n), "undefined" if p.kappa is None else f"{p.kappa:.3f}")
    console.print(table)
    alpha = "undefined (needs 2+ editors on the same steps, with differing ratings)" \
        if stats.alpha is None else f"{stats.alpha:.3f}"
    console.print(f"Krippendorff's alpha (ordinal), {stats.editors} editors, "
                  f"{stats.alpha_units} steps rated by 2+: {alpha}")


@reviews_app.command("export")
def reviews_export(
    fmt: str = typer.Option(..., "--format", help="trl-stepwise | prm800k | openai-sft | openai-dpo"),
    out: Path = typer.Option(..., "--out", help="JSONL file to write, e.g. reviews/holmes.jsonl"),
    character: Optional[str] = typer.Option(None, help="Only this character's turns."),
    include_machine: bool = typer.Option(False, help="Also use the step verifier's machine labels."),
) -> None:
    """Stream reviewed turns into a dataset file in a published format."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy import and_, exists, func, select

    from app.domain import ReviewKind
    from app.review import exports
    from app.review.db import StoreUnavailable
    from app.review.models import ReviewRow, TurnRow

    if fmt not in exports.FORMATS:
        fail(f"unknown format {fmt!r}; choose one of: {', '.join(exports.FORMATS)}")
    store = _store()
    system_prompt = _system_prompts()
    try:
        with store._tx() as s:
            q = select(func.count()).select_from(TurnRow).where(exists().where(and_(
                ReviewRow.turn_id == TurnRow.id, ReviewRow.kind == ReviewKind.editor.value)))
            if character:
                q = q.where(TurnRow.character_id == character)
            total = s.scalar(q) or 0
        with Progress(TextColumn("[bold]exporting"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("turns"), TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("export", total=total)
            report = exports.export(store.engine, fmt, out, character=character,
                                    include_machine=include_machine, system_prompt=system_prompt,
                                    on_batch=lambda n: progress.advance(task, n))
    except StoreUnavailable as exc:
        fail(str(exc))
    finally:
        store.close()
    console.print(f"wrote {report.rows} {fmt} rows from {report.turns_seen} reviewed turns to {out}")
    for label, n in sorted(report.labels.items()):
        console.print(f"  {label}: {n}")
    for why, n in sorted(report.skipped.items()):
        console.print(f"  [dim]skipped ({why}): {n}[/dim]")


def _system_prompts():  # noqa: ANN202
    """character id -> a system message from its card (None when cards can't be loaded)."""
    try:
        from app.bots.cards import load_characters

        registry = load_characters(command_settings())
    except Exception:  # noqa: BLE001 - exports work without cards; rows then have no system message
        return None

    def prompt(character_id: str) -> str | None:
        try:
            card = registry.get(character_id)
        except Exception:  # noqa: BLE001
            return None
        if card is None:
            return None
        return f"You are {card.name}. {card.description}".strip()

    return prompt


# ------------------------------------------------------------------ users
@contextmanager
def _accounts():  # noqa: ANN202
    """The migrated store for an account change; an AccountError becomes one clear error line."""
    from app.review.accounts import AccountError

    store = _store()
    try:
        yield store
    except AccountError as exc:
        fail(str(exc))
    finally:
        store.close()


def _read_password(name: str, password: Optional[str], from_stdin: bool) -> str:
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if password is None:
        return typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("add")
def users_add(name: str, role: str = typer.Option("reader", help="reader | editor | lab"),
              password: Optional[str] = typer.Option(None, help="Asked for (hidden) when not given."),
              password_stdin: bool = typer.Option(False, "--password-stdin",
                                                  help="Read the password from standard input.")) -> None:
    """Add an account (asks for the password twice unless --password or --password-stdin)."""
    password = _read_password(name, password, password_stdin)
    with _accounts() as store:
        user = store.add_user(name, password, role)
    console.print(f"added {user.name} ({user.role.value})")


@users_app.command("list")
def users_list() -> None:
    """List accounts and their roles."""
    store = _store()
    try:
        users = store.list_users()
    finally:
        store.close()
    table = Table(title="Accounts")
    table.add_column("name")
    table.add_column("role")
    for u in users:
        table.add_row(u.name, u.role.value)
    console.print(table if users else "no accounts yet: `bookbot users add NAME --role editor`")


@users_app.command("set-password")
def users_set_password(name: str,
                       password: Optional[str] = typer.Option(None, help="Asked for (hidden) when not given."),
                       password_stdin: bool = typer.Option(False, "--password-stdin",
                                                           help="Read the password from standard input.")) -> None:
    """Change an account's password."""
    password = _read_password(name, password, password_stdin)
    with _accounts() as store:
        store.set_password(name, password)
    console.print(f"password of {name} changed")


@users_app.command("set-role")
def users_set_role(name: str, role: str) -> None:
    """Change an account's role (reader, editor, lab)."""
    with _accounts() as store:
        user = store.set_role(name, role)
    console.print(f"{user.name} is now {user.role.value}")


def register(root: typer.Typer) -> None:
    root.add_typer(db_app, name="db")
    root.add_typer(reviews_app, name="reviews")
    root.add_typer(users_app, name="users")
