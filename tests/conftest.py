"""Fixtures every test area shares: a throw-away data dir and the read-only ../shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("BOOKBOT_DATABASE_URL", "BOOKBOT_LLM_BASE_URL", "BOOKBOT_CHROMA_URL"):
        monkeypatch.delenv(name, raising=False)
    return Settings(
        data_dir=tmp_path / "data",
        books_dir=tmp_path / "books",
        characters_dir=ROOT / "characters",
        reviews_dir=tmp_path / "reviews",
    )
