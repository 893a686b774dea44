"""FairytaleQA as a testbed for the feedback loop: stories, storyteller characters, a simulated editor.

FairytaleQA (Xu et al., ACL 2022) gives public-domain fairy tales split into
sections and questions with the evidence section(s) and gold answers.  Here
each story becomes a one-book library (one excerpt per section, ids
``<story>#<section>``) and a storyteller character whose procedure is
locate → gather → answer.  `SimulatedEditor` rates a step the way an editor
with the gold evidence would: +1 when it cites an evidence section, otherwise
-1 tagged ``wrong_excerpt`` (``not_in_book`` when it cites nothing), with
optional label noise.  Embeddings are cached on disk per text so repeated
runs do not pay for them again.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from app.domain import Character, FaultTag, ProcedureStep, Review, ReviewKind, Step, Turn

CHARACTER_ID = "fairytaleqa-storyteller"

PROCEDURE = (
    ProcedureStep("Locate", "Find the part of the story the question is about.", ""),
    ProcedureStep("Gather", "Collect what that part of the story says that bears on the question.", ""),
    ProcedureStep("Answer", "Answer from what the story says, quoting it.", ""),
)


@dataclass(frozen=True)
class QA:
    story: str
    question_id: str
    question: str
    evidence: frozenset[str]          # excerpt ids "<story>#<section>"
    answers: tuple[str, ...]


@dataclass
class StoryData:
    name: str
    sections: list[tuple[str, str]]   # (excerpt id, text)
    questions: list[QA]


class DatasetError(ValueError):
    pass


def resolve_split(path: Path, split: str | None = None) -> Path:
    """`path` is a split folder (has sections/ and questions/) or the dataset root plus `split`."""
    path = Path(path)
    if (path / "sections").is_dir() and (path / "questions").is_dir():
        return path
    if split and (path / split / "sections").is_dir():
        return path / split
    raise DatasetError(f"{path} is not a FairytaleQA split folder (expected sections/ and questions/ "
                       f"inside{f', or a {split}/ sub-folder' if split else ''}); e.g. "
                       "../shared/eval/fairytaleqa/val")


def excerpt_id(story: str, section: str) -> str:
    return f"{story}#{section.strip()}"


def load_split(split_dir: Path, *, limit: int | None = None,
               stories: Sequence[str] | None = None) -> list[StoryData]:
    split_dir = resolve_split(split_dir)
    wanted = set(stories) if stories else None
    out: list[StoryData] = []
    for qfile in sorted((split_dir / "questions").glob("*-questions.csv")):
        name = qfile.name.removesuffix("-questions.csv")
        if wanted is not None and name not in wanted:
            continue
        sfile = split_dir / "sections" / f"{name}-story.csv"
        if not sfile.exists():
            raise DatasetError(f"{qfile} has no matching {sfile}")
        with open(sfile, encoding="utf-8", newline="") as fh:
            texts: dict[str, list[str]] = {}      # a section listed twice (one train story) is one section
            for row in csv.DictReader(fh):
                if row.get("text", "").strip():
                    texts.setdefault(excerpt_id(name, row["section"]), []).append(row["text"].strip())
            sections = [(sid, "\n\n".join(parts)) for sid, parts in texts.items()]
        questions = []
        with open(qfile, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                evidence = frozenset(excerpt_id(name, s) for s in (row.get("cor_section") or "").split(",")
                                     if s.strip())
                answers = tuple(a.strip() for key in ("answer1", "answer2", "answer3", "answer4",
                                                      "answer5", "answer6")
                                if (a := row.get(key) or "").strip())
                if row.get("question", "").strip() and evidence:
                    questions.append(QA(name, row.get("question_id", ""), row["question"].strip(),
                                        evidence, answers))
        out.append(StoryData(name, sections, questions))
        if limit and len(out) >= limit:
            break
    if not out:
        raise DatasetError(f"no stories found in {split_dir}")
    return out


def storyteller(story: str) -> Character:
    """The storyteller of one story: same character id everywhere, so one snapshot tunes them all."""
    return Character(id=CHARACTER_ID, name="Storyteller", book_ids=(story,), language="en",
                     description="Tells what happens in the fairy tale, quoting it.",
                     personality="patient", speech_style="plain", greeting="Ask me about the story.",
                     procedure=PROCEDURE)


# ---------------------------------------------------------------- simulated editor

def cited_ids(step: Step) -> list[str]:
    out: list[str] = []
    for c in step.citations:
        if c.valid and c.excerpt_id not in out:
            out.append(c.excerpt_id)
    return out


def turn_cited_ids(turn: Turn) -> list[str]:
    """Distinct excerpt ids the turn's steps cite, in the order they were first cited (R@k reads these)."""
    out: list[str] = []
    for step in turn.steps:
        out += [eid for eid in cited_ids(step) if eid not in out]
    return out


