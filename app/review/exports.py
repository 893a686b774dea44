"""Dataset exports from stored reviews, streamed in constant memory, in published formats.

Each reviewer's review of a turn is one labelled sample (as in PRM800K, where every line is
one labeler's pass over one solution).  Editor labels only (reader thumbs are kept apart);
a person's rating and the *inferred* -1 labels that follow their first -1 are used;
machine (verifier) labels only with ``include_machine=True``, as their own labeler.

Formats (``FORMATS``):
- ``trl-stepwise`` — TRL stepwise supervision ``{"prompt", "completions", "labels"}``: the
  question, the step texts, True for a step rated 0/+1, False for the first -1 and every
  step after it.  A sample is written once every step is labelled or a -1 was found.
- ``prm800k`` — PRM800K's JSONL line: labeler, timestamp, question{problem,
  pre_generated_steps, pre_generated_answer, ...} and label{steps[{completions[{text,
  rating, flagged}], human_completion, chosen_completion}], total_time, finish_reason};
  every stored candidate is a completion (the chosen one carries the rating); an editor's
  correction is the human_completion (chosen_completion is then null).  Labelling stops at
  the first -1 (finish_reason "found_error"), else "solution".
- ``openai-sft`` — ``{"messages": [system?, user, assistant]}`` from turns whose steps the
  editor approved (0/+1) or corrected; the assistant message is the steps ("Name: text")
  with corrections in place, up to the first corrected -1, plus the answer when no step
  was wrong.  Identical rows from several editors are written once.
- ``openai-dpo`` — ``{"input": {"messages": [...]}, "preferred_output": [assistant],
  "non_preferred_output": [assistant]}``: the steps up to the editor's first correction,
  corrected versus original.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Engine, select, tuple_

from app.domain import Review, ReviewKind, ReviewSource
from app.review.models import CandidateRow, ReviewRow, StepRow, TurnRow
from app.review.rows import aware, review_from_row

FORMATS = ("trl-stepwise", "prm800k", "openai-sft", "openai-dpo")
RATING_NAMES = {-1: "-1", 0: "0", 1: "+1"}


class ExportError(ValueError):
    pass


@dataclass
class StepRecord:
    id: str
    index: int
    name: str
    text: str
    score: float
    candidates: list[tuple[str, bool]]          # (text, chosen) in stored order


@dataclass
class TurnRecord:
    turn_id: str
    character_id: str
    question: str
    answer: str
    created_at: datetime
    steps: list[StepRecord]
    reviews: dict[str, list[Review]]            # step id -> editor reviews


@dataclass
class ExportReport:
    format: str
    path: Path | None
    rows: int = 0
    turns_seen: int = 0
    labels: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    pending_label: str = ""          # label of the last sft/dpo row built, counted once written


def iter_turn_records(engine: Engine, *, character: str | None = None, include_machine: bool = False,
                      include_readers: bool = False, batch: int = 200,
                      on_batch: Callable[[int], None] | None = None) -> Iterator[TurnRecord]:
    """Turns with at least one editor review (or reader thumb, with ``include_readers``), oldest
    first, loaded `batch` turns at a time."""
    from sqlalchemy.orm import Session

    sources = [ReviewSource.human.value, ReviewSource.inferred.value]
    if include_machine:
        sources.append(ReviewSource.machine.value)
    kinds = [ReviewKind.editor.value] + ([ReviewKind.reader.value] if include_readers else [])
    cursor: tuple[Any, str] | None = None
    while True:
        # page through all turns by the (created_at, id) index; turns without reviews drop out
        # below (an EXISTS filter here made PostgreSQL re-scan every review for each page)
        q = (select(TurnRow.id, TurnRow.character_id, TurnRow.question, TurnRow.answer, TurnRow.created_at)
             .order_by(TurnRow.created_at, TurnRow.id).limit(batch))
        if character is not None:
            q = q.where(TurnRow.character_id == character)
        if cursor is not None:
            q = q.where(tuple_(TurnRow.created_at, TurnRow.id) > tuple_(*cursor))
        with Session(engine) as s:
            page = s.execute(q).all()
            if not page:
                return
            cursor = (page[-1][4], page[-1][0])
            reviews: dict[str, dict[str, list[Review]]] = defaultdict(lambda: defaultdict(list))
            for row in s.execute(select(*ReviewRow.__table__.c).where(ReviewRow.turn_id.in_([t[0] for t in page]),
                                                         ReviewRow.kind.in_(kinds),
                                                         ReviewRow.source.in_(sources))
                                 .order_by(ReviewRow.id)):
                reviews[row.turn_id][row.step_id].append(review_from_row(row))
            turns = [t for t in page if t[0] in reviews]
            ids = [t[0] for t in turns]
            steps: dict[str, list[StepRecord]] = defaultdict(list)
            by_id: dict[str, StepRecord] = {}
            if ids:
                for r in s.execute(select(StepRow.id, StepRow.turn_id, StepRow.idx, StepRow.name, StepRow.text,
                                          StepRow.score).where(StepRow.turn_id.in_(ids)).order_by(StepRow.idx)):
                    rec = StepRecord(id=r[0], index=r[2], name=r[3], text=r[4], score=r[5], candidates=[])
                    steps[r[1]].append(rec)
                    by_id[rec.id] = rec
            if by_id:
                for c in s.execute(select(CandidateRow.step_id, CandidateRow.text, CandidateRow.chosen)
                                   .where(CandidateRow.step_id.in_(list(by_id)))
                                   .order_by(CandidateRow.step_id, CandidateRow.position)):
                    by_id[c[0]].candidates.append((c[1], bool(c[2])))
        for t in turns:
            yield TurnRecord(turn_id=t[0], character_id=t[1], question=t[2], answer=t[3] or "",
                             created_at=aware(t[4]), steps=steps[t[0]], reviews=dict(reviews[t[0]]))
        if on_batch:
            on_batch(len(turns))


def by_reviewer(rec: TurnRecord) -> dict[str, dict[str, Review]]:
    """reviewer -> step id -> that reviewer's editor review."""
    out: dict[str, dict[str, Review]] = defaultdict(dict)
    for sid, reviews in rec.reviews.items():
        for r in reviews:
            out[r.reviewer][sid] = r
    return dict(sorted(out.items()))


