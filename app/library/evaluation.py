"""Retrieval evaluation on FairytaleQA: the production retriever per story, one node per section.

For every question, the evidence sections (``cor_section``, sometimes several)
are the relevant items; a method's R@k is the share of questions with at
least one evidence section in its top k, MRR the mean reciprocal rank of the
first one.  Each story gets the retriever readers get
(``build_section_index``: the same ``LibraryRetriever`` over Chroma + BM25 +
fusion + postprocessors).  ``hybrid`` is its ``retrieve()``; ``bm25``,
``dense`` and plain ``rrf`` re-rank the same search's candidate pools.
Beside them, in the same run, LlamaIndex's own ``BM25Retriever``,
``VectorStoreIndex`` and ``QueryFusionRetriever`` (reciprocal rerank, and
``relative_score`` with weights tuned on train by ``tune_llamaindex_fusion``)
on the same sections and the same embedder.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from app.library.retrieval import DEFAULT_FUSION, FusionConfig
from app.library.sections import build_section_index

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
    firsts: list[int] = field(default_factory=list)     # per question: rank of the first hit, 0 = none

    def add(self, ranked: Sequence[str], relevant: frozenset[str]) -> None:
        self.n += 1
        first = 0
        for rank, doc in enumerate(ranked[:max(KS)], start=1):
            if doc in relevant:
                first = rank
                self.rr += 1 / rank
                for k in KS:
                    if rank <= k:
                        self.hits[k] += 1
                break
        self.firsts.append(first)

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
PRODUCTION = "hybrid"     # the row computed by the production retriever's retrieve()


@dataclass(frozen=True)
class LlamaFusion:
    """LlamaIndex ``QueryFusionRetriever(mode="relative_score")`` over its BM25 and vector retrievers."""
    bm25_weight: float = 0.5
    top_k: int = max(KS)          # each sub-retriever's similarity_top_k

    @property
    def name(self) -> str:
        return f"llamaindex fusion (relative_score, w={self.bm25_weight:g}, k={self.top_k})"


def evaluate(stories: Iterable[Story], embedder, *, configs: dict[str, FusionConfig] | None = None,
             llamaindex: bool = True, fusions: Sequence[LlamaFusion] = (LlamaFusion(),),
             on_story: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Metrics per method.  ``configs`` are fusion variants scored on the production retriever's pools;
    the one named ``hybrid`` is the production ``retrieve()`` itself."""
    configs = configs or (OURS if embedder is not None else {"bm25": OURS["bm25"]})
    metrics = {name: Metrics() for name in configs}
    timing = {name: 0.0 for name in configs}
    if llamaindex:
        li_names = ["llamaindex bm25"]
        if embedder is not None:
            li_names += ["llamaindex vector", "llamaindex fusion (rrf)", *(f.name for f in fusions)]
        metrics.update({n: Metrics() for n in li_names})
        timing.update({n: 0.0 for n in li_names})
    production = configs.get(PRODUCTION)
    candidates = max(c.candidates for c in configs.values())
    for story in stories:
        retriever = build_section_index(story.sections, "en", embedder, book_id=story.name,
                                        config=production or DEFAULT_FUSION)
        try:
            for question, relevant in story.questions:
                if production is not None:
                    t = time.perf_counter()
                    hits = retriever.retrieve(question, top_k=max(KS))
                    timing[PRODUCTION] += time.perf_counter() - t
                    metrics[PRODUCTION].add([h.id for h in hits], relevant)
                t = time.perf_counter()
                pools = retriever.pools(question, candidates=candidates)
                shared = time.perf_counter() - t
                for name, config in configs.items():
                    if name == PRODUCTION:
                        continue
                    t = time.perf_counter()
                    metrics[name].add([s.id for s in pools.fuse(config)], relevant)
                    timing[name] += shared + time.perf_counter() - t
        finally:
            retriever.close()
        if llamaindex:
            _llamaindex_story(story, embedder, metrics, timing, fusions)
        if on_story:
            on_story(story.name)
    return {name: {**m.row(), "n": m.n, "ms/query": 1000 * timing[name] / max(m.n, 1), "firsts": m.firsts}
            for name, m in metrics.items()}