class SimulatedEditor:
    """Rates each step of a turn against the gold evidence sections.

    With ``corrections`` > 0, that share of the steps it rates -1 also gets a written
    correction, as an editor who knows the story would write one: the evidence sentence
    (among the evidence sections the step was given) that best matches the gold answer."""

    def __init__(self, noise: float = 0.0, seed: int = 0, corrections: float = 0.0) -> None:
        if not 0.0 <= noise < 0.5:
            raise ValueError("label noise must be in [0, 0.5)")
        if not 0.0 <= corrections <= 1.0:
            raise ValueError("the share of corrected steps must be in [0, 1]")
        self.noise = noise
        self.corrections = corrections
        self.rng = random.Random(seed)

    def rate(self, step: Step, evidence: frozenset[str], answers: Sequence[str] = ()) -> Review:
        cited = cited_ids(step)
        good = bool(set(cited) & evidence)
        if self.noise and self.rng.random() < self.noise:
            good = not good
        tags = () if good else ((FaultTag.wrong_excerpt,) if cited else (FaultTag.not_in_book,))
        correction = ""
        if not good and self.corrections and self.rng.random() < self.corrections:
            correction = evidence_sentence(step, evidence, answers)
        return Review(step_id=step.id, reviewer="simulated-editor", kind=ReviewKind.editor,
                      rating=1 if good else -1, fault_tags=tags, correction=correction)

    def review_turn(self, turn: Turn, evidence: frozenset[str], answers: Sequence[str] = ()) -> list[Review]:
        return [self.rate(step, evidence, answers) for step in turn.steps]


def evidence_sentence(step: Step, evidence: frozenset[str], answers: Sequence[str]) -> str:
    """The sentence of the step's evidence excerpts that best matches a gold answer ("" if none given)."""
    from app.analyzer import split_sentences
    from app.tuning.text import token_f1

    best, best_f1 = "", 0.0
    for excerpt in step.excerpts:
        if excerpt.id not in evidence:
            continue
        for sentence in split_sentences(excerpt.text):
            f1 = max((token_f1(sentence, a) for a in answers), default=0.0)
            if f1 > best_f1:
                best, best_f1 = sentence, f1
    return best


# ---------------------------------------------------------------- embedding cache

class CachedEmbedder:
    """Wraps an embedder; vectors of texts seen before come from a .npz file in the data dir."""

    def __init__(self, embedder, path: Path, *, save_every: int = 1000) -> None:
        self.embedder = embedder
        self.save_every = save_every
        self.path = path
        self.name = getattr(embedder, "name", "embedder")
        self._cache: dict[str, np.ndarray] = {}
        self._dirty = 0
        if path.exists():
            with np.load(path) as data:
                self._cache = {k: data[k] for k in data.files}

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed_long(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self._cache:
                first.setdefault(k, i)
        missing = list(first.values())
        if missing:
            vectors = self.embedder.embed_long([texts[i] for i in missing], **kwargs)
            for i, vec in zip(missing, vectors):
                self._cache[keys[i]] = vec
            self._dirty += len(missing)
            if self._dirty >= self.save_every:      # an interrupted long run keeps what it paid for
                self.save()
        return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_long([text])[0]

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")   # two runs may share a data dir
        np.savez(tmp, **self._cache)
        tmp.replace(self.path)
        self._dirty = 0
