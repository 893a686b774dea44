"""Swappable retriever parts by configuration: LlamaIndex node postprocessors and a vector store.

A part is named by a dotted import path plus keyword arguments, either in the
settings (``BOOKBOT_RETRIEVAL_POSTPROCESSORS`` as JSON) or in a YAML file
(``BOOKBOT_RETRIEVAL_CONFIG``)::

    pool_factor: 3                 # fusion hands postprocessors 3 x top_k candidates
    postprocessors:                # run in order after fusion, then the top_k are kept
      - class: llama_index.core.postprocessor.SentenceTransformerRerank
        kwargs: {model: /models/ms-marco-MiniLM-L-6-v2, top_n: 5}
    vector_store:                  # any LlamaIndex vector store that stores text
      class: llama_index.vector_stores.qdrant.QdrantVectorStore
      kwargs: {collection_name: bookbot, url: "http://127.0.0.1:6333"}

``class`` may be a class or any callable returning the object
(``package.module.name`` or ``package.module:name``).  Postprocessors must be
``BaseNodePostprocessor``s; an object with ``rerank(query, excerpts)`` is
wrapped in ``ExcerptRerankerPostprocessor``.  Nothing is imported until a
library is opened.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from app.library.errors import LibraryError


def resolve(path: str) -> Callable[..., Any]:
    """The object a dotted path names: ``pkg.mod.Name`` or ``pkg.mod:Name``."""
    module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    if not module or not name:
        raise LibraryError(path, "not a dotted import path (package.module.Name)")
    try:
        target = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise LibraryError(path, f"cannot be imported ({exc})", "pip install the package that provides it") from exc
    return target


def _spec(spec: dict | str) -> tuple[str, dict]:
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, dict) or "class" not in spec:
        raise LibraryError(str(spec), 'a retrieval part needs a "class" (and optional "kwargs")')
    return str(spec["class"]), dict(spec.get("kwargs") or {})


def build_part(spec: dict | str) -> Any:
    path, kwargs = _spec(spec)
    try:
        return resolve(path)(**kwargs)
    except LibraryError:
        raise
    except Exception as exc:
        raise LibraryError(path, f"could not be built with {kwargs} ({exc})") from exc


def as_postprocessor(part: Any) -> Any:
    from llama_index.core.postprocessor.types import BaseNodePostprocessor

    from app.library.postprocessors import ExcerptRerankerPostprocessor

    if isinstance(part, BaseNodePostprocessor):
        return part
    if callable(getattr(part, "rerank", None)):
        return ExcerptRerankerPostprocessor(part)
    raise LibraryError(type(part).__name__, "is neither a LlamaIndex BaseNodePostprocessor nor has "
                       "rerank(query, excerpts)")


@dataclass
class RetrievalPlugins:
    postprocessor_specs: list = field(default_factory=list)
    vector_store_spec: dict | str | None = None
    pool_factor: int = 3
    _postprocessors: list | None = None

    @property
    def postprocessors(self) -> list:
        if self._postprocessors is None:
            self._postprocessors = [as_postprocessor(build_part(s)) for s in self.postprocessor_specs]
        return self._postprocessors

    def make_vector_store(self) -> Any | None:
        """The configured LlamaIndex vector store, or None for the default Chroma one."""
        return build_part(self.vector_store_spec) if self.vector_store_spec else None


def load_retrieval_plugins(settings) -> RetrievalPlugins:
    """The retriever parts named in the settings and in ``settings.retrieval_config`` (YAML)."""
    specs = list(getattr(settings, "retrieval_postprocessors", None) or [])
    store = None
    pool_factor = int(getattr(settings, "retrieval_pool_factor", 3) or 3)
    path = getattr(settings, "retrieval_config", None)
    if path:
        config = read_config(Path(path))
        specs += list(config.get("postprocessors") or [])
        store = config.get("vector_store")
        pool_factor = int(config.get("pool_factor", pool_factor))
    return RetrievalPlugins(specs, store, pool_factor)


def read_config(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LibraryError(path, f"cannot read the retrieval config ({exc})") from exc
    if not isinstance(data, dict) or set(data) - {"postprocessors", "vector_store", "pool_factor"}:
        raise LibraryError(path, "the retrieval config takes postprocessors:, vector_store: and pool_factor:")
    return data
