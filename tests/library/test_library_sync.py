"""First start: manifests → fetch from a loopback 'Gutenberg' → fall back to a local folder → report."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from app.library import open_library
from app.library.sync import ensure_books, load_manifests

REPO_BOOKS = Path(__file__).resolve().parents[2] / "books"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "books"


def _manifests(settings, *ids: str) -> None:
    settings.books_dir.mkdir(parents=True, exist_ok=True)
    for book_id in ids:
        shutil.copy(REPO_BOOKS / f"{book_id}.yaml", settings.books_dir)


def test_repo_manifests_match_the_distributed_files():
    manifests, problems = load_manifests(REPO_BOOKS)
    assert not problems
    assert {m.id for m in manifests} >= {"gutenberg-244", "gutenberg-2097", "gutenberg-1661", "gutenberg-2852",
                                         "gutenberg-11", "gutenberg-1342", "ko-bombom", "ko-unsu-joeun-nal"}
    import hashlib
    for m in manifests:
        path = next(SHARED.rglob(m.file))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == m.sha256, m.id


def test_fetches_from_gutenberg_then_local_copy_for_local_sources(bm25_settings, gutenberg_server):
    settings = bm25_settings.model_copy(update={"gutenberg_url": gutenberg_server.url, "local_books_dir": SHARED})
    _manifests(settings, "gutenberg-11", "gutenberg-244", "ko-bombom")
    gutenberg_server.serve(11)
    gutenberg_server.serve(244)
    events: list[tuple[str, int, int]] = []
    report = ensure_books(settings, on_progress=lambda m, d, t: events.append((m, d, t)))
    assert report.ok, report.summary()
    assert sorted(report.fetched) == ["gutenberg-11", "gutenberg-244"] and report.imported == ["ko-bombom"]
    assert any("downloading" in m and d == t and t > 100_000 for m, d, t in events)
    lib = open_library(settings)
    assert {b.id: b.title for b in lib.books()} == {"gutenberg-11": "Alice’s Adventures in Wonderland",
                                                    "gutenberg-244": "A Study In Scarlet", "ko-bombom": "봄봄"}
    assert lib.book("gutenberg-244").source == "gutenberg:244"
    again = ensure_books(settings, library=lib)
    assert sorted(again.present) == ["gutenberg-11", "gutenberg-244", "ko-bombom"] and not again.fetched


def test_a_download_dying_halfway_falls_back_to_the_local_folder(bm25_settings, gutenberg_server, tmp_path):
    local = tmp_path / "my-books"
    local.mkdir()
    shutil.copy(SHARED / "study_in_scarlet_244.txt", local / "pg244.txt")
    settings = bm25_settings.model_copy(update={"gutenberg_url": gutenberg_server.url, "local_books_dir": local})
    _manifests(settings, "gutenberg-244")
    gutenberg_server.serve(244)
    gutenberg_server.break_(244)
    report = ensure_books(settings)
    assert report.ok and report.imported == ["gutenberg-244"] and not report.fetched
    assert open_library(settings).book("gutenberg-244").sha256 == yaml.safe_load(
        (REPO_BOOKS / "gutenberg-244.yaml").read_text())["sha256"]


def test_nothing_reachable_reports_missing_books_and_the_fix(bm25_settings, gutenberg_server):
    settings = bm25_settings.model_copy(update={"gutenberg_url": gutenberg_server.url})
    _manifests(settings, "gutenberg-244", "gutenberg-2097", "ko-unsu-joeun-nal")
    gutenberg_server.serve(244)
    gutenberg_server.break_(244)
    gutenberg_server.serve(2097, b"changed upstream\n" + (SHARED / "sign_of_four_2097.txt").read_bytes())
    report = ensure_books(settings)
    assert not report.ok and sorted(report.missing) == ["gutenberg-244", "ko-unsu-joeun-nal"]
    assert "download stopped at" in report.missing["gutenberg-244"]
    assert "/cache/epub/244/pg244.txt" in report.missing["gutenberg-244"]
    # an edition changed upstream is still imported (a reader gets the book), with a warning
    assert "Project Gutenberg changed the file" in report.changed["gutenberg-2097"]
    assert "imported the new text anyway" in report.summary()
    assert "no local books folder" in report.missing["ko-unsu-joeun-nal"]
    assert report.fix_command.startswith("bookbot books sync --from ")
    assert "BOOKBOT_LOCAL_BOOKS_DIR" in report.summary()
    assert [b.id for b in open_library(settings).books()] == ["gutenberg-2097"]   # nothing half-imported
    fixed = ensure_books(settings, from_dir=SHARED)      # the manifest's edition replaces the changed one
    assert fixed.ok and sorted(fixed.imported) == ["gutenberg-2097", "gutenberg-244", "ko-unsu-joeun-nal"]
