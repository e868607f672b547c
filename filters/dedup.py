"""Duplicate questions: exact (normalised question + video) and near (MinHash or embeddings)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vdata.filters import DEDUP_METHODS
from vdata.filters.columns import first_copies, known_video, question_and_options, rows_frame
from vdata.filters.similarity import NearPairs, cluster_roots, embedding_pairs, minhash_pairs
from vdata.stages import Reject, StageContext, StageOutput


def dedup_rows(
    rows: list[dict[str, Any]],
    ctx: StageContext,
    *,
    method: str = "minhash",
    threshold: float | None = None,
    across_videos: bool = False,
) -> StageOutput:
    """Keeps the first row of each group of copies, in input order. Exact copies (same
    normalised question about the same video) always go; `minhash` and `embedding` also drop
    near-copies of the question and options, about the same video unless `across_videos`."""
    if method not in DEDUP_METHODS:
        raise ValueError(f"unknown dedup method {method!r}; methods: {', '.join(DEDUP_METHODS)}")
    frame = rows_frame(rows)
    scope = None if across_videos else frame.select(known_video()).to_series()
    first = first_copies(frame, across_videos=across_videos).to_numpy()
    exact = np.flatnonzero(first != np.arange(len(rows)))
    pairs = NearPairs(exact, first[exact], np.ones(len(exact)))
    if method != "exact":
        text = question_and_options(frame)
        if method == "minhash":
            near = minhash_pairs(text, scope, threshold=threshold or 0.8)
        else:
            near = embedding_pairs(
                text.to_list(), None if scope is None else scope.to_list(), threshold=threshold or 0.95
            )
        pairs = NearPairs(
            np.concatenate([pairs.idx, near.idx]),
            np.concatenate([pairs.of, near.of]),
            np.concatenate([pairs.sim, near.sim]),
        )
    roots = cluster_roots(len(rows), pairs)
    similarity = dict(zip(pairs.idx.tolist(), pairs.sim.tolist(), strict=True))
    exact_copies = set(exact.tolist())
    out = StageOutput()
    for index, row in enumerate(rows):
        root = int(roots[index])
        if root == index:
            out.rows.append(row)
            continue
        kept = rows[root].get("id") or f"#{root}"
        score = similarity.get(index, 1.0)
        if index in exact_copies:
            out.rejects.append(Reject.of_row(row, "duplicate", f"same question and video as kept row {kept}"))
        else:
            out.rejects.append(
                Reject.of_row(row, "near_duplicate", f"near-copy of kept row {kept} (similarity {score:.2f})")
            )
    return out
