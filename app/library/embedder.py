"""Sentence embeddings offline: all-MiniLM-L6-v2 as ONNX, run by onnxruntime + tokenizers.

``OnnxEmbedder.load(model_dir)`` needs ``model.onnx`` and ``tokenizer.json``;
vectors are mean-pooled over the attention mask and L2-normalised (what
sentence-transformers does for this model).  The tokenizer's own padding and
truncation settings are switched off: callers count tokens with
``count_tokens`` and keep excerpts inside ``max_tokens``; ``embed`` refuses
longer texts (no silent truncation) and ``embed_long`` embeds a longer text
whole as the mean of its window-sized pieces.  ``load_embedder`` returns
None (with a reason) when no model is there, so the library can run on BM25.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


class OnnxEmbedder:
    """A sentence-transformer in ONNX form.  ``window`` counts [CLS] and [SEP]."""

    def __init__(self, session, tokenizer, *, name: str, window: int = 256, dim: int = 384,
                 query_session=None) -> None:
        self._session = session
        self._query_session = query_session or session   # single-threaded: lower latency for one query
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in session.get_inputs()}
        self.name = name
        self.window = window
        self.max_tokens = window - 2
        self.dim = dim

    @classmethod
    def load(cls, model_dir: Path, *, threads: int | None = None) -> "OnnxEmbedder":
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        for name in (MODEL_FILE, TOKENIZER_FILE):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(f"{model_dir / name} is missing")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(model_dir / MODEL_FILE), options,
                                       providers=["CPUExecutionProvider"])
        single = ort.SessionOptions()
        single.intra_op_num_threads = 1
        single.inter_op_num_threads = 1
        single.log_severity_level = 3
        query_session = ort.InferenceSession(str(model_dir / MODEL_FILE), single,
                                             providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        dim = int(session.get_outputs()[0].shape[-1] or 384)
        return cls(session, tokenizer, name=model_dir.name, dim=dim, query_session=query_session)

    # ------------------------------------------------------------ tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without [CLS]/[SEP]."""
        if not texts:
            return []
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    # ------------------------------------------------------------ vectors

    def _run(self, encodings, session=None) -> np.ndarray:
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, :len(enc.ids)] = enc.ids
            mask[row, :len(enc.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = (session or self._session).run(None, feed)[0]
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed(self, texts: Sequence[str], *, batch_size: int = 32,
              on_progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit vectors, one row per text; every text must fit the window."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        too_long = [i for i, e in enumerate(encodings) if len(e.ids) > self.window]
        if too_long:
            i = too_long[0]
            raise ValueError(f"text {i} has {len(encodings[i].ids)} tokens, more than the "
                             f"{self.window}-token window of {self.name}; split it or use embed_long")
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            out[batch] = self._run([encodings[i] for i in batch])
            if on_progress:
                on_progress(len(batch))
        return out

    def embed_long(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Embed texts of any length whole: mean of the vectors of window-sized pieces.

        Pieces are cut from the token ids themselves (re-tokenising a cut-out substring can
        give more tokens than the window, e.g. Hangul split mid-word)."""
        cls_id, sep_id = self._tokenizer.token_to_id("[CLS]"), self._tokenizer.token_to_id("[SEP]")
        pieces: list[_Piece] = []
        owners: list[int] = []
        step = self.max_tokens
        for n, enc in enumerate(self._tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            for start in range(0, max(len(enc.ids), 1), step):
                pieces.append(_Piece([cls_id, *enc.ids[start:start + step], sep_id]))
                owners.append(n)
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i].ids))
        vectors = np.zeros((len(pieces), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            vectors[batch] = self._run([pieces[i] for i in batch])
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(out, np.asarray(owners, dtype=np.int64), vectors)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def embed_query(self, text: str) -> np.ndarray:
        enc = self._tokenizer.encode(text, add_special_tokens=True)
        if len(enc.ids) <= self.window:
            return self._run([enc], self._query_session)[0]
        return self.embed_long([text])[0]


class _Piece(NamedTuple):
    ids: list[int]


def load_embedder(model_dir: Path) -> tuple[OnnxEmbedder | None, str]:
    """(embedder, "") or (None, why not) — never raises for a missing/broken model."""
    try:
        return OnnxEmbedder.load(model_dir), ""
    except FileNotFoundError as exc:
        return None, (f"no embedding model ({exc}); retrieval runs on BM25 only. "
                      f"Fix: bookbot models fetch")
    except Exception as exc:  # onnxruntime / tokenizers errors for corrupt files
        return None, (f"embedding model in {model_dir} cannot be loaded ({exc}); retrieval runs on "
                      f"BM25 only. Fix: bookbot models fetch --force")
