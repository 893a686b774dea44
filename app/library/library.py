"""The Library: import, replace and remove books across catalog + BM25 + Chroma, and retrieve.

Every change is staged first and swapped in: the book is parsed, chunked and
embedded in memory, a new BM25 snapshot is written beside the current one,
new vectors are added to Chroma, then one catalog transaction switches the
rows (and the generation); only then are the old vectors and the old
snapshot deleted.  A failure before the switch removes what was staged, so
the library stays exactly as it was.  On open, Chroma and BM25 are reconciled
with the catalog (a crash between steps leaves at most orphans).  With a
PostgreSQL ``database_url`` the catalog is the shared database's
(``app.library.catalog``); BM25 stays a local cache that any instance rebuilds
from the rows when the catalog's generation is not its own.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from app.analyzer import ANALYZER_VERSION
from app.domain import BookMeta, Excerpt
from app.library.bm25 import BM25Index, analyze_many
from app.library.catalog import Catalog
from app.library.errors import DuplicateBook, LibraryError
from app.library.excerpts import ApproxTokenCounter, build_excerpts
from app.library.importers import ParsedBook, read_book, sha256_bytes
from app.library.retrieval import DEFAULT_FUSION, FusionConfig

if TYPE_CHECKING:  # pragma: no cover
    from app.library.retrievers import ExcerptCorpus, LibraryRetriever

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]      # (stage, done, total)
_WARNED: set[str] = set()


def _warn_once(message: str, warn: Callable[[str], None] | None) -> None:
    if message in _WARNED:
        return
    _WARNED.add(message)
    (warn or log.warning)(message)


@dataclass
class AddResult:
    book: BookMeta
    status: str          # "added" | "replaced" | "unchanged"
    excerpts: int
    chapters: int
    seconds: float


class Library:
    def __init__(self, root: Path, catalog: Catalog, embedder, dense, *, warning: str = "",
                 fusion: FusionConfig = DEFAULT_FUSION, postprocessors: Sequence = (),
                 pool_factor: int = 3) -> None:
        self.root = root
        self.catalog = catalog
        self.embedder = embedder
        self.dense = dense
        self.embed_model = dense.embed_model if dense is not None else None
        self.warning = warning
        self.fusion = fusion
        self.postprocessors = list(postprocessors)     # LlamaIndex node postprocessors of every retriever
        self.pool_factor = pool_factor
        self.counter = embedder if embedder is not None else ApproxTokenCounter()
        self._load_state()

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, settings, *, embedder=None, warn: Callable[[str], None] | None = None,
             on_progress: Progress | None = None, fusion: FusionConfig = DEFAULT_FUSION,
             postprocessors: Sequence | None = None) -> "Library":
        """Open (or create) the library in ``settings.data_dir``.

        ``postprocessors``: LlamaIndex node postprocessors applied after fusion; by default
        the ones the settings name (``retrieval_postprocessors`` / ``retrieval_config``).
        """
        from app.library.embedder import load_embedder
        from app.library.plugins import load_retrieval_plugins

        root = Path(settings.data_dir) / "library"
        root.mkdir(parents=True, exist_ok=True)
        warning = ""
        if embedder is None:
            embedder, warning = load_embedder(settings.resolved_embed_model_dir)
            if embedder is None:
                _warn_once(warning, warn)
        # LlamaIndex and Chroma are imported only now, after the ONNX model is loaded: the other
        # order leaves the process ~20 MB larger (allocator fragmentation, measured)
        from app.library.dense import DenseStore, make_client
        from app.library.llama_adapter import LlamaEmbedding

        plugins = load_retrieval_plugins(settings)
        dense = None
        if embedder is not None:
            embed_model = LlamaEmbedding(embedder, long_texts="whole")
            store = plugins.make_vector_store()
            if store is not None:
                dense = DenseStore.over(store, embedder.name, embed_model=embed_model)
            else:
                dense = DenseStore(make_client(root, settings.chroma_url), embedder.name,
                                   shared=bool(settings.chroma_url), embed_model=embed_model)
        library = cls(root, open_catalog(settings), embedder, dense, warning=warning,
                      fusion=fusion, pool_factor=plugins.pool_factor,
                      postprocessors=plugins.postprocessors if postprocessors is None else postprocessors)
        library.reconcile(on_progress)
        return library

    def close(self) -> None:
        self.catalog.close()

    REFRESH_EVERY_S = 1.0       # how often a shared catalog is asked for its generation

    def _bm25_dir(self, generation: int) -> Path:
        return self.root / "bm25" / f"gen-{generation}"

    def _load_state(self) -> None:
        if self.catalog.analyzer_version != ANALYZER_VERSION:
            started = time.perf_counter()
            count = self.catalog.reanalyze(analyze_many, ANALYZER_VERSION)
            if count is not None:
                log.info("library: the words of %d excerpts re-analysed for text analyzer version %d in %.1f s",
                         count, ANALYZER_VERSION, time.perf_counter() - started)
        self.generation = self.catalog.generation
        excerpts, terms = self.catalog.all_excerpts()
        self._excerpts = {e.id: e for e in excerpts}
        self._terms = {e.id: t for e, t in zip(excerpts, terms)}
        path = self._bm25_dir(self.generation)
        bm25 = None
        if (path / "ids.json").is_file():
            try:
                bm25 = BM25Index.load(path)
            except Exception as exc:  # a damaged snapshot is rebuilt from the catalog
                log.warning("BM25 snapshot %s unreadable (%s); rebuilding", path, exc)
        if bm25 is None or set(bm25.ids) != set(self._excerpts):
            ids = list(self._excerpts)
            bm25 = BM25Index.build(ids, tokens=[self._terms[i] for i in ids])
            bm25.save(path)
        self._set_bm25(bm25)
        for old in (self.root / "bm25").glob("gen-*"):      # left behind by an interrupted change
            number = old.name.removeprefix("gen-")
            if number.isdigit() and int(number) < self.generation:
                shutil.rmtree(old, ignore_errors=True)

    def refresh(self) -> bool:
        """Reload when another process (e.g. `bookbot books add` next to a running app, or another
        instance on the shared database) changed the catalog."""
        if self.catalog.shared:
            now = time.monotonic()
            if now - getattr(self, "_checked_at", 0.0) < self.REFRESH_EVERY_S:
                return False
            self._checked_at = now
        if self.catalog.generation == self.generation:
            return False
        self._load_state()
        if self.dense is not None and not self.dense.shared:
            self.reconcile()      # a local vector store lacks what another machine embedded
        return True

    def _set_bm25(self, bm25: BM25Index) -> None:
        from app.library.retrievers import ExcerptCorpus

        self.bm25 = bm25
        self.corpus = ExcerptCorpus(dict(self._excerpts), bm25, self.dense, self.embed_model)

    def reconcile(self, on_progress: Progress | None = None) -> None:
        """Make Chroma hold exactly the catalog's excerpts (after a crash, a model change, or books
        another instance added to a shared catalog)."""
        if self.dense is None:
            return
        if self.dense.count() == len(self._excerpts) and not self.dense.shared:
            return
        stored = self.dense.all_ids(list(self._excerpts))
        extra = stored - set(self._excerpts)
        if extra and not self.dense.shared:       # a server's other vectors belong to other instances
            self.dense.delete(sorted(extra))
        missing = [self._excerpts[i] for i in self._excerpts if i not in stored]
        if missing:
            vectors = self._embed(missing, on_progress, long_ok=True)
            self.dense.add(missing, vectors)

    # ------------------------------------------------------------ reading

    def books(self) -> list[BookMeta]:
        return self.catalog.books()

    def book(self, book_id: str) -> BookMeta | None:
        return self.catalog.book(book_id)

    def excerpts(self, book_id: str) -> list[Excerpt]:
        return [self._excerpts[i] for i in self.catalog.excerpt_ids(book_id)]

    def get(self, excerpt_id: str) -> Excerpt | None:
        return self._excerpts.get(excerpt_id)

    def current(self) -> "ExcerptCorpus":
        """What retrieval reads now (after picking up changes another process made)."""
        self.refresh()
        return self.corpus

    def retriever(self, fusion: FusionConfig | None = None, *, postprocessors: Sequence = (),
                  replace_postprocessors: bool = False) -> "LibraryRetriever":
        """The hybrid retriever (a ``domain.Retriever`` over a LlamaIndex ``BaseRetriever``).

        ``postprocessors`` (LlamaIndex ``BaseNodePostprocessor``s, e.g. an
        ``ExcerptRerankerPostprocessor``) run after the library's configured ones, or
        instead of them with ``replace_postprocessors=True``.
        """
        from app.library.retrievers import LibraryRetriever

        chain = list(postprocessors) if replace_postprocessors else [*self.postprocessors, *postprocessors]
        return LibraryRetriever(self, fusion or self.fusion, postprocessors=chain,
                                pool_factor=self.pool_factor)

    # ------------------------------------------------------------ writing

    def add_file(self, path: Path, *, book_id: str | None = None, title: str | None = None,
                 author: str | None = None, language: str | None = None, source: str | None = None,
                 licence: str | None = None, encoding: str | None = None, replace_existing: bool = False,
                 max_bytes: int = 40 * 1024 * 1024, data: bytes | None = None,
                 on_progress: Progress | None = None) -> AddResult:
        """Import one book file; a no-op when the same bytes are already in the library."""
        started = time.perf_counter()
        path = Path(path)
        if data is None and path.is_file() and path.stat().st_size <= max_bytes:
            data = path.read_bytes()
        if data is not None:
            existing = self.catalog.by_sha(sha256_bytes(data))
            if existing is not None and (book_id is None or book_id == existing.id):
                stats = self.catalog.book_stats(existing.id)
                return AddResult(existing, "unchanged", stats["excerpts"], stats["chapters"],
                                 time.perf_counter() - started)
            if existing is not None:
                raise DuplicateBook(path, f"the same text is already in the library as '{existing.id}'",
                                    f"bookbot books remove {existing.id} first")
        if on_progress:
            on_progress("read", 0, 1)
        parsed = read_book(path, book_id=book_id, title=title, author=author, language=language,
                           source=source, licence=licence, encoding=encoding, max_bytes=max_bytes,
                           data=data)
        if on_progress:
            on_progress("read", 1, 1)
        return self.add_parsed(parsed, path=path, replace_existing=replace_existing,
                               on_progress=on_progress, started=started)

    def add_parsed(self, parsed: ParsedBook, *, path: Path | str = "", replace_existing: bool = False,
                   on_progress: Progress | None = None, started: float | None = None) -> AddResult:
        started = started or time.perf_counter()
        meta = parsed.meta
        old = self.catalog.book(meta.id)
        if old is not None and old.sha256 == meta.sha256:
            stats = self.catalog.book_stats(meta.id)
            return AddResult(old, "unchanged", stats["excerpts"], stats["chapters"], time.perf_counter() - started)
        if old is not None and not replace_existing and old.source != meta.source:
            raise DuplicateBook(path or meta.id, f"book id '{meta.id}' is already used by "
                                f"'{old.title}' ({old.source})", "pass --id NEW-ID, or --replace")
        excerpts = build_excerpts(meta, parsed.chapters, self.counter)
        terms = analyze_many([e.text for e in excerpts])
        vectors = self._embed(excerpts, on_progress) if self.dense is not None else None
        self._commit(meta, excerpts, terms, vectors, chapters=len(parsed.chapters), on_progress=on_progress)
        return AddResult(self.catalog.book(meta.id), "replaced" if old else "added", len(excerpts),
                         len(parsed.chapters), time.perf_counter() - started)

    def remove(self, book_id: str) -> BookMeta:
        meta = self.catalog.book(book_id)
        if meta is None:
            known = ", ".join(b.id for b in self.books()) or "none"
            raise LibraryError(book_id, f"no such book in the library (books: {known})")
        self._commit(meta, [], [], None, chapters=0, delete=True)
        return meta

    def _embed(self, excerpts: Sequence[Excerpt], on_progress: Progress | None, *,
               long_ok: bool = False) -> np.ndarray:
        total = len(excerpts)
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress("embed", done, total)

        if on_progress:
            on_progress("embed", 0, total)
        texts = [e.text for e in excerpts]
        if long_ok:
            out = self.embedder.embed_long(texts)
            step(total)
            return out
        return self.embedder.embed(texts, on_progress=step)

    def _commit(self, meta: BookMeta, excerpts: list[Excerpt], terms: list[list[str]],
                vectors: np.ndarray | None, *, chapters: int, delete: bool = False,
                on_progress: Progress | None = None) -> None:
        old_ids = set(self.catalog.excerpt_ids(meta.id))
        new_ids = [e.id for e in excerpts]
        keep = [i for i in self.bm25.ids if self._excerpts[i].book_id != meta.id]
        ids = keep + new_ids
        tokens = [self._terms[i] for i in keep] + terms
        expected = self.catalog.generation + 1
        generation = expected
        if on_progress:
            on_progress("index", 0, 1)
        staged_dir = self._bm25_dir(generation)
        added: list[str] = []
        try:
            bm25 = BM25Index.build(ids, tokens=tokens)
            bm25.save(staged_dir)
            if self.dense is not None and vectors is not None:
                fresh = [n for n, e in enumerate(excerpts) if e.id not in old_ids]
                added = [excerpts[n].id for n in fresh]
                self.dense.add([excerpts[n] for n in fresh], vectors[fresh])
            if delete:
                generation = self.catalog.delete_book(meta.id)
            else:
                generation = self.catalog.replace_book(meta, excerpts, terms, chapters=chapters,
                                                       embedder=self.embedder.name if self.embedder else "none")
        except BaseException:
            if added:
                try:
                    self.dense.delete(added)
                except Exception as exc:  # reconcile() removes them on the next open
                    log.warning("could not roll back %d vectors: %s", len(added), exc)
            shutil.rmtree(staged_dir, ignore_errors=True)
            raise
        # switched: now drop what the old version left behind
        stale = old_ids - set(new_ids)
        if self.dense is not None and stale:
            try:
                self.dense.delete(sorted(stale))
            except Exception as exc:
                log.warning("stale vectors left for the next open to clean: %s", exc)
        shutil.rmtree(self._bm25_dir(self.generation), ignore_errors=True)
        if generation != expected or self.generation + 1 != expected:
            # another process changed the catalog meanwhile: our in-memory view is not the rows
            shutil.rmtree(staged_dir, ignore_errors=True)
            self._load_state()
            if on_progress:
                on_progress("index", 1, 1)
            return
        self.generation = generation
        for i in old_ids:
            self._excerpts.pop(i, None)
            self._terms.pop(i, None)
        title_excerpts = [replace(e, book_title=meta.title) for e in excerpts]
        self._excerpts.update({e.id: e for e in title_excerpts})
        self._terms.update(dict(zip(new_ids, terms)))
        self._set_bm25(bm25)
        if on_progress:
            on_progress("index", 1, 1)


def open_catalog(settings) -> Catalog:
    """The shared database's catalog when ``database_url`` is PostgreSQL, else the data dir's SQLite file."""
    if settings.shared_database:
        from sqlalchemy import inspect

        from app.review.db import make_engine

        engine = make_engine(settings.database_url, application_name="bookbot-library", pool_size=10)
        if not inspect(engine).has_table("library_books"):
            engine.dispose()
            raise LibraryError("database", "the shared database has no library tables yet: run "
                               "`bookbot db upgrade` (or start `bookbot serve`, which upgrades it)")
        return Catalog(engine, owns_engine=True, shared=True)
    return Catalog.local(Path(settings.data_dir) / "library" / "catalog.sqlite3")
