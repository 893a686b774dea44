"""Input checks, excerpt highlighting, review-control props and payload checks (no server)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from app.domain import (Citation, Excerpt, FaultTag, Location, Review, ReviewKind, ReviewSource, Role,
                        Step)
from app.ui import present

ROOT = Path(__file__).resolve().parents[2]


def test_empty_and_oversized_questions_are_refused_with_a_reason():
    assert "empty" in present.check_question("")
    assert "empty" in present.check_question("   \n ")
    msg = present.check_question("x" * 20_000)
    assert "20,000" in msg and f"{present.MAX_QUESTION_CHARS:,}" in msg and "nothing was sent" in msg
    assert present.check_question("Who was Irene Adler?") is None


def test_language_notice_only_when_the_script_differs():
    assert present.language_notice("Who was Irene Adler?", "en") is None
    note = present.language_notice("홈즈는 누구인가요?", "en")
    assert note and "English" in note
    assert present.language_notice("김 첨지는 왜 울었나?", "ko") is None
    assert "Korean" in present.language_notice("Why did he cry?", "ko")
    assert present.language_notice("???", "en") is None


def test_highlight_marks_each_quote_case_and_space_insensitively():
    text = "It is a capital mistake to theorize before one has data. Data! data! data!"
    segs = present.highlight_segments(text, ["capital  mistake", "DATA!"])
    assert "".join(s["text"] for s in segs) == text
    marked = [s["text"] for s in segs if s["mark"]]
    assert marked[0] == "capital mistake"
    assert marked.count("Data!") + marked.count("data!") == 3
    assert present.highlight_segments("plain", []) == [{"text": "plain", "mark": False}]


def _step(citations, excerpts):
    return Step(id="s1", turn_id="t1", index=1, name="Recall", text="He said so.",
                citations=citations, excerpts=excerpts)


def _excerpt(eid, text="The dog did nothing in the night-time.", title="Memoirs"):
    return Excerpt(id=eid, book_id="b", text=text, book_title=title,
                   location=Location("b", 3, "Silver Blaze", 4, 5))


def test_cited_excerpts_come_first_and_props_carry_book_chapter_and_quote():
    a, b = _excerpt("a"), _excerpt("b", "That was the curious incident.")
    step = _step([Citation("b", "curious incident"), Citation("zz", "x", valid=False, problem="unknown excerpt")],
                 [a, b])
    assert present.cited_excerpts(step) == [b]
    props = present.excerpt_props(b, step.citations, 1, "Step 2 · Recall")
    assert props["book"] == "Memoirs" and props["chapter"] == "Chapter 3: Silver Blaze"
    assert props["location"] == "paragraphs 4–5"
    assert present.chapter_heading(2, "PART I — CHAPTER II. THE SCIENCE OF DEDUCTION.") == "PART I — CHAPTER II. THE SCIENCE OF DEDUCTION"
    assert [s["text"] for s in props["segments"] if s["mark"]] == ["curious incident"]
    md = present.step_markdown(step, [(present.excerpt_name(1), present.excerpt_label(b))])
    assert "- Source 1: Memoirs, ch. 3 ¶4" in md and "dropped citation zz: unknown excerpt" in md


def test_source_elements_are_identical_copies():
    files = sorted((ROOT / "public" / "elements").glob("Source *.jsx"))
    assert [f.stem for f in files] == [present.excerpt_name(n) for n in range(1, present.MAX_SOURCES + 1)]
    assert len({f.read_text() for f in files}) == 1


def test_review_props_hide_editor_fields_from_readers():
    r = Review(step_id="s1", reviewer="ann", kind=ReviewKind.editor, rating=-1, correction="<b>x</b>",
               fault_tags=(FaultTag.wrong_excerpt,), source=ReviewSource.human)
    reader = present.review_props("s1", "Recall", Role.reader, editor=r)
    assert "editor" not in reader and "fault_labels" not in reader
    editor = present.review_props("s1", "Recall", "editor", editor=r)
    assert editor["editor"]["rating"] == -1 and editor["editor"]["fault_tags"] == ["wrong_excerpt"]
    assert editor["editor"]["correction"] == "<b>x</b>"        # kept as text; React renders text
    assert set(editor["fault_labels"]) == {t.value for t in FaultTag}


def test_payload_checks_role_from_the_server_not_the_payload():
    editor_payload = {"step_id": "s1", "kind": "editor", "rating": -1, "correction": "fix",
                      "fault_tags": ["faulty_logic"], "role": "editor"}
    with pytest.raises(present.PayloadError, match="editor role"):
        present.parse_review_payload(editor_payload, Role.reader)
    req = present.parse_review_payload(editor_payload, Role.editor)
    assert req.kind is ReviewKind.editor and req.fault_tags == (FaultTag.faulty_logic,)
    assert req.to_review("ann").reviewer == "ann"
    assert present.parse_review_payload({"step_id": "s1", "kind": "reader", "rating": 1}, Role.reader).rating == 1


@pytest.mark.parametrize("payload, needle", [
    (None, "malformed"),
    ({"kind": "reader", "rating": 1}, "no step"),
    ({"step_id": "s", "kind": "boss", "rating": 1}, "kind"),
    ({"step_id": "s", "kind": "reader", "rating": 0}, "not one of"),
    ({"step_id": "s", "kind": "editor", "rating": 2}, "not one of"),
    ({"step_id": "s", "kind": "editor", "rating": True}, "whole number"),
    ({"step_id": "s", "kind": "editor", "rating": 1, "fault_tags": ["lazy"]}, "unknown fault tag"),
    ({"step_id": "s", "kind": "editor", "rating": 1, "correction": "x" * 8001}, "limit is 8,000"),
    ({"step_id": "s", "kind": "reader", "rating": 1, "correction": "x"}, "for editors"),
])
def test_malformed_payloads_are_refused(payload, needle):
    with pytest.raises(present.PayloadError, match=needle):
        present.parse_review_payload(payload, Role.lab)


def test_emoji_icons_become_svg_data_urls():
    url = present.icon_url("🔍")
    assert url.startswith("data:image/svg+xml") and "🔍" in unquote(url)
    assert present.icon_url("/public/x.png") == "/public/x.png"
    assert present.icon_url("") == "/public/avatars/bookbot.svg"
    assert "<script" not in unquote(present.icon_url("<script>"))


def test_missing_books_notice_names_the_books_and_the_one_fixing_command():
    assert present.missing_books_notice(["gutenberg-244", "gutenberg-11"], {"gutenberg-244", "gutenberg-11"}) is None
    note = present.missing_books_notice(["gutenberg-244", "gutenberg-2097"], {"gutenberg-244"})
    assert "gutenberg-2097" in note and "gutenberg-244" not in note
    assert "bookbot books sync --from" in note
    assert "none of" in present.missing_books_notice(["gutenberg-11"], set()).lower()
