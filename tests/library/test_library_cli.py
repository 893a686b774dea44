"""`bookbot books|models|eval` through the real Typer app (BM25-only data dir unless a test needs the model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import build

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture()
def cli(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("BOOKBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("BOOKBOT_BOOKS_DIR", str(settings.books_dir))
    monkeypatch.setenv("BOOKBOT_EMBED_MODEL_DIR", str(tmp_path / "no-model"))
    app = build()
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output
    return run


def test_add_list_show_search_remove(cli, sample_book):
    out = cli("books", "add", str(sample_book))
    assert "added: gutenberg-244" in out and "2 chapters" in out and "BM25 only" in out
    assert "unchanged: gutenberg-244" in cli("books", "add", str(sample_book))
    out = cli("books", "add", str(SHARED / "books" / "ko" / "bombom_kim_yujeong.txt"), "--id", "ko-bombom",
              "--title", "봄봄", "--author", "김유정")
    assert "added: ko-bombom" in out
    listing = cli("books", "list")
    assert "gutenberg-244" in listing and "ko-bombom" in listing and "A Study In Scarlet" in listing
    shown = cli("books", "show", "gutenberg-244")
    assert "sha256:" in shown and "CHAPTER II. THE SCIENCE OF DEDUCTION." in shown
    found = cli("books", "search", "How did Holmes know Watson had been in Afghanistan?", "-k", "2")
    assert "1. A Study In Scarlet" in found and "Afghanistan" in found and "bm25" in found
    assert "봄봄" in cli("books", "search", "점순이 키", "--book", "ko-bombom", "-k", "1")
    assert "removed gutenberg-244" in cli("books", "remove", "gutenberg-244")
    assert "gutenberg-244" not in cli("books", "list")
    assert "no such book" in cli("books", "remove", "gutenberg-244", code=1)


def test_bad_input_exits_non_zero_naming_file_and_problem(cli, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert "empty.txt: file is empty" in cli("books", "add", str(empty), code=1)
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    assert "unknown format '.pdf'" in cli("books", "add", str(pdf), code=1)
    assert "expected gutenberg:N" in cli("books", "fetch", "isbn:123", code=1)


def test_fetch_writes_a_manifest_and_a_broken_download_changes_nothing(cli, settings, gutenberg_server,
                                                                      monkeypatch):
    monkeypatch.setenv("BOOKBOT_GUTENBERG_URL", gutenberg_server.url)
    gutenberg_server.serve(11)
    out = cli("books", "fetch", "gutenberg:11")
    assert "added: gutenberg-11" in out
    manifest = yaml.safe_load((settings.books_dir / "gutenberg-11.yaml").read_text())
    assert manifest["source"] == "gutenberg:11" and manifest["title"] == "Alice’s Adventures in Wonderland"
    assert manifest["sha256"] == "912cbcb6c54c5ed8b5f2a4980bb041a5497bcdcf06780bc5bc1a1ce15dbcfb52"
    gutenberg_server.serve(244)
    gutenberg_server.break_(244)
    out = cli("books", "fetch", "gutenberg:244", code=1)
    assert "pg244.txt" in out and "download stopped at" in out
    assert not (settings.books_dir / "gutenberg-244.yaml").exists()
    assert "gutenberg-244" not in cli("books", "list")
    assert "1 present" in cli("books", "sync", "--offline")


def test_models_fetch_is_a_noop_when_verified(cli, model_dir):
    assert "model already in" in cli("models", "fetch", "--dir", str(model_dir))
