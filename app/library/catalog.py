"""The library catalog: books and excerpts (the source of truth), through SQLAlchemy Core.

Two homes, one schema: a SQLite file in the data dir (``Catalog.local``, tables
``books``/``excerpts``/``meta``, the one-machine default) or the shared database
(``Catalog.over(engine)``, tables ``library_books``/``library_excerpts``/
``library_meta``, created by the review area's Alembic migration 0005), so
that every app instance on one PostgreSQL reads the same books.  Chroma and
BM25 are derived from it: after a crash between steps they are reconciled
against the catalog on open.  A book replace is one transaction that also
bumps ``generation``; an instance that sees a generation other than its own
rebuilds its BM25 cache from the rows.  The stored terms carry the version of
the analyzer that made them (``meta`` key ``analyzer``); ``reanalyze`` brings
them up to date in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

from sqlalchemy import (Column, Engine, Index, Integer, MetaData, String, Table, Text, bindparam, delete,
                        insert, select, update)
from sqlalchemy.exc import IntegrityError

from app.analyzer import ANALYZER_VERSION
from app.domain import BookMeta, Excerpt, Location

TERM_SEP = "\x1f"
ANALYZER_KEY = "analyzer"
_BOOK_COLS = ("id", "title", "author", "language", "source", "licence", "sha256")


@dataclass(frozen=True)
class CatalogTables:
    books: Table
    excerpts: Table
    meta: Table


def define_tables(metadata: MetaData, prefix: str = "") -> CatalogTables:
    """The catalog's three tables on ``metadata`` (``prefix`` "library_" in the shared database)."""
    books = Table(
        f"{prefix}books", metadata,
        Column("id", String(200), primary_key=True), Column("title", Text, nullable=False),
        Column("author", Text, nullable=False), Column("language", String(20), nullable=False),
        Column("source", Text, nullable=False), Column("licence", Text, nullable=False),
        Column("sha256", String(64), nullable=False), Column("added_at", String(40), nullable=False),
        Column("chapters", Integer, nullable=False), Column("excerpts", Integer, nullable=False),
        Column("embedder", Text, nullable=False))
    Index(f"{prefix}books_sha", books.c.sha256)
    excerpts = Table(
        f"{prefix}excerpts", metadata,
        Column("id", String(200), primary_key=True), Column("book_id", String(200), nullable=False),
        Column("seq", Integer, nullable=False), Column("text", Text, nullable=False),
        Column("chapter_number", Integer, nullable=False), Column("chapter_title", Text, nullable=False),
        Column("paragraph_start", Integer, nullable=False), Column("paragraph_end", Integer, nullable=False),
        Column("terms", Text, nullable=False))
    Index(f"{prefix}excerpts_book", excerpts.c.book_id, excerpts.c.seq)
    meta = Table(f"{prefix}meta", metadata, Column("key", String(100), primary_key=True),
                 Column("value", Text, nullable=False))
    return CatalogTables(books, excerpts, meta)


LOCAL_TABLES = define_tables(MetaData())
SHARED_TABLES = define_tables(MetaData(), "library_")


