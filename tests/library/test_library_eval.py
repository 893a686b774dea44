"""The section index the FairytaleQA evaluations use, and the retrieval evaluation table."""

from __future__ import annotations

from pathlib import Path

from app.library import build_section_index
from app.library.evaluation import evaluate, load_fairytaleqa
from app.library.models import FILES, model_ok

VAL = Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "fairytaleqa" / "val"
SECTIONS = [("1", "The farmer had seven sons and one daughter, and the youngest son was called Assipattle."),
            ("2", "The Stoorworm was a sea monster whose breath withered every living thing."),
            ("3", "Assipattle took a boat and a pot of burning peat and sailed into the monster's mouth.")]


def test_section_index_keeps_ids_and_works_with_and_without_a_model(embedder):
    for model in (embedder, None):
        index = build_section_index(SECTIONS, "en", model, book_id="stoorworm")
        hits = index.retrieve("What did Assipattle carry into the monster's mouth?", top_k=2)
        assert hits[0].id == "3" and hits[0].book_id == "stoorworm"
        assert (hits[0].scores.dense is None) == (model is None)
        assert index.get("2").text == SECTIONS[1][1]


def test_evaluation_table_has_our_methods_and_llamaindex_baselines(embedder):
    stories = sorted(load_fairytaleqa(VAL), key=lambda s: sum(len(t) for _, t in s.sections))[:1]
    assert stories and all(q for s in stories for q in s.questions)
    table = evaluate(stories, embedder)
    assert set(table) == {"bm25", "dense", "hybrid", "rrf (ours, plain)", "llamaindex bm25", "llamaindex vector",
                          "llamaindex fusion (rrf)", "llamaindex fusion (relative_score, w=0.5, k=5)"}
    n = sum(len(s.questions) for s in stories)
    for row in table.values():
        assert row["n"] == n and 0 <= row["R@1"] <= row["R@3"] <= row["R@5"] <= 1 and 0 < row["MRR"] <= 1


def test_model_checksums_catch_a_changed_file(model_dir, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    assert model_ok(copy) and set(FILES) <= {str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()}
    with open(copy / "tokenizer.json", "a") as fh:
        fh.write(" ")
    assert not model_ok(copy)
    from app.library.embedder import load_embedder
    (copy / "model.onnx").write_bytes(b"not a model")
    embedder, why = load_embedder(copy)
    assert embedder is None and "cannot be loaded" in why and "BM25 only" in why