def render_steps(parts: list[tuple[str, str]], answer: str = "") -> str:
    text = "\n\n".join(f"{name}: {body}" for name, body in parts)
    return f"{text}\n\n{answer}" if answer else text


# ------------------------------------------------------------------ one sample per format
def trl_row(rec: TurnRecord, labels: dict[str, Review], report: ExportReport) -> dict | None:
    completions, flags, wrong = [], [], False
    for st in rec.steps:
        r = labels.get(st.id)
        if not wrong and r is None:
            report.skipped["incomplete"] += 1
            return None
        wrong = wrong or r.rating == -1
        completions.append(st.text)
        flags.append(not wrong)
    if not completions:
        return None
    report.labels.update(str(f).lower() for f in flags)
    return {"prompt": rec.question, "completions": completions, "labels": flags}


def prm800k_row(rec: TurnRecord, reviewer: str, labels: dict[str, Review], report: ExportReport) -> dict | None:
    out_steps, finish, counts = [], "solution", Counter()
    for st in rec.steps:
        r = labels.get(st.id)
        if r is None:
            report.skipped["incomplete"] += 1
            return None
        if r.source is ReviewSource.inferred:
            break                                   # PRM800K stops labelling after the first error
        cands = st.candidates or [(st.text, True)]
        chosen = next((i for i, (_, ch) in enumerate(cands) if ch), 0)
        completions = [{"text": text, "rating": r.rating if i == chosen else None, "flagged": None}
                       for i, (text, _) in enumerate(cands)]
        human = ({"text": r.correction, "rating": None, "source": "human", "flagged": False}
                 if r.correction else None)
        out_steps.append({"completions": completions, "human_completion": human,
                          "chosen_completion": None if human else chosen})
        counts[RATING_NAMES[r.rating]] += 1
        if r.rating == -1:
            finish = "found_error"
            break
    report.labels.update(counts)
    stamps = [r.updated_at or r.created_at for r in labels.values() if r.created_at]
    firsts = [r.created_at for r in labels.values() if r.created_at]
    total_ms = int((max(stamps) - min(firsts)).total_seconds() * 1000) if stamps else None
    scores = [st.score for st in rec.steps]
    return {
        "labeler": reviewer,
        "timestamp": max(stamps).isoformat() if stamps else None,
        "generation": None,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {"problem": rec.question, "ground_truth_answer": None,
                     "pre_generated_steps": [st.text for st in rec.steps],
                     "pre_generated_answer": rec.answer,
                     "pre_generated_verifier_score": sum(scores) / len(scores) if scores else None},
        "label": {"steps": out_steps, "total_time": total_ms, "finish_reason": finish},
    }


