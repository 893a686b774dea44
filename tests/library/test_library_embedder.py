"""The ONNX embedder embeds texts of any length and language whole, never truncating."""

from __future__ import annotations

import numpy as np

from .conftest import BOOKS


def test_long_queries_in_korean_and_english_embed_whole(model_dir):
    from app.library.embedder import OnnxEmbedder

    embedder = OnnxEmbedder.load(model_dir)
    korean = (BOOKS / "ko" / "unsu_joeun_nal_hyeon_jingeon.txt").read_text(encoding="utf-8")
    english = (BOOKS / "pride_prejudice_1342.txt").read_text(encoding="utf-8-sig")
    for text in (korean[1000:1400], korean[2000:4500], english[20000:24000]):
        assert embedder.count_tokens([text])[0] > embedder.window      # longer than one window
        vector = embedder.embed_query(text)
        assert vector.shape == (embedder.dim,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    # the pieces of a long text all count: its vector differs from the first window's alone
    text = english[20000:24000]
    first_window = embedder.embed_query(text[:600])
    assert float(embedder.embed_query(text) @ first_window) < 0.99
