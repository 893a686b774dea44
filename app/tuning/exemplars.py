"""Few-shot exemplars from reviewed steps, chosen by similarity to the new question.

Approved steps (an editor's +1) keep their text; corrected steps (any editor
rating with a written correction) contribute the correction.  At answer time the
`SnapshotExemplars` source returns the k exemplars of the same character and
procedure step whose questions are most similar (idf-weighted word cosine) to
the question being answered.  Stored in a snapshot as JSON lines.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from app.domain import Exemplar, ReviewKind, ReviewSource
from app.tuning.labels import LabelledStep
from app.tuning.text import content_tokens, cosine, idf_table


def exemplars_from(items: Iterable[LabelledStep]) -> list[Exemplar]:
    out: list[Exemplar] = []
    seen: set[tuple[str, str, str]] = set()
    for item in items:
        if item.source is not ReviewSource.human or item.kind is not ReviewKind.editor:
            continue
        if item.correction.strip():
            text = item.correction.strip()
        elif item.rating > 0:
            text = item.step.text
        else:
            continue
        key = (item.step.name, item.question, text)
        if key in seen:
            continue
        seen.add(key)
        out.append(Exemplar(character_id=item.character_id, step_name=item.step.name,
                            question=item.question, text=text,
                            excerpt_ids=tuple(item.cited_ids)))
    return out


class SnapshotExemplars:
    """`domain.ExemplarSource` over a fixed list of exemplars."""

    def __init__(self, exemplars: Sequence[Exemplar]) -> None:
        self.items = list(exemplars)
        self._terms = [content_tokens(e.question) for e in self.items]
        self._idf = idf_table(self._terms)
        self._default_idf = math.log(len(self.items) + 1.0) if self.items else 1.0
        self._vectors = [self._vector(t) for t in self._terms]

    def _vector(self, terms: Sequence[str]) -> Counter[str]:
        counts = Counter(terms)
        return Counter({t: n * self._idf.get(t, self._default_idf) for t, n in counts.items()})

    def exemplars(self, character_id: str, step_name: str, question: str, k: int = 2) -> list[Exemplar]:
        query = self._vector(content_tokens(question))
        scored = [(cosine(query, vec), i) for i, (ex, vec) in enumerate(zip(self.items, self._vectors))
                  if ex.character_id == character_id and ex.step_name == step_name]
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        return [self.items[i] for s, i in scored[:k] if s > 0]

    def __len__(self) -> int:
        return len(self.items)

    def save(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as fh:
            for ex in self.items:
                fh.write(json.dumps({"character_id": ex.character_id, "step_name": ex.step_name,
                                     "question": ex.question, "text": ex.text,
                                     "excerpt_ids": list(ex.excerpt_ids)}, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> "SnapshotExemplars":
        items = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                items.append(Exemplar(d["character_id"], d["step_name"], d["question"], d["text"],
                                      tuple(d.get("excerpt_ids", ()))))
        return cls(items)