class Catalog:
    def __init__(self, engine: Engine, tables: CatalogTables = SHARED_TABLES, *, owns_engine: bool = False,
                 shared: bool = True) -> None:
        self.engine = engine
        self.t = tables
        self.shared = shared          # other processes on other machines may write it too
        self._owns_engine = owns_engine
        with engine.connect() as conn:
            known = conn.scalar(select(tables.meta.c.value).where(tables.meta.c.key == "generation"))
        if known is None:               # a new catalog: its terms will be made by this analyzer
            for key, value in (("generation", "0"), (ANALYZER_KEY, str(ANALYZER_VERSION))):
                try:
                    with engine.begin() as conn:
                        conn.execute(insert(tables.meta).values(key=key, value=value))
                except IntegrityError:  # another process created it first
                    pass

    @classmethod
    def local(cls, path: Path) -> "Catalog":
        """The one-machine catalog: a SQLite file (created with its tables when missing)."""
        from app.review.db import make_engine

        engine = make_engine(f"sqlite:///{Path(path).resolve()}")
        LOCAL_TABLES.books.metadata.create_all(engine)
        return cls(engine, LOCAL_TABLES, owns_engine=True, shared=False)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # ------------------------------------------------------------ reads

    @property
    def generation(self) -> int:
        with self.engine.connect() as conn:
            value = conn.scalar(select(self.t.meta.c.value).where(self.t.meta.c.key == "generation"))
        return int(value) if value else 0

    @property
    def analyzer_version(self) -> int:
        """The analyzer version the stored terms were made with (1: from before versions were kept)."""
        with self.engine.connect() as conn:
            value = conn.scalar(select(self.t.meta.c.value).where(self.t.meta.c.key == ANALYZER_KEY))
        return int(value) if value else 1

    def _book_rows(self, where=None) -> list[BookMeta]:
        q = select(*(self.t.books.c[c] for c in _BOOK_COLS)).order_by(self.t.books.c.id)
        with self.engine.connect() as conn:
            return [BookMeta(*row) for row in conn.execute(q if where is None else q.where(where))]

    def books(self) -> list[BookMeta]:
        return self._book_rows()

    def book(self, book_id: str) -> BookMeta | None:
        rows = self._book_rows(self.t.books.c.id == book_id)
        return rows[0] if rows else None

    def book_stats(self, book_id: str) -> dict:
        b = self.t.books.c
        with self.engine.connect() as conn:
            row = conn.execute(select(b.added_at, b.chapters, b.excerpts, b.embedder)
                               .where(b.id == book_id)).first()
        return dict(row._mapping) if row else {}

    def by_sha(self, sha256: str) -> BookMeta | None:
        rows = self._book_rows(self.t.books.c.sha256 == sha256)
        return rows[0] if rows else None

    def excerpt_ids(self, book_id: str) -> list[str]:
        e = self.t.excerpts.c
        with self.engine.connect() as conn:
            return list(conn.scalars(select(e.id).where(e.book_id == book_id).order_by(e.seq)))

    def all_excerpts(self) -> tuple[list[Excerpt], list[list[str]]]:
        titles = {b.id: b.title for b in self.books()}
        e = self.t.excerpts.c
        excerpts, terms = [], []
        with self.engine.connect() as conn:
            for (eid, book_id, text, cn, ct, ps, pe, t) in conn.execute(
                    select(e.id, e.book_id, e.text, e.chapter_number, e.chapter_title, e.paragraph_start,
                           e.paragraph_end, e.terms).order_by(e.book_id, e.seq)):
                excerpts.append(Excerpt(eid, book_id, text, Location(book_id, cn, ct, ps, pe),
                                        book_title=titles.get(book_id, "")))
                terms.append(t.split(TERM_SEP) if t else [])
        return excerpts, terms

    def rows(self) -> tuple[list[dict], list[dict]]:
        """Every book and excerpt row as stored (for moving a catalog to another database)."""
        with self.engine.connect() as conn:
            books = [dict(r._mapping) for r in conn.execute(select(self.t.books))]
            excerpts = [dict(r._mapping) for r in conn.execute(select(self.t.excerpts))]
        return books, excerpts

    # ------------------------------------------------------------ writes (one transaction each)

    def replace_book(self, meta: BookMeta, excerpts: Sequence[Excerpt], terms: Sequence[list[str]],
                     *, chapters: int, embedder: str) -> int:
        """Swap in a book's rows; returns the catalog's new generation."""
        row = {"id": meta.id, "title": meta.title, "author": meta.author, "language": meta.language,
               "source": meta.source, "licence": meta.licence, "sha256": meta.sha256,
               "added_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "chapters": chapters, "excerpts": len(excerpts), "embedder": embedder}
        rows = [{"id": e.id, "book_id": meta.id, "seq": n, "text": e.text,
                 "chapter_number": e.location.chapter_number, "chapter_title": e.location.chapter_title,
                 "paragraph_start": e.location.paragraph_start, "paragraph_end": e.location.paragraph_end,
                 "terms": TERM_SEP.join(t)} for n, (e, t) in enumerate(zip(excerpts, terms))]
        return self.write_rows([row], rows, delete_books=[meta.id])

    def delete_book(self, book_id: str) -> int:
        return self.write_rows([], [], delete_books=[book_id])

    def write_rows(self, books: Sequence[dict], excerpts: Sequence[dict], *,
                   delete_books: Sequence[str] = ()) -> int:
        """Delete ``delete_books``, insert rows, bump the generation: one transaction; the new generation."""
        with self.engine.begin() as conn:
            gen = self._bump(conn)
            if delete_books:
                conn.execute(delete(self.t.excerpts).where(self.t.excerpts.c.book_id.in_(delete_books)))
                conn.execute(delete(self.t.books).where(self.t.books.c.id.in_(delete_books)))
            if books:
                conn.execute(insert(self.t.books), list(books))
            for batch in iter_batches(list(excerpts), 2000):
                conn.execute(insert(self.t.excerpts), list(batch))
        return gen

    def reanalyze(self, analyze: Callable[[Sequence[str]], list[list[str]]], version: int) -> int | None:
        """Every excerpt's terms made again by ``analyze``, recorded as ``version``: one transaction
        that bumps the generation (every instance then rebuilds its BM25).  Returns the number of
        excerpts, or None when another process had already done it (it waited on the lock)."""
        e, m = self.t.excerpts.c, self.t.meta.c
        with self.engine.connect() as conn, conn.begin() as tx:
            self._bump(conn)
            if conn.scalar(select(m.value).where(m.key == ANALYZER_KEY)) == str(version):
                tx.rollback()
                return None
            rows = conn.execute(select(e.id, e.text)).all()
            terms = analyze([text for _, text in rows])
            change = update(self.t.excerpts).where(e.id == bindparam("b_id")).values(terms=bindparam("b_terms"))
            for batch in iter_batches([{"b_id": i, "b_terms": TERM_SEP.join(t)}
                                       for (i, _), t in zip(rows, terms)], 2000):
                conn.execute(change, list(batch))
            if not conn.execute(update(self.t.meta).where(m.key == ANALYZER_KEY)
                                .values(value=str(version))).rowcount:
                conn.execute(insert(self.t.meta).values(key=ANALYZER_KEY, value=str(version)))
        return len(rows)

    def _bump(self, conn) -> int:
        """generation + 1, holding the row lock until commit (concurrent writers queue here)."""
        m = self.t.meta.c
        current = conn.scalar(select(m.value).where(m.key == "generation").with_for_update())
        gen = int(current or 0) + 1
        conn.execute(update(self.t.meta).where(m.key == "generation").values(value=str(gen)))
        return gen


def iter_batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
