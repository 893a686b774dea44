"""Exports in their published formats, streamed from a real database; stats and agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.domain import FaultTag, Review, ReviewKind, ReviewSource, Role
from app.review import exports
from app.review.agreement import review_stats

E = ReviewKind.editor


def _rate(store, step, reviewer, rating, correction="", role=Role.editor, source=ReviewSource.human):  # noqa: ANN001
    store.record_review(Review(step_id=step.id, reviewer=reviewer, kind=E, rating=rating, correction=correction,
                               source=source, fault_tags=(FaultTag.faulty_logic,) if rating < 0 else ()), role)


@pytest.fixture()
def reviewed(sqlite_store, turn_factory, ago):  # noqa: ANN001, ANN201
    s = sqlite_store
    good = turn_factory(question="Q good", created_at=ago(50))          # approved by ann and bob
    wrong = turn_factory(question="Q wrong", created_at=ago(40))        # ann: -1 at step 1, corrected
    partial = turn_factory(question="Q partial", created_at=ago(30))    # ann rated only step 0
    machine = turn_factory(question="Q machine", created_at=ago(20))    # verifier only
    other = turn_factory(character="alice", question="Q alice", created_at=ago(10))
    unreviewed = turn_factory(question="Q none", created_at=ago(5))
    for t in (good, wrong, partial, machine, other, unreviewed):
        s.save_turn(t)
    for st in good.steps:
        _rate(s, st, "ann", 1)
        _rate(s, st, "bob", 1 if st.index != 2 else 0)
    _rate(s, wrong.steps[0], "ann", 1)
    _rate(s, wrong.steps[1], "ann", -1, correction="Deduce: the letter is in the study.")
    _rate(s, wrong.steps[0], "bob", 0)
    _rate(s, wrong.steps[1], "bob", -1)
    _rate(s, partial.steps[0], "ann", 1)
    for st in machine.steps:
        _rate(s, st, "verifier", 1, role=Role.lab, source=ReviewSource.machine)
    for st in other.steps:
        _rate(s, st, "ann", 1)
    # a reader's thumbs never reach the exports
    s.record_review(Review(step_id=unreviewed.steps[0].id, reviewer="rita", kind=ReviewKind.reader, rating=1),
                    Role.reader)
    return s, dict(good=good, wrong=wrong, partial=partial, machine=machine, other=other)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trl_stepwise_loads_with_datasets(reviewed, tmp_path) -> None:  # noqa: ANN001
    store, t = reviewed
    out = tmp_path / "reviews" / "trl.jsonl"
    rep = exports.export(store.engine, "trl-stepwise", out)
    rows = _read(out)
    assert [r["prompt"] for r in rows] == ["Q good", "Q good", "Q wrong", "Q wrong", "Q alice"]
    assert all(set(r) == {"prompt", "completions", "labels"} for r in rows)
    assert rows[0]["completions"] == [st.text for st in t["good"].steps]
    assert rows[2]["labels"] == [True, False, False]              # ann: -1 at step 1, inferred after
    assert rows[3]["labels"] == [True, False, False]              # bob: 0 counts as not wrong
    assert rep.rows == 5 and rep.labels == {"true": 11, "false": 4}
    assert rep.skipped["incomplete"] == 1                         # ann's partial review of "Q partial"
    import datasets

    ds = datasets.Dataset.from_json(str(out), cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 5 and ds.features["labels"].feature.dtype == "bool"
    assert ds.features["completions"].feature.dtype == "string"
    assert exports.export(store.engine, "trl-stepwise", out, character="alice").rows == 1
    rep = exports.export(store.engine, "trl-stepwise", out, include_machine=True)
    assert rep.rows == 6 and "Q machine" in [r["prompt"] for r in _read(out)]


def test_prm800k_structure(reviewed, tmp_path) -> None:  # noqa: ANN001
    store, t = reviewed
    out = tmp_path / "prm.jsonl"
    rep = exports.export(store.engine, "prm800k", out)
    rows = _read(out)
    assert len(rows) == 5 and rep.labels == {"+1": 9, "0": 2, "-1": 2}
    ann_wrong = [r for r in rows if r["labeler"] == "ann" and r["question"]["problem"] == "Q wrong"][0]
    assert set(ann_wrong) == {"labeler", "timestamp", "generation", "is_quality_control_question",
                              "is_initial_screening_question", "question", "label"}
    q = ann_wrong["question"]
    assert q["pre_generated_steps"] == [st.text for st in t["wrong"].steps]
    assert q["pre_generated_answer"] == t["wrong"].answer
    label = ann_wrong["label"]
    assert label["finish_reason"] == "found_error" and len(label["steps"]) == 2
    first, second = label["steps"]
    assert set(first) == {"completions", "human_completion", "chosen_completion"}
    assert first["chosen_completion"] == 0 and first["human_completion"] is None
    assert [c["rating"] for c in first["completions"]] == [1, None]     # only the chosen candidate is rated
    assert [set(c) for c in first["completions"]] == [{"text", "rating", "flagged"}] * 2
    assert second["chosen_completion"] is None
    assert second["human_completion"]["text"] == "Deduce: the letter is in the study."
    assert second["completions"][0]["rating"] == -1
    # PRM800K's own reconstruction recipe gives the corrected trajectory
    traj = [s["human_completion"]["text"] if s["chosen_completion"] is None
            else s["completions"][s["chosen_completion"]]["text"] for s in label["steps"]]
    assert traj == [t["wrong"].steps[0].text, "Deduce: the letter is in the study."]
    good = [r for r in rows if r["question"]["problem"] == "Q good"]
    assert {r["label"]["finish_reason"] for r in good} == {"solution"}


def test_openai_sft_and_dpo(reviewed, tmp_path) -> None:  # noqa: ANN001
    store, t = reviewed
    out = tmp_path / "sft.jsonl"
    rep = exports.export(store.engine, "openai-sft", out, system_prompt=lambda ch: f"You are {ch}.")
    rows = _read(out)
    # good: ann and bob give the same text -> one row; wrong: ann's correction; alice: approved
    assert len(rows) == 3 and rep.skipped["duplicate"] == 1
    assert rep.labels == {"approved": 2, "corrected": 1}
    for r in rows:
        assert set(r) == {"messages"}
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
    good = rows[0]["messages"]
    assert good[0]["content"] == "You are holmes." and good[1]["content"] == "Q good"
    assert good[2]["content"].startswith(f"Observe: {t['good'].steps[0].text}")
    assert good[2]["content"].endswith(t["good"].answer)
    corrected = rows[1]["messages"][2]["content"]
    assert "Deduce: Deduce: the letter is in the study." in corrected
    assert t["wrong"].answer not in corrected and t["wrong"].steps[1].text not in corrected

    out = tmp_path / "dpo.jsonl"
    rep = exports.export(store.engine, "openai-dpo", out)
    rows = _read(out)
    assert rep.rows == 1 and rep.labels == {"pairs": 1}
    (row,) = rows
    assert set(row) == {"input", "preferred_output", "non_preferred_output"}
    assert row["input"] == {"messages": [{"role": "user", "content": "Q wrong"}]}
    (pref,), (nonpref,) = row["preferred_output"], row["non_preferred_output"]
    assert pref["role"] == nonpref["role"] == "assistant"
    assert pref["content"].endswith("Deduce: the letter is in the study.")
    assert nonpref["content"].endswith(t["wrong"].steps[1].text)


def test_unknown_format_and_failed_export_leave_nothing(reviewed, tmp_path) -> None:  # noqa: ANN001
    store, _ = reviewed
    out = tmp_path / "x.jsonl"
    with pytest.raises(exports.ExportError, match="unknown export format"):
        exports.export(store.engine, "csv", out)
    assert list(tmp_path.glob("*x.jsonl*")) == []


def test_stats_and_agreement(reviewed) -> None:  # noqa: ANN001
    store, _ = reviewed
    st = review_stats(store.engine)
    assert st.labels["editor/human/+1"] == 2 + 3 + 1 + 1 + 3      # ann good, bob good, ann wrong/partial, alice
    assert st.labels["editor/inferred/-1"] == 2                   # after ann's and bob's -1
    assert st.labels["editor/machine/+1"] == 3
    assert st.labels["reader/up"] == 1
    assert set(st.per_character) == {"holmes", "alice"}
    assert st.per_character["alice"] == {"editor/human/+1": 3}
    assert set(st.per_step) == {"Observe", "Deduce", "Conclude"}
    (pair,) = st.pairs
    assert (pair.a, pair.b, pair.n) == ("ann", "bob", 5)
    from sklearn.metrics import cohen_kappa_score

    expected = cohen_kappa_score([1, 1, 1, 1, -1], [1, 1, 0, 0, -1], labels=[-1, 0, 1])
    assert pair.kappa == pytest.approx(expected)
    assert st.alpha is not None and -1 <= st.alpha <= 1 and st.alpha_units == 5
    assert review_stats(store.engine, character="alice").pairs == []
