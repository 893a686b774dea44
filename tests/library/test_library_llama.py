"""The retriever as LlamaIndex parts: instrumentation events, postprocessors, swapped stores, one class."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from llama_index.core import Settings as LlamaSettings
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler

from app.domain import Character, ProcedureStep
from app.library import build_section_index, open_library
from app.library.postprocessors import ExcerptRerankerPostprocessor
from app.library.retrievers import ConvexFusionRetriever, LibraryRetriever

from .conftest import BOOKS

QUESTION = "How did Holmes know that Watson had been in Afghanistan?"
SECTIONS = [("1", "The farmer had seven sons and one daughter, and the youngest son was called Assipattle."),
            ("2", "The Stoorworm was a sea monster whose breath withered every living thing."),
            ("3", "Assipattle took a boat and a pot of burning peat and sailed into the monster's mouth."),
            ("4", "The king promised his daughter to whoever would kill the Stoorworm.")]


class Recorder(BaseEventHandler):
    """Collects (event class, span id) of every LlamaIndex instrumentation event."""
    seen: list = []

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event, **kwargs) -> None:
        self.seen.append((type(event).__name__, event.span_id or ""))

    def count(self, event: str, retriever: str) -> int:
        return sum(1 for name, span in self.seen if name == event and span.startswith(f"{retriever}."))


@pytest.fixture()
def recorder():
    dispatcher = get_dispatcher()          # the root dispatcher: every LlamaIndex event reaches it
    handler = Recorder(seen=[])
    dispatcher.add_event_handler(handler)
    yield handler
    dispatcher.event_handlers.remove(handler)


class Reverse:
    """A stand-in for the tuning snapshot's re-ranker: anything with rerank(query, excerpts)."""

    def __init__(self) -> None:
        self.pools: list[int] = []

    def rerank(self, query, excerpts):
        self.pools.append(len(excerpts))
        return list(reversed(excerpts))


def _holmes() -> Character:
    steps = tuple(ProcedureStep(name, f"{name} what the book says.", search)
                  for name, search in (("Observe", "Afghanistan"), ("Recall", "sunburnt"), ("Conclude", "")))
    return Character(id="holmes", name="Sherlock Holmes", book_ids=("gutenberg-244",), language="en",
                     description="A consulting detective.", personality="precise", speech_style="crisp",
                     greeting="Good day.", procedure=steps)


def test_the_engine_retrieval_fires_llamaindex_retrieval_events(lib_settings, embedder, sample_book, recorder,
                                                                monkeypatch):
    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.engine import Engine

    for name in ("_embed_model", "_llm", "_transformations", "_node_parser"):   # other tests' plain baselines
        monkeypatch.setattr(LlamaSettings, name, None)

    lib = open_library(lib_settings, embedder=embedder, postprocessors=[])
    lib.add_file(sample_book)
    retriever = lib.retriever()
    assert isinstance(retriever.llama, BaseRetriever)
    calls: list[str] = []

    class Counting:            # the engine's searches, however many a step makes
        def retrieve(self, query, **kwargs):
            calls.append(query)
            return retriever.retrieve(query, **kwargs)

        def get(self, excerpt_id):
            return retriever.get(excerpt_id)

    turn = Engine(Counting(), ExtractiveBackend(), candidates=1).answer(_holmes(), QUESTION, conversation_id="c1")
    searches = len(calls)
    assert len(turn.steps) == 3 and searches >= 3 and any(s.excerpts for s in turn.steps)
    # one retrieval start and end per search at the top, and the BM25 and vector-index parts inside it
    for part in ("ConvexFusionRetriever", "BM25sRetriever", "VectorIndexRetriever"):
        assert recorder.count("RetrievalStartEvent", part) == searches, part
        assert recorder.count("RetrievalEndEvent", part) == searches, part
    assert recorder.count("EmbeddingStartEvent", "LlamaEmbedding") == searches    # the query, through our model
    # our embedder everywhere: LlamaIndex's global defaults were never set nor resolved
    assert LlamaSettings._embed_model is None and LlamaSettings._llm is None
    assert LlamaSettings._transformations is None and LlamaSettings._node_parser is None


def test_postprocessors_change_the_ranking_and_get_a_wider_pool(embedder):
    plain = build_section_index(SECTIONS, "en", embedder, book_id="stoorworm")
    reverse = Reverse()
    reranked = build_section_index(SECTIONS, "en", embedder, book_id="stoorworm", pool_factor=2,
                                   postprocessors=[ExcerptRerankerPostprocessor(reverse)])
    question = "What did Assipattle carry into the monster's mouth?"
    before = [h.id for h in plain.retrieve(question, top_k=2)]
    after = [h.id for h in reranked.retrieve(question, top_k=2)]
    assert before[0] == "3" and after != before and "3" not in after
    assert reverse.pools == [4]                      # 2 x top_k candidates, capped by the sections
    again = plain.with_postprocessors([ExcerptRerankerPostprocessor(Reverse())])
    assert type(again) is type(plain) and again.source is plain.source
    assert [h.id for h in again.retrieve(question, top_k=2)] != before
    assert all(h.scores is not None and h.scores.bm25 is not None for h in reranked.retrieve(question, top_k=2))
    plain.close()
    reranked.close()


