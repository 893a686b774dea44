"""The offline default backend: every step is built from retrieved sentences.

No model: for each step it ranks the sentences of the excerpts retrieved for
that step against the question and the step's search terms, quotes the best
ones verbatim and phrases them through the card's templates (the character's
voice).  Deterministic and never invents: the only words not from the book are
the card's own template text.
"""

from __future__ import annotations

import math
import re
from typing import Iterator, Sequence

from app.bots.backends.base import AnswerRequest, AnswerText, Delta, Draft, Drafts, StepRequest
from app.analyzer import normalize, split_sentences, terms as tokens
from app.domain import Character, Citation, Excerpt, ProcedureStep

DEFAULT_TEMPLATES = {
    "en": {
        "step": "{step}: in {book} ({chapter}) I find: \u201c{quote}\u201d",
        "point": "\u201c{quote}\u201d ({book}, {chapter})",
        "answer": "{points}",
        "no_evidence": "{step}: the book gives me nothing on this.",
    },
    "ko": {
        "step": "{step}: {book}({chapter})에 이렇게 나온다. \u201c{quote}\u201d",
        "point": "\u201c{quote}\u201d",
        "answer": "{points}",
        "no_evidence": "{step}: 책에는 이에 대한 말이 없다.",
    },
}

MIN_WORDS, MAX_WORDS = 5, 60
MAX_POINTS = 3          # quotes the offline answer repeats before its conclusion


_EDGE_QUOTES = "\"'\u201c\u201d\u2018\u2019 "


def _fit(sentence: str) -> str:
    """A verbatim piece of the sentence: at most MAX_WORDS words, without dangling quote marks
    (the template adds its own), so it still occurs in the excerpt as it is."""
    words = sentence.split()
    if len(words) > MAX_WORDS:
        sentence = " ".join(words[:MAX_WORDS])
    return sentence.strip(_EDGE_QUOTES) or sentence


def _template(character: Character, key: str, step_name: str | None = None) -> str:
    t = character.templates
    if step_name and f"step:{step_name}" in t:
        return t[f"step:{step_name}"]
    if key in t:
        return t[key]
    lang = "ko" if character.language.startswith("ko") else "en"
    return DEFAULT_TEMPLATES[lang][key]


def _chapter(excerpt: Excerpt) -> str:
    loc = excerpt.location
    return (loc.chapter_title or "").strip().rstrip(".:;,") or f"ch. {loc.chapter_number}"


def _fill(template: str, **values: str) -> str:
    class _Safe(dict):
        def __missing__(self, key: str) -> str:
            return ""
    return template.format_map(_Safe(values)).strip()


