"""Card loading: shipped cards, error messages with file/field/line/fix, hot reload, Card V2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.bots.cardio import card_to_v2, card_to_yaml, import_v2, scaffold_card
from app.bots.cards import CardInvalid, CardRegistry, load_characters, parse_card_file, parse_card_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["alice", "elizabeth-bennet", "kim-cheomji", "sherlock-holmes"]


def test_shipped_cards_load(settings):
    registry = load_characters(settings)
    assert registry.errors() == []
    assert sorted(registry.ids()) == SHIPPED
    holmes = registry.get("sherlock-holmes")
    assert holmes.book_ids == ("gutenberg-244", "gutenberg-2097", "gutenberg-1661", "gutenberg-2852")
    assert [s.name for s in holmes.procedure] == ["Observe", "Recall", "Hypothesise", "Eliminate", "Conclude"]
    assert holmes.greeting and holmes.starters and holmes.examples and holmes.templates
    kim = registry.get("kim-cheomji")
    assert kim.language == "ko" and kim.name == "김 첨지" and len(kim.procedure) >= 3
    assert registry.get("alice").book_ids == ("gutenberg-11",)
    assert registry.get("elizabeth-bennet").book_ids == ("gutenberg-1342",)


def _write(dir_: Path, name: str, text: str) -> Path:
    path = dir_ / name
    path.write_text(text, encoding="utf-8")
    return path


def _holmes_text() -> str:
    return (ROOT / "characters" / "sherlock-holmes.yaml").read_text(encoding="utf-8")


def test_error_names_file_field_line_and_fix(tmp_path):
    text = _holmes_text().replace("      search: theory explanation suppose possible perhaps",
                                  "      serch: theory explanation suppose possible perhaps")
    path = _write(tmp_path, "sherlock-holmes.yaml", text)
    with pytest.raises(CardInvalid) as info:
        parse_card_file(path)
    (err,) = info.value.errors
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "serch:" in l)
    assert err.path == path and err.field == "procedure.steps.2.serch" and err.line == line
    assert "did you mean `search`" in err.fix
    assert str(err).startswith(f"{path}:{line}: procedure.steps.2.serch:")


@pytest.mark.parametrize("mutate, field, fix_part", [
    (lambda t: t.replace("greeting: >-", "greting: >-"), "greeting", "add `greeting:`"),
    (lambda t: t.replace("language: en", "language: English"), "language", "language code"),
    (lambda t: t.replace("id: sherlock-holmes", "id: Sherlock Holmes"), "id", "see the message"),
    (lambda t: t.replace("{quote}”\"\n  step:Recall", "{quot}”\"\n  step:Recall"), "(card)", "see the message"),
    (lambda t: t.replace("  step:Recall:", "  step:Remember:"), "(card)", "see the message"),
])
def test_various_mistakes(tmp_path, mutate, field, fix_part):
    path = _write(tmp_path, "sherlock-holmes.yaml", mutate(_holmes_text()))
    with pytest.raises(CardInvalid) as info:
        parse_card_file(path)
    fields = [e.field for e in info.value.errors]
    assert field in fields, info.value
    assert any(fix_part in e.fix for e in info.value.errors), info.value
    assert all(e.line for e in info.value.errors if e.field != "(card)")


def test_yaml_syntax_error_has_line(tmp_path):
    text = "id: x\nname: [unclosed\nbooks: a\n"
    with pytest.raises(CardInvalid) as info:
        parse_card_text(text, tmp_path / "x.yaml")
    assert info.value.errors[0].field == "(yaml)" and info.value.errors[0].line in (2, 3, 4)


def test_duplicate_key_and_id_mismatch(tmp_path):
    text = _holmes_text().replace("name: Sherlock Holmes", "name: Sherlock Holmes\nname: Holmes")
    with pytest.raises(CardInvalid) as info:
        parse_card_text(text, tmp_path / "sherlock-holmes.yaml")
    assert [e.field for e in info.value.errors] == ["name"] and "twice" in info.value.errors[0].message
    with pytest.raises(CardInvalid) as info:
        parse_card_text(_holmes_text(), tmp_path / "holmes.yaml")
    assert "rename the file" in info.value.errors[0].fix


def test_one_bad_card_does_not_stop_others_and_hot_reload(tmp_path):
    good = _write(tmp_path, "sherlock-holmes.yaml", _holmes_text())
    _write(tmp_path, "broken.yaml", "id: broken\nname: 5\n")
    registry = CardRegistry(tmp_path)
    assert registry.ids() == ["sherlock-holmes"]
    assert {e.path.name for e in registry.errors()} == {"broken.yaml"}

    # edit a card: the next get() sees it without restart
    good.write_text(_holmes_text().replace("name: Sherlock Holmes", "name: Mr Sherlock Holmes"), "utf-8")
    os.utime(good, ns=(good.stat().st_atime_ns, good.stat().st_mtime_ns + 10_000_000))
    assert registry.get("sherlock-holmes").name == "Mr Sherlock Holmes"

    # break it: the last good version stays live, the error is reported
    good.write_text(_holmes_text().replace("language: en", "language: English"), "utf-8")
    os.utime(good, ns=(good.stat().st_atime_ns, good.stat().st_mtime_ns + 20_000_000))
    assert registry.get("sherlock-holmes").name == "Mr Sherlock Holmes"
    assert registry.stale() == ["sherlock-holmes"]
    assert any(e.path == good for e in registry.errors())

    # a new card appears; a removed card disappears
    _write(tmp_path, "alice.yaml", (ROOT / "characters" / "alice.yaml").read_text("utf-8"))
    assert set(registry.ids()) == {"alice", "sherlock-holmes"}
    good.unlink()
    assert registry.ids() == ["alice"]
    with pytest.raises(KeyError, match="known: alice"):
        registry.get("sherlock-holmes")


def test_duplicate_ids_across_files(tmp_path):
    _write(tmp_path, "sherlock-holmes.yaml", _holmes_text())
    _write(tmp_path, "sherlock-holmes.yml", _holmes_text())
    registry = CardRegistry(tmp_path)
    assert registry.ids() == ["sherlock-holmes"]
    assert any("already used" in e.message for e in registry.errors())


def test_card_v2_round_trip(tmp_path, settings):
    registry = load_characters(settings)
    for cid in SHIPPED:
        card = registry.card(cid)
        v2 = card_to_v2(card)
        assert v2["spec"] == "chara_card_v2" and v2["spec_version"] == "2.0"
        data = v2["data"]
        for key in ("name", "description", "personality", "scenario", "first_mes", "mes_example",
                    "creator_notes", "system_prompt", "post_history_instructions", "alternate_greetings",
                    "tags", "creator", "character_version", "extensions"):
            assert key in data
        assert data["extensions"]["bookbot"]["procedure"]["steps"][0]["name"] == card.procedure.steps[0].name
        path = tmp_path / f"{cid}.json"
        path.write_text(json.dumps(v2, ensure_ascii=False), "utf-8")
        back = import_v2(path)
        assert back == card
        # and through YAML too
        yaml_path = tmp_path / f"{cid}.yaml"
        yaml_path.write_text(card_to_yaml(back), "utf-8")
        assert parse_card_file(yaml_path) == card


def test_v2_import_keeps_unknown_fields(tmp_path):
    v2 = {"spec": "chara_card_v2", "spec_version": "2.0", "made_with": "SillyTavern",
          "data": {"name": "Mr. Darcy", "description": "Master of Pemberley.", "personality": "Proud, honest.",
                   "scenario": "", "first_mes": "Madam.", "mes_example": "<START>\n{{user}}: Hello\n{{char}}: Madam.",
                   "creator_notes": "", "system_prompt": "Be terse.", "post_history_instructions": "",
                   "alternate_greetings": ["Good evening."], "character_book": {"entries": []},
                   "tags": ["austen"], "creator": "me", "character_version": "3",
                   "favourite_colour": "grey",
                   "extensions": {"depth_prompt": {"depth": 4, "prompt": "x"}}}}
    path = tmp_path / "darcy.json"
    path.write_text(json.dumps(v2), "utf-8")
    with pytest.raises(CardInvalid) as info:
        import_v2(path)
    assert info.value.errors[0].field == "books" and "--book" in info.value.errors[0].fix
    card = import_v2(path, books=["gutenberg-1342"])
    assert card.id == "mr-darcy" and card.examples[0].user == "Hello" and card.examples[0].character == "Madam."
    assert card.extensions["depth_prompt"] == {"depth": 4, "prompt": "x"}
    assert card.extensions["chara_card_v2"]["data"]["favourite_colour"] == "grey"
    assert len(card.procedure.steps) == 3
    out = card_to_v2(card)
    assert out["made_with"] == "SillyTavern"
    for key in ("favourite_colour", "system_prompt", "alternate_greetings", "character_book"):
        assert out["data"][key] == v2["data"][key]
    assert out["data"]["extensions"]["depth_prompt"] == v2["data"]["extensions"]["depth_prompt"]
    assert out["data"]["mes_example"] == v2["data"]["mes_example"]


def test_import_rejects_non_v2(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"name": "x"}', "utf-8")
    with pytest.raises(CardInvalid, match="chara_card_v2"):
        import_v2(path)
    path.write_text('{"spec": ', "utf-8")
    with pytest.raises(CardInvalid, match="not valid JSON"):
        import_v2(path)


def test_scaffold_is_a_valid_card(tmp_path):
    path = _write(tmp_path, "watson.yaml", scaffold_card("watson", "Dr Watson", ["gutenberg-244"]))
    card = parse_card_file(path)
    assert card.name == "Dr Watson" and len(card.procedure.steps) == 3


def test_import_png_card(tmp_path, settings):
    import base64
    import struct
    import zlib

    card = load_characters(settings).card("alice")
    payload = b"chara\x00" + base64.b64encode(json.dumps(card_to_v2(card)).encode())

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
           + chunk(b"tEXt", payload) + chunk(b"IEND", b""))
    path = tmp_path / "alice.png"
    path.write_bytes(png)
    assert import_v2(path) == card
    path.write_bytes(png.replace(b"tEXt", b"zzzz"))
    with pytest.raises(CardInvalid, match="no character card"):
        import_v2(path)
