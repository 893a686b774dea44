"""Moving a one-machine library into the shared database and Chroma server, without re-embedding.

``move_library(source_root, target, chroma_url)`` copies the books and excerpts of
``<data dir>/library/catalog.sqlite3`` into the shared catalog (one transaction, one new
generation) and the vectors of the embedded Chroma next to it into the Chroma server as
they are (ids, embeddings, metadata, documents).  Vectors go first, rows second — the same
order as a book import — so a failure half-way leaves at most vectors nobody references.
Books already in the target with the same text are left alone; a book whose id is taken
by a different text is reported and not moved.  The source is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.analyzer import ANALYZER_VERSION
from app.library.bm25 import analyze_many
from app.library.catalog import TERM_SEP, Catalog, iter_batches
from app.library.dense import BATCH, COLLECTION, DenseStore, make_client
from app.library.errors import LibraryError


@dataclass
class MoveReport:
    moved: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    vectors: int = 0
    vectors_missing: int = 0           # excerpts whose vector the source lacked (embedded on next open)

    def summary(self) -> str:
        lines = [f"books: {len(self.moved)} moved, {len(self.present)} already there, "
                 f"{len(self.conflicts)} not moved; vectors copied: {self.vectors}"]
        lines += [f"  not moved {book}: {why}" for book, why in self.conflicts.items()]
        if self.vectors_missing:
            lines.append(f"  {self.vectors_missing} excerpts had no vector in the source; the first "
                         "instance that opens the library embeds them")
        return "\n".join(lines)


def move_library(source_root: Path, target: Catalog, chroma_url: str | None) -> MoveReport:
    """Copy ``source_root`` (a data dir's ``library`` folder) into ``target`` and the Chroma server
    (vectors stay where they are without ``chroma_url``)."""
    path = Path(source_root) / "catalog.sqlite3"
    if not path.is_file():
        raise LibraryError(path, "no library catalog here (is --from the old BOOKBOT_DATA_DIR?)")
    source = Catalog.local(path)
    try:
        books, excerpts = source.rows()
        stale_terms = source.analyzer_version != ANALYZER_VERSION
    finally:
        source.close()
    if stale_terms:          # made by an older analyzer: the target's terms are this one's
        fresh = analyze_many([e["text"] for e in excerpts])
        excerpts = [{**e, "terms": TERM_SEP.join(t)} for e, t in zip(excerpts, fresh)]
    report = MoveReport()
    moving = []
    for book in books:
        there = target.book(book["id"])
        if there is None:
            moving.append(book)
        elif there.sha256 == book["sha256"]:
            report.present.append(book["id"])
        else:
            report.conflicts[book["id"]] = (f"the shared library has a different text under this id "
                                            f"({there.title}, sha256 {there.sha256[:12]}…)")
    ids = {b["id"] for b in moving}
    rows = [e for e in excerpts if e["book_id"] in ids]
    if not moving:
        return report
    if chroma_url:
        report.vectors, report.vectors_missing = _copy_vectors(Path(source_root), chroma_url,
                                                               [e["id"] for e in rows])
    target.write_rows(moving, rows)
    report.moved = sorted(ids)
    return report


def _copy_vectors(source_root: Path, chroma_url: str, ids: list[str]) -> tuple[int, int]:
    if not (source_root / "chroma").is_dir():
        return 0, len(ids)
    try:
        source = make_client(source_root, None).get_collection(COLLECTION)
    except Exception:  # noqa: BLE001 - no collection: nothing was ever embedded here
        return 0, len(ids)
    made_by = (source.metadata or {}).get("embedder", "")
    target = DenseStore(make_client(source_root, chroma_url), made_by, shared=True).collection
    wanted = (target.metadata or {}).get("embedder")
    if made_by and wanted and made_by != wanted:
        raise LibraryError(source_root, f"its vectors were made by {made_by}, the server's by {wanted}; "
                           "vectors of different models cannot be mixed")
    copied = 0
    for batch in iter_batches(ids, BATCH):
        got = source.get(ids=list(batch), include=["embeddings", "metadatas", "documents"])
        if got["ids"]:
            target.upsert(ids=got["ids"], embeddings=got["embeddings"], metadatas=got["metadatas"],
                          documents=got["documents"])
            copied += len(got["ids"])
    return copied, len(ids) - copied
