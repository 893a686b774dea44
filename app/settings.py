"""Runtime settings (pydantic-settings, ``BOOKBOT_*`` environment variables).

Built only at entry points (CLI, UI, tests) and passed down; nothing here runs
at import time.  Every piece of runtime state lives under ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKBOT_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".bookbot"), description="Index, database, model cache, snapshots.")
    books_dir: Path = Field(Path("books"), description="Book manifests (YAML), versioned.")
    characters_dir: Path = Field(Path("characters"), description="Character cards (YAML).")
    reviews_dir: Path = Field(Path("reviews"), description="Exported review datasets.")
    local_books_dir: Path | None = Field(
        None, description="Folder of book files to import from when Project Gutenberg is unreachable."
    )

    # Library
    gutenberg_url: str = "https://www.gutenberg.org"
    fetch_timeout_s: float = 30.0
    max_book_bytes: int = 40 * 1024 * 1024
    embed_model_dir: Path | None = Field(
        None, description="Folder with model.onnx + tokenizer.json; default <data_dir>/models/all-MiniLM-L6-v2."
    )
    chroma_url: str | None = Field(None, description="ChromaDB server URL; embedded client when unset.")
    top_k: int = 5
    retrieval_config: Path | None = Field(
        None, description="YAML file: LlamaIndex node postprocessors and/or a vector store for the retriever "
                          "(see docs/library.md).")
    retrieval_postprocessors: list[dict | str] = Field(
        default_factory=list, description='LlamaIndex node postprocessors after fusion, JSON: '
                                          '[{"class": "dotted.path.Class", "kwargs": {...}}].')
    retrieval_pool_factor: int = Field(
        3, description="With postprocessors, fusion hands them pool_factor x top_k candidates.")

    # Bots
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = Field(None, validation_alias="OPENAI_API_KEY")
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 2
    candidates_per_step: int = 2

    # Storage
    database_url: str | None = Field(None, description="SQLAlchemy URL; SQLite file in data_dir when unset.")

    # Tuning (feedback loop)
    prelabel_min_accuracy: float | None = Field(
        None, description="Verifier held-out accuracy needed before it may pre-label queue steps; unset = off.")
    prelabel_min_auc: float | None = Field(
        None, description="Verifier held-out ROC AUC needed before it may pre-label queue steps; unset = off.")
    prelabel_confidence: float = Field(
        0.9, description="Pre-label a step only when the verifier's P(good) is at least this (or at most 1 minus it).")

    # UI
    dev_mode: bool = Field(False, description="Development mode: creates demo users with known passwords.")
    auth_secret: str | None = Field(
        None, description="Signs the sign-in tokens; give every instance the same one. Unset: kept in the "
                          "shared database (PostgreSQL) or in <data_dir>/auth_secret (SQLite).")
    allowed_origins: list[str] = Field(
        default_factory=list, description='Browser origins besides the app\'s own that may call it, JSON: '
                                          '["https://bookbot.example.org"]; any other origin is refused (403).')
    engine_processes: int | None = Field(
        None, description="Processes that compute answers beside each chat server; 0 = worker threads inside "
                          "it. Unset: 1 with a database server (PostgreSQL), 0 with SQLite (docs/operations.md).")
    token_lifetime_s: int = Field(8 * 3600, description="How long a sign-in lasts (seconds).")
    sign_in_account_failures: int = Field(5, description="Failed sign-ins for one name before it is paused.")
    sign_in_address_failures: int = Field(20, description="Failed sign-ins from one address before it is paused.")
    sign_in_window_s: int = Field(15 * 60, description="Failures older than this (seconds) are forgotten.")
    sign_in_block_s: int = Field(30, description="First pause (seconds); doubles per further failure, "
                                                 "at most 15 minutes.")

    @property
    def resolved_embed_model_dir(self) -> Path:
        return self.embed_model_dir or self.data_dir / "models" / "all-MiniLM-L6-v2"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bookbot.db').resolve()}"

    @property
    def resolved_engine_processes(self) -> int:
        if self.engine_processes is not None:
            return max(0, self.engine_processes)
        return 1 if self.shared_database else 0

    @property
    def shared_database(self) -> bool:
        """A database server (PostgreSQL) that several app instances may share: the catalog, snapshot
        files and element payloads live there too.  SQLite keeps the one-machine layout."""
        return bool(self.database_url) and not self.database_url.startswith("sqlite")

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
