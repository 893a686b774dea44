"""The library catalog: books and excerpts in one SQLite file (the source of truth).

Chroma and BM25 are derived from it: after a crash between steps they are
reconciled against the catalog on open.  A book replace is one SQLite
transaction; ``generation`` names the BM25 snapshot that matches the rows.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from app.domain import BookMeta, Excerpt, Location

SCHEMA = """
CREATE TABLE IF NOT EXISTS books (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, author TEXT NOT NULL, language TEXT NOT NULL,
  source TEXT NOT NULL, licence TEXT NOT NULL, sha256 TEXT NOT NULL, added_at TEXT NOT NULL,
  chapters INTEGER NOT NULL, excerpts INTEGER NOT NULL, embedder TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS books_sha ON books(sha256);
CREATE TABLE IF NOT EXISTS excerpts (
  id TEXT PRIMARY KEY, book_id TEXT NOT NULL REFERENCES books(id), seq INTEGER NOT NULL,
  text TEXT NOT NULL, chapter_number INTEGER NOT NULL, chapter_title TEXT NOT NULL,
  paragraph_start INTEGER NOT NULL, paragraph_end INTEGER NOT NULL, terms TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS excerpts_book ON excerpts(book_id, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
TERM_SEP = "\x1f"


class Catalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ reads

    @property
    def generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def books(self) -> list[BookMeta]:
        rows = self._db.execute("SELECT id, title, author, language, source, licence, sha256 "
                                "FROM books ORDER BY id").fetchall()
        return [BookMeta(*row) for row in rows]

    def book(self, book_id: str) -> BookMeta | None:
        row = self._db.execute("SELECT id, title, author, language, source, licence, sha256 "
                               "FROM books WHERE id=?", (book_id,)).fetchone()
        return BookMeta(*row) if row else None

    def book_stats(self, book_id: str) -> dict:
        row = self._db.execute("SELECT added_at, chapters, excerpts, embedder FROM books WHERE id=?",
                               (book_id,)).fetchone()
        return dict(zip(("added_at", "chapters", "excerpts", "embedder"), row)) if row else {}

    def by_sha(self, sha256: str) -> BookMeta | None:
        row = self._db.execute("SELECT id FROM books WHERE sha256=?", (sha256,)).fetchone()
        return self.book(row[0]) if row else None

    def excerpt_ids(self, book_id: str) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT id FROM excerpts WHERE book_id=? ORDER BY seq", (book_id,))]

    def all_excerpts(self) -> tuple[list[Excerpt], list[list[str]]]:
        titles = {b.id: b.title for b in self.books()}
        excerpts, terms = [], []
        for (eid, book_id, text, cn, ct, ps, pe, t) in self._db.execute(
                "SELECT id, book_id, text, chapter_number, chapter_title, paragraph_start, "
                "paragraph_end, terms FROM excerpts ORDER BY book_id, seq"):
            excerpts.append(Excerpt(eid, book_id, text, Location(book_id, cn, ct, ps, pe),
                                    book_title=titles.get(book_id, "")))
            terms.append(t.split(TERM_SEP) if t else [])
        return excerpts, terms

    # ------------------------------------------------------------ writes (one transaction each)

    def replace_book(self, meta: BookMeta, excerpts: Sequence[Excerpt], terms: Sequence[list[str]],
                     *, chapters: int, embedder: str, generation: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM excerpts WHERE book_id=?", (meta.id,))
            db.execute("DELETE FROM books WHERE id=?", (meta.id,))
            db.execute("INSERT INTO books VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (meta.id, meta.title, meta.author, meta.language, meta.source, meta.licence,
                        meta.sha256, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        chapters, len(excerpts), embedder))
            db.executemany("INSERT INTO excerpts VALUES (?,?,?,?,?,?,?,?,?)", (
                (e.id, meta.id, n, e.text, e.location.chapter_number, e.location.chapter_title,
                 e.location.paragraph_start, e.location.paragraph_end, TERM_SEP.join(t))
                for n, (e, t) in enumerate(zip(excerpts, terms))))
            self._set_generation(generation)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def delete_book(self, book_id: str, *, generation: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM excerpts WHERE book_id=?", (book_id,))
            db.execute("DELETE FROM books WHERE id=?", (book_id,))
            self._set_generation(generation)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _set_generation(self, generation: int) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES('generation', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (str(generation),))

    def set_generation(self, generation: int) -> None:
        self._set_generation(generation)


def iter_batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
