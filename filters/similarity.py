"""Near-duplicate questions: MinHash with banded LSH, or sentence embeddings.

Both return the same thing: pairs (row, earlier row, similarity) where a row is
a near-copy of an earlier one within the same scope (by default the same
video: one question template asked of two videos is two samples).

MinHash: word bigrams of the lower-cased text, hashed by polars and numpy; 32
seeded multiply-shift permutations minimised per row; 8 bands of 4 put rows
that agree on a band in one bucket (a pair at Jaccard 0.8 shares a bucket with
probability 0.985); each bucket member is compared with the bucket's first row
by the exact Jaccard similarity of their shingle sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from vdata.embeddings import sentence_embeddings
from vdata.filters.columns import word_hashes

NUM_PERM = 32
BANDS = 8


@dataclass(frozen=True)
class NearPairs:
    """Parallel arrays: row idx[k] is a near-copy of the earlier row of[k], with score sim[k]."""

    idx: np.ndarray
    of: np.ndarray
    sim: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)


def _shingles(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(row of each shingle, 64-bit hash of each shingle), rows ascending: word bigrams, or the
    single word of a one-word text. Empty texts have no shingles."""
    rows, hashes = word_hashes(texts, seed=17)
    if len(rows) == 0:
        return rows, hashes
    same_row = rows[1:] == rows[:-1]
    starts = np.r_[True, ~same_row]
    ends = np.r_[~same_row, True]
    single = starts & ends
    with np.errstate(over="ignore"):
        bigrams = hashes[:-1] * np.uint64(0x9E3779B97F4A7C15) ^ hashes[1:]
    keep = np.r_[same_row, False] | single
    combined = np.where(single, hashes, np.r_[bigrams, np.uint64(0)])
    return rows[keep], combined[keep]


def minhash_signatures(
    rows: np.ndarray, hashes: np.ndarray, n: int, *, num_perm: int = NUM_PERM, seed: int = 1
) -> np.ndarray:
    """(n, num_perm) uint64 signatures from shingles; a row with none gets a unique signature."""
    signature = np.empty((n, num_perm), dtype=np.uint64)
    signature[:] = np.arange(n, dtype=np.uint64)[:, None]  # unique: never a bucket-mate
    if len(rows) == 0:
        return signature
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    present = rows[starts]
    rng = np.random.default_rng(seed)
    multipliers = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    offsets = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(num_perm):
            signature[present, k] = np.minimum.reduceat(hashes * multipliers[k] + offsets[k], starts)
    return signature


def minhash_pairs(
    texts: pl.Series, scope: pl.Series | None = None, *, threshold: float = 0.8, bands: int = BANDS
) -> NearPairs:
    """Rows whose Jaccard similarity (word bigrams) with an earlier row of the same scope is
    >= threshold: candidates from banded MinHash, confirmed on the shingle sets themselves."""
    n = len(texts)
    if n < 2:  # no pairs (and an empty dataset is a dataset)
        return NearPairs(np.array([], int), np.array([], int), np.array([], float))
    rows, hashes = _shingles(texts)
    signature = minhash_signatures(rows, hashes, n)
    width = signature.shape[1] // bands
    scope_hash = (
        scope.fill_null("").hash(seed=3).to_numpy().astype(np.uint64)
        if scope is not None
        else np.zeros(n, dtype=np.uint64)
    )
    mixers = np.random.default_rng(7).integers(1, 2**63, size=width, dtype=np.uint64) * np.uint64(2) + 1
    members, firsts = [], []
    index = np.arange(n)
    with np.errstate(over="ignore"):
        for band in range(bands):
            part = signature[:, band * width : (band + 1) * width]
            key = np.bitwise_xor.reduce(part * mixers, axis=1) ^ (scope_hash * np.uint64(0x9E3779B97F4A7C15))
            order = np.argsort(key, kind="stable")
            sorted_key = key[order]
            new_run = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
            run_first = order[np.maximum.accumulate(np.where(new_run, index, 0))]
            members.append(order[~new_run])
            firsts.append(run_first[~new_run])
    pairs = np.unique(np.stack([np.concatenate(members), np.concatenate(firsts)], axis=1), axis=0)
    if len(pairs) == 0:
        return NearPairs(np.array([], int), np.array([], int), np.array([], float))
    bounds = np.searchsorted(rows, np.arange(n + 1))
    sets: dict[int, set[int]] = {}

    def shingle_set(row: int) -> set[int]:
        if row not in sets:
            sets[row] = set(hashes[bounds[row] : bounds[row + 1]].tolist())
        return sets[row]

    sim = np.array([_jaccard(shingle_set(a), shingle_set(b)) for a, b in pairs.tolist()])
    keep = sim >= threshold
    return NearPairs(pairs[keep, 0], pairs[keep, 1], sim[keep])


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def embedding_pairs(
    texts: list[str], scope: list[str] | None = None, *, threshold: float = 0.95, batch_size: int = 128
) -> NearPairs:
    """Rows whose cosine similarity (all-MiniLM-L6-v2) with an earlier row of the same scope is
    >= threshold. Compares all pairs within a scope: for large unscoped sets use MinHash."""
    vectors = sentence_embeddings(texts, batch_size=batch_size)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(scope if scope is not None else [""] * len(texts)):
        groups.setdefault(key, []).append(i)
    idx, of, sim = [], [], []
    for members in groups.values():
        if len(members) < 2:
            continue
        members_array = np.array(members)
        for start in range(0, len(members), 2048):
            block = members_array[start : start + 2048]
            scores = vectors[block] @ vectors[members_array].T
            for row, line in zip(block, scores, strict=True):
                earlier = members_array < row
                hits = np.flatnonzero(earlier & (line >= threshold))
                if len(hits):
                    best = hits[np.argmax(line[hits])]
                    idx.append(row)
                    of.append(members_array[best])
                    sim.append(float(line[best]))
    return NearPairs(np.array(idx, int), np.array(of, int), np.array(sim, float))


def cluster_roots(n: int, pairs: NearPairs) -> np.ndarray:
    """For each row, the first row of its group of near-copies (itself when it has none)."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in sorted(zip(pairs.idx.tolist(), pairs.of.tolist(), strict=True)):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)])
