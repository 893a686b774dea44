"""`bookbot db move-data-dir`: a one-machine data dir moved into PostgreSQL + a Chroma server.

Real parts: a library built on SQLite with embedded Chroma and the real MiniLM model, a
tuning snapshot made active there, a stored element payload, accounts, a reviewed turn and a
Chainlit thread in the SQLite database; the real PostgreSQL server
and a real `chroma run`.  After the move, a fresh instance (empty data dir) opens the
shared library without embedding anything and finds the book; the snapshot is active in
the database with its files; the account signs in, the reviews (early-stop labels included)
and the thread are there; running the move again changes nothing.
"""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from app.domain import Review, ReviewKind, Role
from server_harness import book_opening, start_chroma, stop_server

pytestmark = [pytest.mark.postgres]
QUESTION = "How did you know Watson had been in Afghanistan?"


class CountingEmbedder:
    """The real embedder, counting the excerpt texts it is asked to embed."""

    def __init__(self, inner) -> None:
        self._inner, self.embedded = inner, 0
        for name in ("name", "window", "max_tokens", "dim", "count_tokens", "embed_query"):
            setattr(self, name, getattr(inner, name))

    def embed(self, texts, **kwargs):
        self.embedded += len(texts)
        return self._inner.embed(texts, **kwargs)

    def embed_long(self, texts, **kwargs):
        self.embedded += len(texts)
        return self._inner.embed_long(texts, **kwargs)


def test_move_data_dir_without_re_embedding(settings, model_dir, shared_dir, pg_url, tmp_path, monkeypatch):
    from app.cli import build
    from app.library import open_library
    from sqlalchemy import text

    from app.analyzer import ANALYZER_VERSION
    from app.library.bm25 import analyze_many
    from app.library.embedder import OnnxEmbedder
    from app.review.store import ReviewStore
    from app.tuning import snapshots as snap

    old = settings.model_copy(update={"embed_model_dir": model_dir})
    library = open_library(old)
    added = library.add_file(tmp_path / "pg244.txt",
                             data=book_opening(shared_dir / "books" / "study_in_scarlet_244.txt", 1))
    with library.catalog.engine.begin() as conn:      # terms as the analyzer before version 2 left them
        conn.execute(text("UPDATE excerpts SET terms = 'stale'"))
        conn.execute(text("DELETE FROM meta WHERE key = 'analyzer'"))
    library.close()
    meta = snap.SnapshotMeta("sherlock-holmes", "v1", snap.now_iso(), notes="moved")
    snap.save_artefacts(old, meta, verifier=None, reranker=None, priors=None, exemplars=None)
    snap.activate(old, "sherlock-holmes", "v1")
    (old.data_dir / "chainlit_files" / "u1" / "e1").parent.mkdir(parents=True)
    (old.data_dir / "chainlit_files" / "u1" / "e1").write_text('{"step_id": "s-1"}')
    turn = _old_database(old.resolved_database_url)

    chroma, chroma_url = start_chroma(tmp_path / "chroma", tmp_path / "chroma.log")
    try:
        for name, value in {"BOOKBOT_DATA_DIR": str(tmp_path / "new"), "BOOKBOT_DATABASE_URL": pg_url,
                            "BOOKBOT_CHROMA_URL": chroma_url, "BOOKBOT_EMBED_MODEL_DIR": str(model_dir)}.items():
            monkeypatch.setenv(name, value)
        runner = CliRunner()
        out = runner.invoke(build(), ["db", "move-data-dir", "--from", str(old.data_dir)])
        assert out.exit_code == 0, out.output
        said = " ".join(out.output.split())                             # Rich wraps long lines
        assert "1 moved" in said and f"vectors copied: {added.excerpts}" in said
        assert "sherlock-holmes@v1" in said and "element payloads: 1 copied" in said

        shared = old.model_copy(update={"data_dir": tmp_path / "fresh", "database_url": pg_url,
                                        "chroma_url": chroma_url})
        embedder = CountingEmbedder(OnnxEmbedder.load(model_dir))
        library = open_library(shared, embedder=embedder)
        assert embedder.embedded == 0                                   # every vector came across
        assert [b.id for b in library.books()] == [added.book.id]
        hits = library.retriever().retrieve(QUESTION, top_k=3)
        assert any("Afghanistan" in h.text for h in hits) and hits[0].scores.dense is not None
        moved, terms = library.catalog.all_excerpts()              # re-analysed on the way
        assert terms == analyze_many([e.text for e in moved]) and library.catalog.analyzer_version == ANALYZER_VERSION
        library.close()

        store = ReviewStore(pg_url)
        assert store.active_snapshot("sherlock-holmes").id == "sherlock-holmes@v1"
        assert "meta.json" in store.snapshot_artefacts("sherlock-holmes@v1")
        assert store.get_user("ed").role.value == "editor" and store.authenticate("ed", "ed-password") is not None
        assert [(r.rating, r.source.value) for r in store.reviews_for_step(turn.steps[0].id)] == [(-1, "human")]
        assert [r.source.value for r in store.reviews_for_step(turn.steps[1].id)] == ["inferred"]
        assert store.get_turn(turn.id).steps[0].excerpts == turn.steps[0].excerpts
        store.record_review(Review(step_id=turn.steps[1].id, reviewer="ann", kind=ReviewKind.editor, rating=1),
                            Role.editor)                               # ids continue after the copied ones
        store.close()
        with psycopg.connect(pg_url) as conn:
            assert conn.execute('SELECT tags, metadata FROM threads').fetchall() == [
                (["Sherlock Holmes"], {"chat_profile": "Sherlock Holmes"})]

        again = runner.invoke(build(), ["db", "move-data-dir", "--from", str(old.data_dir)])
        said = " ".join(again.output.split())
        assert again.exit_code == 0 and "0 moved, 1 already there" in said, said
        assert "element payloads: 0 copied" in said
    finally:
        stop_server(chroma)


def _old_database(url: str):
    """A one-machine SQLite database with an editor, a turn, a -1 review and a Chainlit thread."""
    from sqlalchemy import insert

    from app.review.chainlit_tables import threads, users
    from app.review.db import upgrade
    from app.review.store import ReviewStore

    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "review" / "conftest.py"
    spec = importlib.util.spec_from_file_location("review_fixtures", path)
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)                    # the review tests' realistic turn factory
    make_turn = fixtures.make_turn

    upgrade(url)
    store = ReviewStore(url)
    store.add_user("ed", "ed-password", "editor")
    turn = make_turn()
    store.save_turn(turn)
    store.record_review(Review(step_id=turn.steps[0].id, reviewer="ed", kind=ReviewKind.editor, rating=-1),
                        Role.editor)
    with store.engine.begin() as conn:       # as Chainlit's layer stores them on SQLite: JSON text
        conn.execute(insert(users).values(id="u1", identifier="ed", metadata='{"role": "editor"}',
                                          createdAt="2026-11-30"))
        conn.execute(insert(threads).values(id=turn.conversation_id, name="q", userId="u1",
                                            userIdentifier="ed", tags='["Sherlock Holmes"]',
                                            metadata='{"chat_profile": "Sherlock Holmes"}'))
    store.close()
    return turn


def test_move_data_dir_needs_a_shared_database(settings, monkeypatch):
    from app.cli import build

    monkeypatch.setenv("BOOKBOT_DATA_DIR", str(settings.data_dir))
    out = CliRunner().invoke(build(), ["db", "move-data-dir"])
    assert out.exit_code == 1 and "BOOKBOT_DATABASE_URL" in " ".join(out.output.split())
