"""`bookbot ask`, `bookbot chat` and `bookbot characters list|check|new|import|export`.

Settings are built inside each command; the library, engine and backends are
imported lazily so `bookbot --help` stays fast.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Optional

import typer

from app.commandkit import command_settings, fail

characters_app = typer.Typer(help="Write, check, import and export character cards.", no_args_is_help=True)


def _console():
    from rich.console import Console
    return Console()


def _notices():
    """Warnings go to stderr, so `bookbot ask --json` prints only JSON on stdout."""
    from rich.console import Console
    return Console(stderr=True)


def _character(settings, character_id: str):
    from app.bots.cards import load_characters
    registry = load_characters(settings)
    try:
        character = registry.get(character_id)
    except KeyError as exc:
        fail(f"{exc.args[0]}. Run `bookbot characters list`.")
    for err in registry.errors():
        if err.path.stem == character_id:
            _notices().print(f"[yellow]Card has errors; using its last good version:[/yellow] {err}")
    return character


def _engine(settings, character, offline: bool, candidates: Optional[int], save: bool):
    from app.bots.backends import ExtractiveBackend, make_backend
    from app.bots.engine import Engine
    from app.library import open_library

    try:
        library = open_library(settings)
    except Exception as exc:  # the library explains what is missing and how to fix it
        fail(f"cannot open the book library: {exc}")
    known = {b.id for b in library.books()}
    missing = [b for b in character.book_ids if b not in known]
    if missing and len(missing) == len(character.book_ids):
        fail(f"{character.name}'s books are not in the library: {', '.join(missing)}. "
              "Run `bookbot books sync` (or add them with `bookbot books add FILE`).")
    if missing:
        _notices().print(f"[yellow]Missing books (answers ignore them): {', '.join(missing)}[/yellow]")
    backend = ExtractiveBackend() if offline else make_backend(settings)
    sink = None
    if save:
        from app.review.db import upgrade
        from app.review.store import ReviewStore
        upgrade(settings.resolved_database_url)
        sink = ReviewStore(settings.resolved_database_url)
    from app.evidence import SentenceVectors

    vectors = SentenceVectors(library.embedder) if library.embedder is not None else None
    from app.tuning.snapshots import tuned_parts   # the active snapshot: re-ranker, verifier, exemplars

    retriever, scorer, exemplars, _ = tuned_parts(
        settings, character.id, library.retriever(),
        warn=lambda msg: _notices().print(msg, style="yellow", markup=False, highlight=False))
    return Engine(retriever, backend, sink=sink, scorer=scorer, exemplars=exemplars, vectors=vectors,
                  candidates=candidates or settings.candidates_per_step, top_k=settings.top_k)


def ask(character_id: str = typer.Argument(..., help="Character id, e.g. sherlock-holmes."),
        question: str = typer.Argument(..., help="Your question, in quotes."),
        offline: bool = typer.Option(False, "--offline", help="Use the extractive backend even if an LLM is set."),
        candidates: Optional[int] = typer.Option(None, "--candidates", "-n", min=1, max=8,
                                                 help="Candidate steps per step (default: setting)."),
        save: bool = typer.Option(False, "--save", help="Store the turn for review in the database."),
        as_json: bool = typer.Option(False, "--json", help="Print only the finished turn as JSON on stdout "
                                                            "(notices go to stderr).")) -> None:
    """Ask a character one question; prints each reasoning step with its citations, then the answer."""
    from app.bots.render import EventPrinter

    settings = command_settings()
    character = _character(settings, character_id)
    engine = _engine(settings, character, offline, candidates, save)
    console = _console()
    if as_json:
        from dataclasses import asdict

        from app.bots.engine import Notice, TurnDone
        turn = None
        for event in engine.run(character, question, conversation_id=str(uuid.uuid4())):
            if isinstance(event, Notice):
                _notices().print(event.message, style="yellow", markup=False, highlight=False)
            elif isinstance(event, TurnDone):
                turn = event.turn
        typer.echo(json.dumps(asdict(turn), default=str, ensure_ascii=False, indent=2))
        return
    printer = EventPrinter(console, character, streams=engine.backend.streams)
    for event in engine.run(character, question, conversation_id=str(uuid.uuid4())):
        printer(event)


def chat(character_id: str = typer.Argument(..., help="Character id, e.g. alice."),
         offline: bool = typer.Option(False, "--offline", help="Use the extractive backend even if an LLM is set."),
         candidates: Optional[int] = typer.Option(None, "--candidates", "-n", min=1, max=8),
         save: bool = typer.Option(False, "--save", help="Store turns for review in the database.")) -> None:
    """Talk with a character in the terminal (empty line, 'exit' or Ctrl-D to leave)."""
    from rich.text import Text

    from app.bots.render import EventPrinter

    settings = command_settings()
    character = _character(settings, character_id)
    engine = _engine(settings, character, offline, candidates, save)
    console = _console()
    console.print(Text(f"{character.icon} {character.name}: {character.greeting}".strip(), style="bold green"))
    if character.starters:
        console.print(Text("Try: " + " | ".join(character.starters[:3]), style="dim"))
    history: list[tuple[str, str]] = []
    conversation_id = str(uuid.uuid4())
    while True:
        try:
            question = console.input("\n[bold]you>[/bold] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if not question or question.lower() in ("exit", "quit", ":q"):
            break
        printer = EventPrinter(console, character, streams=engine.backend.streams)
        for event in engine.run(character, question, history, conversation_id):
            printer(event)
        if printer.turn is not None:
            history.append((question, printer.turn.answer))


# ------------------------------------------------------------------ characters

def _known_book_ids(settings) -> set[str] | None:
    """Book ids declared by the manifests in books/, or None when there are none."""
    import yaml
    ids: set[str] = set()
    folder = Path(settings.books_dir)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        entries = data if isinstance(data, list) else (data.get("books") if isinstance(data, dict)
                                                       and isinstance(data.get("books"), list) else [data])
        for entry in entries or []:
            if isinstance(entry, dict) and entry.get("id"):
                ids.add(str(entry["id"]))
    return ids or None


@characters_app.command("list")
def list_characters() -> None:
    """List the cards in the characters folder, with any errors."""
    from rich.table import Table

    from app.bots.cards import load_characters
    settings = command_settings()
    registry = load_characters(settings)
    table = Table(title=f"Characters in {settings.characters_dir}")
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("lang")
    table.add_column("books")
    table.add_column("procedure")
    table.add_column("status")
    stale = set(registry.stale())
    for c in registry.all():
        status = "[yellow]stale: file has errors[/yellow]" if c.id in stale else "[green]ok[/green]"
        table.add_row(c.id, c.name, c.language, "\n".join(c.book_ids), " → ".join(s.name for s in c.procedure),
                      status)
    console = _console()
    console.print(table)
    for err in registry.errors():
        console.print(f"[red]{err}[/red]", highlight=False)


@characters_app.command("check")
def check_characters(targets: list[str] = typer.Argument(None, help="Card ids or YAML paths (default: all).")) -> None:
    """Validate cards: every problem with file, line, field and fix. Exit code 1 on any error."""
    from app.bots.cards import CardInvalid, card_files, parse_card_file
    settings = command_settings()
    console = _console()
    paths: list[Path] = []
    for t in targets or []:
        p = Path(t)
        paths.append(p if p.suffix in (".yaml", ".yml") else Path(settings.characters_dir) / f"{t}.yaml")
    paths = paths or card_files(Path(settings.characters_dir))
    if not paths:
        fail(f"no cards in {settings.characters_dir}; create one with `bookbot characters new ID`")
    known_books = _known_book_ids(settings)
    bad = 0
    for path in paths:
        try:
            card = parse_card_file(path)
        except CardInvalid as exc:
            bad += 1
            for err in exc.errors:
                console.print(f"[red]✗ {err}[/red]", highlight=False)
            continue
        unknown = [b for b in card.books if known_books is not None and b not in known_books]
        if unknown:
            console.print(f"[yellow]! {path}: books {unknown} have no manifest in {settings.books_dir}; "
                          "add them with `bookbot books add FILE` or fix the ids[/yellow]", highlight=False)
        rules = sum(len(s.next) for s in card.procedure.steps)
        shape = f", a graph with {rules} transition(s)" if rules else ""
        console.print(f"[green]✓ {path}[/green] ({card.name}, {len(card.procedure.steps)} steps{shape})",
                      highlight=False)
    if bad:
        raise typer.Exit(1)


@characters_app.command("new")
def new_character(card_id: str = typer.Argument(..., help="Slug, e.g. dr-watson."),
                  name: str = typer.Option(..., "--name", help="Display name."),
                  book: list[str] = typer.Option([], "--book", help="Library book id (repeat for several)."),
                  language: str = typer.Option("en", "--language")) -> None:
    """Scaffold a valid card with a three-step procedure to edit."""
    from app.bots.cardio import scaffold_card
    from app.bots.cards import CardInvalid, parse_card_text
    from app.bots.cardschema import SLUG
    settings = command_settings()
    if not SLUG.match(card_id):
        fail("the id must be a slug: lower-case letters, digits and '-', e.g. dr-watson")
    path = Path(settings.characters_dir) / f"{card_id}.yaml"
    if path.exists():
        fail(f"{path} already exists; edit it or pick another id")
    text = scaffold_card(card_id, name, list(book), language)
    try:
        parse_card_text(text, path)
    except CardInvalid as exc:
        fail(str(exc))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    _console().print(f"[green]Created {path}[/green]. Edit its persona and procedure, then run "
                     f"`bookbot characters check {card_id}`.", highlight=False)


@characters_app.command("import")
def import_character(source: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                   help="Character Card V2 JSON file."),
                     book: list[str] = typer.Option([], "--book", help="Book id(s) if the card has none."),
                     card_id: Optional[str] = typer.Option(None, "--id", help="Override the card id."),
                     force: bool = typer.Option(False, "--force", help="Overwrite an existing card.")) -> None:
    """Import a Character Card V2 (chara_card_v2) JSON file as a YAML card."""
    from app.bots.cardio import card_to_yaml, import_v2
    from app.bots.cards import CardInvalid
    settings = command_settings()
    try:
        card = import_v2(source, books=list(book) or None, card_id=card_id)
    except CardInvalid as exc:
        fail("\n" + str(exc))
    path = Path(settings.characters_dir) / f"{card.id}.yaml"
    if path.exists() and not force:
        fail(f"{path} already exists; pass --force to overwrite or --id to import under another id")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(card_to_yaml(card), encoding="utf-8")
    _console().print(f"[green]Imported {card.name} → {path}[/green]", highlight=False)


@characters_app.command("export")
def export_character(card_id: str = typer.Argument(...),
                     output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                           help="File to write (default: stdout).")) -> None:
    """Export a card as Character Card V2 JSON (the procedure travels in extensions.bookbot)."""
    from app.bots.cardio import card_to_v2
    from app.bots.cards import load_characters
    settings = command_settings()
    registry = load_characters(settings)
    try:
        card = registry.card(card_id)
    except KeyError as exc:
        fail(exc.args[0])
    text = json.dumps(card_to_v2(card), ensure_ascii=False, indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        _console().print(f"[green]Wrote {output}[/green]", highlight=False)


def register(root: typer.Typer) -> None:
    root.command("ask")(ask)
    root.command("chat")(chat)
    root.add_typer(characters_app, name="characters")