def _prefix(rec: TurnRecord, labels: dict[str, Review]) -> tuple[list, list, int | None, bool] | None:
    """(corrected parts, original parts, first corrected index, had_wrong) or None if unusable."""
    fixed, orig, first_fix = [], [], None
    for st in rec.steps:
        r = labels.get(st.id)
        if r is None or (r.rating == -1 and not r.correction):
            return None
        fixed.append((st.name, r.correction or st.text))
        orig.append((st.name, st.text))
        if r.correction and first_fix is None:
            first_fix = len(fixed) - 1
        if r.rating == -1:
            return fixed, orig, first_fix, True
    return fixed, orig, first_fix, False


def sft_row(rec: TurnRecord, labels: dict[str, Review], system: str | None, report: ExportReport) -> dict | None:
    got = _prefix(rec, labels)
    if got is None:
        report.skipped["not approved"] += 1
        return None
    fixed, _, first_fix, had_wrong = got
    content = render_steps(fixed, "" if had_wrong else rec.answer)
    report.pending_label = "corrected" if first_fix is not None else "approved"
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": rec.question}, {"role": "assistant", "content": content}]
    return {"messages": msgs}


def dpo_row(rec: TurnRecord, labels: dict[str, Review], system: str | None, report: ExportReport) -> dict | None:
    got = _prefix(rec, labels)
    if got is None or got[2] is None:
        report.skipped["no correction"] += 1
        return None
    fixed, orig, first_fix, _ = got
    report.pending_label = "pairs"
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": rec.question}]
    return {"input": {"messages": msgs},
            "preferred_output": [{"role": "assistant", "content": render_steps(fixed[:first_fix + 1])}],
            "non_preferred_output": [{"role": "assistant", "content": render_steps(orig[:first_fix + 1])}]}


def iter_rows(engine: Engine, fmt: str, *, character: str | None = None, include_machine: bool = False,
              system_prompt: Callable[[str], str | None] | None = None, report: ExportReport | None = None,
              on_batch: Callable[[int], None] | None = None) -> Iterator[dict]:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    report = report or ExportReport(format=fmt, path=None)
    for rec in iter_turn_records(engine, character=character, include_machine=include_machine,
                                 on_batch=on_batch):
        report.turns_seen += 1
        system = system_prompt(rec.character_id) if system_prompt else None
        seen: set[str] = set()
        for reviewer, labels in by_reviewer(rec).items():
            if fmt == "trl-stepwise":
                row = trl_row(rec, labels, report)
            elif fmt == "prm800k":
                row = prm800k_row(rec, reviewer, labels, report)
            elif fmt == "openai-sft":
                row = sft_row(rec, labels, system, report)
            else:
                row = dpo_row(rec, labels, system, report)
            if row is None:
                continue
            if fmt in ("openai-sft", "openai-dpo"):
                key = json.dumps(row, sort_keys=True)
                if key in seen:
                    report.skipped["duplicate"] += 1
                    continue
                seen.add(key)
                report.labels[report.pending_label] += 1
            report.rows += 1
            yield row


def export(engine: Engine, fmt: str, out: Path, **kwargs: Any) -> ExportReport:
    """Write `fmt` rows to `out` (JSONL), atomically: a failed export leaves no half file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = ExportReport(format=fmt, path=out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in iter_rows(engine, fmt, report=report, **kwargs):
                fh.write(json.dumps(row, ensure_ascii=False))
                fh.write("\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return report
