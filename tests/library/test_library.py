"""The library end to end with the real model, Chroma and BM25: add, search, replace, remove, roll back."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from app.library import open_library
from app.library.errors import DuplicateBook

from .conftest import BOOKS

QUESTION = "How did Holmes know that Watson had been in Afghanistan?"


def _state(lib):
    return {
        "books": [(b.id, b.sha256) for b in lib.books()],
        "catalog": sorted(lib._excerpts),
        "bm25": sorted(lib.bm25.ids),
        "bm25_dirs": sorted(p.name for p in (lib.root / "bm25").iterdir()),
        "chroma": sorted(lib.dense.all_ids()) if lib.dense else None,
    }


def test_add_search_get_reopen(lib_settings, embedder, sample_book):
    lib = open_library(lib_settings, embedder=embedder)
    result = lib.add_file(sample_book)
    assert result.status == "added" and result.book.id == "gutenberg-244" and result.chapters == 2
    state = _state(lib)
    assert state["catalog"] == state["bm25"] == state["chroma"] and len(state["catalog"]) == result.excerpts
    hits = lib.retriever().retrieve(QUESTION, top_k=3)
    assert any("Afghanistan" in h.text for h in hits)
    top = hits[0]
    assert top.scores.bm25 is not None and top.scores.dense is not None and 0 < top.scores.fused <= 1
    assert top.scores.bm25_rank or top.scores.dense_rank
    assert top.book_title == "A Study In Scarlet" and top.location.chapter_number in (1, 2)
    assert lib.retriever().get(top.id).text == top.text
    assert lib.retriever().retrieve(QUESTION, book_ids=["gutenberg-999"]) == []
    assert [h.id for h in lib.retriever().retrieve(QUESTION, top_k=3, book_ids=["gutenberg-244"])] == \
        [h.id for h in hits]
    lib.close()
    reopened = open_library(lib_settings, embedder=embedder)
    assert [h.id for h in reopened.retriever().retrieve(QUESTION, top_k=3)] == [h.id for h in hits]
    assert _state(reopened) == state


def test_unchanged_is_a_fast_noop_and_changed_replaces_everywhere(lib_settings, embedder, sample_book):
    lib = open_library(lib_settings, embedder=embedder)
    lib.add_file(sample_book)
    before = _state(lib)
    started = time.perf_counter()
    again = lib.add_file(sample_book)
    assert again.status == "unchanged" and time.perf_counter() - started < 0.5
    assert _state(lib) == before

    text = sample_book.read_bytes().decode("utf-8-sig")
    old_line = "\nAfghanistan, I perceive.”"
    assert text.count(old_line) == 1
    sample_book.write_text(text.replace(old_line, "\nKandahar, I perceive.”"), encoding="utf-8")
    changed = lib.add_file(sample_book)
    assert changed.status == "replaced"
    after = _state(lib)
    gone = set(before["catalog"]) - set(after["catalog"])
    assert gone and len(gone) <= 2                       # only the excerpt(s) holding that paragraph
    for index in ("catalog", "bm25", "chroma"):
        assert not gone & set(after[index])
        assert after[index] == after["catalog"]
    assert len(after["bm25_dirs"]) == 1
    assert any("Kandahar" in h.text for h in lib.retriever().retrieve("Kandahar", top_k=1))


def test_remove_deletes_from_every_index(lib_settings, embedder, sample_book):
    lib = open_library(lib_settings, embedder=embedder)
    lib.add_file(sample_book)
    lib.remove("gutenberg-244")
    assert _state(lib)["catalog"] == _state(lib)["chroma"] == _state(lib)["bm25"] == []
    assert lib.retriever().retrieve(QUESTION) == []
    assert open_library(lib_settings, embedder=embedder).books() == []
    with pytest.raises(Exception, match="gutenberg-244: no such book"):
        lib.remove("gutenberg-244")


def test_duplicates_are_refused_and_change_nothing(lib_settings, embedder, sample_book, tmp_path):
    lib = open_library(lib_settings, embedder=embedder)
    lib.add_file(sample_book)
    before = _state(lib)
    other = tmp_path / "other.txt"
    other.write_text("A different book.\n\nWith two paragraphs.\n", encoding="utf-8")
    with pytest.raises(DuplicateBook, match=r"other.txt: book id 'gutenberg-244' is already used by"):
        lib.add_file(other, book_id="gutenberg-244")
    with pytest.raises(DuplicateBook, match=r"already in the library as 'gutenberg-244'"):
        lib.add_file(sample_book, book_id="my-copy")
    assert _state(lib) == before


def test_a_failure_before_the_switch_leaves_the_library_as_it_was(lib_settings, embedder, sample_book, tmp_path,
                                                                  monkeypatch):
    lib = open_library(lib_settings, embedder=embedder)
    lib.add_file(sample_book)
    before = _state(lib)
    hits_before = [h.id for h in lib.retriever().retrieve(QUESTION)]
    second = tmp_path / "pg2097.txt"
    second.write_bytes((BOOKS / "sign_of_four_2097.txt").read_bytes()[:30000] + b"\n")

    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(lib.catalog, "replace_book", boom)
    with pytest.raises(OSError, match="disk full"):
        lib.add_file(second, book_id="sign-part")
    assert _state(lib) == before
    assert [h.id for h in lib.retriever().retrieve(QUESTION)] == hits_before
    monkeypatch.undo()
    assert _state(open_library(lib_settings, embedder=embedder)) == before


def test_without_a_model_search_runs_on_bm25_with_one_warning(bm25_settings, sample_book):
    from app.library import library as library_module

    library_module._WARNED.clear()
    warnings: list[str] = []
    lib = open_library(bm25_settings, warn=warnings.append)
    open_library(bm25_settings, warn=warnings.append)
    assert len(warnings) == 1 and "BM25 only" in warnings[0] and "bookbot models fetch" in warnings[0]
    lib.add_file(sample_book)
    hits = lib.retriever().retrieve(QUESTION, top_k=3)
    assert any("Afghanistan" in h.text for h in hits)
    assert all(h.scores.dense is None and h.scores.bm25 > 0 for h in hits)


def test_korean_questions_find_korean_passages(bm25_settings, sample_book):
    lib = open_library(bm25_settings, warn=lambda m: None)
    lib.add_file(sample_book)
    for name, book_id in (("unsu_joeun_nal_hyeon_jingeon.txt", "ko-unsu-joeun-nal"), ("bombom_kim_yujeong.txt",
                                                                                       "ko-bombom")):
        lib.add_file(BOOKS / "ko" / name, book_id=book_id)
    hits = lib.retriever().retrieve("김 첨지는 아내에게 설렁탕을 사다 주었나?", top_k=3)
    assert hits[0].book_id == "ko-unsu-joeun-nal" and "설렁탕" in hits[0].text
    hits = lib.retriever().retrieve("점순이의 키는 언제 자라나?", top_k=3)
    assert hits[0].book_id == "ko-bombom" and "키" in hits[0].text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shared_index_on_a_real_chroma_server(lib_settings, embedder, sample_book, tmp_path):
    import chromadb

    if shutil.which("chroma") is None:
        pytest.skip("the chroma CLI is not installed")
    port = _free_port()
    server = subprocess.Popen(["chroma", "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = None
        for _ in range(100):
            try:
                client = chromadb.HttpClient(host="127.0.0.1", port=port)
                client.heartbeat()
                break
            except Exception:
                time.sleep(0.2)
        assert client is not None
        settings = lib_settings.model_copy(update={"chroma_url": f"http://127.0.0.1:{port}"})
        lib = open_library(settings, embedder=embedder)
        result = lib.add_file(sample_book)
        assert client.get_collection("bookbot_excerpts").count() == result.excerpts
        assert not (lib.root / "chroma").exists()                 # nothing embedded locally
        hits = lib.retriever().retrieve(QUESTION, top_k=3)
        assert any("Afghanistan" in h.text for h in hits) and hits[0].scores.dense is not None
        # a second instance with its own data dir shares the server's vectors and does not delete them
        other = settings.model_copy(update={"data_dir": tmp_path / "other"})
        second = open_library(other, embedder=embedder)
        assert second.dense.count() == result.excerpts
        second.add_file(sample_book)
        assert client.get_collection("bookbot_excerpts").count() == result.excerpts   # same ids, no copies
        assert [h.id for h in second.retriever().retrieve(QUESTION, top_k=3)] == [h.id for h in hits]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_running_instance_sees_books_added_by_another_process(bm25_settings, sample_book):
    running = open_library(bm25_settings, warn=lambda m: None)
    assert running.retriever().retrieve(QUESTION) == []
    cli_side = open_library(bm25_settings, warn=lambda m: None)
    cli_side.add_file(sample_book)
    assert any("Afghanistan" in h.text for h in running.retriever().retrieve(QUESTION, top_k=3))
    cli_side.remove("gutenberg-244")
    assert running.retriever().retrieve(QUESTION) == []
    assert [p.name for p in (running.root / "bm25").iterdir()] == [f"gen-{running.generation}"]


def _old_terms(text: str) -> str:
    """Terms as analyzer version 1 made them: stems, no base forms of irregular verbs."""
    from app.analyzer import _WORD_RE, _stemmer, stopwords
    from app.library.catalog import TERM_SEP

    return TERM_SEP.join(_stemmer().stemWords([w for w in _WORD_RE.findall(text.lower()) if w not in stopwords()]))


def _downgrade(catalog) -> None:
    """Make a catalog look as a release before analyzer versions left it."""
    from sqlalchemy import delete, select, update

    t = catalog.t
    with catalog.engine.begin() as conn:
        for eid, text in conn.execute(select(t.excerpts.c.id, t.excerpts.c.text)).all():
            conn.execute(update(t.excerpts).where(t.excerpts.c.id == eid).values(terms=_old_terms(text)))
        conn.execute(delete(t.meta).where(t.meta.c.key == "analyzer"))


def test_a_question_meets_the_irregular_verb_forms_of_the_book(bm25_settings, sample_book):
    from app.analyzer import terms

    assert "know" in terms("I knew you came from Afghanistan") and "come" in terms("I knew you came")
    assert terms("Why did she hide the key?") == terms("She hid the key.") == ["hide", "key"]
    lib = open_library(bm25_settings, warn=lambda m: None)
    lib.add_file(sample_book)
    knew = [e for e in lib.excerpts("gutenberg-244") if " knew " in e.text and "know" not in e.text.lower()]
    hits = lib.retriever().retrieve("Did anybody know it?", top_k=100)       # BM25 only: every match
    assert knew and {e.id for e in knew} <= {h.id for h in hits}
    assert all("know" in lib._terms[e.id] for e in knew)


def test_a_library_from_before_the_analyzer_change_is_reanalysed_on_open(bm25_settings, sample_book):
    from app.analyzer import ANALYZER_VERSION
    from app.library.bm25 import analyze_many

    lib = open_library(bm25_settings, warn=lambda m: None)
    lib.add_file(sample_book)
    knew = next(e for e in lib.excerpts("gutenberg-244") if " knew " in e.text)
    _downgrade(lib.catalog)
    generation = lib.catalog.generation
    assert lib.catalog.analyzer_version == 1

    reopened = open_library(bm25_settings, warn=lambda m: None)     # what the next start of the app does
    assert reopened.catalog.analyzer_version == ANALYZER_VERSION
    assert reopened.generation == generation + 1                    # every instance rebuilds its BM25
    assert "know" in reopened._terms[knew.id]
    position = reopened.bm25.ids.index(knew.id)
    assert reopened.bm25.scores("know")[position] > 0
    assert lib.refresh() and "know" in lib._terms[knew.id]          # a running instance picks it up
    assert reopened.catalog.reanalyze(analyze_many, ANALYZER_VERSION) is None    # done once
    assert reopened.catalog.generation == generation + 1


def test_two_instances_on_postgresql_reanalyse_the_shared_catalog_once(pg_url):
    import threading

    from app.analyzer import ANALYZER_VERSION
    from app.domain import BookMeta, Excerpt, Location
    from app.library.bm25 import analyze_many
    from app.library.catalog import SHARED_TABLES, Catalog
    from app.review.db import make_engine

    engine = make_engine(pg_url)
    SHARED_TABLES.books.metadata.create_all(engine)
    first, second = Catalog(engine), Catalog(make_engine(pg_url), owns_engine=True)
    assert first.analyzer_version == ANALYZER_VERSION                # a new catalog is current
    texts = ["I knew you came from Afghanistan.", "She hid the key under the stone."]
    excerpts = [Excerpt(f"b#{n}", "b", text, Location("b", 1, "One", n, n)) for n, text in enumerate(texts)]
    first.replace_book(BookMeta("b", "B", "A", "en", "local", "PD", "0" * 64), excerpts,
                       [analyze_many([t])[0] for t in texts], chapters=1, embedder="none")
    _downgrade(first)
    results: list[int | None] = []
    threads = [threading.Thread(target=lambda c=c: results.append(c.reanalyze(analyze_many, ANALYZER_VERSION)))
               for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [2, None]                     # one did the work, the other waited
    _, terms = second.all_excerpts()
    assert ["know", "come", "afghanistan"] in terms and ["hide", "key", "under", "stone"] in terms
    assert second.analyzer_version == ANALYZER_VERSION
    second.close()
    engine.dispose()
