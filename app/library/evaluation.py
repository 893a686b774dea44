"""Retrieval evaluation on FairytaleQA: one index per story, one node per section.

For every question, the evidence sections (``cor_section``, sometimes several)
are the relevant items; a method's R@k is the share of questions with at
least one evidence section in its top k, MRR the mean reciprocal rank of the
first one.  Our methods (``bm25``, ``dense``, ``hybrid``, plus plain ``rrf``
on the same scores) run next to LlamaIndex's ``BM25Retriever``,
``VectorStoreIndex`` and ``QueryFusionRetriever`` (reciprocal rerank) built
on the same sections and the same embedder, in the same run.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from app.library.retrieval import DEFAULT_FUSION, FusionConfig, build_section_index, top_candidates

KS = (1, 3, 5)


@dataclass
class Story:
    name: str
    sections: list[tuple[str, str]]
    questions: list[tuple[str, frozenset[str]]]


@dataclass
class Metrics:
    hits: dict[int, int] = field(default_factory=lambda: {k: 0 for k in KS})
    rr: float = 0.0
    n: int = 0

    def add(self, ranked: Sequence[str], relevant: frozenset[str]) -> None:
        self.n += 1
        for rank, doc in enumerate(ranked[:max(KS)], start=1):
            if doc in relevant:
                self.rr += 1 / rank
                for k in KS:
                    if rank <= k:
                        self.hits[k] += 1
                break

    def row(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {**{f"R@{k}": self.hits[k] / n for k in KS}, "MRR": self.rr / n}


def load_fairytaleqa(split_dir: Path, limit: int | None = None) -> list[Story]:
    split_dir = Path(split_dir)
    stories = []
    for qfile in sorted((split_dir / "questions").glob("*-questions.csv")):
        name = qfile.name.removesuffix("-questions.csv")
        sfile = split_dir / "sections" / f"{name}-story.csv"
        with open(sfile, encoding="utf-8") as fh:
            sections = [(row["section"].strip(), row["text"]) for row in csv.DictReader(fh)]
        with open(qfile, encoding="utf-8") as fh:
            questions = [(row["question"], frozenset(s.strip() for s in row["cor_section"].split(",")))
                         for row in csv.DictReader(fh)]
        stories.append(Story(name, sections, questions))
        if limit and len(stories) >= limit:
            break
    return stories


OURS = {"bm25": FusionConfig(method="bm25"), "dense": FusionConfig(method="dense"),
        "hybrid": DEFAULT_FUSION, "rrf (ours, plain)": FusionConfig(method="rrf")}


def evaluate(stories: Iterable[Story], embedder, *, configs: dict[str, FusionConfig] | None = None,
             llamaindex: bool = True, on_story: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Metrics per method; ``configs`` are fusion variants evaluated on the same scores."""
    configs = configs or (OURS if embedder is not None else {"bm25": OURS["bm25"]})
    metrics = {name: Metrics() for name in configs}
    timing = {name: 0.0 for name in configs}
    if llamaindex:
        li_names = ["llamaindex bm25"] + (["llamaindex vector", "llamaindex fusion (rrf)"]
                                          if embedder is not None else [])
        metrics.update({n: Metrics() for n in li_names})
        timing.update({n: 0.0 for n in li_names})
    for story in stories:
        index = build_section_index(story.sections, "en", embedder)
        for question, relevant in story.questions:
            t = time.perf_counter()
            bm25_all, dense_all = index.scores(question)
            shared = time.perf_counter() - t
            for name, config in configs.items():
                t = time.perf_counter()
                ranked = top_candidates(index.ids, bm25_all, dense_all, config)
                metrics[name].add([s.id for s in ranked], relevant)
                timing[name] += shared + time.perf_counter() - t
        if llamaindex:
            _llamaindex_story(story, embedder, metrics, timing)
        if on_story:
            on_story(story.name)
    return {name: {**m.row(), "n": m.n, "ms/query": 1000 * timing[name] / max(m.n, 1)}
            for name, m in metrics.items()}


def _llamaindex_story(story: Story, embedder, metrics: dict[str, Metrics], timing: dict[str, float]) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    from app.library.llama_adapter import LlamaEmbedding

    nodes = [TextNode(id_=sid, text=text) for sid, text in story.sections]
    k = max(KS)
    retrievers = {"llamaindex bm25": BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=k)}
    if embedder is not None:
        vector = VectorStoreIndex(nodes, embed_model=LlamaEmbedding(embedder)).as_retriever(similarity_top_k=k)
        retrievers["llamaindex vector"] = vector
        retrievers["llamaindex fusion (rrf)"] = QueryFusionRetriever(
            [vector, retrievers["llamaindex bm25"]], llm=MockLLM(), mode="reciprocal_rerank",
            similarity_top_k=k, num_queries=1, use_async=False)
    for name, retriever in retrievers.items():
        for question, relevant in story.questions:
            t = time.perf_counter()
            ranked = [n.node.node_id for n in retriever.retrieve(question)]
            timing[name] += time.perf_counter() - t
            metrics[name].add(ranked, relevant)


def tune(stories: list[Story], embedder, weights: Sequence[float] = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8),
         candidates: Sequence[int] = (20, 50)) -> tuple[FusionConfig, dict[str, dict]]:
    """Grid over convex weights on (train) stories: best R@3 among those not losing R@1 to BM25."""
    configs = {"bm25": FusionConfig(method="bm25")}
    for c in candidates:
        for w in weights:
            configs[f"convex w={w} c={c}"] = replace(DEFAULT_FUSION, bm25_weight=w, candidates=c)
    table = evaluate(stories, embedder, configs=configs, llamaindex=False)
    floor = table["bm25"]["R@1"]
    best = max((n for n in configs if n != "bm25"),
               key=lambda n: (table[n]["R@1"] >= floor, table[n]["R@3"], table[n]["R@1"]))
    return configs[best], table