class ExtractiveBackend:
    """Offline backend: quotes the best-matching retrieved sentences, in the card's templates."""

    name = "extractive"
    offline = True
    streams = False
    structured_output = False

    def __init__(self, quotes_per_step: int = 1):
        self.quotes_per_step = quotes_per_step

    # ------------------------------------------------------------ ranking

    def rank_sentences(self, request: StepRequest) -> list[tuple[float, Excerpt, str]]:
        """Sentences of this step's excerpts, best first: question words (weighted by rarity
        among the retrieved sentences) count double, the step's search words once, plus a
        bonus for the excerpt's retrieval rank.  Sentences quoted by earlier steps are skipped."""
        used = {normalize(c.quote) for s in request.earlier for c in s.citations if c.valid}
        q_weight: dict[str, float] = {}
        for tok in tokens(request.question):
            q_weight[tok] = q_weight.get(tok, 0.0) + 2.0
        for tok in tokens(request.step.search):
            q_weight[tok] = q_weight.get(tok, 0.0) + 1.0
        preferred = {eid for ex in request.exemplars for eid in ex.excerpt_ids}
        pool: list[tuple[int, int, Excerpt, str, set[str]]] = []
        for rank, excerpt in enumerate(request.excerpts):
            for pos, sentence in enumerate(split_sentences(excerpt.text)):
                n_words = len(sentence.split())
                if n_words < MIN_WORDS and not re.search(r"[\uac00-\ud7a3]", sentence):
                    continue
                if normalize(_fit(sentence)) in used:
                    continue
                sent_tokens = set(tokens(sentence))
                if sent_tokens:
                    pool.append((rank, pos, excerpt, sentence, sent_tokens))
        df: dict[str, int] = {}
        for *_, sent_tokens in pool:
            for tok in sent_tokens & q_weight.keys():
                df[tok] = df.get(tok, 0) + 1
        n = len(pool) or 1
        ranked: list[tuple[float, int, int, Excerpt, str]] = []
        for rank, pos, excerpt, sentence, sent_tokens in pool:
            overlap = sum(w * math.log(1.0 + n / df[t]) for t, w in q_weight.items() if t in sent_tokens)
            score = overlap / math.sqrt(len(sent_tokens)) + 0.6 / (rank + 1)
            if excerpt.id in preferred:
                score += 0.3
            ranked.append((score, rank, pos, excerpt, _fit(sentence)))
        ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
        return [(s, e, text) for s, _, _, e, text in ranked]

    def drafts(self, request: StepRequest) -> list[Draft]:
        c = request.character
        ranked = self.rank_sentences(request)
        n = max(request.n, 1)
        if not ranked:
            text = _fill(_template(c, "no_evidence"), step=request.step.name, question=request.question,
                         name=c.name, instruction=request.step.instruction)
            return [Draft(text, [])]
        # candidate i leads with the i-th best sentence, preferring a new excerpt each time
        leads: list[tuple[float, Excerpt, str]] = []
        seen_excerpts: set[str] = set()
        for item in ranked:
            if item[1].id not in seen_excerpts:
                leads.append(item)
                seen_excerpts.add(item[1].id)
            if len(leads) == n:
                break
        for item in ranked:
            if len(leads) >= n:
                break
            if item not in leads:
                leads.append(item)
        out: list[Draft] = []
        for _, excerpt, sentence in leads:
            quotes = [sentence]
            if self.quotes_per_step > 1:
                quotes += [s for _, e, s in ranked if e.id == excerpt.id and s != sentence]
                quotes = quotes[:self.quotes_per_step]
            quote = " \u2026 ".join(quotes)
            text = _fill(_template(c, "step", request.step.name), quote=quote, book=excerpt.book_title
                         or excerpt.book_id, chapter=_chapter(excerpt), location=excerpt.location.label(),
                         step=request.step.name, instruction=request.step.instruction,
                         question=request.question, name=c.name)
            out.append(Draft(text, [Citation(excerpt_id=excerpt.id, quote=q) for q in quotes]))
        return out

    # ------------------------------------------------------------ interface

    def step(self, request: StepRequest) -> Iterator[Delta | Drafts]:
        drafts = self.drafts(request)
        if drafts:
            yield Delta(drafts[0].text)
        yield Drafts(drafts)

    def answer(self, request: AnswerRequest) -> Iterator[Delta | AnswerText]:
        text = self.compose_answer(request.character, request.question, request.steps)
        yield Delta(text)
        yield AnswerText(text)

    def compose_answer(self, character: Character, question: str, steps: Sequence) -> str:
        points: list[str] = []
        quotes: list[str] = []
        books: list[str] = []
        for step in steps:
            if not step.grounded:
                continue
            by_id = {e.id: e for e in step.excerpts}
            for cit in step.citations:
                excerpt = by_id.get(cit.excerpt_id)
                if not cit.valid or excerpt is None:
                    continue
                quotes.append(cit.quote)
                books.append(excerpt.book_title or excerpt.book_id)
                points.append(_fill(_template(character, "point"), quote=cit.quote, step=step.name,
                                    book=excerpt.book_title or excerpt.book_id, chapter=_chapter(excerpt),
                                    location=excerpt.location.label(), question=question, name=character.name))
                break
        if not points:
            return _fill(_template(character, "no_evidence"), step=_no_step(character), question=question,
                         name=character.name)
        # the last grounded step's quote is the conclusion; the others are the points leading to it
        return _fill(_template(character, "answer"), points=" ".join(points[:-1][:MAX_POINTS]),
                     conclusion=quotes[-1],
                     first_quote=quotes[0], question=question, name=character.name, book=books[0])


def _no_step(character: Character) -> str:
    procedure: Sequence[ProcedureStep] = character.procedure
    return procedure[-1].name if procedure else ""