def paired_difference(a: Sequence[int], b: Sequence[int], k: int, *, samples: int = 2000,
                      seed: int = 0) -> tuple[float, float, float]:
    """R@k of ``a`` minus R@k of ``b`` (per-question first-hit ranks, same questions) and its
    95 % interval from a paired bootstrap over questions."""
    import numpy as np

    hit_a = np.array([0 < r <= k for r in a], dtype=np.float64)
    hit_b = np.array([0 < r <= k for r in b], dtype=np.float64)
    if len(hit_a) != len(hit_b) or not len(hit_a):
        raise ValueError("paired_difference needs the same non-empty questions on both sides")
    diff = hit_a - hit_b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def _llamaindex_retrievers(story: Story, embedder, fusions: Sequence[LlamaFusion], *, query_memo: int = 0) -> dict:
    """LlamaIndex's plain retrievers on the story's sections (its usual truncating embedder; each
    retriever embeds the question itself, unless ``query_memo`` lets them share it)."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    from app.library.llama_adapter import LlamaEmbedding

    nodes = [TextNode(id_=sid, text=text) for sid, text in story.sections]
    k = max(KS)
    retrievers = {"llamaindex bm25": BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=k)}
    if embedder is None:
        return retrievers
    index = VectorStoreIndex(nodes, embed_model=LlamaEmbedding(embedder, long_texts="truncate",
                                                               query_memo=query_memo))
    vector = index.as_retriever(similarity_top_k=k)
    retrievers["llamaindex vector"] = vector
    retrievers["llamaindex fusion (rrf)"] = QueryFusionRetriever(
        [vector, retrievers["llamaindex bm25"]], llm=MockLLM(), mode="reciprocal_rerank",
        similarity_top_k=k, num_queries=1, use_async=False)
    subs: dict[int, tuple] = {}
    for fusion in fusions:
        if fusion.top_k not in subs:
            subs[fusion.top_k] = (BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=fusion.top_k),
                                  index.as_retriever(similarity_top_k=fusion.top_k))
        sparse, dense = subs[fusion.top_k]
        retrievers[fusion.name] = QueryFusionRetriever(
            [sparse, dense], llm=MockLLM(), mode="relative_score", similarity_top_k=k, num_queries=1,
            use_async=False, retriever_weights=[fusion.bm25_weight, 1.0 - fusion.bm25_weight])
    return retrievers


def _llamaindex_story(story: Story, embedder, metrics: dict[str, Metrics], timing: dict[str, float],
                      fusions: Sequence[LlamaFusion] = (), *, query_memo: int = 0) -> None:
    for name, retriever in _llamaindex_retrievers(story, embedder, fusions, query_memo=query_memo).items():
        if name not in metrics:
            continue
        for question, relevant in story.questions:
            t = time.perf_counter()
            ranked = [n.node.node_id for n in retriever.retrieve(question)]
            timing[name] += time.perf_counter() - t
            metrics[name].add(ranked, relevant)


def _best(table: dict[str, dict], names: Iterable[str], floor: float | None = None) -> str:
    return max(names, key=lambda n: (floor is None or table[n]["R@1"] >= floor, table[n]["R@3"], table[n]["R@1"]))


def tune(stories: list[Story], embedder, weights: Sequence[float] = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8),
         candidates: Sequence[int] = (20, 50)) -> tuple[FusionConfig, dict[str, dict]]:
    """Grid over convex weights on (train) stories: best R@3 among those not losing R@1 to BM25."""
    configs = {"bm25": FusionConfig(method="bm25")}
    for c in candidates:
        for w in weights:
            configs[f"convex w={w} c={c}"] = replace(DEFAULT_FUSION, bm25_weight=w, candidates=c)
    table = evaluate(stories, embedder, configs=configs, llamaindex=False)
    best = _best(table, (n for n in configs if n != "bm25"), floor=table["bm25"]["R@1"])
    return configs[best], table


def tune_llamaindex_fusion(stories: list[Story], embedder,
                           weights: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
                           top_ks: Sequence[int] = (5, 20)) -> tuple[LlamaFusion, dict[str, dict]]:
    """The strongest ``QueryFusionRetriever(mode="relative_score")`` on (train) stories: best R@3, then R@1."""
    grid = [LlamaFusion(w, k) for k in top_ks for w in weights]
    metrics = {f.name: Metrics() for f in grid}
    timing = {f.name: 0.0 for f in grid}
    for story in stories:
        _llamaindex_story(story, embedder, metrics, timing, grid, query_memo=512)   # recall only: share embeddings
    table = {name: {**m.row(), "n": m.n} for name, m in metrics.items()}
    best = _best(table, table)
    return next(f for f in grid if f.name == best), table
