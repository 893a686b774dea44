"""The tolerant parser for model output and the streamed-JSON text extractor."""

from __future__ import annotations

from app.bots.backends.llmformat import parse_step_output, partial_text_field, resolve_id, stream_view

LABELS = {"E1": "gutenberg-244-aaa", "E2": "gutenberg-244-bbb"}


def test_clean_json_with_labels_resolved():
    d = parse_step_output('{"text": "I perceive.", "citations": [{"excerpt_id": "E2", "quote": "q1"},'
                          ' {"excerpt_id": "gutenberg-244-aaa", "quote": "q2"}, {"excerpt_id": "E7", "quote": "x"}]}',
                          LABELS)
    assert d.text == "I perceive."
    assert [c.excerpt_id for c in d.citations] == ["gutenberg-244-bbb", "gutenberg-244-aaa", "E7"]


def test_fenced_and_chatty_json():
    raw = 'Sure! Here it is:\n```json\n{"text": "Data!", "citations": [{"id": "[E1]", "quote": "data"}]}\n```'
    d = parse_step_output(raw, LABELS)
    assert d.text == "Data!" and d.citations[0].excerpt_id == "gutenberg-244-aaa"


def test_truncated_json_is_repaired():
    raw = '{"text": "You have been in Afghanistan, I perceive.", "citations": [{"excerpt_id": "E1", "quote": "You have be'
    d = parse_step_output(raw, LABELS)
    assert d.text == "You have been in Afghanistan, I perceive."
    raw2 = '{\n\n"text"\n\n:\n\n"I have been in Afghanistan.",\n\n"citations"\n\n:\n\n[\n\n{\n\n"excerpt_id": "1734", "quote":'
    d2 = parse_step_output(raw2, LABELS)
    assert d2.text == "I have been in Afghanistan."


def test_plain_text_with_markers():
    d = parse_step_output('As [E1] says, "the game is afoot" and E2: \u201cmy dear Watson\u201d.', LABELS)
    assert [(c.excerpt_id, c.quote) for c in d.citations] == [("gutenberg-244-aaa", "the game is afoot"),
                                                             ("gutenberg-244-bbb", "my dear Watson")]


def test_garbage_gives_none():
    assert parse_step_output("", LABELS) is None
    assert parse_step_output("{{{{", LABELS) is None
    assert parse_step_output('{"citations": []}', LABELS) is None


def test_partial_text_field_streaming():
    full = '{"text": "Line one.\\nHe said \\"go\\" \\u00e9t\\u00e9", "citations": []}'
    seen = [partial_text_field(full[:i]) for i in range(len(full) + 1)]
    assert seen[0] is None
    finals = [s for s in seen if s is not None]
    assert finals[-1] == 'Line one.\nHe said "go" \u00e9t\u00e9'
    for a, b in zip(finals, finals[1:]):
        assert b.startswith(a)


def test_resolve_id_variants():
    assert resolve_id("e1", LABELS) == "gutenberg-244-aaa"
    assert resolve_id("2", LABELS) == "gutenberg-244-bbb"
    assert resolve_id("made-up", LABELS) == "made-up"


def test_truncated_after_citations_keeps_the_quotes():
    raw = '{"citations": [{"excerpt_id": "E1", "quote": "I perceive"}, {"excerpt_id": "E2", "quote": "my dear'
    d = parse_step_output(raw, LABELS)
    assert [c.excerpt_id for c in d.citations] == ["gutenberg-244-aaa", "gutenberg-244-bbb"]
    assert d.text.startswith("\u201cI perceive\u201d")


def test_stream_view_grows_by_appending():
    full = '{"citations": [{"excerpt_id": "E1", "quote": "I perceive"}, {"excerpt_id": "E2", "quote": "a \\"b\\""}], "text": "So."}'
    views = [stream_view(full[:i]) for i in range(len(full) + 1)]
    seen = [v for v in views if v is not None]
    assert seen[-1] == '\u201cI perceive\u201d \u201ca "b"\u201d\nSo.'
    for a, b in zip(seen, seen[1:]):
        assert b.startswith(a)


def test_broken_json_is_read_up_to_the_break():
    d = parse_step_output('{"text": "Data!", "citations": [{"excerpt_id": "E1", "quote": "data"},], }', LABELS)
    assert d.text == "Data!" and [c.quote for c in d.citations] == ["data"]
    d = parse_step_output('{"text": "So.", "citations": []} and some chatter {', LABELS)
    assert d.text == "So."
    d = parse_step_output('```json\n{"citations": [{"excerpt_id": "E2", "quote": "my dear Wat', LABELS)
    assert d.citations[0].excerpt_id == "gutenberg-244-bbb" and d.citations[0].quote == "my dear Wat"


def test_quote_choices_are_valid_quotes_of_the_shown_text():
    from bots_fakes import make_excerpt

    from app.bots.backends.llmformat import EXCERPT_CHARS, QUOTE_CHARS, quote_choices
    from app.bots.grounding import quote_in_text

    long_sentence = "He said " + " ".join(["word"] * 80) + "."
    text = ("You have been in Afghanistan, I perceive. Mr. Holmes smiled. " + long_sentence
            + " " + "Filler sentence here. " * 60 + "Hidden at the end.")
    ex = make_excerpt("x", text)
    quotes = quote_choices(ex)
    assert quotes[:2] == ["You have been in Afghanistan, I perceive.", "Mr. Holmes smiled."]
    assert all(quote_in_text(q, text) and len(q) <= QUOTE_CHARS for q in quotes)
    assert quotes[2].startswith("He said word") and len(quotes) == len(set(quotes))
    assert not any("Hidden" in q for q in quotes)         # only what the prompt shows
    assert all(q in text[:EXCERPT_CHARS + QUOTE_CHARS] for q in quotes)


def test_step_schema_constrained_and_free():
    from bots_fakes import HOLMES_TEXTS, make_excerpt

    from app.bots.backends.llmformat import STEP_SCHEMA, step_schema

    excerpts = [make_excerpt(eid, text) for eid, text in HOLMES_TEXTS[:2]]
    schema = step_schema(excerpts)
    options = schema["properties"]["citations"]["items"]["anyOf"]
    assert options[1]["properties"] == {
        "excerpt_id": {"type": "string", "enum": ["E2"]},
        "quote": {"type": "string", "enum": ["Here is a gentleman of a medical type, but with the air of a "
                                             "military man.", "Clearly an army doctor, then.",
                                             "He has just come from the tropics, for his face is dark."]}}
    assert schema["properties"]["citations"]["minItems"] == 1
    assert schema["required"] == ["citations", "text"]
    one = step_schema(excerpts[:1])["properties"]["citations"]["items"]
    assert one["properties"]["excerpt_id"]["enum"] == ["E1"]
    assert step_schema(excerpts, constrained=False) is STEP_SCHEMA
    assert step_schema([]) is STEP_SCHEMA
