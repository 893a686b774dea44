"""Versioned tuning snapshots: artefacts on disk, activation history, and the active pointer.

Layout under ``<data_dir>/snapshots/<character>/``:
  ``<version>/``    meta.json, verifier.json, reranker.json, priors.json, exemplars.jsonl
  ``ACTIVE``        the active version (one line, replaced atomically; empty = untuned)
  ``history.json``  versions in the order they were activated (what rollback walks back)
On one machine the folders are the source of truth; a `SnapshotMirror`
(`StoreMirror`: the review store's tuning snapshot table) gets every new snapshot,
its files and every activation.  `active_snapshot(settings, character_id)` only
stats the ``ACTIVE`` file per call and reloads when it changed, so a running app
picks up a newly activated snapshot for its next conversation without a restart.
With a shared database, `SharedSnapshots(settings, store)` answers instead: the
table says which snapshot is active, and its files are written into the local
folders (a cache) the first time an instance needs them.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from app.domain import Retriever
from app.settings import Settings
from app.tuning.exemplars import SnapshotExemplars
from app.tuning.linear import LinearModel
from app.tuning.reranker import reranked
from app.tuning.verifier import VerifierScorer, prelabel_allowed

_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class SnapshotError(ValueError):
    pass


@dataclass
class SnapshotMeta:
    character_id: str
    version: str                       # "v1", "v2", ...
    created_at: str
    n_reviews: int = 0
    metrics: dict = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)   # "verifier", "reranker", "exemplars"
    notes: str = ""

    @property
    def id(self) -> str:
        return f"{self.character_id}@{self.version}"

    def to_dict(self) -> dict:
        return {"character_id": self.character_id, "version": self.version,
                "created_at": self.created_at, "n_reviews": self.n_reviews,
                "metrics": self.metrics, "parts": self.parts, "notes": self.notes}

    @classmethod
    def from_dict(cls, d: dict) -> "SnapshotMeta":
        return cls(d["character_id"], d["version"], d["created_at"], int(d.get("n_reviews", 0)),
                   dict(d.get("metrics", {})), list(d.get("parts", [])), d.get("notes", ""))


def _check_id(value: str, what: str) -> str:
    if not value or not _SAFE.match(value):
        raise SnapshotError(f"invalid {what} {value!r}: use letters, digits, '-', '_' or '.'")
    return value


def snapshots_root(settings: Settings) -> Path:
    return settings.data_dir / "snapshots"


def character_dir(settings: Settings, character_id: str) -> Path:
    return snapshots_root(settings) / _check_id(character_id, "character id")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- mirror (review store table)

class SnapshotMirror(Protocol):
    """Where snapshot records are mirrored for the rest of the app (the review store's table)."""

    def add(self, meta: SnapshotMeta, folder: Path) -> None: ...
    def set_active(self, character_id: str, snapshot: "LoadedSnapshot | None") -> None: ...


def folder_files(folder: Path) -> dict[str, str]:
    """A snapshot folder's files (name -> text), as the store keeps them."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(folder).iterdir()) if p.is_file()}


class StoreMirror:
    """Mirrors snapshots into `ReviewStore`'s tuning snapshot table (id ``<character>@<version>``)."""

    def __init__(self, store) -> None:
        self.store = store

    def add(self, meta: SnapshotMeta, folder: Path) -> None:
        metrics = {**meta.metrics, "version": meta.version, "n_reviews": meta.n_reviews,
                   "parts": meta.parts, "notes": meta.notes}
        self.store.add_snapshot(meta.id, meta.character_id, metrics=metrics, artifact_path=str(folder),
                                artefacts=folder_files(folder))

    def set_active(self, character_id: str, snapshot: "LoadedSnapshot | None") -> None:
        if snapshot is None:
            self.store.deactivate_snapshots(character_id)
            return
        if not any(info.id == snapshot.id for info in self.store.list_snapshots(character_id)):
            self.add(snapshot.meta, snapshot.path)          # built elsewhere (e.g. by an eval run)
        self.store.activate_snapshot(snapshot.id)


def _history_path(settings: Settings, character_id: str) -> Path:
    return character_dir(settings, character_id) / "history.json"


def _read_history(settings: Settings, character_id: str) -> list[str]:
    path = _history_path(settings, character_id)
    if not path.exists():
        return []
    try:
        return [str(v) for v in json.loads(path.read_text(encoding="utf-8"))]
    except (json.JSONDecodeError, TypeError) as exc:
        raise SnapshotError(f"{path} is not a JSON list of versions ({exc}); fix or delete it "
                            "(the snapshots themselves are untouched)") from exc


def _write_history(settings: Settings, character_id: str, history: list[str]) -> None:
    _atomic_write(_history_path(settings, character_id), json.dumps(history))


# ---------------------------------------------------------------- loaded snapshot

@dataclass
class LoadedSnapshot:
    meta: SnapshotMeta
    path: Path
    verifier: LinearModel | None
    reranker: LinearModel | None
    priors: dict[str, tuple[int, int]]
    exemplars: SnapshotExemplars | None
    prelabel_confidence: float = 0.9
    prelabel_enabled: bool = False

    @property
    def id(self) -> str:
        return self.meta.id

    def scorer(self) -> VerifierScorer | None:
        """The engine's `scorer=` (None when this snapshot has no verifier)."""
        if self.verifier is None:
            return None
        return VerifierScorer(self.verifier, prelabel_confidence=self.prelabel_confidence,
                              prelabel_enabled=self.prelabel_enabled)

    def wrap(self, retriever: Retriever, *, pool_factor: int = 3) -> Retriever:
        """The engine's `retriever=`: the base retriever re-ranked (unchanged without a re-ranker) —
        on the library's retriever, as a LlamaIndex node postprocessor."""
        if self.reranker is None:
            return retriever
        return reranked(retriever, self.reranker, self.priors, pool_factor=pool_factor)

    def exemplar_source(self) -> SnapshotExemplars | None:
        return self.exemplars if self.exemplars is not None and len(self.exemplars) else None


def save_artefacts(settings: Settings, meta: SnapshotMeta, *, verifier: LinearModel | None,
                   reranker: LinearModel | None, priors: dict[str, tuple[int, int]] | None,
                   exemplars: SnapshotExemplars | None,
                   mirror: SnapshotMirror | None = None) -> Path:
    folder = character_dir(settings, meta.character_id) / _check_id(meta.version, "version")
    if folder.exists():
        raise SnapshotError(f"snapshot {meta.id} already exists at {folder}")
    tmp = folder.with_name(f".{folder.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    meta.parts = []
    if verifier is not None:
        verifier.save(tmp / "verifier.json")
        meta.parts.append("verifier")
    if reranker is not None:
        reranker.save(tmp / "reranker.json")
        (tmp / "priors.json").write_text(json.dumps({k: list(v) for k, v in (priors or {}).items()}),
                                         encoding="utf-8")
        meta.parts.append("reranker")
    if exemplars is not None and len(exemplars):
        exemplars.save(tmp / "exemplars.jsonl")
        meta.parts.append("exemplars")
    (tmp / "meta.json").write_text(json.dumps(meta.to_dict(), indent=1, ensure_ascii=False),
                                   encoding="utf-8")
    os.replace(tmp, folder)
    if mirror is not None:
        mirror.add(meta, folder)
    return folder


def next_version(settings: Settings, character_id: str) -> str:
    folder = character_dir(settings, character_id)
    numbers = [int(p.name[1:]) for p in folder.glob("v*") if p.is_dir() and p.name[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1}"


def load_snapshot(settings: Settings, character_id: str, version: str) -> LoadedSnapshot:
    folder = character_dir(settings, character_id) / _check_id(version, "version")
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise SnapshotError(f"no snapshot {character_id}@{version} (looked in {folder}); "
                            f"see `bookbot snapshots list {character_id}`")
    meta = SnapshotMeta.from_dict(json.loads(meta_path.read_text(encoding="utf-8")))
    verifier = LinearModel.load(folder / "verifier.json") if (folder / "verifier.json").exists() else None
    reranker = LinearModel.load(folder / "reranker.json") if (folder / "reranker.json").exists() else None
    priors: dict[str, tuple[int, int]] = {}
    if (folder / "priors.json").exists():
        priors = {k: (int(v[0]), int(v[1])) for k, v in
                  json.loads((folder / "priors.json").read_text(encoding="utf-8")).items()}
    exemplars = SnapshotExemplars.load(folder / "exemplars.jsonl") if (folder / "exemplars.jsonl").exists() else None
    enabled = prelabel_allowed(meta.metrics.get("verifier", {}),
                               min_accuracy=getattr(settings, "prelabel_min_accuracy", None),
                               min_auc=getattr(settings, "prelabel_min_auc", None))
    return LoadedSnapshot(meta, folder, verifier, reranker, priors, exemplars,
                          prelabel_confidence=getattr(settings, "prelabel_confidence", 0.9),
                          prelabel_enabled=enabled)


# ---------------------------------------------------------------- activation

def list_snapshots(settings: Settings, character_id: str) -> list[SnapshotMeta]:
    folder = character_dir(settings, character_id)
    metas = []
    for meta_path in folder.glob("*/meta.json"):
        if meta_path.parent.name.startswith("."):
            continue
        try:
            metas.append(SnapshotMeta.from_dict(json.loads(meta_path.read_text(encoding="utf-8"))))
        except (json.JSONDecodeError, KeyError) as exc:
            raise SnapshotError(f"{meta_path} is damaged ({exc}); move that folder away") from exc
    return sorted(metas, key=lambda m: (int(m.version[1:]) if m.version[1:].isdigit() else 0, m.version))


def list_characters(settings: Settings) -> list[str]:
    root = snapshots_root(settings)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def active_version(settings: Settings, character_id: str) -> str | None:
    pointer = character_dir(settings, character_id) / "ACTIVE"
    try:
        text = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def _write_pointer(settings: Settings, character_id: str, version: str | None) -> None:
    _atomic_write(character_dir(settings, character_id) / "ACTIVE", (version or "") + "\n")


def activate(settings: Settings, character_id: str, version: str,
             mirror: SnapshotMirror | None = None) -> SnapshotMeta:
    """Make `version` the character's active snapshot (new conversations use it)."""
    loaded = load_snapshot(settings, character_id, version)     # fails clearly if missing or broken
    history = _read_history(settings, character_id)
    if mirror is not None:                                       # the database first: if it fails,
        mirror.set_active(character_id, loaded)                  # nothing on disk has changed
    if not history or history[-1] != version:
        history.append(version)
    _write_history(settings, character_id, history)
    _write_pointer(settings, character_id, version)
    return loaded.meta


def rollback(settings: Settings, character_id: str, mirror: SnapshotMirror | None = None) -> str | None:
    """Re-activate the previously active version; returns it (None = back to the untuned bot)."""
    history = _read_history(settings, character_id)
    current = active_version(settings, character_id)
    if current is None:
        raise SnapshotError(f"{character_id} has no active snapshot to roll back from")
    if history and history[-1] == current:
        history.pop()
    previous = history[-1] if history else None
    if mirror is not None:
        mirror.set_active(character_id, load_snapshot(settings, character_id, previous) if previous else None)
    _write_history(settings, character_id, history)
    _write_pointer(settings, character_id, previous)
    return previous


_cache: dict[tuple[str, str], tuple[tuple[int, int], LoadedSnapshot | None]] = {}
_cache_lock = threading.Lock()


def active_snapshot(settings: Settings, character_id: str) -> LoadedSnapshot | None:
    """The character's active snapshot, or None (untuned).  Cheap: one stat() when nothing changed."""
    pointer = character_dir(settings, character_id) / "ACTIVE"
    try:
        st = pointer.stat()
        stamp = (st.st_mtime_ns, st.st_ino)
    except FileNotFoundError:
        return None
    key = (str(settings.data_dir.resolve()), character_id)
    with _cache_lock:
        cached = _cache.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
    version = active_version(settings, character_id)
    loaded = load_snapshot(settings, character_id, version) if version else None
    with _cache_lock:
        _cache[key] = (stamp, loaded)
    return loaded


class SharedSnapshots:
    """Active snapshots as the shared database says (any instance, any machine).

    ``active(character_id)`` asks the store at most every ``ttl_s`` seconds per character;
    a snapshot whose folder this machine lacks is written from the row's artefacts first.
    """

    def __init__(self, settings: Settings, store, ttl_s: float = 1.0) -> None:
        self.settings, self.store, self.ttl_s = settings, store, ttl_s
        self._seen: dict[str, tuple[float, LoadedSnapshot | None]] = {}
        self._lock = threading.Lock()

    def materialize(self, character_id: str, version: str) -> Path:
        """The snapshot's folder, written from the database when this machine does not have it."""
        folder = character_dir(self.settings, character_id) / _check_id(version, "version")
        if (folder / "meta.json").exists():
            return folder
        files = self.store.snapshot_artefacts(f"{character_id}@{version}")
        if not files:               # load_snapshot() then says what is missing
            return folder
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (tmp / Path(name).name).write_text(text, encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:             # another worker wrote it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def active(self, character_id: str) -> LoadedSnapshot | None:
        import time

        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(character_id)
            if seen and now - seen[0] < self.ttl_s:
                return seen[1]
        info = self.store.active_snapshot(character_id)
        loaded = None
        if info is not None:
            version = info.id.split("@", 1)[1]
            cached = seen[1] if seen else None
            if cached is not None and cached.id == info.id:
                loaded = cached
            else:
                self.materialize(character_id, version)
                loaded = load_snapshot(self.settings, character_id, version)
        with self._lock:
            self._seen[character_id] = (now, loaded)
        return loaded

    __call__ = active


def share_snapshots(settings: Settings, store) -> tuple[list[str], list[str]]:
    """Copy this data dir's snapshots (files included) into the store's table; make each character's
    active one active there unless the table already names one.  Returns (added ids, activated ids)."""
    known = {info.id for info in store.list_snapshots()}
    mirror = StoreMirror(store)
    added, activated = [], []
    for character_id in list_characters(settings):
        for meta in list_snapshots(settings, character_id):
            folder = character_dir(settings, character_id) / meta.version
            if meta.id not in known:
                mirror.add(meta, folder)
                added.append(meta.id)
            elif not store.snapshot_artefacts(meta.id):      # a row copied from the old database
                store.attach_artefacts(meta.id, folder_files(folder))
        version = active_version(settings, character_id)
        if version and store.active_snapshot(character_id) is None:
            store.activate_snapshot(f"{character_id}@{version}")
            activated.append(f"{character_id}@{version}")
    return added, activated


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def tuned_parts(settings: Settings, character_id: str, retriever: Retriever, warn=None, *,
                snapshots=None) -> tuple[Retriever, VerifierScorer | None, SnapshotExemplars | None, str | None]:
    """What the character's active snapshot gives a new engine: (retriever, scorer, exemplars,
    snapshot id).  ``snapshots``: where the active one comes from (``SharedSnapshots``; default the
    data dir's folders).  A broken snapshot is reported through ``warn`` and the untuned parts are used."""
    try:
        snap = snapshots(character_id) if snapshots is not None else active_snapshot(settings, character_id)
    except Exception as exc:  # a broken snapshot must not stop an answer
        if warn is not None:
            warn(f"tuning snapshot for {character_id} not used: {exc}")
        return retriever, None, None, None
    if snap is None:
        return retriever, None, None, None
    return snap.wrap(retriever), snap.scorer(), snap.exemplar_source(), snap.id
