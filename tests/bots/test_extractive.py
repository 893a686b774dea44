"""The offline extractive backend: deterministic, quotes only the book, speaks through card templates."""

from __future__ import annotations

from dataclasses import replace

from app.bots.backends import Drafts, ExtractiveBackend, StepRequest
from app.bots.engine import Engine
from app.bots.grounding import quote_in_text
from app.domain import Excerpt, Location

from bots_fakes import FakeRetriever, make_excerpt


def _request(holmes, excerpts, n=2, step=0, question="Was Watson in Afghanistan?", earlier=()):
    return StepRequest(character=holmes, question=question, step=holmes.procedure[step], step_index=step,
                       excerpts=excerpts, n=n, earlier=list(earlier))


def test_quotes_come_verbatim_from_the_cited_excerpt(holmes, retriever):
    excerpts = retriever.retrieve("Afghanistan perceive army doctor", top_k=5, book_ids=["gutenberg-244"])
    drafts = ExtractiveBackend().drafts(_request(holmes, excerpts, n=3))
    by_id = {e.id: e for e in excerpts}
    assert len(drafts) == 3
    assert len({d.citations[0].excerpt_id for d in drafts}) == 3      # candidates lead with different excerpts
    for d in drafts:
        for c in d.citations:
            assert quote_in_text(c.quote, by_id[c.excerpt_id].text)
            assert c.quote in d.text                                    # the template put the quote in
        assert d.text.startswith("Observe: \u201c")                     # the card's step template
    assert "Afghanistan" in drafts[0].citations[0].quote


def test_deterministic(holmes, retriever):
    a = Engine(retriever, ExtractiveBackend()).answer(holmes, "What is a capital mistake?")
    b = Engine(retriever, ExtractiveBackend()).answer(holmes, "What is a capital mistake?")
    assert [s.text for s in a.steps] == [s.text for s in b.steps] and a.answer == b.answer


def test_earlier_quotes_are_not_repeated_and_answer_builds_on_steps(holmes, retriever):
    from app.bots.backends.extractive import conclusion

    turn = Engine(retriever, ExtractiveBackend()).answer(holmes, "Afghanistan?")
    quotes = [s.citations[0].quote for s in turn.steps]
    assert len(set(quotes)) == len(quotes)
    cited = [s.citations[0].excerpt_id for s in turn.steps]
    assert len(set(cited)) == len(cited)                 # no step re-cites a passage another step used
    # the conclusion is the quote that answers the question best, not the last step's
    final = conclusion("Afghanistan?", turn.steps)
    assert final.startswith("I perceive. I knew you came from Afghanistan")   # "You have been in Afghanistan," only restates it
    assert turn.answer.startswith("Data: ")              # the card's template, which lists the other points
    for q in quotes:                                     # the concluding quote is not repeated as a point
        assert (q in turn.answer) == (not q.startswith("You have been in Afghanistan"))


def _concluded(holmes, texts: list[str], question: str):
    """A storyteller (default templates) answers from these passages offline: (turn, conclusion)."""
    from app.bots.backends.extractive import concluded_from, conclusion

    teller = replace(holmes, id="teller", templates={})
    story = [make_excerpt(f"t#{n}", text) for n, text in enumerate(texts, start=1)]
    turn = Engine(FakeRetriever(story), ExtractiveBackend(), candidates=len(story)).answer(teller, question)
    final = conclusion(turn.question, turn.steps)
    assert quote_in_text(final, texts[0]) and f"\u201c{final}\u201d" in turn.answer     # still verbatim
    assert concluded_from(turn.question, turn.steps) == "t#1"                  # the passage it quotes, for evaluations
    return turn, final


def test_conclusion_adds_the_sentence_that_follows_when_short(holmes):
    # the quote that matches the question, and the sentence after it that answers it, without the
    # sentence that only restates the question
    _, final = _concluded(holmes, ["Why was the old king so angry that morning? Somebody had stolen his golden "
                                   "crown. The queen laughed at him for days and weeks on end.",
                                   "The gardener planted roses by the gate."], "Why was the old king angry?")
    assert final == "Somebody had stolen his golden crown."
    # too long together: the quote alone, which says more than the question does
    _, final = _concluded(holmes, ["Why was the old king so angry in the great hall of his castle? "
                                   + " ".join(["word"] * 45) + "."], "Why was the king angry?")
    assert final == "Why was the old king so angry in the great hall of his castle?"


def test_conclusion_leaves_out_clauses_that_only_restate_the_question(holmes):
    question = "Why did Momotaro admire the bird?"
    _, final = _concluded(holmes, ["Momotaro could not help admiring the bird; it showed so much spirit in the fight.",
                                   "The dog ran off into the forest after a hare."], question)
    assert final == "it showed so much spirit in the fight."                   # the reason, not the question again
    # every clause restates the question: the quote stays whole rather than vanish
    _, final = _concluded(holmes, ["Momotaro admired the bird, the bird that Momotaro admired."], question)
    assert final == "Momotaro admired the bird, the bird that Momotaro admired."