def test_library_postprocessors_from_settings_yaml_and_per_retriever(lib_settings, embedder, sample_book,
                                                                      tmp_path):
    lib = open_library(lib_settings, embedder=embedder)
    lib.add_file(sample_book)
    plain = [h.id for h in lib.retriever().retrieve(QUESTION, top_k=5)]
    reverse = Reverse()
    assert [h.id for h in lib.retriever(postprocessors=[ExcerptRerankerPostprocessor(reverse)])
            .retrieve(QUESTION, top_k=5)] != plain and reverse.pools == [15]
    config = tmp_path / "retrieval.yaml"
    config.write_text(yaml.safe_dump({"pool_factor": 2, "postprocessors": [
        {"class": "llama_index.core.postprocessor.LongContextReorder"}]}))
    configured = open_library(lib_settings.model_copy(update={"retrieval_config": config}), embedder=embedder)
    assert type(configured.postprocessors[0]).__name__ == "LongContextReorder" and configured.pool_factor == 2
    hits = configured.retriever().retrieve(QUESTION, top_k=5)
    assert [h.id for h in hits] != plain and len(hits) == 5
    by_env = open_library(lib_settings.model_copy(update={"retrieval_postprocessors": [
        {"class": "llama_index.core.postprocessor.SimilarityPostprocessor", "kwargs": {"similarity_cutoff": 0.5}}]}),
        embedder=embedder)
    assert all(h.scores.fused >= 0.5 for h in by_env.retriever().retrieve(QUESTION, top_k=5))


def test_another_vector_store_by_configuration(lib_settings, embedder, sample_book, tmp_path):
    config = tmp_path / "retrieval.yaml"
    config.write_text(yaml.safe_dump({"vector_store": {
        "class": "llama_index.vector_stores.chroma:ChromaVectorStore.from_params",
        "kwargs": {"collection_name": "lab_store", "persist_dir": str(tmp_path / "lab-chroma"),
                   "collection_kwargs": {"metadata": {"hnsw:space": "cosine"}, "embedding_function": None}}}}))
    lib = open_library(lib_settings.model_copy(update={"retrieval_config": config}), embedder=embedder)
    result = lib.add_file(sample_book)
    assert lib.dense.vector_store.client.name == "lab_store" and lib.dense.count() == result.excerpts
    assert not (lib.root / "chroma").exists()
    hits = lib.retriever().retrieve(QUESTION, top_k=3)
    assert any("Afghanistan" in h.text for h in hits) and hits[0].scores.dense is not None


def test_evaluation_and_chat_use_one_retriever_class(lib_settings, embedder, sample_book):
    from app.library import evaluation, sections
    from app.tuning.evaluation import Indexes

    lib = open_library(lib_settings, embedder=embedder)
    lib.add_file(sample_book)
    chat = lib.retriever()
    section_index = build_section_index(SECTIONS, "en", embedder, book_id="stoorworm")

    class Story:
        name = "stoorworm"
        sections = SECTIONS

    tuning = Indexes(embedder).get(Story())
    assert type(chat) is type(section_index) is type(tuning) is LibraryRetriever
    assert type(chat.llama) is type(section_index.llama) is ConvexFusionRetriever
    assert evaluation.build_section_index is sections.build_section_index
    # what the section index holds: ids as given, in order; vectors in a Chroma collection
    assert section_index.ids == ["1", "2", "3", "4"] and section_index.excerpts[1].text == SECTIONS[1][1]
    assert section_index.source.dense.collection.count() == 4
    name = section_index.source.dense.collection.name
    client = section_index.source.dense.client
    section_index.close()
    assert name not in [c.name for c in client.list_collections()]


def test_korean_questions_find_korean_passages_with_the_model(lib_settings, embedder, sample_book, tmp_path):
    lib = open_library(lib_settings, embedder=embedder)
    lib.add_file(sample_book)
    for name, book_id in (("unsu_joeun_nal_hyeon_jingeon.txt", "ko-unsu-joeun-nal"),
                          ("bombom_kim_yujeong.txt", "ko-bombom")):
        opening = tmp_path / name          # the first 60 lines hold both answers; embedding all takes ~20 s
        opening.write_text("\n".join((Path(BOOKS) / "ko" / name).read_text(encoding="utf-8").splitlines()[:60]),
                           encoding="utf-8")
        lib.add_file(opening, book_id=book_id)
    hits = lib.retriever().retrieve("김 첨지는 아내에게 설렁탕을 사다 주었나?", top_k=3)
    assert hits[0].book_id == "ko-unsu-joeun-nal" and "설렁탕" in hits[0].text
    assert hits[0].scores.dense is not None and hits[0].scores.bm25 > 0
    hits = lib.retriever().retrieve("점순이의 키는 언제 자라나?", top_k=3, book_ids=["ko-bombom"])
    assert hits[0].book_id == "ko-bombom" and "키" in hits[0].text


def test_retrieval_config_errors_name_the_part(tmp_path):
    from app.library.errors import LibraryError
    from app.library.plugins import as_postprocessor, build_part, read_config

    with pytest.raises(LibraryError, match="cannot be imported"):
        build_part({"class": "llama_index.core.postprocessor.NoSuchReranker"})
    with pytest.raises(LibraryError, match="neither a LlamaIndex BaseNodePostprocessor"):
        as_postprocessor(object())
    assert isinstance(as_postprocessor(Reverse()), ExcerptRerankerPostprocessor)
    bad = tmp_path / "retrieval.yaml"
    bad.write_text("postprocessor: []\n")
    with pytest.raises(LibraryError, match="takes postprocessors:"):
        read_config(bad)


def test_paired_bootstrap_interval_of_a_recall_difference():
    from app.library.evaluation import paired_difference

    diff, lo, hi = paired_difference([1, 2, 0, 3, 1] * 40, [0, 2, 0, 4, 1] * 40, 3)
    assert diff == pytest.approx(0.4) and lo < diff < hi and lo > 0
