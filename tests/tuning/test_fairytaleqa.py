"""FairytaleQA loading, the simulated editor, the embedding cache, curve counts."""

from __future__ import annotations

import numpy as np
import pytest

from app.domain import Citation, FaultTag, Step
from app.tuning.evalrun import curve_counts
from app.tuning.fairytaleqa import (CachedEmbedder, DatasetError, SimulatedEditor, load_split,
                                    resolve_split)


def test_load_split_keeps_evidence_and_answers(shared_dir):
    root = shared_dir / "eval" / "fairytaleqa"
    assert resolve_split(root, "val") == root / "val"
    stories = load_split(root / "val", limit=2)
    assert len(stories) == 2
    story = stories[0]
    ids = {sid for sid, _ in story.sections}
    assert all(sid.startswith(f"{story.name}#") for sid in ids)
    assert all(qa.evidence <= ids for qa in story.questions)
    assert all(qa.answers for qa in story.questions)
    with pytest.raises(DatasetError, match="not a FairytaleQA split folder"):
        resolve_split(root / "nope")


def _step(*cited: str) -> Step:
    return Step(id="s", turn_id="t", index=0, name="Locate", text="x",
                citations=[Citation(c, "quote here") for c in cited], excerpts=[])


def test_simulated_editor_rates_from_evidence():
    editor = SimulatedEditor()
    evidence = frozenset({"story#3"})
    assert editor.rate(_step("story#3"), evidence).rating == 1
    bad = editor.rate(_step("story#1"), evidence)
    assert bad.rating == -1 and bad.fault_tags == (FaultTag.wrong_excerpt,)
    assert editor.rate(_step(), evidence).fault_tags == (FaultTag.not_in_book,)
    noisy = SimulatedEditor(noise=0.3, seed=1)
    flips = sum(noisy.rate(_step("story#3"), evidence).rating < 0 for _ in range(1000))
    assert 240 < flips < 360
    with pytest.raises(ValueError):
        SimulatedEditor(noise=0.6)


class CountingEmbedder:
    name = "fake"

    def __init__(self):
        self.calls = 0

    def embed_long(self, texts, **kwargs):
        self.calls += len(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_embedding_cache_pays_once(tmp_path):
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, tmp_path / "e.npz", save_every=2)
    first = cache.embed_long(["a", "bb", "a"])
    assert inner.calls == 2 and first[2].tolist() == first[0].tolist()
    assert (tmp_path / "e.npz").exists()                # saved on its own after 2 new vectors
    again = CachedEmbedder(CountingEmbedder(), tmp_path / "e.npz")
    assert again.embed_query("bb").tolist() == [2.0, 1.0] and again.embedder.calls == 0


def test_curve_counts():
    assert curve_counts(3000, None) == [0, 100, 300, 1000, 3000]
    assert curve_counts(500, None) == [0, 100, 300, 500]
    assert curve_counts(500, [300, 100]) == [0, 100, 300]
    with pytest.raises(ValueError):
        curve_counts(10, [-1])