def test_later_steps_cover_the_questions_best_passages(holmes):
    # a later step takes its candidates from the question's best passages no step has cited yet,
    # even where another passage of its own retrieval matches the question better
    excerpts = [make_excerpt("own", "Watson was in Afghanistan, I perceive, as an army doctor."),
                make_excerpt("f1", "The army sent doctors to many places."),
                make_excerpt("f2", "Afghanistan is a hard country for a soldier.")]
    free = ExtractiveBackend().drafts(_request(holmes, excerpts, n=3, step=1))
    assert free[0].citations[0].excerpt_id == "own"
    request = replace(_request(holmes, excerpts, n=3, step=1), focus=["f1", "f2", "x"])
    focused = ExtractiveBackend().drafts(request)
    assert {d.citations[0].excerpt_id for d in focused} == {"f1", "f2"}

def test_long_sentences_are_cut_to_a_verbatim_prefix(holmes):
    long = "Watson " + " ".join(f"word{i}" for i in range(100)) + "."
    ex = [make_excerpt("x1", long)]
    draft = ExtractiveBackend().drafts(_request(holmes, ex, n=1, question="Watson word5"))[0]
    assert len(draft.citations[0].quote.split()) == 60 and quote_in_text(draft.citations[0].quote, long)


def test_default_templates_and_korean(holmes):
    kim = replace(holmes, id="kim", name="김 첨지", language="ko", templates={}, book_ids=("ko",))
    text = ("이날이야말로 동소문 안에서 인력거꾼 노릇을 하는 김 첨지에게는 오래간만에도 닥친 운수 좋은 날이었다.\n"
            "그의 아내가 기침으로 쿨럭거리기는 벌써 달포가 넘었다.")
    ex = Excerpt(id="k1", book_id="ko", text=text, book_title="운수 좋은 날",
                 location=Location("ko", 1, "", 1, 2))
    drafts = list(ExtractiveBackend().step(_request(kim, [ex], n=1, question="아내는 언제부터 기침을 했소?")))
    draft = drafts[-1].drafts[0] if isinstance(drafts[-1], Drafts) else None
    assert draft is not None and "기침으로" in draft.citations[0].quote
    assert draft.text.startswith("Observe: 운수 좋은 날(ch. 1)에 이렇게 나온다.")
    empty = ExtractiveBackend().drafts(_request(kim, [], n=1))
    assert empty[0].citations == [] and "책에는" in empty[0].text


def test_fake_retriever_respects_books(excerpts):
    r = FakeRetriever(excerpts)
    assert all(e.book_id == "gutenberg-11" for e in r.retrieve("tired sister", book_ids=["gutenberg-11"]))


def test_sentence_split_keeps_abbreviations():
    from app.analyzer import split_sentences
    text = "Mr. Darcy bowed. Mrs. Bennet said nothing to Dr. J. Watson! Then he left.\nA new line"
    assert split_sentences(text) == ["Mr. Darcy bowed.", "Mrs. Bennet said nothing to Dr. J. Watson!",
                                     "Then he left.", "A new line"]


def test_a_wrapped_line_does_not_end_a_sentence():
    """Hard-wrapped text (Gutenberg, FairytaleQA sections) is split into whole sentences, so a quote
    is never a line fragment like "northeast of Japan."; one-sentence lines and blank lines still end one."""
    from app.analyzer import split_sentences
    wrapped = ('"I have not yet told you my reason. Far away from here to the\n'
               "northeast of Japan there is an island in the sea. This island is the\n"
               "stronghold of a band of devils.\n\nMomotaro left at dawn")
    assert split_sentences(wrapped) == ['"I have not yet told you my reason.',
                                        "Far away from here to the northeast of Japan there is an island in the sea.",
                                        "This island is the stronghold of a band of devils.",
                                        "Momotaro left at dawn"]
    lines = "The owl looked up to the stars above.\nAnd sang to a small guitar!\nO lovely Pussy"
    assert split_sentences(lines) == ["The owl looked up to the stars above.", "And sang to a small guitar!",
                                      "O lovely Pussy"]


def test_conclusion_compares_every_steps_quote_in_one_pool(holmes):
    # A step's own relevance is relative to its own excerpts: a later step whose passages are all
    # weak still has a "best" sentence, which can outscore the first step's.  The conclusion scores
    # every step's quote against the question in one pool, so the quote that answers wins.
    from app.bots.backends.extractive import concluded_from, conclusion
    from app.domain import Candidate, Citation, Step

    question = "Why did the miller hide the golden key?"
    first = [make_excerpt("m1", "The miller put the golden key under the mill stone, because he feared the king."),
             make_excerpt("m2", "The miller ground corn all day long."),
             make_excerpt("m3", "The mill stood by the river.")]
    later = [make_excerpt("g1", "The golden sun rose over the hills."),
             make_excerpt("g2", "The hills were green in spring."),
             make_excerpt("g3", "Birds sang in the hills at dawn.")]

    def step(index: int, excerpts, own_relevance: float) -> Step:
        quote = excerpts[0].text
        citation = Citation(excerpt_id=excerpts[0].id, quote=quote)
        candidate = Candidate(quote, [citation], chosen=True,
                              features={"ev_relevance": own_relevance, "ev_cos_q": 0.4})
        return Step(f"s{index}", "t", index, f"Step {index}", quote, [citation], excerpts, [candidate],
                    grounded=True)

    steps = [step(0, first, 1.2), step(1, later, 1.8)]      # the later step looked best in its own pool
    assert conclusion(question, steps).startswith("The miller put the golden key under the mill stone")
    assert concluded_from(question, steps) == "m1"
    answer = ExtractiveBackend().compose_answer(replace(holmes, templates={}), question, steps)
    assert answer.startswith("\u201cThe miller put the golden key")
    assert "The golden sun rose" in answer                      # the other step's quote is still a point
