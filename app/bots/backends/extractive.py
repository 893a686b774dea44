"""The offline default backend: every step is built from retrieved sentences.

No model: for each step it ranks the sentences of the excerpts retrieved for
that step against the question and the step's search terms, quotes the best
ones verbatim and phrases them through the card's templates (the character's
voice).  Deterministic and never invents: the only words not from the book are
the card's own template text.
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

from app.bots.backends.base import AnswerRequest, AnswerText, Delta, Draft, Drafts, StepRequest, step_text
from app.analyzer import normalize, split_sentences, terms
from app.evidence import SentencePool, SentenceVectors, relevance
from app.domain import Character, Citation, Excerpt, ProcedureStep

DEFAULT_TEMPLATES = {
    "en": {
        "step": "{step}: in {book} ({chapter}) I find: \u201c{quote}\u201d",
        "point": "\u201c{quote}\u201d ({book}, {chapter})",
        "answer": "\u201c{conclusion}\u201d ({book}, {chapter}) {points}",
        "no_evidence": "{step}: the book gives me nothing on this.",
    },
    "ko": {
        "step": "{step}: {book}({chapter})에 이렇게 나온다. \u201c{quote}\u201d",
        "point": "\u201c{quote}\u201d",
        "answer": "\u201c{conclusion}\u201d {points}",
        "no_evidence": "{step}: 책에는 이에 대한 말이 없다.",
    },
}

MAX_WORDS = 60
FOCUS_PASSAGES = 3      # a later step's first choice: the question's best passages no step has cited
# the conclusion also quotes the sentence after the best one when both fit (FairytaleQA train:
# ROUGE-L 0.189 at 30 words, 0.182 at 40)
CONCLUSION_WORDS = 30
MAX_POINTS = 3          # quotes the offline answer repeats before its conclusion
# the conclusion drops leading and trailing clauses that only restate the question: fewer than
# NEW_TERMS of their terms are new to it (FairytaleQA train: ROUGE-L 0.192 -> 0.202); what is left
# keeps at least MIN_PART_WORDS words, or the whole quote stays
NEW_TERMS = 0.5
MIN_PART_WORDS = 4
_CLAUSE_END = re.compile(r"(?<=[,;:.!?])[\"'\u201d\u2019)]*\s+|\s+(?=(?:because|so that|but|and then|when|"
                         r"who|which|where|until|while)\b)|\s*(?:\u2014|--)\s*")


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
    """Offline backend: quotes the most relevant retrieved sentences, in the card's templates.

    ``vectors`` (a shared ``SentenceVectors`` over the library's embedder) lets sentence choice
    use meaning as well as words; without it, ranking is by words and retrieval scores only."""

    name = "extractive"
    offline = True
    streams = False
    structured_output = False

    def __init__(self, quotes_per_step: int = 1, vectors: SentenceVectors | None = None):
        self.quotes_per_step = quotes_per_step
        self.vectors = vectors

    # ------------------------------------------------------------ ranking

    def pool(self, request: StepRequest) -> SentencePool:
        if request.evidence is not None:
            return request.evidence
        return SentencePool(request.question, request.excerpts, step_text=step_text(request.step),
                            vectors=self.vectors)

    def rank_sentences(self, request: StepRequest) -> list[tuple[int, float, Excerpt, str]]:
        """(tier, relevance, excerpt, quote) of this step's sentences, best first (``app.evidence``).

        A sentence an earlier step quoted is never offered again, and a passage an earlier step
        cited comes after every passage no step has cited yet.  A later step first looks in the
        question's own best passages (``request.focus``) that no step has cited, so that the
        steps together cover the passages the question points to.  Excerpts of the exemplars
        (steps editors approved for similar questions) get a small bonus."""
        used = {normalize(c.quote) for s in request.earlier for c in s.citations if c.valid}
        cited = {c.excerpt_id for s in request.earlier for c in s.citations if c.valid}
        focus = set(request.focus[:FOCUS_PASSAGES]) - cited
        preferred = {eid for ex in request.exemplars for eid in ex.excerpt_ids}
        ranked: list[tuple[int, float, int, int, Excerpt, str]] = []
        for sent in self.pool(request).sentences:
            quote = _fit(sent.text)
            if normalize(quote) in used:
                continue
            eid = sent.excerpt.id
            score = sent.relevance + (0.1 if eid in preferred else 0.0)
            tier = 2 if eid in cited else int(bool(focus) and eid not in focus)
            ranked.append((tier, -score, sent.rank, sent.position, sent.excerpt, quote))
        ranked.sort(key=lambda r: r[:4])
        return [(tier, -neg, e, text) for tier, neg, _, _, e, text in ranked]

    def drafts(self, request: StepRequest) -> list[Draft]:
        c = request.character
        ranked = self.rank_sentences(request)
        n = max(request.n, 1)
        if not ranked:
            text = _fill(_template(c, "no_evidence"), step=request.step.name, question=request.question,
                         name=c.name, instruction=request.step.instruction)
            return [Draft(text, [])]
        # candidates come from the best tier only; candidate i leads with the i-th best sentence,
        # preferring a new excerpt each time
        tier = [item for item in ranked if item[0] == ranked[0][0]]
        leads: list[tuple[int, float, Excerpt, str]] = []
        seen_excerpts: set[str] = set()
        for item in tier:
            if item[2].id not in seen_excerpts:
                leads.append(item)
                seen_excerpts.add(item[2].id)
            if len(leads) == n:
                break
        for item in tier:
            if len(leads) >= n:
                break
            if item not in leads:
                leads.append(item)
        out: list[Draft] = []
        for _, _, excerpt, sentence in leads:
            quotes = [sentence]
            if self.quotes_per_step > 1:
                quotes += [s for _, _, e, s in ranked if e.id == excerpt.id and s != sentence]
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
        """The best-supported quote is the conclusion; the other steps' quotes lead up to it."""
        cited = _step_quotes(steps)
        if not cited:
            return _fill(_template(character, "no_evidence"), step=_no_step(character), question=question,
                         name=character.name)
        best, final = _concluding(question, steps, cited)
        excerpt = cited[best][2]
        points = [_fill(_template(character, "point"), quote=cit.quote, step=step.name,
                        book=ex.book_title or ex.book_id, chapter=_chapter(ex), location=ex.location.label(),
                        question=question, name=character.name)
                  for n, (step, cit, ex) in enumerate(cited)
                  if n != best and normalize(cit.quote) not in normalize(final)][:MAX_POINTS]
        return _fill(_template(character, "answer"), points=" ".join(points), conclusion=final,
                     first_quote=cited[0][1].quote, question=question, name=character.name,
                     book=excerpt.book_title or excerpt.book_id, chapter=_chapter(excerpt))


def _step_quotes(steps: Sequence) -> list[tuple[object, Citation, Excerpt]]:
    """(step, first valid citation, its excerpt) of each grounded step, in step order."""
    out = []
    for step in steps:
        if not step.grounded:
            continue
        by_id = {e.id: e for e in step.excerpts}
        cit = next((c for c in step.citations if c.valid and c.excerpt_id in by_id), None)
        if cit is not None:
            out.append((step, cit, by_id[cit.excerpt_id]))
    return out


def conclusion(question: str, steps: Sequence) -> str:
    """The quote an offline answer concludes with (what evaluations compare with gold answers)."""
    cited = _step_quotes(steps)
    return _concluding(question, steps, cited)[1] if cited else ""


def concluded_from(question: str, steps: Sequence) -> str | None:
    """The id of the passage the offline answer's conclusion quotes (None when no step is grounded)."""
    cited = _step_quotes(steps)
    return cited[_best_supported(question, steps, cited)][2].id if cited else None


def _concluding(question: str, steps: Sequence,
                cited: Sequence[tuple[object, Citation, Excerpt]]) -> tuple[int, str]:
    """(index of the best-supported quote, the conclusion built on it)."""
    best = _best_supported(question, steps, cited)
    _, quoted, excerpt = cited[best]
    return best, _answering_part(question, _with_next_sentence(quoted.quote, excerpt))


def _answering_part(question: str, text: str) -> str:
    """The part of ``text`` that tells the reader something the question does not: leading and
    trailing clauses made mostly of the question's own terms are dropped.  A verbatim slice."""
    asked = set(terms(question))
    cuts = [0, *(m.end() for m in _CLAUSE_END.finditer(text)), len(text)]
    spans = [(a, b) for a, b in zip(cuts, cuts[1:]) if text[a:b].strip()]
    if len(spans) < 2 or not asked:
        return text

    def tells(span: tuple[int, int]) -> bool:
        found = terms(text[span[0]:span[1]])
        return bool(found) and sum(t not in asked for t in found) >= NEW_TERMS * len(found)

    keep = [n for n, span in enumerate(spans) if tells(span)]
    if not keep:
        return text
    part = text[spans[keep[0]][0]:spans[keep[-1]][1]].strip().rstrip(",;:\u2014-").strip(_EDGE_QUOTES)
    return part if len(part.split()) >= MIN_PART_WORDS else text


def _with_next_sentence(quote: str, excerpt: Excerpt) -> str:
    """The best-supported quote, and the sentence after it in its passage when both fit in
    CONCLUSION_WORDS: in a story the sentence that matches a question is often followed by the
    one that answers it (chosen on FairytaleQA train stories).  Still a verbatim piece of the book."""
    sentences = split_sentences(excerpt.text)
    for sentence, following in zip(sentences, sentences[1:]):
        if _fit(sentence) == quote:
            joined = f"{sentence.strip()} {following.strip()}"
            return _fit(joined) if len(joined.split()) <= CONCLUSION_WORDS else quote
    return quote


def _best_supported(question: str, steps: Sequence, cited: Sequence[tuple[object, Citation, Excerpt]]) -> int:
    """The quote that answers the question best, every step's quote scored in one pool.

    A step's own relevance is relative to its own excerpts (idf, the pool's best retrieval
    score), so a later step whose pool is weak can look better than the first; here all quotes
    are scored against the question over the sentences of every excerpt the steps retrieved,
    with the question–sentence cosine the engine stored for each (FairytaleQA train: the
    concluded passage holds the evidence 0.5 points more often, ROUGE-L +0.001)."""
    if len(cited) == 1:
        return 0
    excerpts = list({e.id: e for step in steps for e in step.excerpts}.values())
    pool = SentencePool(question, excerpts)        # no step text and no vectors: cos_step stays 0

    def support(step, cited_quote: Citation, excerpt: Excerpt) -> float:
        features = pool.quote_features(excerpt.id, cited_quote.quote)
        chosen = next((c for c in step.candidates if c.chosen), None)
        features["cos_q"] = ((chosen.features if chosen is not None else None) or {}).get("ev_cos_q", 0.0)
        return relevance(features)

    scores = [support(*item) for item in cited]
    return max(range(len(cited)), key=lambda i: (scores[i], -i))


def _no_step(character: Character) -> str:
    procedure: Sequence[ProcedureStep] = character.procedure
    return procedure[-1].name if procedure else ""
