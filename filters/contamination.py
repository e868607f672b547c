"""Overlap between training rows and evaluation sets: the same video, the same question.

A video counts as the same when its path matches, when its file name matches
(datasets move videos between folders), or when its content hash matches
(renamed copies), the last when the rows carry `video.sha256` or the media are
on disk. A question counts as the same when it shares a word n-gram (default
8 words) with an eval question, or equals one after normalisation when it is
shorter than n words. All of it runs as polars joins.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from vdata.filters.columns import file_name, normalized_path, rows_frame, word_hashes
from vdata.stages import Reject, StageContext, StageOutput
from vdata.video import sha256_file

NGRAM = 8
_BASE = 0x100000001B3  # FNV prime: mixes word hashes by position


@dataclass
class EvalSet:
    """What a training row must not share: one frame of eval rows and where its media live."""

    name: str
    frame: pl.DataFrame
    media_root: Path | None = None


def question_ngrams(frame: pl.DataFrame, n: int = NGRAM) -> pl.DataFrame:
    """idx and 64-bit hash of each word n-gram of each question (lower case, words of letters
    and digits); a question shorter than n words contributes itself whole."""
    rows, hashes = word_hashes(frame["problem"], frame["idx"], seed=5)
    if len(rows) == 0:
        return pl.DataFrame(schema={"idx": pl.UInt32, "h": pl.UInt64})
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    lengths = np.diff(np.r_[starts, len(rows)])
    position = np.arange(len(rows)) - np.repeat(starts, lengths)
    powers = np.array([pow(_BASE, j, 2**64) for j in range(max(n, int(lengths.max())))], dtype=np.uint64)
    with np.errstate(over="ignore"):
        # whole questions shorter than n: sum of word hash x BASE^position
        weighted = hashes * powers[position]
        whole = np.add.reduceat(weighted, starts)
        short = lengths < n
        # windows of n words that stay inside one question
        m = max(len(rows) - n + 1, 0)
        window = np.zeros(m, dtype=np.uint64)
        for j in range(n if m else 0):
            window += hashes[j : j + m] * powers[j]
    inside = rows[:m] == rows[n - 1 :] if m else np.array([], bool)
    return pl.DataFrame(
        {
            "idx": np.r_[rows[starts][short], rows[:m][inside]].astype(np.uint32),
            "h": np.r_[whole[short], window[inside]].astype(np.uint64),
        }
    ).unique()


def question_overlaps(
    train: pl.DataFrame, evals: list[EvalSet], n: int = NGRAM, *, across_videos: bool = False
) -> pl.DataFrame:
    """idx, eval set name, shared n-grams and the eval row's ref, for every train row whose
    question shares an n-gram with an eval question about the same video (by path, file name
    or content hash); about any video with `across_videos`. Templated questions ("what did the
    baby do after ...") about different videos are not the same sample."""
    mine = question_ngrams(train, n)
    found = []
    for eval_set in evals:
        theirs = question_ngrams(eval_set.frame, n).rename({"idx": "eval_idx"})
        pairs = mine.join(theirs, on="h")
        if not across_videos:
            pairs = pairs.join(_same_video_pairs(train, eval_set.frame), on=["idx", "eval_idx"], how="semi")
        hits = (
            pairs.join(eval_set.frame.select(eval_idx="idx", eval_ref="ref"), on="eval_idx")
            .sort("idx", "eval_idx")
            .group_by("idx", maintain_order=True)
            .agg(shared=pl.len(), eval_ref=pl.col("eval_ref").first())
            .with_columns(eval_set=pl.lit(eval_set.name))
        )
        found.append(hits)
    return _stack(
        found, {"idx": pl.UInt32, "shared": pl.UInt32, "eval_ref": pl.String, "eval_set": pl.String}
    )


def _same_video_pairs(train: pl.DataFrame, eval_frame: pl.DataFrame) -> pl.DataFrame:
    """(idx, eval_idx) of train and eval rows about the same video: same file name (which a
    same path implies) or same content hash."""
    parts = []
    for key in (file_name(pl.col("path")), pl.col("video_sha")):
        mine = train.select("idx", k=key).drop_nulls("k")
        theirs = eval_frame.select(eval_idx="idx", k=key).drop_nulls("k")
        parts.append(mine.join(theirs, on="k").select("idx", "eval_idx"))
    return pl.concat(parts).unique()


def video_overlaps(train: pl.DataFrame, evals: list[EvalSet], media_root: Path | None = None) -> pl.DataFrame:
    """idx, eval set name, how ('path', 'file name', 'content') and the eval row's ref, for every
    train row whose video is also in an eval set; the strongest match per row and set."""
    found = []
    for eval_set in evals:
        for how, key in (("path", normalized_path), ("file name", file_name)):
            theirs = (
                eval_set.frame.select(k=key(pl.col("path")), eval_ref="ref")
                .drop_nulls("k")
                .unique("k", keep="first")
            )
            hits = train.select("idx", k=key(pl.col("path"))).join(theirs, on="k")
            found.append(hits.select("idx", "eval_ref", how=pl.lit(how), eval_set=pl.lit(eval_set.name)))
        mine_sha, theirs_sha = _content_pairs(train, media_root, eval_set.frame, eval_set.media_root)
        hits = mine_sha.join(
            theirs_sha.join(eval_set.frame.select("idx", eval_ref="ref"), on="idx").select("sha", "eval_ref"),
            on="sha",
        ).unique("idx", keep="first")
        found.append(hits.select("idx", "eval_ref", how=pl.lit("content"), eval_set=pl.lit(eval_set.name)))
    stacked = _stack(
        found, {"idx": pl.UInt32, "eval_ref": pl.String, "how": pl.String, "eval_set": pl.String}
    )
    strength = pl.col("how").replace_strict({"path": 0, "content": 1, "file name": 2}, return_dtype=pl.Int8)
    return stacked.sort("idx", strength).unique(["idx", "eval_set"], keep="first", maintain_order=True)


def _content_pairs(
    a: pl.DataFrame, a_root: Path | None, b: pl.DataFrame, b_root: Path | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """idx and content sha256 on both sides. A file is hashed only when the other side could
    hold the same content: a file of the same size, or rows that carry their hash."""
    a_sizes, b_sizes = _file_sizes(a, a_root), _file_sizes(b, b_root)
    a_wanted = None if b["video_sha"].is_not_null().any() else set(b_sizes["size"].to_list())
    b_wanted = None if a["video_sha"].is_not_null().any() else set(a_sizes["size"].to_list())
    return _content_hashes(a, a_root, a_sizes, a_wanted), _content_hashes(b, b_root, b_sizes, b_wanted)


def _file_sizes(frame: pl.DataFrame, media_root: Path | None) -> pl.DataFrame:
    """idx, relative path and size of each row's video file that exists (rows without a hash)."""
    if media_root is None:
        return pl.DataFrame(schema={"idx": pl.UInt32, "p": pl.String, "size": pl.Int64})
    paths = frame.filter(pl.col("video_sha").is_null()).select("idx", p=normalized_path(pl.col("path")))
    sizes = file_sizes(media_root, paths["p"].drop_nulls().unique().to_list())
    return paths.with_columns(
        size=pl.col("p").replace_strict(sizes, default=None, return_dtype=pl.Int64)
    ).drop_nulls("size")


def _content_hashes(
    frame: pl.DataFrame, media_root: Path | None, sizes: pl.DataFrame, wanted: set[int] | None
) -> pl.DataFrame:
    known = frame.filter(pl.col("video_sha").is_not_null()).select("idx", sha="video_sha")
    todo = sizes if wanted is None else sizes.filter(pl.col("size").is_in(list(wanted)))
    digests = {p: sha256_file(media_root / p) for p in todo["p"].unique().to_list()} if media_root else {}
    hashed = todo.select("idx", sha=pl.col("p").replace_strict(digests, default=None, return_dtype=pl.String))
    return pl.concat([known, hashed.drop_nulls("sha")])


def file_sizes(root: Path, relative_paths: list[str]) -> dict[str, int]:
    """Size of each of `relative_paths` that is a file under `root`. Lists each folder once
    instead of one stat per path: a million rows over one videos/ folder is one listing."""
    by_folder: dict[str, list[str]] = defaultdict(list)
    for relative in relative_paths:
        folder, _, name = relative.rpartition("/")
        by_folder[folder].append(name)
    sizes = {}
    for folder, names in by_folder.items():
        directory = root / folder if folder else root
        try:
            with os.scandir(directory) as entries:
                present = {e.name: e for e in entries}
        except OSError:
            continue  # no such folder: none of its files exist
        for name in names:
            entry = present.get(name)
            if entry is not None and entry.is_file():
                sizes[f"{folder}/{name}" if folder else name] = entry.stat().st_size
    return sizes


def _stack(parts: list[pl.DataFrame], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    parts = [p.select([pl.col(c).cast(t) for c, t in schema.items()]) for p in parts if p.height]
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


@dataclass
class Overlaps:
    """Train rows that overlap eval sets: idx -> reasons (for rejects and reports)."""

    videos: pl.DataFrame
    questions: pl.DataFrame
    reasons: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def find(
        cls,
        train: pl.DataFrame,
        evals: list[EvalSet],
        media_root: Path | None,
        n: int = NGRAM,
        *,
        across_videos: bool = False,
    ) -> Overlaps:
        videos = video_overlaps(train, evals, media_root)
        questions = question_overlaps(train, evals, n, across_videos=across_videos)
        found = cls(videos, questions)
        for idx, eval_ref, how, name in videos.iter_rows():
            found.reasons[idx].append(("eval_video", f"same video as {name}: {eval_ref} (by {how})"))
        for idx, shared, eval_ref, name in questions.iter_rows():
            found.reasons[idx].append(
                ("eval_question", f"question shares {shared} {n}-gram(s) with {name}: {eval_ref}")
            )
        return found


def decontaminate_rows(
    rows: list[dict[str, Any]],
    ctx: StageContext,
    *,
    evals: list[EvalSet],
    media_root: Path | None = None,
    ngram: int = NGRAM,
    across_videos: bool = False,
) -> StageOutput:
    """Drops rows whose video or question overlaps an eval set (a question about the same video
    unless `across_videos`); the reject says which and how."""
    found = Overlaps.find(rows_frame(rows), evals, media_root, ngram, across_videos=across_videos)
    out = StageOutput()
    for index, row in enumerate(rows):
        reasons = found.reasons.get(index)
        if not reasons:
            out.rows.append(row)
            continue
        out.rejects.append(Reject.of_row(row, reasons[0][0], "; ".join(detail for _, detail in reasons)))
    return out


def load_eval_sets(paths: list[Path]) -> list[EvalSet]:
    """Eval datasets in any known format; their media resolve under each dataset's folder."""
    from vdata.formats import load_rows, media_root_of

    sets = []
    for path in paths:
        loaded = load_rows(path)
        frame = rows_frame(loaded.rows, loaded.splits, refs=loaded.refs, source_ids=loaded.source_ids)
        sets.append(EvalSet(str(path), frame, media_root_of(path)))
    return sets
